"""Backward kernels on Cortex-M4/M7 (QEMU, -icount shift=0) against the
forward kernels of the same six anchor layers, measured in one run.

    python bench/mcu_backward_bench.py [--target m4|m7|m55|all] [--json]

For each anchor layer of bench/mcu_bench.py: the forward kernel (DSP path),
the input gradient through a clamp mask (fp32; for stride-1 depthwise
layers also the in-place kernel the training plans use), the weight gradient
alone, and the fused weight gradient + QAS update (the paper's in-place
update, round to nearest, what the training plans run), every
output checked byte for byte against the host. MACs are the forward layer's;
the issue-3 bar is backward MAC/instr >= 0.8 x forward on M4 and M7.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mcu_bench import ANCHOR_LAYERS, anchor_cases  # noqa: E402

import tinyqt.mcu.core as mcu  # noqa: E402
from tinyqt.mcu.backward_cases import (fused_case, inplace_input_grad_case, input_grad_case,  # noqa: E402
                                       weight_grad_case)
from tinyqt.mcu.bench import run_cases  # noqa: E402
from tinyqt.optim import SGD  # noqa: E402


def backward_cases(seed=0):
    rng = np.random.default_rng(seed)
    cases = []
    for L in ANCHOR_LAYERS:
        pad = (L.pad,) * 4
        cases.append(input_grad_case(rng, f"{L.name} | input grad", L.h, L.w, L.c_in, L.c_out, L.k, L.stride,
                                     pad, depthwise=L.depthwise))
        cases.append(fused_case(rng, f"{L.name} | weight grad+update", L.h, L.w, L.c_in, L.c_out, L.k,
                                L.stride, pad, SGD(0.01), depthwise=L.depthwise))
    return cases


def weight_grad_cases(seed=2):
    """The weight gradient alone, without the update (its own firmware, for
    the same reason as the in-place cases)."""
    rng = np.random.default_rng(seed)
    return [weight_grad_case(rng, f"{L.name} | weight grad", L.h, L.w, L.c_in, L.c_out, L.k, L.stride,
                             (L.pad,) * 4, depthwise=L.depthwise) for L in ANCHOR_LAYERS]


def inplace_cases(seed=1):
    """The in-place depthwise input gradient on the stride-1 depthwise anchors
    (a firmware of their own: M55's board has less room for test data)."""
    rng = np.random.default_rng(seed)
    return [inplace_input_grad_case(rng, f"{L.name} | in-place input grad", L.h, L.w, L.c_in, L.k, (L.pad,) * 4)
            for L in ANCHOR_LAYERS if L.depthwise and L.stride == 1]


def measure(targets):
    fwd = anchor_cases()
    recs = run_cases(fwd + backward_cases(), targets=targets, variants=("dsp",))
    recs += run_cases(inplace_cases(), targets=targets, variants=("dsp",))
    recs += run_cases(weight_grad_cases(), targets=targets, variants=("dsp",))
    rows = []
    for t in targets:
        by = {r["case"]: r for r in recs if r["target"] == mcu.get_target(t).name}
        for L in ANCHOR_LAYERS:
            f = by[L.name]["mac_per_instr"]
            gi = by[f"{L.name} | input grad"]["mac_per_instr"]
            gw = by[f"{L.name} | weight grad"]["mac_per_instr"]
            gu = by[f"{L.name} | weight grad+update"]["mac_per_instr"]
            ip = by.get(f"{L.name} | in-place input grad", {}).get("mac_per_instr")
            rows.append(dict(target=t, layer=L.name, forward=f, input_grad=gi, weight_grad=gw,
                             weight_grad_update=gu, inplace_input_grad=ip,
                             inplace_ratio=ip / f if ip and f else None,
                             input_ratio=gi / f if gi and f else None, weight_ratio=gw / f if gw and f else None,
                             update_ratio=gu / f if gu and f else None))
    bad = [(r["target"], r["case"], r["status"], r["detail"]) for r in recs if r["status"] != "OK"]
    return rows, bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="all", choices=["m4", "m7", "m55", "all"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    status = mcu.toolchain_status()
    if not status.can_run:
        print(f"mcu_backward_bench: {status.reason()}", file=sys.stderr)
        return 2
    targets = ["m4", "m7", "m55"] if args.target == "all" else [args.target]
    rows, bad = measure(targets)
    if args.json:
        print(json.dumps({"rows": rows, "failures": bad}))
    else:
        print(f"{'target':<6} {'layer':<24} {'fwd':>6} {'in-grad':>8} {'ratio':>6} {'w-grad':>8} {'ratio':>6}"
              f" {'w-grad+upd':>10} {'ratio':>6} {'in-place':>8} {'ratio':>6}")
        for r in rows:
            ip = (f" {r['inplace_input_grad']:>8.3f} {r['inplace_ratio']:>6.2f}"
                  if r["inplace_input_grad"] else "")
            print(f"{r['target']:<6} {r['layer']:<24} {r['forward']:>6.3f} {r['input_grad']:>8.3f} "
                  f"{r['input_ratio']:>6.2f} {r['weight_grad']:>8.3f} {r['weight_ratio']:>6.2f} "
                  f"{r['weight_grad_update']:>10.3f} {r['update_ratio']:>6.2f}{ip}")
        for b in bad:
            print("FAILED:", *b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
