"""Run kernel cases on the QEMU boards and collect verdicts and instruction counts.

run_cases() builds one firmware per (target, variant) holding every case
(tinyqt.mcu.cgen), runs it under qemu -icount shift=0 and returns one record
per (target, variant, case). The firmware checks each output byte for byte
against the host kernels, so a timing is only reported for a correct result.
"""
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .core import build, get_target, run_qemu
from .cgen import emit_firmware, parse_results

VARIANTS = ("dsp", "portable")
# Extra compiler flags of a variant: "scalar-fp" is the DSP build without
# Helium floating point (an M55 whose Helium is integer-only), whose fp32
# backward runs the scalar FPU blocks.
VARIANT_CFLAGS = {"dsp": (), "portable": (), "scalar-fp": ("-UTQ_HELIUM_F32",)}


def build_cases(target, cases, variant="dsp", out_dir=None, opt="-O3", name="cases"):
    """Writes the cases' firmware C file and builds it; returns the ELF path.
    variant: a key of VARIANT_CFLAGS."""
    t = get_target(target)
    if variant not in VARIANT_CFLAGS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANT_CFLAGS)}")
    out = Path(out_dir or tempfile.mkdtemp(prefix="tq-cases-")) / f"{t.name}-{variant}"
    out.mkdir(parents=True, exist_ok=True)
    src = out / f"{name}.c"
    src.write_text(emit_firmware(cases))
    return build(t, [src], out_dir=out, opt=opt, portable=(variant == "portable"), name=name,
                 extra_cflags=VARIANT_CFLAGS[variant])


def run_cases(cases, targets=("m4",), variants=VARIANTS, opt="-O3", out_dir=None,
              timeout=300, jobs=None):
    """Builds and runs the cases for every (target, variant); returns a list of
    dicts: target, board, variant, case, kind, macs, status (OK/FAIL/SKIP/MISSING),
    detail, instructions, ticks, mac_per_instr. A firmware that fails to run
    to completion yields status MISSING for the cases it did not report."""
    out_dir = out_dir or tempfile.mkdtemp(prefix="tq-cases-")
    combos = [(get_target(t), v) for t in targets for v in variants]

    def one(combo):
        t, v = combo
        elf = build_cases(t, cases, v, out_dir=out_dir, opt=opt)
        code, stdout = run_qemu(t, elf, timeout=timeout)
        return t, v, code, stdout

    records = []
    with ThreadPoolExecutor(max_workers=jobs or min(len(combos), os.cpu_count() or 1)) as ex:
        for t, v, code, stdout in ex.map(one, combos):
            parsed = parse_results(stdout)
            for i, case in enumerate(cases):
                status, detail = parsed.get(i, ("MISSING", f"exit {code}: {stdout[-500:]}"))
                rec = dict(target=t.name, board=t.board, variant=v, case=case.name, kind=case.kind,
                           macs=case.macs, status=status, detail=detail, instructions=None,
                           ticks=None, mac_per_instr=None, exit_code=code)
                if status == "OK":
                    rec["instructions"], rec["ticks"] = detail
                    rec["detail"] = ""
                    if case.macs and rec["instructions"]:
                        rec["mac_per_instr"] = case.macs / rec["instructions"]
                records.append(rec)
    return records
