"""Shared pieces of the accuracy experiments (bench/exp_*.py): the transfer
data, int8 and float fine-tuning at batch 1, learning-rate tuning on a
held-out split, and writing results (JSON + PNG) under bench/results/.

Data: Fashion-MNIST (Debian IDX files) resized to the model's input; a fixed
random subset of the training set is split into train / validation (for
tuning), and the first images of the test set measure the result.
"""
import json
import os
import time

import numpy as np

import tinyqt
from tinyqt.data import load_dataset, to_model_input
from tinyqt.trainer import Trainer

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
SHARED = os.path.join(HERE, "..", "..", "shared", "models", "imagenet-int8")
NUM_CLASSES = 10


def load_model(name):
    """One of the paper's ImageNet int8 models from ../shared, or "demo": the
    project's own small model (pretrained on Fashion-MNIST classes 0..4 by
    scripts/pretrain_demo_model.py, shipped in the package)."""
    if name == "demo":
        from tinyqt.demo import load_demo
        return load_demo()[0]
    return tinyqt.load_tiny_training(os.path.join(SHARED, name + ".json"))


def add_data_args(ap):
    """--model, --train, --val, --test of the transfer experiments."""
    ap.add_argument("--model", default="mbv2-w0.35", help="a model of ../shared/models/imagenet-int8 or 'demo'")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=300)
    ap.add_argument("--test", type=int, default=1000)


def load_experiment(args):
    """(model, transfer data) for parsed add_data_args arguments."""
    model = load_model(args.model)
    return model, transfer_data(model, args.train, args.val, args.test)


def transfer_data(model, n_train, n_val, n_test, seed=0):
    """(x_train, y_train, x_val, y_val, x_test, y_test), int8 model inputs."""
    ds = load_dataset("fashion-mnist")
    idx = np.random.default_rng(seed).permutation(len(ds.y_train))
    tr, va = idx[:n_train], idx[n_train:n_train + n_val]
    conv = lambda x: to_model_input(x, model.input)  # noqa: E731
    return (conv(ds.x_train[tr]), ds.y_train[tr], conv(ds.x_train[va]), ds.y_train[va],
            conv(ds.x_test[:n_test]), ds.y_test[:n_test])


def train_int8(model, scheme, x, y, *, lr, head_lr=None, qas=True, momentum=0.0, rounding="nearest", epochs=1,
               seed=1):
    """A Trainer fine-tuned with the device's arithmetic (batch 1)."""
    plan = tinyqt.compile(model, scheme, num_classes=NUM_CLASSES, momentum=momentum, rounding=rounding)
    tr = Trainer(plan, model, lr=lr, head_lr=head_lr, qas=qas, momentum=momentum, rounding=rounding, seed=seed,
                 progress=False)
    tr.fit(x, y, epochs=epochs)
    return tr


class FloatRun:
    """The float baseline: tinyqt.torch_sim.FloatTwin trained with torch SGD."""

    def __init__(self, model, scheme, x, y, *, lr, head_lr=None, momentum=0.0, epochs=1, seed=1):
        import torch

        from tinyqt.torch_sim import FloatTwin
        torch.manual_seed(seed)
        self.twin = FloatTwin(model, scheme, num_classes=NUM_CLASSES)
        head = list(self.twin.head.parameters())
        body = [p for p in self.twin.parameters() if p.requires_grad and all(p is not h for h in head)]
        opt = torch.optim.SGD([{"params": body}, {"params": head, "lr": lr if head_lr is None else head_lr}],
                              lr=lr, momentum=momentum)
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            for i in rng.permutation(len(y)):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(self.twin(self.twin.dequantize_input(x[i:i + 1])),
                                                         torch.tensor([int(y[i])]))
                loss.backward()
                opt.step()

    def evaluate(self, x, y):
        import torch
        with torch.no_grad():
            pred = [int(self.twin(self.twin.dequantize_input(x[i:i + 1])).argmax()) for i in range(len(y))]
        return float(np.mean(np.array(pred) == y))


def tuned(run, lrs, data, log=print, label=""):
    """Trains run(lr) for every lr on the train split, picks the best on the
    validation split, and returns (best lr, val accuracy, test accuracy,
    {lr: val accuracy}); the best lr must not sit at an edge of the grid
    (reported in the record as 'lr_at_edge')."""
    xs, ys, xv, yv, xt, yt = data
    vals = {}
    models = {}
    for lr in lrs:
        t0 = time.time()
        models[lr] = run(lr)
        vals[lr] = models[lr].evaluate(xv, yv)
        log(f"  {label} lr {lr:g}: val {vals[lr]:.3f} ({time.time() - t0:.0f} s)")
    best = max(lrs, key=lambda lr: vals[lr])
    test = models[best].evaluate(xt, yt)
    return {"lr": best, "val_accuracy": vals[best], "test_accuracy": test,
            "lr_grid": {str(k): v for k, v in vals.items()},
            "lr_at_edge": best in (min(lrs), max(lrs)) and len(lrs) > 1}


def save(name, payload):
    """Writes bench/results/<name>.json (whole: temporary name, then rename)."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def plot_path(name):
    os.makedirs(RESULTS, exist_ok=True)
    return os.path.join(RESULTS, name + ".png")


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
