"""QAS experiment (paper Sec. 2.1 / Table 1): transfer an ImageNet-pretrained
int8 backbone to Fashion-MNIST training the last two blocks, with
  float SGD (PyTorch float twin), int8 SGD without QAS, int8 SGD with QAS,
each with and without momentum, the learning rate picked per method from a
grid on a held-out split (fair tuning). Writes JSON and a PNG under
bench/results/.

    python bench/exp_qas.py [--model mbv2-w0.35] [--train 1000] [--test 1000]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

import tinyqt
from tinyqt.compiler import compile
from tinyqt.data import load_dataset, to_model_input
from tinyqt.trainer import Trainer

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "models", "imagenet-int8")
LR_GRID = {"float": [0.003, 0.01, 0.03], "int8-noqas": [0.003, 0.01, 0.03, 0.1], "int8-qas": [0.003, 0.01, 0.03]}


def run_int8(model, scheme, qas, momentum, lr, xs, ys, xv, yv, epochs):
    plan = compile(model, scheme, num_classes=10, momentum=momentum)
    tr = Trainer(plan, model, lr=lr, qas=qas, momentum=momentum, progress=False)
    tr.fit(xs, ys, epochs=epochs)
    return tr.evaluate(xv, yv)


def run_float(model, scheme, momentum, lr, xs, ys, xv, yv, epochs):
    import torch

    from tinyqt.torch_sim import FloatTwin
    twin = FloatTwin(model, scheme, num_classes=10)
    opt = torch.optim.SGD([p for p in twin.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    rng = np.random.default_rng(1)
    for _ in range(epochs):
        for i in rng.permutation(len(ys)):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(twin(twin.dequantize_input(xs[i:i + 1])), torch.tensor([int(ys[i])]))
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = [int(twin(twin.dequantize_input(xv[i:i + 1])).argmax()) for i in range(len(yv))]
    return float(np.mean(np.array(pred) == yv))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mbv2-w0.35")
    ap.add_argument("--scheme", default="last:6", help="the last two blocks (3 convs each)")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args(argv)
    model = tinyqt.load_tiny_training(os.path.join(SHARED, args.model + ".json"))
    ds = load_dataset("fashion-mnist")
    idx = np.random.default_rng(0).permutation(len(ds.y_train))
    tr_i, val_i = idx[:args.train], idx[args.train:args.train + 300]
    xs, ys = to_model_input(ds.x_train[tr_i], model.input), ds.y_train[tr_i]
    xv, yv = to_model_input(ds.x_train[val_i], model.input), ds.y_train[val_i]
    xt, yt = to_model_input(ds.x_test[:args.test], model.input), ds.y_test[:args.test]
    results = []
    for method in ("float", "int8-noqas", "int8-qas"):
        for momentum in (0.0, 0.9):
            best = None
            for lr in LR_GRID[method]:
                lr_m = lr * (1 - momentum) if momentum else lr  # same effective step size
                t0 = time.time()
                if method == "float":
                    val = run_float(model, args.scheme, momentum, lr_m, xs, ys, xv, yv, args.epochs)
                else:
                    val = run_int8(model, args.scheme, method == "int8-qas", momentum, lr_m, xs, ys, xv, yv, args.epochs)
                print(f"{method:<11} momentum {momentum} lr {lr_m:.4g}: val {val:.3f} ({time.time() - t0:.0f}s)", flush=True)
                if best is None or val > best[0]:
                    best = (val, lr_m)
            if method == "float":
                test = run_float(model, args.scheme, momentum, best[1], xs, ys, xt, yt, args.epochs)
            else:
                test = run_int8(model, args.scheme, method == "int8-qas", momentum, best[1], xs, ys, xt, yt, args.epochs)
            results.append({"method": method, "momentum": momentum, "lr": best[1], "val_accuracy": best[0],
                            "test_accuracy": test})
            print(f"==> {method} momentum {momentum}: lr {best[1]:.4g}, test {test:.3f}", flush=True)
    out = {"model": args.model, "scheme": args.scheme, "train_images": args.train, "test_images": args.test,
           "epochs": args.epochs, "results": results}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    base = os.path.join(HERE, "results", f"qas_{args.model}")
    with open(base + ".json", "w") as f:
        json.dump(out, f, indent=1)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{r['method']}\n{'momentum' if r['momentum'] else 'plain'}" for r in results]
    ax.bar(range(len(results)), [100 * r["test_accuracy"] for r in results],
           color=["#888", "#888", "#d55", "#d55", "#27a", "#27a"])
    ax.set_xticks(range(len(results)), labels, fontsize=7)
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title(f"QAS: {args.model}, {args.scheme}, {args.train} images, batch 1")
    for i, r in enumerate(results):
        ax.text(i, 100 * r["test_accuracy"] + 0.5, f"{100 * r['test_accuracy']:.1f}", ha="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(base + ".png", dpi=120)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
