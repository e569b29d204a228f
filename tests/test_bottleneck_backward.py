"""The streamed inverted-bottleneck backward (tq_bottleneck_backward_f32)
against the per-layer kernels it replaces.

Oracle: the unfused sequence (pw2 input gradient, depthwise bias update,
depthwise input gradient, pw1 input gradient, pw1 fused update), whose
kernels are themselves checked against PyTorch autograd and NumPy replays
(test_backward_torch.py). The streamed kernel must give the same gradient,
weights, biases and optimizer state bit for bit; with stochastic rounding
the oracle runs the same kernels tile by tile (the documented PRNG order).
"""
import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinyqt import backward
from tinyqt.backward import BlockLayer
from tinyqt.errors import KernelError, ShapeError
from tinyqt.optim import SGD, ParamState, trained_weights


def _pack(bits):
    return np.packbits(bits.reshape(-1).astype(np.uint8), bitorder="little")


def make_block(rng, h, w, c_in, c_mid, c_out, k, stride, n_sel, pw1_bias=True, dw_bias=True):
    """Random int8 block, masks (about 80% pass) and pw2's output gradient."""
    pad = k // 2
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1

    def scales(n):
        return rng.uniform(0.002, 0.02, n).astype(np.float32)

    def mask(shape):
        return _pack(rng.random(shape) < 0.8)

    pw1 = BlockLayer(rng.integers(-127, 128, (c_mid, 1, 1, c_in), dtype=np.int8), scales(c_mid), 0.05,
                     x_zero_point=int(rng.integers(-20, 20)), mask=mask((1, h, w, c_mid)),
                     bias=rng.integers(-500, 500, c_mid).astype(np.int32) if pw1_bias else None)
    dw = BlockLayer(rng.integers(-127, 128, (1, k, k, c_mid), dtype=np.int8), scales(c_mid), 0.03,
                    stride=(stride, stride), padding=(pad, pad, pad, pad), mask=mask((1, oh, ow, c_mid)),
                    bias=rng.integers(-500, 500, c_mid).astype(np.int32) if dw_bias else None)
    pw2 = BlockLayer(rng.integers(-127, 128, (c_out, 1, 1, c_mid), dtype=np.int8), scales(c_out), 0.04,
                     mask=mask((1, oh, ow, c_out)))
    x = rng.integers(-128, 128, (1, h, w, c_in), dtype=np.int8)
    trained = np.ascontiguousarray(pw1.w[..., :n_sel]) if n_sel else None
    saved = np.ascontiguousarray(x[..., :n_sel]) if n_sel else None
    g = rng.standard_normal((1, oh, ow, c_out)).astype(np.float32)
    return pw1, dw, pw2, trained, saved, g


def states(c_mid, n_sel, opt, trained):
    pw1 = ParamState()
    dw = ParamState()
    if opt.momentum:
        pw1.w_momentum = np.zeros((c_mid, n_sel), np.float32)
        pw1.b_momentum = np.zeros(c_mid, np.float32)
        dw.b_momentum = np.zeros(c_mid, np.float32)
    if opt.rounding == "master" and trained is not None:
        pw1.w_master = trained_weights(trained).astype(np.float32).reshape(c_mid, n_sel)
    return pw1, dw


def _tile_mask(mask, shape, c0, n):
    bits = backward.unpack_mask(mask, shape)
    return _pack(bits[..., c0:c0 + n])


def _sub_state(s, c0, n):
    def cut(a):
        return None if a is None else a[c0:c0 + n]
    return ParamState(cut(s.w_momentum), cut(s.b_momentum), cut(s.w_master))


