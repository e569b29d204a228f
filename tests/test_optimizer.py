"""QAS SGD on int8 weights / int32 biases against an independent NumPy /
Python reference, EXACTLY (every rounding mode, QAS on and off, momentum,
saturation); fused gradient+update == gradient kernel + separate update, bit
for bit; the xorshift32 stream; tq_expf / tq_logf accuracy and their bits
against a float32 replication (catches FMA contraction or libm leaking in)."""
import math

import numpy as np
import pytest

from tinyqt import _ckernels, backward
from tinyqt.errors import KernelError
from tinyqt.optim import SGD, OptimizerError, trained_weights

f32 = np.float32
MODES = ["nearest", "stochastic", "master"]


# ---- independent reference ---------------------------------------------------

def xorshift32_py(x):
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


class RefRng:
    def __init__(self, seed):
        self.x = int(seed)

    def uniform(self):
        self.x = xorshift32_py(self.x)
        return f32(self.x >> 8) * f32(2.0 ** -24)


def round_away(v):
    v = float(v)
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def ref_update(opt, rng, w, bias, channels, grad_w, grad_b, xs, w_mom, b_mom, master):
    """channels: per trained output channel (in update order): (flat weight
    indices in gradient-layout order, s_w, bias flat index or None). grad_w,
    w_mom, master are in the concatenated order of those indices; grad_b /
    b_mom indexed by channel position. Mutates its arguments."""
    lr, mu = f32(opt.lr), f32(opt.momentum)
    e = 0
    for ci, (widx, sw, bidx) in enumerate(channels):
        sw = f32(sw)
        for wi in widx:
            g = f32(grad_w[e])
            if mu > 0:
                g = f32(mu * w_mom[e]) + g
                w_mom[e] = g
            lg = lr * g
            d = -lg / sw if opt.qas else -lg * sw
            u = rng.uniform() if opt.rounding == "stochastic" else f32(0)
            if opt.rounding == "master":
                m = f32(master[e] + d)
                m = min(max(m, f32(-127)), f32(127))
                master[e] = m
                w[wi] = round_away(m)
            else:
                v = f32(f32(w[wi]) + d)
                r = math.floor(float(f32(v + u))) if opt.rounding == "stochastic" else round_away(v)
                w[wi] = min(max(r, -127), 127)
            e += 1
        if bidx is not None:
            g = f32(grad_b[ci])
            if mu > 0:
                g = f32(mu * b_mom[ci]) + g
                b_mom[ci] = g
            step = f32(f32(xs) * sw)
            lg = lr * g
            d = -lg / step if opt.qas else -lg * step
            if opt.rounding == "stochastic":
                r = math.floor(float(f32(d + rng.uniform())))
            else:
                r = round_away(d)
            bias[bidx] = min(max(int(bias[bidx]) + r, -2**31), 2**31 - 1)


def dense_channels(w_shape, sel, w_scales, with_bias):
    c_out, kh, kw, c_in = w_shape
    sel = np.arange(c_in) if sel is None else np.asarray(sel)
    out = []
    for c in range(c_out):
        idx = [((c * kh + ky) * kw + kx) * c_in + int(s) for ky in range(kh) for kx in range(kw) for s in sel]
        out.append((idx, w_scales[c], c if with_bias else None))
    return out


def depthwise_channels(w_shape, c_in, sel, w_scales, with_bias):
    _, kh, kw, c_out = w_shape
    mult = c_out // c_in
    sel = np.arange(c_in) if sel is None else np.asarray(sel)
    out = []
    for ic in sel:
        for m in range(mult):
            c = int(ic) * mult + m
            idx = [(ky * kw + kx) * c_out + c for ky in range(kh) for kx in range(kw)]
            out.append((idx, w_scales[c], c if with_bias else None))
    return out


def snapshot(w, b, opt, state):
    arrs = [w.copy(), b.copy(), opt.rng.copy()]
    for a in state.arrays():
        arrs.append(None if a is None else a.copy())
    return arrs


def assert_same(a, b):
    for x, y in zip(a, b):
        if x is None or y is None:
            assert x is None and y is None
        else:
            assert x.dtype == y.dtype and np.array_equal(x.view(np.uint8), y.view(np.uint8))


