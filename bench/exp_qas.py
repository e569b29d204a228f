"""QAS experiment (paper Sec. 2.1): transfer an ImageNet-pretrained int8
backbone to Fashion-MNIST, training the last two blocks (and the head), with
  float SGD (PyTorch float twin), int8 SGD without QAS, int8 SGD with QAS,
each with and without momentum; the learning rate of each is picked from its
own grid on a held-out split (fair tuning). Writes bench/results/qas_MODEL.json
and .png.

    python bench/exp_qas.py [--model mbv2-w0.35] [--train 1000] [--test 1000]
"""
import argparse
import sys

import numpy as np

from exp_common import FloatRun, add_data_args, load_experiment, plot_path, pyplot, save, train_int8, tuned

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
    args = ap.parse_args(argv)
    model, data = load_experiment(args)
    xs, ys = data[0], data[1]
    results = []
    for method in ("float", "int8-noqas", "int8-qas"):
        for momentum in (0.0, 0.9):
            def run(lr, method=method, momentum=momentum):
                if method == "float":
                    return FloatRun(model, args.scheme, xs, ys, lr=lr, momentum=momentum, epochs=args.epochs)
                return train_int8(model, args.scheme, xs, ys, lr=lr, qas=method == "int8-qas",
                                  momentum=momentum, epochs=args.epochs)
            # with momentum the step size is lr / (1 - momentum): the same grid, scaled
            grid = [lr * (1 - momentum) if momentum else lr for lr in GRIDS[method]]
            rec = tuned(run, grid, data, label=f"{method} momentum {momentum}")
            rec.update(method=method, momentum=momentum)
            results.append(rec)
            print(f"==> {method} momentum {momentum}: lr {rec['lr']:.4g}, test {rec['test_accuracy']:.3f}",
                  flush=True)
    out = {"model": args.model, "scheme": args.scheme, "train_images": args.train, "val_images": args.val,
           "test_images": args.test, "epochs": args.epochs, "resolution": model.input.shape[1],
           "results": results}
    save(f"qas_{args.model}", out)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    labels = [f"{r['method']}\n{'momentum' if r['momentum'] else 'plain'}" for r in results]
    acc = [100 * r["test_accuracy"] for r in results]
    ax.bar(range(len(results)), acc, color=["#888", "#888", "#d55", "#d55", "#27a", "#27a"])
    ax.set_xticks(range(len(results)), labels, fontsize=7)
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title(f"QAS: {args.model}, {args.scheme}, {args.train} images, batch 1", fontsize=9)
    for i, v in enumerate(acc):
        ax.text(i, v + 0.5, f"{v:.1f}", ha="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(plot_path(f"qas_{args.model}"), dpi=120)
    print("float", np.round([r["test_accuracy"] for r in results], 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