def reference_updates(pw1, dw, pw2, trained, saved, g, in_shape, opt, s1, sd, tile):
    """The per-layer update kernels, tile by tile over the expanded channels
    (the block input's gradient: unfused_grad_in)."""
    c_mid = pw1.w.shape[0]
    _, oh, ow, _ = g.shape
    h, w = in_shape[1:3]
    g_d = backward.conv2d_backward_input(g, pw2.w, pw2.w_scales, (1, oh, ow, c_mid), mask=pw2.mask)
    for c0 in range(0, c_mid, tile):
        n = min(tile, c_mid - c0)
        gd = np.ascontiguousarray(g_d[..., c0:c0 + n])
        md = _tile_mask(dw.mask, (1, oh, ow, c_mid), c0, n)
        if dw.bias is not None:
            backward.sgd_update_bias(dw.bias[c0:c0 + n], backward.bias_backward(gd, md), dw.w_scales[c0:c0 + n],
                                     dw.x_scale, opt, _sub_state(sd, c0, n))
        ge = backward.conv2d_backward_input(gd, np.ascontiguousarray(dw.w[..., c0:c0 + n]), dw.w_scales[c0:c0 + n],
                                            (1, h, w, n), stride=dw.stride, padding=dw.padding, depthwise=True,
                                            mask=md)
        m1 = _tile_mask(pw1.mask, (1, h, w, c_mid), c0, n)
        if trained is not None:
            bias = None if pw1.bias is None else pw1.bias[c0:c0 + n]
            backward.conv2d_backward_weight_update(ge, saved, trained[c0:c0 + n], bias, pw1.w_scales[c0:c0 + n],
                                                   opt, _sub_state(s1, c0, n), x_scale=pw1.x_scale,
                                                   x_zero_point=pw1.x_zero_point, mask=m1)
        elif pw1.bias is not None:
            backward.sgd_update_bias(pw1.bias[c0:c0 + n], backward.bias_backward(ge, m1), pw1.w_scales[c0:c0 + n],
                                     pw1.x_scale, opt, _sub_state(s1, c0, n))


def unfused_grad_in(pw1, dw, pw2, trained, g, in_shape):
    """The block input's gradient from the whole-layer kernels (old weights)."""
    c_mid = pw1.w.shape[0]
    _, oh, ow, _ = g.shape
    g_d = backward.conv2d_backward_input(g, pw2.w, pw2.w_scales, (1, oh, ow, c_mid), mask=pw2.mask)
    g_e = backward.conv2d_backward_input(g_d, dw.w, dw.w_scales, in_shape[:3] + (c_mid,), stride=dw.stride,
                                         padding=dw.padding, depthwise=True, mask=dw.mask)
    w1 = pw1.w.copy()
    if trained is not None:
        w1[..., :trained.shape[-1]] = trained
    return backward.conv2d_backward_input(g_e, w1, pw1.w_scales, in_shape, mask=pw1.mask)


def run_both(seed, h, w, c_in, c_mid, c_out, k, stride, n_sel, tile, opt_kw, x_f32=False, **block_kw):
    rng = np.random.default_rng(seed)
    pw1, dw, pw2, trained, saved, g = make_block(rng, h, w, c_in, c_mid, c_out, k, stride, n_sel, **block_kw)
    in_shape = (1, h, w, c_in)
    ref = [copy.deepcopy(v) for v in (pw1, dw, trained)]
    opt_a, opt_b = SGD(0.5, **opt_kw), SGD(0.5, **opt_kw)
    sa1, sad = states(c_mid, n_sel, opt_a, trained)
    sb1, sbd = states(c_mid, n_sel, opt_b, trained)
    expect_gi = unfused_grad_in(pw1, dw, pw2, trained, g, in_shape)
    reference_updates(ref[0], ref[1], pw2, ref[2], saved, g, in_shape, opt_a, sa1, sad, tile)
    gi = backward.bottleneck_backward(g, pw1, dw, pw2, in_shape, opt_b, pw1_weights=trained, pw1_saved=saved,
                                      pw1_state=sb1, dw_state=sbd, tile=tile, x_f32=x_f32)
    np.testing.assert_array_equal(gi.view(np.uint32), expect_gi.view(np.uint32))
    for a, b in ((ref[0].bias, pw1.bias), (ref[1].bias, dw.bias), (ref[2], trained), (opt_a.rng, opt_b.rng)):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    for a, b in zip(sa1.arrays() + sad.arrays(), sb1.arrays() + sbd.arrays()):
        if a is not None:
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    return gi, trained