# ---- the update against the reference -----------------------------------------

@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("qas", [True, False])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("layer", ["dense", "depthwise", "fc"])
def test_update_matches_numpy_reference(rounding, qas, momentum, layer):
    rng = np.random.default_rng([MODES.index(rounding), int(qas), int(momentum * 10),
                                 ["dense", "depthwise", "fc"].index(layer)])
    xs = f32(0.037)
    if layer == "depthwise":
        c_in, mult, k = 6, 2, 3
        w = rng.integers(-127, 128, (1, k, k, c_in * mult), dtype=np.int8)
        sel = np.array([0, 2, 5])
        n_tr = len(sel) * mult
        gshape = (n_tr, k, k)
        ws = rng.uniform(0.002, 0.03, c_in * mult).astype(f32)
        channels = depthwise_channels(w.shape, c_in, sel, ws, True)
    else:
        c_out, c_in = 5, 11
        k = 3 if layer == "dense" else 1
        w = rng.integers(-127, 128, (c_out, k, k, c_in) if layer == "dense" else (c_out, c_in), dtype=np.int8)
        sel = np.array([1, 2, 3, 7, 10])
        n_tr = c_out
        gshape = (c_out, k, k, len(sel)) if layer == "dense" else (c_out, len(sel))
        ws = rng.uniform(0.002, 0.03, c_out).astype(f32)
        channels = dense_channels((c_out, k, k, c_in), sel, ws, True)
    w[w == -128] = -127
    bias = rng.integers(-5000, 5000, w.shape[3] if layer == "depthwise" else w.shape[0], dtype=np.int32)
    opt = SGD(0.05 if qas else 50.0, qas=qas, rounding=rounding, momentum=momentum, seed=12345)
    state = opt.state_for(w, sel=sel, depthwise=layer == "depthwise", in_channels=c_in)
    # reference copies
    rw, rb = w.reshape(-1).astype(np.int64), bias.astype(np.int64)
    rwm = None if state.w_momentum is None else state.w_momentum.copy()
    rbm = None if state.b_momentum is None else state.b_momentum.copy()
    rmaster = None if state.w_master is None else state.w_master.copy()
    rrng = RefRng(12345)
    for step in range(4):
        gw = (rng.standard_normal(gshape) * rng.choice([0.01, 0.3, 3.0])).astype(f32)
        gb = (rng.standard_normal(n_tr) * 0.5).astype(f32)
        backward.sgd_update(w, bias, gw, gb, ws, xs, opt, state, sel=sel,
                            depthwise=layer == "depthwise", in_channels=c_in)
        ref_update(opt, rrng, rw, rb, channels, gw.reshape(-1), gb, xs, rwm, rbm, rmaster)
        assert np.array_equal(w.reshape(-1).astype(np.int64), rw), f"weights differ at step {step}"
        assert np.array_equal(bias.astype(np.int64), rb), f"biases differ at step {step}"
        assert int(opt.rng[0]) == rrng.x
        for got, ref in ((state.w_momentum, rwm), (state.b_momentum, rbm), (state.w_master, rmaster)):
            if ref is not None:
                assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    assert w.min() >= -127


def test_qas_scaling_formula_on_one_weight():
    """dW_int = -lr G / s_w with QAS (0.1 * 2 / 0.01 = 20 steps); without QAS
    -lr G s_w = 0.002 of a step, lost to rounding (the paper's point)."""
    for qas, expect in ((True, 20), (False, 0)):
        w = np.zeros((1, 1, 1, 1), np.int8)
        b = np.zeros(1, np.int32)
        backward.sgd_update(w, b, np.full((1, 1, 1, 1), -2.0, f32), np.array([-2.0], f32), [0.01], 0.1,
                            SGD(0.1, qas=qas))
        assert int(w[0, 0, 0, 0]) == expect
        assert int(b[0]) == (200 if qas else 0)  # -lr G_b / (s_x s_w) = 0.2 / 0.001


