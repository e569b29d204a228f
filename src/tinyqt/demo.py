"""`tinyqt demo`: the whole journey with nothing downloaded.

A small int8 CNN shipped in the package (pretrained in float on the
Fashion-MNIST classes 0..4 by scripts/pretrain_demo_model.py, quantized with
tinyqt.from_torch) learns the five classes it never saw (5..9, shipped as
demo_data/fashion_mnist_5to9.npz):
  1. compile a sparse-update training step under the SRAM budget;
  2. train on the host with the device's arithmetic, batch 1, progress bar;
  3. report accuracy before and after, the peak SRAM, and write a plot;
  4. when the Cortex-M cross compiler and QEMU are present, run the same
     training steps (same images, same labels) as firmware and check that
     every loss and trained tensor is bit-identical to the host.
`run_demo` returns the report as a dict (the CLI prints it or its JSON).
"""
import os
import time

import numpy as np

from .errors import TinyQTError

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data")
MODEL_FILE = os.path.join(DATA_DIR, "demo_model.tflite")
DATA_FILE = os.path.join(DATA_DIR, "fashion_mnist_5to9.npz")
CLASS_NAMES = ("sandal", "shirt", "sneaker", "bag", "ankle boot")
DEFAULT_SCHEME = "last:6"   # the weights of the last two blocks (and their biases) + the head


def load_demo():
    """(model, dataset) shipped in the package."""
    from .data import load_npz
    from .tflite_io import load_tflite
    for path in (MODEL_FILE, DATA_FILE):
        if not os.path.exists(path):
            raise TinyQTError(f"{path}: the demo's embedded file is missing (a broken install?)")
    return load_tflite(MODEL_FILE), load_npz(DATA_FILE)


def _plot(path, losses, before, after, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.2), gridspec_kw={"width_ratios": [3, 1]})
    window = max(1, min(50, len(losses) // 10))
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax1.plot(np.arange(len(smooth)) + window, smooth)
    ax1.set_xlabel("training step (batch 1)")
    ax1.set_ylabel(f"loss (mean of {window})")
    ax1.set_title(title, fontsize=9)
    ax2.bar(["before", "after"], [100 * before, 100 * after], color=["#999", "#27a"])
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("test accuracy (%)")
    for i, v in enumerate((before, after)):
        ax2.text(i, 100 * v + 2, f"{100 * v:.1f}", ha="center", fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run_demo(out_dir="tinyqt-demo", scheme=DEFAULT_SCHEME, epochs=2, lr=0.02, sram="256KB",
             train_limit=0, qemu="auto", qemu_target="cortex-m4", qemu_steps=8, progress=True, log=print):
    """Runs the demo; writes out_dir/demo.png and returns the report dict:
    accuracy_before, accuracy_after, peak_sram_bytes, flash_bytes, steps,
    seconds, plot, qemu (None when skipped, else {bitexact, target, steps,
    instructions_per_step, ...}). qemu: "auto" (run when the tools are
    there), "yes" (fail without them) or "no"."""
    from .compiler import compile
    from .data import to_model_input
    from .trainer import Trainer
    if qemu not in ("auto", "yes", "no"):
        raise TinyQTError(f"qemu must be auto, yes or no, not {qemu!r}")
    model, ds = load_demo()
    n_classes = len(CLASS_NAMES)
    x_train = to_model_input(ds.x_train, model.input)[:train_limit or None]
    y_train = ds.y_train[:train_limit or None]
    x_test, y_test = to_model_input(ds.x_test, model.input), ds.y_test
    plan = compile(model, scheme, sram=sram, num_classes=n_classes)
    log(f"model {model.name}: {model.input.shape[1]}x{model.input.shape[2]} input, pretrained on "
        f"Fashion-MNIST classes 0-4; learning {', '.join(CLASS_NAMES)}")
    log(f"compiled '{plan.scheme_name}': peak SRAM {plan.peak_sram_bytes:,} B (budget {sram}), "
        f"Flash {plan.flash_bytes:,} B, {plan.trainable_params:,} trainable parameters")
    trainer = Trainer(plan, model, lr=lr, progress=progress)
    before = trainer.evaluate(x_test, y_test)
    log(f"test accuracy before training: {100 * before:.1f}%")
    losses = []
    t0 = time.perf_counter()
    order_rng = np.random.default_rng(0)
    it = range(epochs)
    for epoch in it:
        order = order_rng.permutation(len(y_train))
        bar = order
        if progress:
            from tqdm import tqdm
            bar = tqdm(order, desc=f"epoch {epoch + 1}/{epochs}", unit="img")
        for i in bar:
            losses.append(trainer.step(x_train[i:i + 1], int(y_train[i])))
    seconds = time.perf_counter() - t0
    after = trainer.evaluate(x_test, y_test)
    log(f"test accuracy after {len(losses)} steps ({seconds:.0f} s): {100 * after:.1f}%")
    os.makedirs(out_dir, exist_ok=True)
    plot = os.path.join(out_dir, "demo.png")
    _plot(plot, losses, before, after, f"{model.name} / {plan.scheme_name}: peak SRAM "
          f"{plan.peak_sram_bytes / 1024:.0f} KB")
    log(f"plot: {plot}")
    report = {"model": model.name, "scheme": plan.scheme_name, "accuracy_before": before,
              "accuracy_after": after, "peak_sram_bytes": plan.peak_sram_bytes,
              "flash_bytes": plan.flash_bytes, "steps": len(losses), "seconds": round(seconds, 2),
              "plot": plot, "qemu": None}
    report["qemu"] = _run_on_device(plan, model, trainer, x_train, y_train, qemu, qemu_target, qemu_steps,
                                    out_dir, log)
    return report


def _run_on_device(plan, model, trainer, x_train, y_train, qemu, target, steps, out_dir, log):
    """The first `steps` training images as firmware in QEMU against the host
    runtime from the same starting point; None when skipped."""
    if qemu == "no":
        return None
    import tinyqt.mcu.core as mcu
    from .codegen import run_firmware
    from .optim import SGD
    status = mcu.toolchain_status()
    if not status.can_run:
        if qemu == "yes":
            raise TinyQTError(f"cannot run the firmware: {status.reason()}")
        log(f"QEMU run skipped: {status.reason()}")
        return None
    log(f"running {steps} training steps as {target} firmware in QEMU ...")
    images = x_train[:steps].reshape(steps, -1)
    res = run_firmware(plan, model, SGD(trainer.optimizer.lr, head_lr=trainer.optimizer.head_lr), target, steps=steps,
                       images=images, labels=y_train[:steps], out_dir=os.path.join(out_dir, "firmware"))
    log(f"{target}: bit-exact with the host: {res['bitexact']}; {res['instructions_per_step']:,} "
        f"instructions per step; Flash {res['flash_bytes']:,} B, SRAM {res['sram_bytes']:,} B")
    return {k: res[k] for k in ("target", "steps", "bitexact", "instructions_per_step", "flash_bytes",
                                "sram_bytes")}
