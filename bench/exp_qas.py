"""QAS experiment (paper Sec. 2.1): transfer an ImageNet-pretrained int8
backbone (or the project's own small model, --model demo) to Fashion-MNIST,
training the last two blocks (and the head), with
  float SGD (PyTorch float twin), int8 SGD without QAS, int8 SGD with QAS,
each with and without momentum. Batch-1 SGD on 1000 images is noisy (the
image order alone moves accuracy by points), so every (configuration,
learning rate) is trained with several seeds (image order); each
configuration's learning rate is the one with the best validation accuracy
averaged over the seeds (fair tuning), and its test accuracy is reported
as mean and spread over those seeds. Runs go to a pool of processes.
Writes bench/results/qas_MODEL.json and .png.

    python bench/exp_qas.py [--model mbv2-w0.35|demo] [--train 1000] [--seeds 3] [--workers 2] [--with-master]
                            [--with-stochastic]
                            [--head-lr 0.01] [--reuse]

--head-lr gives the fp32 head its own learning rate in every method (the
grids then tune the body's, one third lower); results go to
qas_MODEL_head<lr>.json.

--reuse takes the runs already in that JSON file (same model, scheme, data
sizes, epochs and head lr; every run is deterministic given its seed) and
trains only the (method, momentum, lr, seed) jobs it lacks, e.g. after a
grid was extended or --with-master added.
"""
import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from exp_common import FloatRun, add_data_args, load_experiment, load_model, plot_path, pyplot, save, train_int8

GRIDS = {
    # 0.0001: with --head-lr and momentum, float's best body lr sat at the grid's low edge
    "float": [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03],
    "int8-qas": [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03],
    # without QAS the integer-domain gradients are orders of magnitude off; a wide grid is the fair chance
    "int8-noqas": [0.0003, 0.003, 0.03, 0.3, 3.0],
    # --with-master: QAS with an fp32 master copy of the trained weights instead of round-to-nearest
    "int8-qas-master": [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03],
    # --with-stochastic: QAS with seeded stochastic rounding (no extra SRAM)
    "int8-qas-stochastic": [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03],
}
ROUNDING = {"int8-qas": "nearest", "int8-noqas": "nearest", "int8-qas-master": "master",
            "int8-qas-stochastic": "stochastic"}
METHODS = ("float", "int8-noqas", "int8-qas")
HEAD_LR_GRID_SCALE = 1 / 3  # with --head-lr the body no longer has to carry the head's step
_STATE = {}


def _init(args):
    import torch
    torch.set_num_threads(1)
    _STATE["args"] = args
    _STATE["model"], _STATE["data"] = load_experiment(args)


def _run(job):
    """(job, validation accuracy, test accuracy) of one training run."""
    method, momentum, lr, seed = job
    args, model = _STATE["args"], _STATE["model"]
    xs, ys, xv, yv, xt, yt = _STATE["data"]
    head_lr = None if args.head_lr is None else args.head_lr * (1 - momentum)
    if method == "float":
        run = FloatRun(model, args.scheme, xs, ys, lr=lr, head_lr=head_lr, momentum=momentum, epochs=args.epochs,
                       seed=seed)
    else:
        run = train_int8(model, args.scheme, xs, ys, lr=lr, head_lr=head_lr, qas=method.startswith("int8-qas"),
                         momentum=momentum,
                         epochs=args.epochs, seed=seed,
                         rounding=ROUNDING[method])
    return job, run.evaluate(xv, yv), run.evaluate(xt, yt)


def _paired(runs, grid, seeds, methods):
    """At every learning rate two methods share, the mean over seeds (same
    image order) of their test accuracy difference to float, in points:
    the quantized training's own effect, free of the order's noise."""
    out = []
    for m in methods[1:]:
        for mom in (0.0, 0.9):
            for lr in sorted(set(grid[(m, mom)]) & set(grid[("float", mom)])):
                d = [runs[(m, mom, lr, s)][1] - runs[("float", mom, lr, s)][1] for s in range(1, seeds + 1)]
                f = [runs[("float", mom, lr, s)][1] for s in range(1, seeds + 1)]
                out.append({"method": m, "momentum": mom, "lr": lr, "float_test_mean": float(np.mean(f)),
                            "minus_float_points": round(100 * float(np.mean(d)), 2),
                            "spread_points": round(100 * float(np.std(d)), 2)})
    return out


SETTINGS = ("model", "scheme", "head_lr", "train", "val", "test", "epochs")