def test_bias_only_update_matches_reference():
    rng = np.random.default_rng(5)
    for rounding in MODES:
        for qas in (True, False):
            ws = rng.uniform(0.001, 0.02, 16).astype(f32)
            bias = rng.integers(-10**6, 10**6, 16, dtype=np.int32)
            gb = rng.standard_normal(16).astype(f32)
            opt = SGD(0.01, qas=qas, rounding=rounding, momentum=0.5, seed=99)
            state = opt.new_state(0, 16)
            rb = bias.astype(np.int64)
            rbm = state.b_momentum.copy()
            rrng = RefRng(99)
            for _ in range(3):
                backward.sgd_update_bias(bias, gb, ws, 0.02, opt, state)
                ref_update(opt, rrng, None, rb, [([], ws[c], c) for c in range(16)], [], gb, 0.02,
                           None, rbm, None)
            assert np.array_equal(bias.astype(np.int64), rb)
            assert int(opt.rng[0]) == rrng.x


def test_saturation_at_int8_and_int32_limits():
    w = np.array([[[[120, -120, 127, -127, 5, -128]]]], np.int8)
    ws = [0.001]
    # huge negative gradient: weights go up and saturate at 127
    for rounding in MODES:
        ww = w.copy()
        bb = np.array([2**31 - 10], np.int32)
        opt = SGD(1.0, rounding=rounding, seed=7)
        st = opt.state_for(ww)
        backward.sgd_update(ww, bb, np.full((1, 1, 1, 6), -1.0, f32), np.array([-1.0], f32), ws, 0.001,
                            opt, st)
        assert ww.reshape(-1).tolist() == [127] * 6, rounding
        assert int(bb[0]) == 2**31 - 1
        ww = w.copy()
        bb = np.array([-2**31 + 10], np.int32)
        opt = SGD(1.0, rounding=rounding, seed=7)
        st = opt.state_for(ww)
        backward.sgd_update(ww, bb, np.full((1, 1, 1, 6), 1.0, f32), np.array([1.0], f32), ws, 0.001,
                            opt, st)
        assert ww.reshape(-1).tolist() == [-127] * 6, rounding  # never -128
        assert int(bb[0]) == -2**31
        if rounding == "master":
            assert np.all(st.w_master == -127.0)
    # a gigantic (overflowing to inf) delta saturates too
    ww = w.copy()
    bb = np.zeros(1, np.int32)
    backward.sgd_update(ww, bb, np.full((1, 1, 1, 6), -3e38, f32), np.array([-3e38], f32), [1e-30], 1e-30,
                        SGD(1e10))
    assert ww.reshape(-1).tolist() == [127] * 6 and int(bb[0]) == 2**31 - 1


def test_rounding_ties_and_stochastic_mean():
    # nearest: half away from zero of the new value
    w = np.array([[[[0, 0, -3, 3]]]], np.int8)
    backward.sgd_update(w, None, np.array([[[[-0.5, 0.5, -0.5, 0.5]]]], f32), None, [1.0], 1.0, SGD(1.0))
    assert w.reshape(-1).tolist() == [1, -1, -3, 3]  # -2.5 -> -3, 2.5 -> 3
    # new values one float beside every tie from 0.5 to 126.5 (and their
    # negatives) round like round_away does in float64; the float below 0.5
    # is where adding 0.5f and truncating would round up
    ties = np.arange(0.5, 127.0, 1.0, dtype=f32)
    d = np.concatenate([ties, np.nextafter(ties, f32(0)), np.nextafter(ties, f32(200))])
    d = np.concatenate([d, -d, [f32(127.49), f32(127.5), f32(-127.5), f32(-128.0)]]).astype(f32)
    w = np.zeros((1, 1, 1, d.size), np.int8)
    backward.sgd_update(w, None, -d.reshape(w.shape), None, [1.0], 1.0, SGD(1.0))
    assert w.reshape(-1).tolist() == [int(np.clip(round_away(float(v)), -127, 127)) for v in d]
    # stochastic: E[update] = delta
    w = np.zeros((1, 1, 1, 4000), np.int8)
    opt = SGD(1.0, rounding="stochastic", seed=2024)
    backward.sgd_update(w, None, np.full((1, 1, 1, 4000), -0.3, f32), None, [1.0], 1.0, opt)
    assert set(np.unique(w)) <= {0, 1} and abs(w.mean() - 0.3) < 0.03
    # master: sub-LSB steps accumulate
    w = np.zeros((1, 1, 1, 1), np.int8)
    opt = SGD(1.0, rounding="master")
    st = opt.state_for(w)
    for _ in range(4):
        backward.sgd_update(w, None, np.full((1, 1, 1, 1), -0.2, f32), None, [1.0], 1.0, opt, st)
    assert int(w[0, 0, 0, 0]) == 1 and abs(st.w_master[0] - 0.8) < 1e-6
    w2 = np.zeros((1, 1, 1, 1), np.int8)
    for _ in range(4):
        backward.sgd_update(w2, None, np.full((1, 1, 1, 1), -0.2, f32), None, [1.0], 1.0, SGD(1.0))
    assert int(w2[0, 0, 0, 0]) == 0  # nearest loses sub-LSB updates


