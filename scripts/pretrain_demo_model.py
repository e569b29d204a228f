"""Pretrains the demo's small int8 CNN and writes it into the package.

    python scripts/pretrain_demo_model.py [--epochs 4] [--out src/tinyqt/demo_data/demo_model.tflite]

A MobileNetV2-style network (a stride-2 stem, four inverted-residual blocks,
global mean, a linear head) is trained in float with PyTorch (CPU, seeded,
deterministic) on the Fashion-MNIST classes 0..4 (t-shirt, trouser,
pullover, dress, coat) at 32x32 with the preprocessing of tinyqt.data
(bilinear resize, pixels mapped to [-1, 1]); BN is folded and the network
quantized to int8 by tinyqt.from_torch on 512 calibration images, then
saved as .tflite. `tinyqt demo` fine-tunes it on the other five classes.
Needs the test extras (torch) and the Debian Fashion-MNIST files.
"""
import argparse
import os
import sys

import numpy as np

import tinyqt
from tinyqt.data import load_dataset, resize_bilinear, to_model_input

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "tinyqt", "demo_data",
                   "demo_model.tflite")
RESOLUTION = 32
PRETRAIN_CLASSES = 5   # classes 0..4


def build_net():
    import torch.nn as nn

    class InvertedResidual(nn.Module):
        def __init__(self, c_in, c_out, stride, expand):
            super().__init__()
            mid = c_in * expand
            self.residual = stride == 1 and c_in == c_out
            self.body = nn.Sequential(
                nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(),
                nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    class DemoNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
            self.blocks = nn.Sequential(
                InvertedResidual(16, 24, 2, 3), InvertedResidual(24, 24, 1, 3),
                InvertedResidual(24, 32, 2, 3), InvertedResidual(32, 32, 1, 3))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(32, PRETRAIN_CLASSES)

        def forward(self, x):
            x = self.pool(self.blocks(self.stem(x)))
            return self.classifier(x.flatten(1))

    return DemoNet()


def preprocess(images):
    """uint8 [N, 28, 28] -> float32 NCHW [N, 1, 32, 32] in [-1, 1], exactly
    as tinyqt.data.to_model_input before quantization."""
    x = resize_bilinear(images[..., None], RESOLUTION) / np.float32(127.5) - np.float32(1.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def main(argv=None):
    import torch
    import torch.nn.functional as F
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    ds = load_dataset("fashion-mnist")
    keep = ds.y_train < PRETRAIN_CLASSES
    x = torch.from_numpy(preprocess(ds.x_train[keep]))
    y = torch.from_numpy(ds.y_train[keep])
    keep_t = ds.y_test < PRETRAIN_CLASSES
    xt, yt = torch.from_numpy(preprocess(ds.x_test[keep_t])), torch.from_numpy(ds.y_test[keep_t])
    net = build_net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * (len(y) // 128 + 1))
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        net.train()
        for idx in torch.randperm(len(y), generator=gen).split(128):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            acc = (net(xt).argmax(1) == yt).float().mean().item()
        print(f"epoch {epoch + 1}: float test accuracy on classes 0-4 {100 * acc:.2f}%", flush=True)
    calib = x[torch.randperm(len(y), generator=gen)[:512]]
    model = tinyqt.from_torch(net.eval(), calib, name="tinyqt-demo-cnn")
    xq = to_model_input(ds.x_test[keep_t], model.input)
    pred = np.array([int(np.argmax(model.forward(xq[i:i + 1]))) for i in range(len(xq))])
    print(f"int8 test accuracy on classes 0-4: {100 * np.mean(pred == ds.y_test[keep_t]):.2f}%")
    tinyqt.save_tflite(model, args.out)
    print(f"{args.out}: {os.path.getsize(args.out):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
