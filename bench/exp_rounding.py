"""Weight rounding modes at equal settings: int8 QAS fine-tuning of the last
two blocks with round-to-nearest, stochastic rounding (seeded xorshift, the
device's) and an fp32 master copy; same data, learning rate and order, a few
seeds each. Writes bench/results/rounding_MODEL.json and .png.

    python bench/exp_rounding.py [--model mbv2-w0.35] [--lr 0.01] [--seeds 3]
"""
import argparse
import sys

import numpy as np

import tinyqt
from exp_common import NUM_CLASSES, load_model, plot_path, pyplot, save, train_int8, transfer_data

MODES = ("nearest", "stochastic", "master")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mbv2-w0.35")
    ap.add_argument("--scheme", default="last:6")
    ap.add_argument("--lr", type=float, default=0.01, help="the int8-QAS learning rate (bench/exp_qas.py's best)")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    model = load_model(args.model)
    xs, ys, _, _, xt, yt = transfer_data(model, args.train, 0, args.test)
    results = []
    for mode in MODES:
        accs = []
        for seed in range(1, args.seeds + 1):
            tr = train_int8(model, args.scheme, xs, ys, lr=args.lr, rounding=mode, seed=seed)
            accs.append(tr.evaluate(xt, yt))
            print(f"{mode:<10} seed {seed}: test {accs[-1]:.3f}", flush=True)
        peak = tinyqt.compile(model, args.scheme, num_classes=NUM_CLASSES, rounding=mode).peak_sram_bytes
        results.append({"rounding": mode, "test_accuracy": accs, "mean": float(np.mean(accs)),
                        "std": float(np.std(accs)), "peak_sram_bytes": peak})
    save(f"rounding_{args.model}", {"model": args.model, "scheme": args.scheme, "lr": args.lr,
                                    "train_images": args.train, "test_images": args.test, "results": results})
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    means = [100 * r["mean"] for r in results]
    ax.bar(range(len(MODES)), means, yerr=[100 * r["std"] for r in results], color="#27a", capsize=4)
    ax.set_xticks(range(len(MODES)), [f"{r['rounding']}\n{r['peak_sram_bytes'] / 1024:.0f} KB" for r in results])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(min(means) - 10, max(means) + 5)
    ax.set_title(f"weight rounding: {args.model}, {args.scheme}, lr {args.lr:g}, {args.seeds} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(plot_path(f"rounding_{args.model}"), dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