# ---- fused == unfused ----------------------------------------------------------

def _conv_case(rng, kind):
    if kind == "fc":
        x = rng.integers(-128, 128, (3, 20), dtype=np.int8)
        w = rng.integers(-127, 128, (7, 20), dtype=np.int8)
        g = rng.standard_normal((3, 7)).astype(f32)
        return x, w, g, dict()
    if kind == "depthwise":
        x = rng.integers(-128, 128, (2, 7, 6, 5), dtype=np.int8)
        w = rng.integers(-127, 128, (1, 3, 3, 10), dtype=np.int8)
        geo = dict(stride=(2, 1), padding=(1, 1, 1, 1), dilation=(1, 1))
        g = rng.standard_normal((2, 4, 6, 10)).astype(f32)
        return x, w, g, geo
    k = 3 if kind == "conv" else 1
    x = rng.integers(-128, 128, (2, 7, 6, 12), dtype=np.int8)
    w = rng.integers(-127, 128, (6, k, k, 12), dtype=np.int8)
    geo = dict(stride=(1, 2), padding=(1, 0, 1, 2) if k == 3 else (0, 0, 0, 0), dilation=(1, 1))
    oh = (7 + (2 if k == 3 else 0) - k) // 1 + 1
    ow = (6 + (2 if k == 3 else 0) - k) // 2 + 1
    g = rng.standard_normal((2, oh, ow, 6)).astype(f32)
    return x, w, g, geo


