"""C forward kernels against the independent integer reference
(tests/int8_reference.py) on generated shapes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyqt import kernels, quant
from tinyqt.errors import KernelError, ShapeError

import int8_reference as ref


def _quant_for(rng, c):
    scales = rng.uniform(0.002, 0.05, c).astype(np.float32)
    return quant.conv_multipliers(rng.uniform(0.01, 0.1), scales, rng.uniform(0.02, 0.3))


@st.composite
def conv_cases(draw):
    k = draw(st.sampled_from([1, 3, 5, 7]))
    depthwise = draw(st.booleans())
    c_in = draw(st.integers(1, 40))
    mult = draw(st.sampled_from([1, 2])) if depthwise else 1
    c_out = c_in * mult if depthwise else draw(st.integers(1, 40))
    stride = draw(st.sampled_from([1, 2]))
    dil = draw(st.sampled_from([1, 1, 2]))
    eff = (k - 1) * dil + 1
    h = draw(st.integers(1, 13))
    w = draw(st.integers(1, 13))
    pads = [draw(st.integers(0, eff - 1)) for _ in range(4)]
    # every window must overlap the input (what the kernels accept)
    for size, a, b in ((h, 0, 2), (w, 1, 3)):
        while size + pads[a] + pads[b] < eff:
            pads[b] += 1
        while pads[b] >= eff:
            pads[b] -= 1
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(k=k, depthwise=depthwise, c_in=c_in, c_out=c_out, stride=stride, dil=dil,
                h=h, w=w, pads=tuple(pads), seed=seed)


def _run_conv_case(case):
    rng = np.random.default_rng(case["seed"])
    k, c_in, c_out = case["k"], case["c_in"], case["c_out"]
    x = rng.integers(-128, 128, (1, case["h"], case["w"], c_in), dtype=np.int8)
    shape = (1, k, k, c_out) if case["depthwise"] else (c_out, k, k, c_in)
    wt = rng.integers(-127, 128, shape, dtype=np.int8)
    bias = rng.integers(-5000, 5000, c_out).astype(np.int32)
    m, s = _quant_for(rng, c_out)
    zx, zy = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
    stride, dil = (case["stride"],) * 2, (case["dil"],) * 2
    try:
        got = kernels.conv2d(x, wt, bias, m, s, stride=stride, padding=case["pads"], dilation=dil,
                             input_offset=-zx, output_offset=zy, act_min=lo, act_max=hi,
                             depthwise=case["depthwise"])
    except (KernelError, ShapeError):
        # shapes whose last window falls entirely in the padding are refused
        eh = (k - 1) * case["dil"] + 1
        pt, pl, pb, pr = case["pads"]
        oh = (case["h"] + pt + pb - eh) // case["stride"] + 1
        ow = (case["w"] + pl + pr - eh) // case["stride"] + 1
        assert (oh - 1) * case["stride"] - pt >= case["h"] or (ow - 1) * case["stride"] - pl >= case["w"]
        return
    acc = ref.conv_acc(x, wt, bias, stride, case["pads"], dil, -zx, case["depthwise"])
    want = ref.finish(acc, m, s, zy, lo, hi)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=150, deadline=None)
@given(conv_cases())
def test_conv_matches_reference(case):
    _run_conv_case(case)


@pytest.mark.parametrize("c_in,c_out,hw,stride", [(16, 96, 8, 1), (96, 16, 5, 1), (3, 7, 9, 2), (130, 5, 3, 1)])
def test_pointwise_matches_reference(c_in, c_out, hw, stride):
    _run_conv_case(dict(k=1, depthwise=False, c_in=c_in, c_out=c_out, stride=stride, dil=1,
                        h=hw, w=hw, pads=(0, 0, 0, 0), seed=c_in * 1000 + c_out))


@settings(max_examples=200, deadline=None)
@given(acc=st.integers(-(1 << 31), (1 << 31) - 1), real=st.floats(1e-6, 0.99),
       zp=st.integers(-128, 127))
def test_requantization_matches_gemmlowp(acc, real, zp):
    # FC with one input, weight 1, x = 0, offset 0: the accumulator is the bias.
    m, s = quant.quantize_multiplier(real)
    x = np.zeros((1, 1), np.int8)
    w = np.ones((1, 1), np.int8)
    got = kernels.fully_connected(x, w, np.array([acc], np.int32), np.array([m], np.int32),
                                  np.array([s], np.int32), output_offset=zp)
    want = max(-128, min(127, ref.requant(acc, m, s) + zp))
    assert int(got[0, 0]) == want


def test_quantize_multiplier_is_tflite():
    for real in [1.0, 0.5, 0.75, 1e-3, 0.999999999, 3.5, 2.0 ** -31, 2.0 ** -33]:
        m, s = quant.quantize_multiplier(real)
        if m:
            assert (1 << 30) <= m < (1 << 31)
            assert abs(m * 2.0 ** (s - 31) - real) <= 2.0 ** (s - 32)
    assert quant.quantize_multiplier(0.0) == (0, 0)
    assert quant.quantize_multiplier(2.0 ** -40) == (0, 0)


def test_fully_connected_matches_reference():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (3, 77), dtype=np.int8)
    w = rng.integers(-127, 128, (10, 77), dtype=np.int8)
    b = rng.integers(-3000, 3000, 10).astype(np.int32)
    m, s = _quant_for(rng, 10)
    got = kernels.fully_connected(x, w, b, m, s, input_offset=5, output_offset=-3)
    acc = (x.astype(np.int64) + 5) @ w.T.astype(np.int64) + b
    np.testing.assert_array_equal(got, ref.finish(acc, m, s, -3, -128, 127))


def test_avgpool_matches_reference():
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (2, 7, 6, 5), dtype=np.int8)
    got = kernels.avgpool2d(x, (3, 3), stride=(2, 2), padding=(1, 1, 1, 1))
    xp = np.pad(x.astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    cnt = np.pad(np.ones(x.shape[1:3], np.int64), ((1, 1), (1, 1)))
    for oy in range(got.shape[1]):
        for ox in range(got.shape[2]):
            win = xp[:, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3, :].sum(axis=(1, 2))
            n = cnt[2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3].sum()
            want = np.where(win > 0, (win + n // 2) // n, -((-win + n // 2) // n))
            np.testing.assert_array_equal(got[:, oy, ox, :], want)


@pytest.mark.parametrize("hw,scales", [((5, 3), (0.1, 3, 0.1, 3)), ((1, 1), (0.05, -4, 0.2, 9)),
                                       ((16, 16), (0.3, 0, 0.01, -128)), ((7, 9), (0.02, 100, 0.02, -50))])
def test_mean_matches_reference(hw, scales):
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (2, hw[0], hw[1], 7), dtype=np.int8)
    got = kernels.mean_hw(x, quant.mean_params(*scales))
    s_in, z_in, s_out, z_out = scales
    n = hw[0] * hw[1]
    m, sh = quant.quantize_multiplier(quant.f32(s_in) / quant.f32(s_out))
    fold = min(n.bit_length() - 1, 31 + sh)
    want = [max(-128, min(127, ref.requant(int(v) - z_in * n, (m << fold) // n, sh - fold) + z_out))
            for v in x.astype(np.int64).sum(axis=(1, 2)).reshape(-1)]
    np.testing.assert_array_equal(got.reshape(-1), want)
    real = (x.astype(float).mean(axis=(1, 2)) - z_in) * s_in / s_out + z_out
    assert np.abs(np.clip(real, -128, 127).reshape(-1) - got.reshape(-1)).max() <= 1.0


def test_add_matches_reference():
    rng = np.random.default_rng(6)
    a = rng.integers(-128, 128, 1000, dtype=np.int8)
    b = rng.integers(-128, 128, 1000, dtype=np.int8)
    p = quant.add_params(0.05, 3, 0.08, -7, 0.1, 11, -128, 127)
    got = kernels.add(a, b, p)
    o1, o2, oo, m1, s1, m2, s2, mo, so, ls, lo, hi = p
    want = [max(lo, min(hi, ref.requant(ref.requant((int(u) + o1) << ls, m1, s1)
                                        + ref.requant((int(v) + o2) << ls, m2, s2), mo, so) + oo))
            for u, v in zip(a, b)]
    np.testing.assert_array_equal(got, np.array(want, np.int8))
    # and it approximates the real-valued sum
    real = 0.05 * (a.astype(float) - 3) + 0.08 * (b.astype(float) + 7)
    assert np.abs(np.clip(real / 0.1 + 11, -128, 127) - got).max() <= 1.0


def test_wrong_dtype_and_shape_are_named():
    x = np.zeros((1, 4, 4, 3), np.float32)
    w = np.zeros((2, 3, 3, 3), np.int8)
    m, s = quant.conv_multipliers(0.1, np.full(2, 0.1, np.float32), 0.1)
    with pytest.raises(ShapeError, match="x: expected dtype int8"):
        kernels.conv2d(x, w, None, m, s)
    with pytest.raises(ShapeError, match="weight: expected"):
        kernels.conv2d(np.zeros((1, 4, 4, 5), np.int8), w, None, m, s)
    with pytest.raises(ShapeError, match="bias"):
        kernels.conv2d(np.zeros((1, 4, 4, 3), np.int8), w, np.zeros(3, np.int32), m, s)


def test_c_kernel_rejects_bad_params_without_writing():
    x = np.zeros((1, 4, 4, 3), np.int8)
    w = np.zeros((2, 3, 3, 3), np.int8)
    m, s = quant.conv_multipliers(0.1, np.full(2, 0.1, np.float32), 0.1)
    with pytest.raises(KernelError, match="TQ_ERR_PARAM"):
        kernels.conv2d(x, w, None, m, s, act_min=10, act_max=5)
    with pytest.raises(KernelError, match="TQ_ERR_PARAM"):
        kernels.conv2d(x, w, None, m, np.array([40, 0], np.int32))
    with pytest.raises(KernelError, match="TQ_ERR_PARAM"):
        kernels.conv2d(x, w, None, m, s, input_offset=300)


def test_vectorized_multipliers_equal_the_scalar_formula():
    rng = np.random.default_rng(11)
    reals = np.concatenate([rng.uniform(1e-9, 4.0, 5000), 10.0 ** rng.uniform(-12, 3, 5000),
                            [0.0, 1.0, 0.5, 2.0 ** -31, 2.0 ** -32, 2.0 ** 31, 0.9999999999]])
    m, s = quant.quantize_multipliers(reals)
    want = [quant.quantize_multiplier(r) for r in reals]
    assert [(int(a), int(b)) for a, b in zip(m, s)] == want


def test_conv_scratch_size_is_a_tile_and_reports_overflow():
    """The conv and 1x1 scratch holds 4-pixel blocks of K int16 values (as many
    as fit 4 KB, 1 to 8) plus one expanded filter row; a K whose scratch does
    not fit int32 gets 0, which the kernels turn into TQ_ERR_SHAPE."""
    from tinyqt import _ckernels
    # K = 8: 8 blocks of 4 pixels x 2 groups x 8 words, then 2 groups x 2 words
    assert _ckernels.conv_buffer_size("1x1", (1, 4, 4, 8), (16, 1, 1, 8)) == 8 * 64 + 16
    # K = 27 (the RGB stem): 7 groups, 8 blocks
    assert _ckernels.conv_buffer_size("conv", (1, 9, 9, 3), (8, 3, 3, 3)) == 8 * 224 + 56
    # K = 576: one block
    assert _ckernels.conv_buffer_size("1x1", (1, 2, 2, 576), (8, 1, 1, 576)) == 32 * 144 + 8 * 144
    big = (1, 1, 1, 1 << 30)
    assert _ckernels.conv_buffer_size("1x1", big, big) == 0
    assert _ckernels.conv_buffer_size("conv", big, big) == 0
