"""Row-streamed blocks (tq_bottleneck_s8) in QEMU with the planar depthwise
ring asked for (planar_rows = 1), against the same three ops run one by one
on the host (tinyqt.kernels): 3x3 depthwise stages at stride 1 and 2 whose
output rows reach every ring width the Cortex-M4/M7 assembly has (6, 10,
18, 34, 66 columns), odd widths, SAME / VALID / TFLite's asymmetric
padding, with and without an expand, and stages the ring does not take
(channels not a multiple of 4, a left-shifting requantization)."""
import numpy as np
import pytest

from tinyqt import _ckernels, kernels as K
from tinyqt.mcu.bench import run_cases
from tinyqt.mcu.cgen import raw_case

from mcu_support import require_build_tools, require_qemu

pytestmark = pytest.mark.mcu


def _quant(rng, n, shift=(-8, -5)):
    mult = rng.integers(2**30, 2**31 - 1, n).astype(np.int32)
    return mult, rng.integers(shift[0], shift[1] + 1, n).astype(np.int32)


def _c_params(stride, pad_tl, in_off, out_off, act=(-128, 127)):
    return f"{{{stride}, {stride}, {pad_tl[0]}, {pad_tl[1]}, 1, 1, {in_off}, {out_off}, {act[0]}, {act[1]}, NULL}}"


def _c_dims(d):
    return "{%d, %d, %d, %d}" % tuple(d)


def _block_case(name, rng, h, w, c_in, mid, c_out, stride, pad, expand=True, zp=-128, dw_shift=(-8, -5)):
    """(case, ring requested) of expand 1x1 -> depthwise 3x3 (stride,
    padding (top, left, bottom, right)) -> 1x1 on a [1, h, w, c_in] input;
    zp is the expanded tensor's zero point."""
    x = rng.integers(-128, 128, (1, h, w, c_in), dtype=np.int8)
    stages, args, chain = [], {"x": x}, x
    if expand:
        w1 = rng.integers(-127, 128, (mid, 1, 1, c_in), dtype=np.int8)
        b1 = rng.integers(-3000, 3000, mid).astype(np.int32)
        m1, s1 = _quant(rng, mid)
        chain = K.conv2d(chain, w1, b1, m1, s1, input_offset=128, output_offset=zp)
        stages.append(((1, 1, 0, 0, 1, 1, 128, zp, -128, 127), m1, s1, w1.shape, w1.reshape(-1), b1))
        args.update(w1=w1, b1=b1, m1=m1, s1=s1)
    else:
        mid, zp = c_in, -128
    wd = rng.integers(-127, 128, (1, 3, 3, mid), dtype=np.int8)
    bd = rng.integers(-3000, 3000, mid).astype(np.int32)
    md, sd = _quant(rng, mid, dw_shift)
    chain = K.conv2d(chain, wd, bd, md, sd, stride=(stride, stride), padding=pad, input_offset=-zp,
                     output_offset=3, depthwise=True)
    stages.append(((stride, stride, pad[0], pad[1], 1, 1, -zp, 3, -128, 127), md, sd, wd.shape,
                   wd.reshape(-1), bd))
    w2 = rng.integers(-127, 128, (c_out, 1, 1, mid), dtype=np.int8)
    b2 = rng.integers(-3000, 3000, c_out).astype(np.int32)
    m2, s2 = _quant(rng, c_out)
    y = K.conv2d(chain, w2, b2, m2, s2, input_offset=-3, output_offset=-7)
    stages.append(((1, 1, 0, 0, 1, 1, -3, -7, -128, 127), m2, s2, w2.shape, w2.reshape(-1), b2))
    args.update(wd=wd, bd=bd, md=md, sd=sd, w2=w2, b2=b2, m2=m2, s2=s2)
    out_w = chain.shape[2]

    def spec(planar):
        return _ckernels.BottleneckSpec(stages[0] if expand else None, stages[-2], stages[-1], None, 0,
                                        out_w, h, w, planar)
    need = spec(True).buffer_size((1, h, w, c_in))
    fields = [f".has_expand = {int(expand)}"]
    if expand:
        fields += [f".pw1_params = {_c_params(1, (0, 0), 128, zp)}", ".pw1_quant = {{cn}_m1, {cn}_s1}",
                   f".pw1_filter_dims = {_c_dims(w1.shape)}", ".pw1_filter = {cn}_w1", ".pw1_bias = {cn}_b1"]
    fields += [f".dw_params = {_c_params(stride, pad[:2], -zp, 3)}", ".dw_quant = {{cn}_md, {cn}_sd}",
               f".dw_filter_dims = {_c_dims(wd.shape)}", ".dw_filter = {cn}_wd", ".dw_bias = {cn}_bd",
               f".pw2_params = {_c_params(1, (0, 0), -3, -7)}", ".pw2_quant = {{cn}_m2, {cn}_s2}",
               f".pw2_filter_dims = {_c_dims(w2.shape)}", ".pw2_filter = {cn}_w2", ".pw2_bias = {cn}_b2",
               f".out_w = {out_w}", f".mid_h = {h}", f".mid_w = {w}", ".planar_rows = 1"]
    call = (f"tq_bottleneck_s8(&(tq_bottleneck_params){{{', '.join(fields)}}}, &(tq_dims){_c_dims(x.shape)}, "
            f"{{cn}}_x, &(tq_dims){_c_dims(y.shape)}, y, scratch, scratch_size)")
    case = raw_case(name, call, args, {"y": np.zeros_like(y)}, {"y": y}, scratch=need)
    return case, need > spec(False).buffer_size((1, h, w, c_in))


