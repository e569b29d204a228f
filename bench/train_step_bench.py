"""One batch-1 training step at 128x128: tinyqt (int8, the device's
arithmetic, planned arena) against PyTorch (CPU, float, the same trainable
tensors), measured side by side in one run, plus the peak memory of each.

    python bench/train_step_bench.py [--steps 20] [--json]

tinyqt memory is the plan's peak SRAM (everything in the arena counted).
PyTorch memory is what autograd saves for backward plus the trainable
parameters and their gradients (a lower bound: its forward activations come
on top). Times interleave the two frameworks step by step so machine noise
hits both alike; the table reports medians.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

import tinyqt
from tinyqt.compiler import compile
from tinyqt.optim import SGD
from tinyqt.runtime import Runtime

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "models", "imagenet-int8")
CASES = [("mbv2-w0.35", "paper:99kb"), ("proxyless-w0.3", "paper:98kb"), ("mcunet-5fps", "paper:99kb")]
PAPER_KB = {"mbv2-w0.35": 141, "proxyless-w0.3": 135, "mcunet-5fps": 173}
GOAL_KB = {"mbv2-w0.35": 120, "proxyless-w0.3": 115, "mcunet-5fps": 150}


def measure(name, scheme, steps, classes=10):
    import torch

    from tinyqt.torch_sim import FloatTwin, saved_for_backward_bytes
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = tinyqt.load_tiny_training(os.path.join(SHARED, name + ".json"))
    plan = compile(model, scheme, num_classes=classes)
    rt = Runtime(plan, model, SGD(0.01))
    twin = FloatTwin(model, scheme, num_classes=classes)
    rng = np.random.default_rng(0)
    xs = rng.integers(-128, 128, (steps + 2, 1, 128, 128, 3), dtype=np.int8)
    ys = rng.integers(0, classes, steps + 2)
    xf = [twin.dequantize_input(x) for x in xs]
    ours, theirs = [], []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        rt.step(xs[i], ys[i])
        t1 = time.perf_counter()
        twin.sgd_step(xf[i], ys[i], 0.01)
        t2 = time.perf_counter()
        if i >= 2:  # warm-up
            ours.append(t1 - t0)
            theirs.append(t2 - t1)
    full = compile(model, "full", num_classes=classes)
    from tinyqt.schemes import parse_scheme
    bias_k = parse_scheme(scheme, name, len(plan.graph.convs)).bias_k
    bias = compile(model, f"bias-only:{bias_k}", num_classes=classes)
    return {
        "model": name, "scheme": plan.scheme_name,
        "peak_sram_bytes": plan.peak_sram_bytes, "paper_kb": PAPER_KB[name], "goal_kb": GOAL_KB[name],
        "full_peak_sram_bytes": full.peak_sram_bytes, "bias_only_peak_sram_bytes": bias.peak_sram_bytes,
        "bias_only_scheme": bias.scheme_name,
        "torch_training_bytes": saved_for_backward_bytes(twin, xf[0], ys[0]),
        "tinyqt_ms": 1e3 * float(np.median(ours)), "torch_ms": 1e3 * float(np.median(theirs)),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = [measure(n, s, args.steps) for n, s in CASES]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'model':<15} {'scheme':<11} {'peak KB':>8} {'goal':>5} {'paper':>6} {'full KB':>8} {'bias KB':>8} "
          f"{'torch KB':>9} {'mem ratio':>9} {'tinyqt ms':>9} {'torch ms':>9} {'time ratio':>10}")
    for r in rows:
        print(f"{r['model']:<15} {r['scheme']:<11} {r['peak_sram_bytes'] / 1024:>8.1f} {r['goal_kb']:>5} "
              f"{r['paper_kb']:>6} {r['full_peak_sram_bytes'] / 1024:>8.1f} {r['bias_only_peak_sram_bytes'] / 1024:>8.1f} "
              f"{r['torch_training_bytes'] / 1024:>9.1f} {r['torch_training_bytes'] / r['peak_sram_bytes']:>9.2f} "
              f"{r['tinyqt_ms']:>9.1f} {r['torch_ms']:>9.1f} {r['tinyqt_ms'] / r['torch_ms']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
