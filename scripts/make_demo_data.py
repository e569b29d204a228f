"""Writes the demo's dataset into the package: Fashion-MNIST images of the
classes the demo model never saw in pretraining (5..9: sandal, shirt,
sneaker, bag, ankle boot), relabelled 0..4, as a compressed .npz.

    python scripts/make_demo_data.py [--train 2000] [--test 1000]

Reads the Debian `dataset-fashion-mnist` IDX files. Fashion-MNIST is
(c) Zalando SE, MIT license (src/tinyqt/demo_data/LICENSE-fashion-mnist).
Deterministic: the same files give the same bytes.
"""
import argparse
import os
import sys

import numpy as np

from tinyqt.data import load_dataset

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "tinyqt", "demo_data",
                   "fashion_mnist_5to9.npz")
DEMO_CLASSES = (5, 6, 7, 8, 9)


def subset(x, y, n, rng):
    """n images of DEMO_CLASSES, balanced, shuffled; labels 0..4."""
    per = n // len(DEMO_CLASSES)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in DEMO_CLASSES])
    idx = rng.permutation(idx)
    return x[idx], (y[idx] - DEMO_CLASSES[0]).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    ds = load_dataset("fashion-mnist")
    rng = np.random.default_rng(2022)
    x_train, y_train = subset(ds.x_train, ds.y_train, args.train, rng)
    x_test, y_test = subset(ds.x_test, ds.y_test, args.test, rng)
    np.savez_compressed(args.out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"{args.out}: {len(y_train)} train, {len(y_test)} test images, {os.path.getsize(args.out):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