@pytest.mark.parametrize("kind", ["conv", "1x1", "depthwise", "fc"])
@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("qas", [True, False])
def test_fused_equals_gradient_plus_update(kind, rounding, momentum, qas):
    rng = np.random.default_rng(11)
    x, w, g, geo = _conv_case(rng, kind)
    c_in = x.shape[-1]
    sel = np.array([0, 3, 4]) if kind == "depthwise" else np.array([1, 2, 5, 8, 9, 11])
    x_saved = np.ascontiguousarray(x[..., sel])
    c_out = w.shape[3] if kind == "depthwise" else w.shape[0]
    bias = rng.integers(-3000, 3000, c_out, dtype=np.int32)
    ws = rng.uniform(0.003, 0.03, c_out).astype(f32)
    mask = rng.integers(0, 256, (g.size + 7) // 8, dtype=np.uint8)
    xs, xz = 0.04, -3
    runs = []
    for fused in (False, True):
        ww, bb = w.copy(), bias.copy()
        opt = SGD(0.02 if qas else 20.0, qas=qas, rounding=rounding, momentum=momentum, seed=777)
        st = opt.state_for(ww, sel=sel, depthwise=kind == "depthwise", in_channels=c_in)
        for _ in range(3):  # several steps: momentum and master state carry over
            if kind == "fc":
                if fused:
                    backward.fc_backward_weight_update(g, x_saved, ww, bb, ws, opt, st, x_scale=xs,
                                                       x_zero_point=xz, sel=sel, mask=mask)
                else:
                    gw, gb = backward.fc_backward_weight(g, x_saved, x_scale=xs, x_zero_point=xz, mask=mask)
                    backward.sgd_update(ww, bb, gw, gb, ws, xs, opt, st, sel=sel)
            elif fused:
                backward.conv2d_backward_weight_update(g, x_saved, ww, bb, ws, opt, st, x_scale=xs,
                                                       x_zero_point=xz, depthwise=kind == "depthwise",
                                                       in_channels=c_in, sel=sel, mask=mask, **geo)
            else:
                gw, gb = backward.conv2d_backward_weight(g, x_saved, w.shape[1:3], x_scale=xs,
                                                         x_zero_point=xz, depthwise=kind == "depthwise",
                                                         in_channels=c_in, sel=sel, mask=mask, **geo)
                backward.sgd_update(ww, bb, gw, gb, ws, xs, opt, st, sel=sel,
                                    depthwise=kind == "depthwise", in_channels=c_in)
        runs.append(snapshot(ww, bb, opt, st))
    assert not np.array_equal(runs[0][0], w) or not qas  # something trained
    assert_same(runs[0], runs[1])


def test_untrained_channels_untouched_by_fused_update():
    rng = np.random.default_rng(4)
    x, w, g, geo = _conv_case(rng, "conv")
    sel = np.array([0, 5])
    ww = w.copy()
    backward.conv2d_backward_weight_update(g, np.ascontiguousarray(x[..., sel]), ww, None,
                                           np.full(6, 0.01, f32), SGD(0.5), x_scale=0.05,
                                           x_zero_point=0, sel=sel, **geo)
    others = np.setdiff1d(np.arange(12), sel)
    assert np.array_equal(ww[..., others], w[..., others])
    assert not np.array_equal(ww[..., sel], w[..., sel])


# ---- PRNG ---------------------------------------------------------------------

def test_xorshift32_matches_python():
    state = np.array([2463534242], np.uint32)
    got = backward.xorshift32(state, 1000)
    x, ref = 2463534242, []
    for _ in range(1000):
        x = xorshift32_py(x)
        ref.append(x)
    assert got.tolist() == ref and int(state[0]) == ref[-1]
    assert ref[0] == 723471715  # Marsaglia's published first output for this seed
    st2 = np.array([2463534242], np.uint32)
    u = backward.xorshift32_uniform(st2, 1000)
    assert np.array_equal(u, (np.array(ref, np.uint64) >> 8).astype(f32) * f32(2.0 ** -24))
    assert u.min() >= 0 and u.max() < 1


def test_bad_optimizer_arguments():
    with pytest.raises(OptimizerError):
        SGD(0.1, seed=0)
    with pytest.raises(OptimizerError):
        SGD(0.1, rounding="up")
    with pytest.raises(OptimizerError):
        SGD(0.1, momentum=1.0)
    with pytest.raises(OptimizerError):
        SGD(0.1, rounding="master").new_state(4, 0)
    # C side: a zero PRNG state is refused and nothing is written
    w = np.ones(4, np.int8)
    rng = np.zeros(1, np.uint32)
    st = _ckernels.sgd_update("conv", (0.1, 0.0, 1, 1), rng, None, None, None, 0.1,
                              np.ones(1, f32), (1, 1, 1, 4), w, None, 4, 4, None,
                              np.ones(4, f32), None)
    assert st == -3 and w.tolist() == [1, 1, 1, 1]
    # momentum without its buffer
    st = _ckernels.sgd_update("conv", (0.1, 0.5, 1, 0), None, None, None, None, 0.1,
                              np.ones(1, f32), (1, 1, 1, 4), w, None, 4, 4, None,
                              np.ones(4, f32), None)
    assert st == -1 and w.tolist() == [1, 1, 1, 1]
    with pytest.raises(KernelError):
        backward.sgd_update(np.ones((1, 1, 1, 4), np.int8), None, np.ones((1, 1, 1, 4), f32), None,
                            [0.0], 0.1, SGD(0.1))


def test_trained_weights_layouts():
    w = np.arange(2 * 3 * 3 * 4, dtype=np.int8).reshape(2, 3, 3, 4)
    assert np.array_equal(trained_weights(w, [1, 3]), w[..., [1, 3]])
    dw = np.arange(9 * 6, dtype=np.int8).reshape(1, 3, 3, 6)
    t = trained_weights(dw, [2], depthwise=True, in_channels=3)  # mult 2 -> channels 4, 5
    assert t.shape == (2, 3, 3) and np.array_equal(t[1], dw[0, :, :, 5])


# ---- libm-free exp / log ---------------------------------------------------------

def _ulps(got, ref64):
    sp = np.spacing(np.abs(ref64).astype(f32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref64) / sp


def test_expf_logf_accuracy_and_specials():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-87.3, 88.7, 300000), rng.uniform(-1, 1, 100000),
                        rng.uniform(-30, 0, 100000)]).astype(f32)
    assert _ulps(backward.expf(x), np.exp(x.astype(np.float64))).max() < 1.0
    bits = rng.integers(1, 0x7F800000, 400000, dtype=np.uint32)
    xl = bits.view(f32)
    assert _ulps(backward.logf(xl), np.log(xl.astype(np.float64))).max() < 1.0
    e = backward.expf(np.array([0, -np.inf, np.inf, 89.0, -104.0, np.nan], f32))
    assert e[0] == 1 and e[1] == 0 and np.isinf(e[2]) and np.isinf(e[3]) and e[4] == 0 and np.isnan(e[5])
    lg = backward.logf(np.array([1, 0, -1, np.inf, np.nan], f32))
    assert lg[0] == 0 and lg[1] == -np.inf and np.isnan(lg[2]) and lg[3] == np.inf and np.isnan(lg[4])