def _previous_runs(name, args):
    """{job: (val, test)} from an earlier results file with the same settings, else {}."""
    import os

    from exp_common import RESULTS
    path = os.path.join(RESULTS, name + ".json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        old = json.load(f)
    keys = {"train": "train_images", "val": "val_images", "test": "test_images"}
    if any(old.get(keys.get(k, k)) != getattr(args, k) for k in SETTINGS):
        raise SystemExit(f"--reuse: {path} was made with other settings")
    return {(r["method"], r["momentum"], float(np.float32(r["lr"])), r["seed"]): (r["val_accuracy"], r["test_accuracy"])
            for r in old["runs"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(ap)
    ap.add_argument("--scheme", default="last:6", help="the last two blocks (3 convs each)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3, help="training runs (image orders) per learning rate")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--with-master", action="store_true",
                    help="also int8 QAS with an fp32 master copy (rounding='master')")
    ap.add_argument("--with-stochastic", action="store_true",
                    help="also int8 QAS with seeded stochastic rounding (rounding='stochastic')")
    ap.add_argument("--head-lr", type=float, default=None,
                    help="the fp32 head's own learning rate (default: the body's)")
    ap.add_argument("--reuse", action="store_true", help="keep the runs of an earlier results file, train the rest")
    args = ap.parse_args(argv)
    methods = (METHODS + (("int8-qas-master",) if args.with_master else ())
               + (("int8-qas-stochastic",) if args.with_stochastic else ()))
    configs = [(m, mom) for m in methods for mom in (0.0, 0.9)]
    # with momentum the step size is lr / (1 - momentum): the same grid, scaled
    scale = 1.0 if args.head_lr is None else HEAD_LR_GRID_SCALE
    grid = {(m, mom): [float(np.float32(lr * scale * (1 - mom))) for lr in GRIDS[m]] for m, mom in configs}
    name = f"qas_{args.model}" + ("" if args.head_lr is None else f"_head{args.head_lr:g}")
    jobs = [(m, mom, lr, seed) for m, mom in configs for lr in grid[(m, mom)] for seed in range(1, args.seeds + 1)]
    runs = _previous_runs(name, args) if args.reuse else {}
    runs = {j: runs[j] for j in jobs if j in runs}
    jobs = [j for j in jobs if j not in runs]
    print(f"{len(runs)} runs reused, {len(jobs)} to train", flush=True)
    with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(args,)) as pool:
        for job, val, test in pool.map(_run, jobs):
            runs[job] = (val, test)
            print(f"  {job[0]} momentum {job[1]} lr {job[2]:.4g} seed {job[3]}: val {val:.3f} test {test:.3f}",
                  flush=True)
    results = []
    for m, mom in configs:
        val_mean = {lr: float(np.mean([runs[(m, mom, lr, s)][0] for s in range(1, args.seeds + 1)]))
                    for lr in grid[(m, mom)]}
        best = max(val_mean, key=val_mean.get)
        tests = [runs[(m, mom, best, s)][1] for s in range(1, args.seeds + 1)]
        rec = {"method": m, "momentum": mom, "lr": best, "val_accuracy": val_mean[best],
               "lr_grid": {str(k): v for k, v in val_mean.items()},
               "lr_at_edge": best in (min(grid[(m, mom)]), max(grid[(m, mom)])),
               "seed_test_accuracies": tests, "test_mean": float(np.mean(tests)), "test_std": float(np.std(tests))}
        results.append(rec)
        print(f"==> {m} momentum {mom}: lr {best:.4g}, test {rec['test_mean']:.3f} ± {rec['test_std']:.3f} "
              f"{np.round(tests, 3)}", flush=True)
    model = load_model(args.model)
    out = {"model": args.model, "scheme": args.scheme, "head_lr": args.head_lr, "train_images": args.train,
           "val_images": args.val,
           "test_images": args.test, "epochs": args.epochs, "resolution": model.input.shape[1],
           "seeds": args.seeds, "results": results, "paired": _paired(runs, grid, args.seeds, methods),
           "runs": [{"method": m, "momentum": mom, "lr": lr, "seed": sd, "val_accuracy": v, "test_accuracy": t}
                    for (m, mom, lr, sd), (v, t) in runs.items()]}
    best = {m: max((r for r in results if r["method"] == m), key=lambda r: r["val_accuracy"]) for m in methods}
    for m in methods[1:]:
        out[f"{m.replace('-', '_')}_minus_float_points"] = round(
            100 * (best[m]["test_mean"] - best["float"]["test_mean"]), 2)
    save(name, out)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4 + 1.6 * (len(methods) - len(METHODS)), 3.6))
    labels = [f"{r['method']}\n{'momentum' if r['momentum'] else 'plain'}" for r in results]
    acc = [100 * r["test_mean"] for r in results]
    ax.bar(range(len(results)), acc, yerr=[100 * r["test_std"] for r in results], capsize=3,
           color=["#888", "#888", "#d55", "#d55", "#27a", "#27a", "#2a5", "#2a5", "#a72", "#a72"][:len(results)])
    ax.set_xticks(range(len(results)), labels, fontsize=7)
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_ylim(max(0, min(acc) - 15), min(100, max(acc) + 8))
    head = "" if args.head_lr is None else f", head lr {args.head_lr:g}"
    ax.set_title(f"QAS: {args.model}, {args.scheme}{head}, {args.train} images, batch 1, {args.seeds} seeds",
                 fontsize=9)
    for i, v in enumerate(acc):
        ax.text(i + 0.2, v + 0.5, f"{v:.1f}", ha="left", fontsize=7)
    fig.tight_layout()
    fig.savefig(plot_path(name), dpi=120)
    print(json.dumps({k: v for k, v in out.items() if k != "results"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
