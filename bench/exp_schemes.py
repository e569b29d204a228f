"""Update schemes against measured peak SRAM (paper Fig. 9 / Table 3):
bias-only last-k, last-k layers, full update, the paper's published schemes
and searched ones (scheme .json files from `tinyqt search`), transferred to
Fashion-MNIST with int8 QAS SGD at batch 1. Each scheme's peak SRAM is its
compiled plan's (128x128, 10 classes, everything in the arena); the learning
rate of each is picked from a small grid on a held-out split.
Writes bench/results/schemes_MODEL.json and .png.

    python bench/exp_schemes.py [--model mbv2-w0.35] [--searched s1.json ...]
    python bench/exp_schemes.py --refresh-peaks   # recompile: today's peaks, same accuracies
    python bench/exp_schemes.py --extend          # widen the lr grid of schemes tuned at its edge
"""
import argparse
import json
import os
import sys

import tinyqt
from exp_common import (NUM_CLASSES, RESULTS, add_data_args, load_experiment, load_model, plot_path, pyplot, save,
                        train_int8, tuned)
from tinyqt.search import update_memory_bytes

SCHEMES = {
    "mbv2-w0.35": ["bias-only:6", "bias-only:15", "bias-only:25", "last:3", "last:6", "last:12", "full",
                   "paper:49kb", "paper:99kb", "paper:138kb"],
    "mcunet-5fps": ["bias-only:6", "bias-only:15", "bias-only:24", "last:3", "last:6", "last:12", "full",
                    "paper:49kb", "paper:99kb", "paper:148kb"],
    "proxyless-w0.3": ["bias-only:6", "bias-only:15", "bias-only:25", "last:3", "last:6", "last:12", "full",
                       "paper:49kb", "paper:98kb", "paper:148kb"],
}
BUDGET = 256 * 1024


def family(name):
    return name.split(":")[0] if ":" in name else "searched" if name.endswith(".json") else name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(ap)
    ap.add_argument("--searched", nargs="*", default=[], help="scheme .json files from tinyqt search")
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    ap.add_argument("--refresh-peaks", action="store_true",
                    help="recompile the schemes of bench/results/schemes_MODEL.json (peaks of today's compiler; "
                         "the accuracies do not depend on the memory plan) and redraw the plot")
    ap.add_argument("--extend", action="store_true",
                    help="for each scheme of bench/results/schemes_MODEL.json whose best lr is at an edge of "
                         "its grid, train at the next lr beyond it (x/÷ 3, up to 2 steps) and keep the best")
    args = ap.parse_args(argv)
    if args.extend:
        model, data = load_experiment(args)
        with open(os.path.join(RESULTS, f"schemes_{args.model}.json")) as f:
            results = json.load(f)["results"]
        for rec in results:
            _extend(model, data, rec)
        return _report(args, results)
    if args.refresh_peaks:
        model = load_model(args.model)
        with open(os.path.join(RESULTS, f"schemes_{args.model}.json")) as f:
            results = json.load(f)["results"]
        for rec in results:
            rec.update(_memory(model, rec["scheme"]))
        return _report(args, results)
    model, data = load_experiment(args)
    results = []
    for scheme in SCHEMES[args.model] + args.searched:
        rec = tuned(lambda lr, s=scheme: train_int8(model, s, data[0], data[1], lr=lr), args.lrs, data,
                    label=scheme)
        rec.update(scheme=scheme, family=family(scheme), **_memory(model, scheme))
        results.append(rec)
        print(f"==> {scheme}: peak {rec['peak_sram_bytes'] / 1024:.0f} KB, test {rec['test_accuracy']:.3f}",
              flush=True)
    return _report(args, results)


def _extend(model, data, rec):
    """Widens rec's lr grid past the edge its best lr sits on (rec updated in place)."""
    xs, ys, xv, yv, xt, yt = data
    for _ in range(2):
        grid = sorted(float(k) for k in rec["lr_grid"])
        if not rec["lr_at_edge"]:
            return
        lr = rec["lr"] * 3 if rec["lr"] == grid[-1] else rec["lr"] / 3
        run = train_int8(model, rec["scheme"], xs, ys, lr=lr)
        val = run.evaluate(xv, yv)
        rec["lr_grid"][str(lr)] = val
        print(f"  {rec['scheme']} lr {lr:g}: val {val:.3f}", flush=True)
        if val > rec["val_accuracy"]:
            rec.update(lr=lr, val_accuracy=val, test_accuracy=run.evaluate(xt, yt))
        rec["lr_at_edge"] = rec["lr"] in (min(grid + [lr]), max(grid + [lr]))
        print(f"==> {rec['scheme']}: lr {rec['lr']:g}, test {rec['test_accuracy']:.3f}", flush=True)


def _memory(model, scheme):
    """The compiled plan's memory figures of a scheme (128x128 as the model is, 10 classes)."""
    plan = tinyqt.compile(model, scheme, num_classes=NUM_CLASSES)
    return dict(peak_sram_bytes=plan.peak_sram_bytes, update_memory_bytes=update_memory_bytes(model, scheme),
                trainable_params=plan.trainable_params, fits_256kb=plan.peak_sram_bytes <= BUDGET)


def _report(args, results):
    """Writes schemes_MODEL.json and .png."""
    full = next(r for r in results if r["scheme"] == "full")
    best_fit = max((r for r in results if r["fits_256kb"]), key=lambda r: r["val_accuracy"])
    out = {"model": args.model, "train_images": args.train, "test_images": args.test, "results": results,
           "full_update_test_accuracy": full["test_accuracy"],
           "best_sparse_under_256kb": {"scheme": best_fit["scheme"], "test_accuracy": best_fit["test_accuracy"],
                                       "peak_sram_bytes": best_fit["peak_sram_bytes"]}}
    save(f"schemes_{args.model}", out)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4))
    colors = {"bias-only": "#888", "last": "#d95", "full": "#c33", "paper": "#27a", "searched": "#2a5"}
    for fam, color in colors.items():
        rs = [r for r in results if r["family"] == fam]
        if rs:
            ax.scatter([r["peak_sram_bytes"] / 1024 for r in rs], [100 * r["test_accuracy"] for r in rs],
                       color=color, label=fam)
            for r in rs:
                ax.annotate(r["scheme"].split("/")[-1], (r["peak_sram_bytes"] / 1024, 100 * r["test_accuracy"]),
                            fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axvline(256, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("peak SRAM of the training step (KB, log)")
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title(f"update schemes: {args.model}, {args.train} images, batch 1, int8 QAS", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot_path(f"schemes_{args.model}"), dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
