"""Kernel test/bench firmware generation.

A Case is one kernel call with its inputs, parameters and the output the host
kernels (tinyqt.kernels) produce. emit_firmware() writes one C file holding
every case's data as const arrays and a main() that, for each case, fills the
output buffer with a canary, calls the kernel between tq_bench_start() and
tq_bench_stop(), compares the output byte for byte with the host's, checks
that nothing past it was written, and prints one line:

    TQ_CASE <index> <name> OK <instructions> <systick counts>
    TQ_CASE <index> <name> FAIL <what went wrong: status, first mismatch, overrun>
    TQ_CASE <index> <name> SKIP <why>     (status TQ_ERR_UNSUPPORTED, if allowed)

(<name> with blanks made underscores)

and finally ``TQ_DONE <failures>``; main returns the number of failing cases,
which run_qemu returns as the exit code. parse_results() reads those lines.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from .. import _ckernels
from .. import kernels as K
from ..errors import KernelError

TQ_ERR_UNSUPPORTED = -6

_CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t",
           np.dtype(np.uint8): "uint8_t", np.dtype(np.int16): "int16_t",
           np.dtype(np.uint32): "uint32_t", np.dtype(np.float32): "float"}


@dataclass
class Case:
    """One kernel call. kind: conv | 1x1 | depthwise | fc | avgpool | mean | add | softmax | raw
    (see raw_case)."""
    name: str
    kind: str
    arrays: Dict[str, np.ndarray]      # inputs: x, w, bias, mult, shift, x2 ...
    params: Dict[str, object]          # scalar parameters and dims
    expected: Optional[np.ndarray]     # host output (int8), None when unsupported on host
    macs: int = 0
    allow_unsupported: bool = False    # TQ_ERR_UNSUPPORTED on the device is a SKIP
    scratch: int = 0                   # scratch bytes the host query reports
    meta: Dict[str, object] = field(default_factory=dict)


def _cname(name):
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def conv_case(name, x, w, bias, mult, shift, *, stride=(1, 1), padding=(0, 0, 0, 0),
              dilation=(1, 1), input_offset=0, output_offset=0, act_min=-128, act_max=127,
              depthwise=False):
    """A conv2d / 1x1 / depthwise case; the kernel is chosen as tinyqt.kernels.conv2d does."""
    y = K.conv2d(x, w, bias, mult, shift, stride=stride, padding=padding, dilation=dilation,
                 input_offset=input_offset, output_offset=output_offset, act_min=act_min,
                 act_max=act_max, depthwise=depthwise)
    if depthwise:
        kind = "depthwise"
    elif w.shape[1] == w.shape[2] == 1 and tuple(padding) == (0, 0, 0, 0) and tuple(dilation) == (1, 1):
        kind = "1x1"
    else:
        kind = "conv"
    in_dims, f_dims = tuple(int(v) for v in x.shape), tuple(int(v) for v in w.shape)
    scratch = _ckernels.conv_buffer_size(kind, in_dims, f_dims)
    kh, kw = w.shape[1], w.shape[2]
    macs = int(y.size) * kh * kw * (1 if depthwise else x.shape[3])
    arrays = {"x": x, "w": w, "mult": np.asarray(mult, np.int32), "shift": np.asarray(shift, np.int32)}
    if bias is not None:
        arrays["bias"] = bias
    params = dict(in_dims=in_dims, f_dims=f_dims, out_dims=tuple(int(v) for v in y.shape),
                  stride=tuple(stride), pad_tl=(int(padding[0]), int(padding[1])),
                  dilation=tuple(dilation), input_offset=input_offset,
                  output_offset=output_offset, act_min=act_min, act_max=act_max)
    return Case(name, kind, arrays, params, y, macs=macs, scratch=scratch)


def fc_case(name, x, w, bias, mult, shift, *, input_offset=0, output_offset=0, act_min=-128,
            act_max=127):
    y = K.fully_connected(x, w, bias, mult, shift, input_offset=input_offset,
                          output_offset=output_offset, act_min=act_min, act_max=act_max)
    arrays = {"x": x, "w": w, "mult": np.asarray(mult, np.int32), "shift": np.asarray(shift, np.int32)}
    if bias is not None:
        arrays["bias"] = bias
    params = dict(batches=x.shape[0], in_features=x.shape[1], out_features=w.shape[0],
                  input_offset=input_offset, output_offset=output_offset, act_min=act_min,
                  act_max=act_max)
    return Case(name, "fc", arrays, params, y, macs=int(x.shape[0] * w.size))


def avgpool_case(name, x, filter_hw, *, stride=(1, 1), padding=(0, 0, 0, 0), act_min=-128,
                 act_max=127):
    y = K.avgpool2d(x, filter_hw, stride=stride, padding=padding, act_min=act_min, act_max=act_max)
    params = dict(in_dims=tuple(int(v) for v in x.shape), out_dims=tuple(int(v) for v in y.shape),
                  filter_hw=tuple(filter_hw), stride=tuple(stride),
                  pad_tl=(int(padding[0]), int(padding[1])), act_min=act_min, act_max=act_max)
    return Case(name, "avgpool", {"x": x}, params, y)


def mean_case(name, x, mean_params):
    y = K.mean_hw(x, mean_params)
    params = dict(in_dims=tuple(int(v) for v in x.shape), mean=tuple(int(v) for v in mean_params))
    return Case(name, "mean", {"x": x}, params, y)


def add_case(name, a, b, add_params):
    y = K.add(a, b, add_params)
    params = dict(size=int(a.size), add=tuple(int(v) for v in add_params))
    return Case(name, "add", {"x": a, "x2": b}, params, y)


def softmax_case(name, x, softmax_params):
    """A softmax case over the last axis; expected is None (and the device may
    answer TQ_ERR_UNSUPPORTED) when the host kernel is not implemented."""
    try:
        y = K.softmax(x, softmax_params)
    except KernelError as exc:
        if exc.status != TQ_ERR_UNSUPPORTED:
            raise
        y = None
    params = dict(rows=int(x.size // x.shape[-1]), depth=int(x.shape[-1]),
                  softmax=tuple(int(v) for v in softmax_params))
    return Case(name, "softmax", {"x": x}, params, y, allow_unsupported=y is None)


def raw_case(name, call, arrays, buffers, expected, *, scratch=0, macs=0):
    """A case for any kernel (the backward ones: fp32 outputs, in-place
    updates). arrays: const inputs, named `{cn}_<key>` in call; buffers:
    ordered {key: initial array} copied into the output area before the call
    (writable, 4-byte aligned, typed pointers named `<key>` in call); call: a
    C expression returning tq_status, where `{cn}` is the case prefix and
    `scratch`/`scratch_size` the scratch area; expected: {key: final array}
    for every buffer. The device compares the whole output area (every
    buffer's bytes) with the host's, so fp32 results must match bit for bit."""
    if list(expected) != list(buffers):
        raise ValueError("raw_case: expected must list the same buffers in the same order")
    blob = b"".join(_padded(np.ascontiguousarray(expected[k]).tobytes()) for k in buffers)
    return Case(name, "raw", dict(arrays), {"call": call, "buffers": dict(buffers)},
                np.frombuffer(blob, np.int8).copy(), macs=macs, scratch=scratch)


def _padded(b):
    return b + bytes(-len(b) % 4)


def _emit_raw(cn, case, out):
    """Initial buffer contents as const arrays; returns the C statements that
    place them in tq_out and run the call."""
    body, offset = [], 0
    for key, arr in case.params["buffers"].items():
        arr = np.ascontiguousarray(arr)
        ctype = _CTYPES[arr.dtype]
        out.append(c_array(ctype, f"{cn}_init_{key}", arr))
        body.append(f"    {ctype} *{key} = ({ctype} *)(void *)(tq_out + {offset});\n"
                    f"    memcpy({key}, {cn}_init_{key}, {arr.nbytes});\n")
        offset += len(_padded(arr.tobytes()))
    call = case.params["call"].replace("{cn}", cn)
    body.insert(0, f"    memset(tq_out, 0, {offset});  /* the alignment padding between buffers */\n")
    body.append(f"    void *scratch = (void *)tq_scratch;\n    const int32_t scratch_size = {case.scratch};\n"
                f"    (void)scratch; (void)scratch_size;\n"
                f"    tq_bench_start();\n    st = {call};\n")
    return body


_NONFINITE = {0x7FC00000: '__builtin_nanf("")', 0xFFC00000: '-__builtin_nanf("")',
              0x7F800000: "__builtin_inff()", 0xFF800000: "-__builtin_inff()"}


def c_float(v):
    """An exact C literal (a GCC constant for the infinities and the default
    quiet NaN) of a float32 value, sign of zero kept. Raises ValueError for a
    NaN with another payload, which no literal gives exactly."""
    v = np.float32(v)
    if not np.isfinite(v):
        bits = int(np.array(v, np.float32).view(np.uint32))
        if bits not in _NONFINITE:
            raise ValueError(f"float32 0x{bits:08x}: only the default quiet NaN has a C literal here")
        return _NONFINITE[bits]
    if v == int(v) and abs(v) <= 2**24:
        return f"{'-' if np.signbit(v) else ''}{abs(int(v))}.0f"
    return f"{float(v):.9g}f"


def c_array(ctype, name, arr, align=4):
    """`static const <ctype> name[n] = {...};` with 24 values a line (floats
    with 9 significant digits: exact for float32; see c_float for the
    non-finite ones)."""
    flat = np.asarray(arr).reshape(-1)
    if ctype == "float":
        try:
            vals = [c_float(v) for v in flat]
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    else:
        vals = [str(int(v)) for v in flat]
    if ctype == "int32_t":
        # INT32_MIN cannot be written as a literal in C.
        vals = [v if int(v) != -2**31 else "(-2147483647 - 1)" for v in vals]
    lines = [", ".join(vals[i:i + 24]) for i in range(0, len(vals), 24)] or ["0"]
    body = ",\n    ".join(lines)
    return (f"static const {ctype} {name}[{max(1, flat.size)}] __attribute__((aligned({align}))) = {{\n"
            f"    {body}\n}};\n")


def _dims(d):
    return "{%d, %d, %d, %d}" % tuple(d)


def _conv_params(p):
    sh, sw = p.get("stride", (1, 1))
    pt, pl = p.get("pad_tl", (0, 0))
    dh, dw = p.get("dilation", (1, 1))
    return (f"{{{sh}, {sw}, {pt}, {pl}, {dh}, {dw}, {p.get('input_offset', 0)}, "
            f"{p.get('output_offset', 0)}, {p.get('act_min', -128)}, {p.get('act_max', 127)}, NULL}}")


def _emit_case(i, case):
    """C data and the body of one case function."""
    cn = f"c{i}"
    out = [f"/* case {i}: {case.name} ({case.kind}) */\n"]
    for key, arr in case.arrays.items():
        out.append(c_array(_CTYPES[np.dtype(arr.dtype)], f"{cn}_{key}", arr))
    n_out = 0
    if case.expected is not None:
        out.append(c_array("int8_t", f"{cn}_expected", case.expected))
        n_out = int(case.expected.size)
    p = case.params
    a = case.arrays
    bias = f"{cn}_bias" if "bias" in a else "NULL"
    body = []
    if case.kind in ("conv", "1x1", "depthwise"):
        fn = {"conv": "tq_conv_s8", "1x1": "tq_conv_1x1_s8", "depthwise": "tq_depthwise_conv_s8"}[case.kind]
        n_out = int(np.prod(p["out_dims"]))
        body.append(f"    static const tq_conv_params p = {_conv_params(p)};\n"
                    f"    static const tq_channel_quant q = {{{cn}_mult, {cn}_shift}};\n"
                    f"    static const tq_dims in_d = {_dims(p['in_dims'])}, f_d = {_dims(p['f_dims'])}, "
                    f"out_d = {_dims(p['out_dims'])};\n"
                    f"    const int32_t need = {fn}_get_buffer_size(&in_d, &f_d);\n"
                    f"    if (need != {case.scratch}) {{\n"
                    f"        printf(\"TQ_CASE %s FAIL scratch query %ld, host says {case.scratch}\\n\", name, (long)need);\n"
                    f"        return 1;\n    }}\n"
                    f"    tq_bench_start();\n"
                    f"    st = {fn}(&p, &q, &in_d, {cn}_x, &f_d, {cn}_w, {bias}, &out_d, tq_out, "
                    f"need ? (void *)tq_scratch : NULL, need);\n")
    elif case.kind == "fc":
        n_out = p["batches"] * p["out_features"]
        body.append(f"    static const tq_conv_params p = {_conv_params(p)};\n"
                    f"    static const tq_channel_quant q = {{{cn}_mult, {cn}_shift}};\n"
                    f"    tq_bench_start();\n"
                    f"    st = tq_fully_connected_s8(&p, &q, {p['batches']}, {p['in_features']}, "
                    f"{p['out_features']}, {cn}_x, {cn}_w, {bias}, tq_out);\n")
    elif case.kind == "avgpool":
        n_out = int(np.prod(p["out_dims"]))
        fh, fw = p["filter_hw"]
        body.append(f"    static const tq_conv_params p = {_conv_params(p)};\n"
                    f"    static const tq_dims in_d = {_dims(p['in_dims'])}, out_d = {_dims(p['out_dims'])};\n"
                    f"    tq_bench_start();\n"
                    f"    st = tq_avgpool_s8(&p, {fh}, {fw}, &in_d, {cn}_x, &out_d, tq_out);\n")
    elif case.kind == "mean":
        d = p["in_dims"]
        n_out = d[0] * d[3]
        body.append(f"    static const tq_mean_params p = {{{', '.join(str(v) for v in p['mean'])}}};\n"
                    f"    static const tq_dims in_d = {_dims(d)};\n"
                    f"    tq_bench_start();\n"
                    f"    st = tq_mean_s8(&p, &in_d, {cn}_x, tq_out);\n")
    elif case.kind == "add":
        n_out = p["size"]
        body.append(f"    static const tq_add_params p = {{{', '.join(str(v) for v in p['add'])}, NULL}};\n"
                    f"    tq_bench_start();\n"
                    f"    st = tq_add_s8(&p, {p['size']}, {cn}_x, {cn}_x2, tq_out);\n")
    elif case.kind == "softmax":
        n_out = p["rows"] * p["depth"]
        body.append(f"    static const tq_softmax_params p = {{{', '.join(str(v) for v in p['softmax'])}}};\n"
                    f"    tq_bench_start();\n"
                    f"    st = tq_softmax_s8(&p, {p['rows']}, {p['depth']}, {cn}_x, tq_out);\n")
    elif case.kind == "raw":
        body.extend(_emit_raw(cn, case, out))
    else:
        raise ValueError(f"unknown case kind {case.kind!r}")
    expected = f"{cn}_expected" if case.expected is not None else "NULL"
    fn_src = (f"static int {cn}_run(void)\n{{\n"
              f"    static const char name[] = \"{i} {_cname(case.name)}\";\n"
              f"    tq_status st;\n    uint64_t ticks;\n"
              f"    memset(tq_out, TQ_CANARY, sizeof tq_out);\n"
              + "".join(body) +
              f"    ticks = tq_bench_stop_ticks();\n"
              f"    return tq_check(name, st, ticks, {expected}, {n_out}, {int(case.allow_unsupported)});\n}}\n\n")
    return "".join(out) + "\n" + fn_src, n_out


_PRELUDE = r"""/* Generated by tinyqt.mcu.cgen: kernel cases checked byte for byte
 * against the host (tinyqt.kernels) and timed with SysTick. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "tinyqt/kernels.h"
#include "tinyqt/backward.h"
#include "tinyqt/fused.h"
#include "tq_bench.h"

#define TQ_CANARY 0x5A
#define TQ_OUT_GUARD 64

static int8_t tq_out[TQ_OUT_BYTES + TQ_OUT_GUARD] __attribute__((aligned(4)));
static uint32_t tq_scratch[(TQ_SCRATCH_BYTES + 3) / 4 + 1];

static int tq_check(const char *name, tq_status st, uint64_t ticks, const int8_t *expected,
                    int32_t n, int allow_unsupported)
{
    int32_t i;
    if (st == TQ_ERR_UNSUPPORTED && allow_unsupported) {
        printf("TQ_CASE %s SKIP kernel returned TQ_ERR_UNSUPPORTED\n", name);
        return 0;
    }
    if (st != TQ_OK) {
        printf("TQ_CASE %s FAIL status %d\n", name, (int)st);
        return 1;
    }
    if (expected == NULL) {
        printf("TQ_CASE %s FAIL device ran a kernel the host reports unsupported\n", name);
        return 1;
    }
    for (i = 0; i < n; i++) {
        if (tq_out[i] != expected[i]) {
            printf("TQ_CASE %s FAIL first mismatch at byte %ld of %ld: device %d host %d"
                   " (after %lu instructions)\n", name, (long)i, (long)n, (int)tq_out[i],
                   (int)expected[i], (unsigned long)tq_bench_ticks_to_instructions(ticks));
            return 1;
        }
    }
    for (i = n; i < n + TQ_OUT_GUARD; i++) {
        if ((uint8_t)tq_out[i] != TQ_CANARY) {
            printf("TQ_CASE %s FAIL wrote past its output (byte %ld)\n", name, (long)i);
            return 1;
        }
    }
    printf("TQ_CASE %s OK %lu %lu\n", name,
           (unsigned long)tq_bench_ticks_to_instructions(ticks), (unsigned long)ticks);
    return 0;
}

"""


def emit_firmware(cases):
    """C source of a firmware running every case (see the module docstring)."""
    parts, max_out = [], 1
    for i, case in enumerate(cases):
        src, n_out = _emit_case(i, case)
        parts.append(src)
        max_out = max(max_out, n_out)
    max_scratch = max([c.scratch for c in cases] + [4])
    head = (f"#define TQ_OUT_BYTES {max_out}\n#define TQ_SCRATCH_BYTES {max_scratch}\n" + _PRELUDE)
    calls = "".join(f"    failures += c{i}_run();\n" for i in range(len(cases)))
    main = ("int main(void)\n{\n    int failures = 0;\n" + calls +
            "    printf(\"TQ_DONE %d\\n\", failures);\n    return failures;\n}\n")
    return head + "".join(parts) + main


_LINE = re.compile(r"^TQ_CASE (\d+) \S+ (OK|FAIL|SKIP)\s*(.*)$")


def parse_results(stdout):
    """{case index: (status, detail)}; for OK, detail is (instructions, ticks)."""
    res = {}
    for line in stdout.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        idx, status, rest = m.groups()
        name = int(idx)
        if status == "OK":
            instr, ticks = rest.split()
            res[name] = (status, (int(instr), int(ticks)))
        else:
            res[name] = (status, rest)
    return res
