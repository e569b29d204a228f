"""Weight rounding modes at equal settings: int8 QAS fine-tuning of the last
two blocks with round-to-nearest, stochastic rounding (seeded xorshift, the
device's) and an fp32 master copy, beside float SGD (the PyTorch twin); same
data, learning rate and image order, a few orders (seeds) each, at each of a
few learning rates. Each mode's mean difference to float over the same
orders is reported in points. Writes bench/results/rounding_MODEL.json and .png.

    python bench/exp_rounding.py [--model mbv2-w0.35|demo] [--lrs 0.003 0.01] [--seeds 3]
"""
import argparse
import sys

import numpy as np

import tinyqt
from exp_common import NUM_CLASSES, FloatRun, load_model, plot_path, pyplot, save, train_int8, transfer_data

MODES = ("nearest", "stochastic", "master")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mbv2-w0.35", help="a model of ../shared/models/imagenet-int8 or 'demo'")
    ap.add_argument("--scheme", default="last:6")
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01],
                    help="int8-QAS learning rates (bench/exp_qas.py tunes them; 0.01 is near its edge of stability)")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    model = load_model(args.model)
    xs, ys, _, _, xt, yt = transfer_data(model, args.train, 0, args.test)
    results = []
    for lr in args.lrs:
        floats = [FloatRun(model, args.scheme, xs, ys, lr=lr, seed=seed).evaluate(xt, yt)
                  for seed in range(1, args.seeds + 1)]
        print(f"lr {lr:g} float: {np.round(floats, 3)}", flush=True)
        results.append({"rounding": "float", "lr": lr, "test_accuracy": floats, "mean": float(np.mean(floats)),
                        "std": float(np.std(floats)), "peak_sram_bytes": None, "minus_float_points": 0.0})
        for mode in MODES:
            accs = []
            for seed in range(1, args.seeds + 1):
                tr = train_int8(model, args.scheme, xs, ys, lr=lr, rounding=mode, seed=seed)
                accs.append(tr.evaluate(xt, yt))
                print(f"lr {lr:g} {mode:<10} seed {seed}: test {accs[-1]:.3f}", flush=True)
            peak = tinyqt.compile(model, args.scheme, num_classes=NUM_CLASSES, rounding=mode).peak_sram_bytes
            results.append({"rounding": mode, "lr": lr, "test_accuracy": accs, "mean": float(np.mean(accs)),
                            "std": float(np.std(accs)), "peak_sram_bytes": peak,
                            "minus_float_points": round(100 * float(np.mean(np.subtract(accs, floats))), 2)})
    save(f"rounding_{args.model}", {"model": args.model, "scheme": args.scheme, "seeds": args.seeds,
                                    "train_images": args.train, "test_images": args.test, "results": results})
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    width = 0.8 / len(args.lrs)
    kinds = ("float",) + MODES
    for j, lr in enumerate(args.lrs):
        rs = [r for r in results if r["lr"] == lr]
        ax.bar(np.arange(len(kinds)) + (j - (len(args.lrs) - 1) / 2) * width, [100 * r["mean"] for r in rs],
               width, yerr=[100 * r["std"] for r in rs], capsize=3, label=f"lr {lr:g}")
    peaks = {r["rounding"]: r["peak_sram_bytes"] for r in results}
    ax.set_xticks(range(len(kinds)), ["float\n(PyTorch)"] + [f"{m}\n{peaks[m] / 1024:.0f} KB peak" for m in MODES])
    ax.set_ylabel("test accuracy (%)")
    means = [100 * r["mean"] for r in results]
    ax.set_ylim(min(means) - 10, max(means) + 5)
    ax.legend(fontsize=7)
    ax.set_title(f"weight rounding: {args.model}, {args.scheme}, {args.seeds} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(plot_path(f"rounding_{args.model}"), dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