OPTIONS = [dict(), dict(rounding="stochastic"), dict(rounding="master"), dict(momentum=0.9),
           dict(qas=False, rounding="stochastic", momentum=0.5)]


@pytest.mark.parametrize("x_f32", [False, True], ids=["int8-inputs", "x_f32"])
@pytest.mark.parametrize("opt_kw", OPTIONS, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()) or "nearest")
def test_streamed_block_equals_per_layer_kernels(opt_kw, x_f32):
    run_both(1, 7, 6, 10, 27, 9, 3, 1, 10, 8, opt_kw, x_f32)      # whole pw1 trained, odd tile tail
    run_both(2, 9, 9, 12, 20, 8, 5, 2, 3, 4, opt_kw, x_f32)       # stride 2, 5x5, 1/4 of pw1's inputs (split)
    run_both(3, 6, 5, 8, 40, 8, 3, 1, 4, 16, opt_kw, x_f32)       # byte-aligned mask tiles (copied whole)
    run_both(4, 9, 10, 7, 12, 5, 3, 1, 7, 8, opt_kw, x_f32)       # 90 pixels (two row chunks), odd n_sel


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), c_in=st.integers(1, 17), c_mid=st.integers(1, 40),
       c_out=st.integers(1, 17), k=st.sampled_from([1, 3, 5, 7]), stride=st.sampled_from([1, 2]),
       tile=st.integers(1, 20), frac=st.sampled_from([0, 0.125, 0.5, 1.0]), biases=st.booleans(),
       x_f32=st.booleans(), seed=st.integers(0, 2**31))
def test_streamed_block_generated_shapes(h, w, c_in, c_mid, c_out, k, stride, tile, frac, biases, x_f32, seed):
    n_sel = 0 if frac == 0 else max(1, int(np.ceil(frac * c_in)))
    if (h + 2 * (k // 2) - k) < 0 or (w + 2 * (k // 2) - k) < 0:
        return
    run_both(seed, h, w, c_in, c_mid, c_out, k, stride, n_sel, tile, dict(rounding="stochastic"), x_f32,
             pw1_bias=biases, dw_bias=biases)


def test_grad_only_and_frozen_block():
    """Nothing trains: only the input gradient; nothing else is touched."""
    rng = np.random.default_rng(5)
    pw1, dw, pw2, _, _, g = make_block(rng, 5, 5, 6, 18, 4, 3, 1, 0, pw1_bias=False, dw_bias=False)
    gi = backward.bottleneck_backward(g, pw1, dw, pw2, (1, 5, 5, 6), None, tile=4)
    np.testing.assert_array_equal(gi, unfused_grad_in(pw1, dw, pw2, None, g, (1, 5, 5, 6)))


def test_bad_arguments_are_named():
    rng = np.random.default_rng(3)
    pw1, dw, pw2, trained, saved, g = make_block(rng, 5, 5, 6, 18, 4, 3, 1, 6)
    with pytest.raises(ShapeError, match="not a 1x1 -> depthwise"):
        backward.bottleneck_backward(g, pw1, dw, pw2, (1, 5, 5, 7), SGD(0.1), pw1_weights=trained, pw1_saved=saved)
    with pytest.raises(ShapeError, match="pw1_saved"):
        backward.bottleneck_backward(g, pw1, dw, pw2, (1, 5, 5, 6), SGD(0.1), pw1_weights=trained,
                                     pw1_saved=saved[:, :4])
    before = trained.copy()
    with pytest.raises(KernelError):  # momentum without its buffers: rejected before anything is written
        backward.bottleneck_backward(g, pw1, dw, pw2, (1, 5, 5, 6), SGD(0.1, momentum=0.9), pw1_weights=trained,
                                     pw1_saved=saved)
    np.testing.assert_array_equal(trained, before)
    with pytest.raises(KernelError):  # tile 0
        backward.bottleneck_backward(g, pw1, dw, pw2, (1, 5, 5, 6), SGD(0.1), pw1_weights=trained,
                                     pw1_saved=saved, tile=0)
