"""QAS experiment (paper Sec. 2.1): transfer an ImageNet-pretrained int8
backbone to Fashion-MNIST, training the last two blocks (and the head), with
  float SGD (PyTorch float twin), int8 SGD without QAS, int8 SGD with QAS,
each with and without momentum; the learning rate of each is picked from its
own grid on a held-out split (fair tuning), then each configuration is
trained again at that rate with other seeds (image order, stochastic draws)
and the test accuracy is reported as mean and spread over the seeds.
Writes bench/results/qas_MODEL.json and .png.

    python bench/exp_qas.py [--model mbv2-w0.35|demo] [--train 1000] [--test 1000] [--seeds 3]
    python bench/exp_qas.py --reuse-tuning     # keep the learning rates of an earlier run
"""
import argparse
import json
import os
import sys

import numpy as np

from exp_common import (RESULTS, FloatRun, add_data_args, load_experiment, plot_path, pyplot, save, train_int8,
                        tuned)

GRIDS = {
    "float": [0.0003, 0.001, 0.003, 0.01, 0.03],
    "int8-qas": [0.0003, 0.001, 0.003, 0.01, 0.03],
    # without QAS the integer-domain gradients are orders of magnitude off; a wide grid is the fair chance
    "int8-noqas": [0.0003, 0.003, 0.03, 0.3, 3.0],
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(ap)
    ap.add_argument("--scheme", default="last:6", help="the last two blocks (3 convs each)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3, help="training runs per configuration at its tuned lr")
    ap.add_argument("--reuse-tuning", action="store_true",
                    help="take each configuration's tuned lr from bench/results/qas_MODEL.json")
    args = ap.parse_args(argv)
    model, data = load_experiment(args)
    xs, ys, xt, yt = data[0], data[1], data[4], data[5]
    earlier = {}
    if args.reuse_tuning:
        with open(os.path.join(RESULTS, f"qas_{args.model}.json")) as f:
            earlier = {(r["method"], r["momentum"]): r for r in json.load(f)["results"]}
    results = []
    for method in ("float", "int8-noqas", "int8-qas"):
        for momentum in (0.0, 0.9):
            def run(lr, method=method, momentum=momentum, seed=1):
                if method == "float":
                    return FloatRun(model, args.scheme, xs, ys, lr=lr, momentum=momentum, epochs=args.epochs,
                                    seed=seed)
                return train_int8(model, args.scheme, xs, ys, lr=lr, qas=method == "int8-qas",
                                  momentum=momentum, epochs=args.epochs, seed=seed)
            if (method, momentum) in earlier:
                rec = {k: v for k, v in earlier[(method, momentum)].items()
                       if k in ("lr", "val_accuracy", "test_accuracy", "lr_grid", "lr_at_edge")}
            else:
                # with momentum the step size is lr / (1 - momentum): the same grid, scaled
                grid = [lr * (1 - momentum) if momentum else lr for lr in GRIDS[method]]
                rec = tuned(run, grid, data, label=f"{method} momentum {momentum}")
            # seed 1 is the tuning run, unless the tuning (and its test set) came from an earlier run
            accs = [] if (method, momentum) in earlier else [rec["test_accuracy"]]
            for seed in range(len(accs) + 1, args.seeds + 1):
                accs.append(run(rec["lr"], seed=seed).evaluate(xt, yt))
            rec.update(method=method, momentum=momentum, seed_test_accuracies=accs,
                       test_mean=float(np.mean(accs)), test_std=float(np.std(accs)))
            results.append(rec)
            print(f"==> {method} momentum {momentum}: lr {rec['lr']:.4g}, test {rec['test_mean']:.3f} "
                  f"± {rec['test_std']:.3f} over {len(accs)} seeds {np.round(accs, 3)}", flush=True)
    out = {"model": args.model, "scheme": args.scheme, "train_images": args.train, "val_images": args.val,
           "test_images": args.test, "epochs": args.epochs, "resolution": model.input.shape[1],
           "seeds": args.seeds, "results": results}
    best = {m: max((r for r in results if r["method"] == m), key=lambda r: r["test_mean"]) for m in GRIDS}
    out["int8_qas_minus_float_points"] = round(100 * (best["int8-qas"]["test_mean"] - best["float"]["test_mean"]), 2)
    out["int8_noqas_minus_float_points"] = round(100 * (best["int8-noqas"]["test_mean"] -
                                                        best["float"]["test_mean"]), 2)
    save(f"qas_{args.model}", out)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    labels = [f"{r['method']}\n{'momentum' if r['momentum'] else 'plain'}" for r in results]
    acc = [100 * r["test_mean"] for r in results]
    ax.bar(range(len(results)), acc, yerr=[100 * r["test_std"] for r in results], capsize=3,
           color=["#888", "#888", "#d55", "#d55", "#27a", "#27a"])
    ax.set_xticks(range(len(results)), labels, fontsize=7)
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_ylim(max(0, min(acc) - 15), min(100, max(acc) + 8))
    ax.set_title(f"QAS: {args.model}, {args.scheme}, {args.train} images, batch 1, {args.seeds} seeds", fontsize=9)
    for i, v in enumerate(acc):
        ax.text(i, v + 0.5, f"{v:.1f}", ha="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(plot_path(f"qas_{args.model}"), dpi=120)
    print(json.dumps({k: v for k, v in out.items() if k != "results"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
