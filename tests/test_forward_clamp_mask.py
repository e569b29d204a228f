"""Forward kernels asked for their clamp mask (tq_conv_params.clamp_mask,
tq_add_params.clamp_mask; tinyqt.kernels mask_out=) write the bits of the
straight-through estimator: bit i of byte i // 8 is act_min < y[i] < act_max,
unused bits of the last byte 0. The oracle is that formula in NumPy over the
output the same call returns (itself held to TFLite by the forward tests),
on generated shapes and clamp ranges, on the host's AVX2 and portable paths.
The device's paths (ARM DSP SSUB8/SEL packing) give the same bytes in
tests/mcu/test_mcu_backward_qemu.py."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyqt import ShapeError, _ckernels, backward, kernels, quant


def _oracle(y, lo, hi):
    bits = ((y.reshape(-1) > lo) & (y.reshape(-1) < hi)).astype(np.uint8)
    return np.packbits(bits, bitorder="little")


def _clamp(draw_lo, draw_width):
    lo = draw_lo
    return lo, min(127, lo + draw_width)


@pytest.mark.parametrize("simd", [True, False], ids=["simd", "portable"])
@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["conv", "1x1", "split", "depthwise"]), h=st.integers(1, 7), w=st.integers(1, 9),
       c_in=st.integers(1, 13), c_out=st.integers(1, 21), k=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2),
       lo=st.integers(-128, 127), width=st.integers(0, 255), seed=st.integers(0, 2**31 - 1))
def test_conv_kernels_write_the_clamp_mask(simd, kind, h, w, c_in, c_out, k, stride, lo, width, seed):
    try:
        _ckernels.host_simd_enable(simd)
        _check_conv_mask(kind, h, w, c_in, c_out, k, stride, lo, width, seed)
    finally:
        _ckernels.host_simd_enable(True)


def _check_conv_mask(kind, h, w, c_in, c_out, k, stride, lo, width, seed):
    rng = np.random.default_rng(seed)
    lo, hi = _clamp(lo, width)
    depthwise = kind == "depthwise"
    k = 1 if kind in ("1x1", "split") else k
    c_out = c_in if depthwise else c_out
    pad = (k // 2,) * 4 if kind in ("conv", "depthwise") else (0, 0, 0, 0)
    x = rng.integers(-128, 128, (1, h, w, c_in), dtype=np.int8)
    wt = rng.integers(-127, 128, (1, k, k, c_out) if depthwise else (c_out, k, k, c_in), dtype=np.int8)
    bias = rng.integers(-3000, 3000, c_out).astype(np.int32)
    m = rng.integers(1 << 30, (1 << 31) - 1, c_out, dtype=np.int64).astype(np.int32)
    sh = np.full(c_out, -8, np.int32)
    trained = rng.integers(-127, 128, (c_out, 1, 1, max(1, c_in // 2)), dtype=np.int8) if kind == "split" else None
    args = dict(stride=(stride, stride), padding=pad, input_offset=5, output_offset=-3, act_min=lo, act_max=hi,
                depthwise=depthwise, trained=trained)
    plain = kernels.conv2d(x, wt, bias, m, sh, **args)
    mask = np.full((plain.size + 7) // 8, 0xA5, np.uint8)  # every byte must be overwritten
    y = kernels.conv2d(x, wt, bias, m, sh, mask_out=mask, **args)
    np.testing.assert_array_equal(y, plain)  # asking for the mask leaves the output alone
    np.testing.assert_array_equal(mask, _oracle(y, lo, hi))
    np.testing.assert_array_equal(mask, backward.clamp_mask(y, lo, hi))


@settings(max_examples=30, deadline=None)
@given(batches=st.integers(1, 3), n_in=st.integers(1, 40), n_out=st.integers(1, 19), lo=st.integers(-128, 127),
       width=st.integers(0, 255), seed=st.integers(0, 2**31 - 1))
def test_fully_connected_pool_and_add_write_the_clamp_mask(batches, n_in, n_out, lo, width, seed):
    rng = np.random.default_rng(seed)
    lo, hi = _clamp(lo, width)
    x = rng.integers(-128, 128, (batches, n_in), dtype=np.int8)
    w = rng.integers(-127, 128, (n_out, n_in), dtype=np.int8)
    m = np.full(n_out, 1 << 30, np.int32)
    sh = np.full(n_out, -6, np.int32)
    mask = np.zeros((batches * n_out + 7) // 8, np.uint8)
    y = kernels.fully_connected(x, w, None, m, sh, input_offset=2, act_min=lo, act_max=hi, mask_out=mask)
    np.testing.assert_array_equal(mask, _oracle(y, lo, hi))

    img = rng.integers(-128, 128, (1, 5, 6, n_out), dtype=np.int8)
    mask = np.zeros((img.size + 7) // 8, np.uint8)  # a 2x2 stride-1 pool keeps 4x5 pixels: room to spare
    y = kernels.avgpool2d(img, (2, 2), act_min=lo, act_max=hi, mask_out=mask)
    np.testing.assert_array_equal(mask[:(y.size + 7) // 8], _oracle(y, lo, hi))
    assert not mask[(y.size + 7) // 8:].any()  # nothing written past the mask's bytes

    a, b = (rng.integers(-128, 128, 37 + n_in, dtype=np.int8) for _ in range(2))
    p = quant.add_params(0.05, 3, 0.07, -2, 0.09, 1, lo, hi)
    mask = np.zeros((a.size + 7) // 8, np.uint8)
    y = kernels.add(a, b, p, mask_out=mask)
    np.testing.assert_array_equal(mask, _oracle(y, lo, hi))


def test_a_mask_buffer_that_does_not_fit_is_refused():
    x = np.zeros((1, 3, 3, 4), np.int8)
    w = np.ones((5, 1, 1, 4), np.int8)
    m, sh = np.full(5, 1 << 30, np.int32), np.zeros(5, np.int32)
    with pytest.raises(ShapeError, match="mask_out: 5 bytes for 45 outputs, 6 needed"):
        kernels.conv2d(x, w, None, m, sh, mask_out=np.zeros(5, np.uint8))
    with pytest.raises(ShapeError, match="mask_out: expected a writable C-contiguous numpy uint8 array"):
        kernels.conv2d(x, w, None, m, sh, mask_out=np.zeros(6, np.int8))
    with pytest.raises(ShapeError, match="mask_out"):
        kernels.conv2d(x, w, None, m, sh, mask_out=np.zeros(12, np.uint8)[::2])