def _expf_replica(x):
    """tq_expf in numpy float32 elementwise ops (normal range, |x| > 2^-13)."""
    x = x.astype(f32)
    hx = x.view(np.uint32) & 0x7FFFFFFF
    sign = (x.view(np.uint32) >> 31).astype(np.int32)
    ln2hi, ln2lo, invln2 = f32(6.9314575195e-01), f32(1.4286067653e-06), f32(1.4426950216e+00)
    p1, p2 = f32(1.6666625440e-1), f32(-2.7667332906e-3)
    big = hx > 0x3F851592
    kb = (invln2 * x + np.where(sign == 1, f32(-0.5), f32(0.5))).astype(np.int32)  # trunc
    k = np.where(big, kb, 1 - 2 * sign)
    kf = k.astype(f32)
    hi = x - kf * ln2hi
    lo = kf * ln2lo
    r = hi - lo
    xx = r * r
    c = r - xx * (p1 + xx * p2)
    y = f32(1) + (r * c / (f32(2) - c) - lo + hi)
    return y * ((k + 127).astype(np.uint32) << 23).view(f32)


def _logf_replica(x):
    """tq_logf in numpy float32 elementwise ops (normal x > 0)."""
    ix = x.view(np.uint32) + np.uint32(0x3F800000 - 0x3F3504F3)
    k = (ix >> 23).astype(np.int32) - 0x7F
    m = ((ix & 0x007FFFFF) + 0x3F3504F3).astype(np.uint32).view(f32)
    f = m - f32(1)
    s = f / (f32(2) + f)
    z = s * s
    w = z * z
    t1 = w * (f32(4.0000972152e-01) + w * f32(2.4279078841e-01))
    t2 = z * (f32(6.6666662693e-01) + w * f32(2.8498786688e-01))
    R = t2 + t1
    hfsq = f32(0.5) * f * f
    dk = k.astype(f32)
    return s * (hfsq + R) + dk * f32(9.0580006145e-06) - hfsq + f + dk * f32(6.9313812256e-01)


def test_expf_logf_bits_equal_float32_replica():
    """The C build must evaluate exactly the documented float32 operations
    (no FMA contraction, no excess precision): same bits as numpy float32."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-87.0, 88.0, 200000).astype(f32)
    x = x[np.abs(x) > 0.35]  # the k != 0 branch (k == 0 is a subset of the same formula)
    assert np.array_equal(backward.expf(x).view(np.uint32), _expf_replica(x).view(np.uint32))
    xl = rng.integers(0x00800000, 0x7F800000, 200000, dtype=np.uint32).view(f32)
    xl = xl[xl != 1]
    assert np.array_equal(backward.logf(xl).view(np.uint32), _logf_replica(xl).view(np.uint32))