def _cases():
    rng = np.random.default_rng(11)
    same, valid, tf_s2 = (1, 1, 1, 1), (0, 0, 0, 0), (0, 0, 1, 1)
    spec = [  # name, h, w, c_in, mid, c_out, stride, pad, options; ring expected
        ("s1 w3 width6", 4, 3, 5, 8, 6, 1, same, {}, True),
        ("s1 w8 width10 zp5", 3, 8, 8, 12, 8, 1, same, {"zp": 5}, True),
        ("s1 w15 odd width18", 5, 15, 4, 16, 8, 1, same, {}, True),
        ("s1 w32 width34", 3, 32, 8, 8, 4, 1, same, {}, True),
        ("s1 w33 odd width66", 3, 33, 8, 4, 8, 1, same, {}, True),
        ("s1 w64 width66 no expand", 3, 64, 16, 16, 8, 1, same, {"expand": False}, True),
        ("s1 valid w12", 5, 12, 6, 8, 5, 1, valid, {}, True),
        ("s2 w4 width6", 5, 4, 6, 8, 6, 2, tf_s2, {}, True),
        ("s2 w7 same width10", 7, 7, 6, 12, 6, 2, same, {}, True),
        ("s2 w16 width18", 6, 16, 8, 8, 8, 2, tf_s2, {}, True),
        ("s2 w30 width34", 5, 30, 4, 20, 8, 2, same, {"zp": 5}, True),
        ("s2 w64 width66", 4, 64, 8, 8, 8, 2, tf_s2, {}, True),
        ("mid 6: NHWC runs", 4, 10, 4, 6, 4, 1, same, {}, False),
        ("left shift: NHWC runs", 4, 10, 4, 8, 4, 1, same, {"dw_shift": (1, 1)}, True),
        ("w80: too wide for the ring", 3, 80, 4, 8, 4, 1, same, {}, False),
    ]
    cases, rings = [], []
    for name, h, w, c_in, mid, c_out, s, pad, opts, ring in spec:
        case, asked = _block_case(name, rng, h, w, c_in, mid, c_out, s, pad, **opts)
        cases.append(case)
        rings.append((name, asked, ring))
    return cases, rings


def test_the_ring_is_asked_for_where_the_stage_allows_it():
    _, rings = _cases()
    assert [(n, a) for n, a, _ in rings] == [(n, r) for n, _, r in rings]


@pytest.mark.parametrize("target", ["m4", "m7", "m55"])
def test_streamed_blocks_with_the_planar_ring_give_the_unfused_bytes(target):
    require_build_tools()
    require_qemu()
    cases, _ = _cases()
    bad = [f"{r['case']}: {r['status']} {r['detail']}" for r in run_cases(cases, targets=(target,), variants=("dsp",))
           if r["status"] != "OK"]
    assert not bad
