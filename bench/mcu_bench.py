"""Instructions per kernel call on Cortex-M4/M7/M55 (QEMU, -icount shift=0).

    python bench/mcu_bench.py [--target m4|m7|m55|all] [--variant dsp|portable|both]
                              [--opt -O3] [--json]

Builds one firmware per (target, variant) at -O3 that runs each forward
kernel on the six anchor layer shapes below (random data, realistic
quantization), checks every output byte against the host kernels, and times
each call with SysTick (tinyqt/mcu/data/tq_bench.h: instructions = SysTick
counts * 1e9 / board clock, exact to one count = 40 instructions on the mps2
boards, 31.25 on mps3-an547). The table shows MAC per instruction next to
CMSIS-NN's (Cortex-M4, -O3) on the same shape.

Reuse: anchor_cases() gives the cases, measure() the records, format_table()
the text table (README), so other benches (e.g. backward kernels) can add
their own cases to the same machinery (tinyqt.mcu.bench.run_cases).
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass

import numpy as np

try:
    import tinyqt.mcu.core as mcu
except ImportError:  # running from a source tree without an install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import tinyqt.mcu.core as mcu
from tinyqt.mcu.bench import VARIANTS, run_cases
from tinyqt.mcu.cgen import conv_case


@dataclass(frozen=True)
class AnchorLayer:
    name: str
    h: int
    w: int
    c_in: int
    c_out: int
    k: int
    stride: int
    pad: int
    depthwise: bool
    cmsis_mac_per_instr: float   # CMSIS-NN on Cortex-M4 at -O3


ANCHOR_LAYERS = (
    AnchorLayer("pw 16x16x16->96", 16, 16, 16, 96, 1, 1, 0, False, 0.25),
    AnchorLayer("pw 16x16x96->16", 16, 16, 96, 16, 1, 1, 0, False, 0.54),
    AnchorLayer("dw3x3 s1 16x16x96", 16, 16, 96, 96, 3, 1, 1, True, 0.12),
    AnchorLayer("dw3x3 s2 32x32x48", 32, 32, 48, 48, 3, 2, 1, True, 0.11),
    AnchorLayer("conv3x3 s2 64x64x3->16", 64, 64, 3, 16, 3, 2, 1, False, 0.21),
    AnchorLayer("pw 8x8x64->192", 8, 8, 64, 192, 1, 1, 0, False, 0.47),
)


def anchor_cases(seed=0, layers=ANCHOR_LAYERS):
    """One kernel case per anchor layer: int8 data, per-channel Q31
    multipliers in [2^30, 2^31), shifts -8..-6, input zero point -128
    (input_offset 128), output zero point -128, no fused clamp."""
    rng = np.random.default_rng(seed)
    cases = []
    for layer in layers:
        x = rng.integers(-128, 128, (1, layer.h, layer.w, layer.c_in), dtype=np.int8)
        if layer.depthwise:
            w = rng.integers(-127, 128, (1, layer.k, layer.k, layer.c_out), dtype=np.int8)
        else:
            w = rng.integers(-127, 128, (layer.c_out, layer.k, layer.k, layer.c_in), dtype=np.int8)
        bias = rng.integers(-20000, 20000, layer.c_out, dtype=np.int32)
        mult = rng.integers(1 << 30, (1 << 31) - 1, layer.c_out, dtype=np.int64).astype(np.int32)
        shift = rng.integers(-8, -5, layer.c_out, dtype=np.int32)
        p = layer.pad
        case = conv_case(layer.name, x, w, bias, mult, shift, stride=(layer.stride, layer.stride),
                         padding=(p, p, p, p), input_offset=128, output_offset=-128,
                         depthwise=layer.depthwise)
        case.meta["anchor"] = layer.cmsis_mac_per_instr
        cases.append(case)
    return cases


def measure(targets=("m4",), variants=VARIANTS, opt="-O3", seed=0, out_dir=None):
    """Records (dicts) per (target, variant, layer): the fields of
    tinyqt.mcu.bench.run_cases plus 'cmsis_nn' (anchor MAC/instr) and 'ratio'
    (our MAC/instr divided by CMSIS-NN's)."""
    cases = anchor_cases(seed)
    anchors = {c.name: c.meta["anchor"] for c in cases}
    records = run_cases(cases, targets=targets, variants=variants, opt=opt, out_dir=out_dir)
    for r in records:
        r["layer"] = r["case"]
        r["cmsis_nn"] = anchors[r["case"]]
        r["ratio"] = r["mac_per_instr"] / r["cmsis_nn"] if r["mac_per_instr"] else None
        r["opt"] = opt
    return records


def _fmt(v, spec):
    return format(v, spec) if v is not None else "-"


def format_table(records):
    """A text table per target: one row per layer, a column group per variant."""
    lines = []
    targets = list(dict.fromkeys(r["target"] for r in records))
    variants = list(dict.fromkeys(r["variant"] for r in records))
    for t in targets:
        rows = [r for r in records if r["target"] == t]
        tgt = mcu.get_target(t)
        lines.append(f"{tgt.description}, {rows[0].get('opt', '')}: instructions per call "
                     f"(SysTick x {tgt.instructions_per_tick:g}); CMSIS-NN = Cortex-M4 -O3 anchor")
        head = f"{'layer':<24} {'kernel':<10} {'MACs':>7}"
        for v in variants:
            head += f" | {v + ' instr':>15} {'MAC/instr':>9} {'ratio':>5}"
        head += f" | {'CMSIS-NN':>8}"
        lines.append(head)
        lines.append("-" * len(head))
        for layer in dict.fromkeys(r["layer"] for r in rows):
            by_v = {r["variant"]: r for r in rows if r["layer"] == layer}
            any_r = next(iter(by_v.values()))
            line = f"{layer:<24} {any_r['kind']:<10} {any_r['macs']:>7}"
            for v in variants:
                r = by_v.get(v)
                if r is None or r["status"] != "OK":
                    status = r["status"] if r else "-"
                    line += f" | {status:>15} {'-':>9} {'-':>5}"
                else:
                    line += (f" | {r['instructions']:>15} {_fmt(r['mac_per_instr'], '9.3f')} "
                             f"{_fmt(r['ratio'], '5.2f')}")
            line += f" | {any_r['cmsis_nn']:>8.2f}"
            lines.append(line)
        failures = [r for r in rows if r["status"] != "OK"]
        for r in failures:
            lines.append(f"  {r['variant']} {r['layer']}: {r['status']} {r['detail']}")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="all", choices=["m4", "m7", "m55", "all"])
    ap.add_argument("--variant", default="both", choices=["dsp", "portable", "both"])
    ap.add_argument("--opt", default="-O3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=None, help="keep the firmware (C, ELF, map) here")
    ap.add_argument("--json", action="store_true", help="print the records as JSON")
    args = ap.parse_args(argv)
    status = mcu.toolchain_status()
    if not status.can_run:
        print(f"mcu_bench: {status.reason()}", file=sys.stderr)
        return 2
    targets = mcu.RUNNABLE_TARGETS if args.target == "all" else (args.target,)
    variants = VARIANTS if args.variant == "both" else (args.variant,)
    records = measure(targets, variants, opt=args.opt, seed=args.seed, out_dir=args.out_dir)
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print(format_table(records))
    return 0 if all(r["status"] == "OK" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
