"""Backward kernels against PyTorch autograd on a float64 simulation of the
same quantized layer: dequantized int8 input and weights are leaf tensors,
the layer runs in real arithmetic (zero padding = the input zero point), and
the int8 forward's clamp mask is applied to grad_out as a straight-through
estimator. Tolerance: 1e-4 of the reference gradient's max |value| (fp32
accumulation is far inside it; a wrong index or a missing term is not)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tinyqt import _ckernels, backward, kernels, quant
from tinyqt.errors import KernelError, ShapeError

from conftest import require

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # skips on a user's machine without the test extras; fails in CI
    torch = F = None


@pytest.fixture(autouse=True)
def _torch_present():
    require(torch is not None, "PyTorch is not installed (pip install torch): it is the backward oracle")

RTOL = 1e-4


def assert_grad_close(got, ref, what):
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    scale = max(np.abs(ref).max(), 1e-30)
    err = np.abs(got - ref).max()
    assert err <= RTOL * scale + 1e-30, f"{what}: max error {err:.3g} vs max |ref| {scale:.3g}"


@st.composite
def conv_cases(draw):
    k = draw(st.sampled_from([1, 3, 5, 7]))
    depthwise = draw(st.booleans())
    c_in = draw(st.integers(1, 12))
    mult = draw(st.sampled_from([1, 2])) if depthwise else 1
    c_out = c_in * mult if depthwise else draw(st.integers(1, 12))
    stride = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])))
    dil = draw(st.sampled_from([1, 1, 2]))
    eff = (k - 1) * dil + 1
    h = draw(st.integers(1, 11))
    w = draw(st.integers(1, 11))
    pads = [draw(st.integers(0, eff - 1)) for _ in range(4)]
    for size, a, b in ((h, 0, 2), (w, 1, 3)):
        while size + pads[a] + pads[b] < eff:
            pads[b] += 1
        while pads[b] >= eff:
            pads[b] -= 1
    n = draw(st.integers(1, 2))
    sel_kind = draw(st.sampled_from(["all", "first", "subset"]))
    seed = draw(st.integers(0, 2**31 - 1))
    act = draw(st.sampled_from(["NONE", "RELU", "RELU6"]))
    return dict(k=k, depthwise=depthwise, c_in=c_in, c_out=c_out, stride=stride, dil=dil, h=h,
                w=w, pads=tuple(pads), n=n, sel_kind=sel_kind, seed=seed, act=act)


def make_layer(case):
    rng = np.random.default_rng(case["seed"])
    c_in, c_out, k = case["c_in"], case["c_out"], case["k"]
    x = rng.integers(-128, 128, (case["n"], case["h"], case["w"], c_in), dtype=np.int8)
    if case["depthwise"]:
        w = rng.integers(-127, 128, (1, k, k, c_out), dtype=np.int8)
    else:
        w = rng.integers(-127, 128, (c_out, k, k, c_in), dtype=np.int8)
    bias = rng.integers(-2000, 2000, c_out, dtype=np.int32)
    x_scale, x_zp = np.float32(rng.uniform(0.01, 0.1)), int(rng.integers(-20, 20))
    w_scales = rng.uniform(0.002, 0.05, c_out).astype(np.float32)
    y_scale, y_zp = np.float32(rng.uniform(0.05, 0.4)), int(rng.integers(-30, 30))
    m, s = quant.conv_multipliers(x_scale, w_scales, y_scale)
    lo, hi = quant.activation_range(case["act"], y_scale, y_zp)
    stride, dil = case["stride"], (case["dil"], case["dil"])
    y = kernels.conv2d(x, w, bias, m, s, stride=stride, padding=case["pads"], dilation=dil,
                       input_offset=-x_zp, output_offset=y_zp, act_min=lo, act_max=hi,
                       depthwise=case["depthwise"])
    mask = backward.clamp_mask(y, lo, hi)
    grad_out = rng.standard_normal(y.shape).astype(np.float32)
    if case["sel_kind"] == "all":
        sel = None
    elif case["sel_kind"] == "first":
        sel = np.arange(int(np.ceil(c_in * rng.choice([0.125, 0.25, 0.5, 1.0]))))
    else:
        sel = np.sort(rng.choice(c_in, int(rng.integers(1, c_in + 1)), replace=False))
    return dict(x=x, w=w, bias=bias, x_scale=x_scale, x_zp=x_zp, w_scales=w_scales, y=y, lo=lo,
                hi=hi, mask=mask, grad_out=grad_out, sel=sel, stride=stride, dil=dil, rng=rng)


def torch_conv_grads(case, L):
    """(grad_x [N,H,W,C_in], grad_w in the kernel's filter layout, grad_b)."""
    xr = torch.tensor(np.float64(L["x_scale"]) * (L["x"].astype(np.float64) - L["x_zp"]),
                      requires_grad=True)
    ws = L["w_scales"].astype(np.float64)
    if case["depthwise"]:
        wr = torch.tensor(L["w"].astype(np.float64) * ws, requires_grad=True)  # [1,KH,KW,C_out]
        wt = wr.permute(3, 0, 1, 2)  # [C_out, 1, KH, KW]
        groups = case["c_in"]
    else:
        wr = torch.tensor(L["w"].astype(np.float64) * ws[:, None, None, None], requires_grad=True)
        wt = wr.permute(0, 3, 1, 2)
        groups = 1
    br = torch.tensor(np.float64(L["x_scale"]) * ws * L["bias"], requires_grad=True)
    pt, pl, pb, pr = case["pads"]
    xp = F.pad(xr.permute(0, 3, 1, 2), (pl, pr, pt, pb))
    out = F.conv2d(xp, wt, br, stride=L["stride"], dilation=L["dil"], groups=groups)
    out = out.permute(0, 2, 3, 1)
    assert tuple(out.shape) == L["y"].shape
    passm = backward.unpack_mask(L["mask"], L["y"].shape)
    g = torch.tensor(L["grad_out"].astype(np.float64) * passm)
    out.backward(g)
    return xr.grad.numpy(), wr.grad.numpy(), br.grad.numpy()


@settings(max_examples=160, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_cases())
def test_conv_gradients_match_torch(case):
    L = make_layer(case)
    gx_ref, gw_ref, gb_ref = torch_conv_grads(case, L)
    common = dict(stride=L["stride"], padding=case["pads"], dilation=L["dil"])
    gx = backward.conv2d_backward_input(L["grad_out"], L["w"], L["w_scales"], L["x"].shape,
                                        depthwise=case["depthwise"], mask=L["mask"], **common)
    assert_grad_close(gx, gx_ref, "grad_x")

    sel = L["sel"]
    idx = np.arange(case["c_in"]) if sel is None else sel
    x_saved = np.ascontiguousarray(L["x"][..., idx])
    gw, gb = backward.conv2d_backward_weight(
        L["grad_out"], x_saved, case["k"], x_scale=L["x_scale"], x_zero_point=L["x_zp"],
        depthwise=case["depthwise"], in_channels=case["c_in"], sel=sel, mask=L["mask"], **common)
    if case["depthwise"]:
        mult = case["c_out"] // case["c_in"]
        chans = (idx[:, None] * mult + np.arange(mult)).reshape(-1)
        assert_grad_close(gw, gw_ref[0][:, :, chans].transpose(2, 0, 1), "grad_w (depthwise)")
        assert_grad_close(gb, gb_ref[chans], "grad_b (depthwise)")
    else:
        assert_grad_close(gw, gw_ref[..., idx], "grad_w")
        assert_grad_close(gb, gb_ref, "grad_b")
    assert_grad_close(backward.bias_backward(L["grad_out"], L["mask"]), gb_ref, "bias_backward")


def test_mask_is_strictly_inside_clamp_range():
    y = np.array([-128, -127, 0, 5, 6, 126, 127, 3, -5], dtype=np.int8)
    m = backward.clamp_mask(y, 0, 6)
    assert m.tolist() == [0b10001000, 0]  # only 5 (bit 3) and 3 (bit 7) pass
    assert backward.unpack_mask(backward.clamp_mask(y), y.shape).tolist() == \
        [False, True, True, True, True, True, False, True, True]


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 13), c_in=st.integers(1, 70),
       c_out=st.integers(1, 75), stride=st.sampled_from([1, 2]),
       mask_pass=st.sampled_from([None, 0.5, 0.1]), seed=st.integers(0, 2**31 - 1))
def test_1x1_blocked_kernels_equal_plain_loops_and_float32_replay(n, h, w, c_in, c_out, stride,
                                                                  mask_pass, seed):
    """The register-blocked 1x1 backward (4x4 blocks, channel and pixel tiles
    of 32, short tails; with a mask, the output channels masked at all four
    pixels of a block left out) gives the bits of the dense kernel's plain
    loops, and of a NumPy float32 replay of the documented order (terms added
    one output channel / one pixel at a time from +0.0, products rounded
    first). mask_pass: the fraction of gradients the mask passes (None: no
    mask; 0.1 leaves out most channels of most blocks)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, h, w, c_in), dtype=np.int8)
    wt = rng.integers(-127, 128, (c_out, 1, 1, c_in), dtype=np.int8)
    ws = rng.uniform(0.01, 0.05, c_out).astype(np.float32)
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    g = rng.standard_normal((n, oh, ow, c_out)).astype(np.float32)
    mask = None if mask_pass is None else np.packbits(rng.random(g.size) < mask_pass, bitorder="little")
    x_zp, x_scale = int(rng.integers(-20, 20)), np.float32(0.05)
    params = (stride, stride, 0, 0, 1, 1, -x_zp, 0, -128, 127)
    outs = {}
    for kind in ("conv", "1x1"):
        gi = np.full(x.shape, np.nan, np.float32)
        assert _ckernels.conv_backward_input(kind, params, ws, g.shape, g.reshape(-1), mask, wt.shape,
                                             wt.reshape(-1), x.shape, gi.reshape(-1)) == 0
        gw = np.full(wt.shape, np.nan, np.float32)
        gb = np.full(c_out, np.nan, np.float32)
        assert _ckernels.conv_backward_weight(kind, params, x_scale, x.shape, x.reshape(-1), g.shape,
                                              g.reshape(-1), mask, gw.shape, gw.reshape(-1), gb) == 0
        outs[kind] = (gi, gw, gb)
    for a, b in zip(outs["conv"], outs["1x1"]):
        assert np.array_equal(_bits(a), _bits(b))

    passm = np.ones(g.shape, bool) if mask is None else backward.unpack_mask(mask, g.shape)
    gm = np.where(passm, g, np.float32(0)).reshape(-1, c_out)
    gs = gm * ws
    wf = wt.reshape(c_out, c_in).astype(np.float32)
    acc = np.zeros((gm.shape[0], c_in), np.float32)
    for oc in range(c_out):
        acc = acc + gs[:, oc:oc + 1] * wf[oc]
    gi_ref = np.zeros(x.shape, np.float32)
    gi_ref[:, ::stride, ::stride, :] = acc.reshape(n, oh, ow, c_in)
    assert np.array_equal(_bits(outs["1x1"][0]), _bits(gi_ref))
    xs = (x[:, ::stride, ::stride, :].astype(np.int32) - x_zp).astype(np.float32).reshape(-1, c_in)
    accw = np.zeros((c_out, c_in), np.float32)
    accb = np.zeros(c_out, np.float32)
    for p in range(gm.shape[0]):
        accw = accw + gm[p][:, None] * xs[p][None, :]
        accb = accb + gm[p]
    assert np.array_equal(_bits(outs["1x1"][1].reshape(c_out, c_in)), _bits(accw * x_scale))
    assert np.array_equal(_bits(outs["1x1"][2]), _bits(accb))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9), c_in=st.integers(1, 9),
       c_out=st.integers(1, 40), k=st.sampled_from([1, 2, 3, 5]), stride=st.sampled_from([1, 2, 3]),
       dil=st.sampled_from([1, 2]), masked=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_dense_gradients_equal_float32_replay(n, h, w, c_in, c_out, k, stride, dil, masked, seed):
    """The register-blocked dense conv gradients (one pixel x four input
    channels for the input, four output x four saved channels per tap for
    the weights, pixel tiles of 32) give, bit for bit, a NumPy float32
    replay of the documented order: (oy, ox, oc, ky, kx) per input element,
    the output pixels in order per weight, from +0.0."""
    rng = np.random.default_rng(seed)
    eff = (k - 1) * dil + 1
    pads = [int(v) for v in rng.integers(0, eff, 4)]
    h, w = max(h, eff - pads[0] - pads[2]), max(w, eff - pads[1] - pads[3])
    oh = (h + pads[0] + pads[2] - eff) // stride + 1
    ow = (w + pads[1] + pads[3] - eff) // stride + 1
    wt = rng.integers(-127, 128, (c_out, k, k, c_in), dtype=np.int8)
    ws = rng.uniform(0.01, 0.05, c_out).astype(np.float32)
    g = rng.standard_normal((n, oh, ow, c_out)).astype(np.float32)
    mask = rng.integers(0, 256, (g.size + 7) // 8, dtype=np.uint8) if masked else None
    kw = dict(stride=(stride, stride), padding=tuple(pads), dilation=(dil, dil), mask=mask)
    gi = backward.conv2d_backward_input(g, wt, ws, (n, h, w, c_in), **kw)
    passm = np.ones(g.shape, bool) if mask is None else backward.unpack_mask(mask, g.shape)
    gs = np.where(passm, g, np.float32(0)) * ws
    wf = wt.astype(np.float32)
    ref = np.zeros((n, h, w, c_in), np.float32)
    taps = [(ky, kx) for ky in range(k) for kx in range(k)]
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for oc in range(c_out):
                    for ky, kx in taps:
                        iy, ix = oy * stride - pads[0] + ky * dil, ox * stride - pads[1] + kx * dil
                        if 0 <= iy < h and 0 <= ix < w:
                            ref[b, iy, ix] = ref[b, iy, ix] + gs[b, oy, ox, oc] * wf[oc, ky, kx]
    assert np.array_equal(_bits(gi), _bits(ref))

    x = rng.integers(-128, 128, (n, h, w, c_in), dtype=np.int8)
    n_sel = int(rng.integers(1, c_in + 1))
    x_zp, x_scale = int(rng.integers(-20, 20)), np.float32(0.03)
    gw, gb = backward.conv2d_backward_weight(g, np.ascontiguousarray(x[..., :n_sel]), k, x_scale=x_scale,
                                             x_zero_point=x_zp, **kw)
    gm = np.where(passm, g, np.float32(0))
    xf = (x[..., :n_sel].astype(np.int32) - x_zp).astype(np.float32)
    rw = np.zeros((c_out, k, k, n_sel), np.float32)
    rb = np.zeros(c_out, np.float32)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                rb = rb + gm[b, oy, ox]
                for ky, kx in taps:
                    iy, ix = oy * stride - pads[0] + ky * dil, ox * stride - pads[1] + kx * dil
                    if 0 <= iy < h and 0 <= ix < w:
                        rw[:, ky, kx] = rw[:, ky, kx] + gm[b, oy, ox][:, None] * xf[b, iy, ix][None, :]
    assert np.array_equal(_bits(gw), _bits(rw * x_scale))
    assert np.array_equal(_bits(gb), _bits(rb))


def _dw_input_replay(g, passm, ws, wt, in_shape, stride, pads, dil):
    """NumPy float32 replay of the depthwise input gradient's documented
    order: (g * w_scale) * w added from +0.0 over the output pixels in
    row-major order."""
    n, h, w, c = in_shape
    k = wt.shape[1]
    gs = np.where(passm, g, np.float32(0)) * ws
    wf = wt[0].astype(np.float32)
    ref = np.zeros(in_shape, np.float32)
    for b in range(n):
        for oy in range(g.shape[1]):
            for ox in range(g.shape[2]):
                for ky in range(k):
                    for kx in range(k):
                        iy, ix = oy * stride - pads[0] + ky * dil, ox * stride - pads[1] + kx * dil
                        if 0 <= iy < h and 0 <= ix < w:
                            ref[b, iy, ix] = ref[b, iy, ix] + gs[b, oy, ox] * wf[ky, kx]
    return ref


def _dw_weight_replay(g, passm, x, sel, x_zp, k, stride, pads, dil):
    """NumPy float32 replay of the depthwise weight gradient of the channels
    sel (before the input scale) and of the bias: g * (x - zero point)
    added from +0.0 over the output pixels in row-major order."""
    n, h, w, _ = x.shape
    gm = np.where(passm, g, np.float32(0))[..., sel]
    xf = (x[..., sel].astype(np.int32) - x_zp).astype(np.float32)
    rw = np.zeros((len(sel), k, k), np.float32)
    rb = np.zeros(len(sel), np.float32)
    for b in range(n):
        for oy in range(g.shape[1]):
            for ox in range(g.shape[2]):
                rb = rb + gm[b, oy, ox]
                for ky in range(k):
                    for kx in range(k):
                        iy, ix = oy * stride - pads[0] + ky * dil, ox * stride - pads[1] + kx * dil
                        if 0 <= iy < h and 0 <= ix < w:
                            rw[:, ky, kx] = rw[:, ky, kx] + gm[b, oy, ox] * xf[b, iy, ix]
    return rw, rb


@pytest.mark.parametrize("w,stride", [(50, 1), (140, 1), (200, 2)])
def test_depthwise_gradients_of_wide_maps_keep_the_order(w, stride):
    """Maps too wide for the gather path's factor rows (rows x out_w x 4 >
    512 floats) and for the row-wise weight rows' buffer (> 768 floats)
    take the scatter paths: the replays' bits too."""
    rng = np.random.default_rng(w)
    n, h, c, k, pads = 1, 4, 5, 3, (1, 1, 1, 1)
    oh, ow = (h + 2 - k) // stride + 1, (w + 2 - k) // stride + 1
    wt = rng.integers(-127, 128, (1, k, k, c), dtype=np.int8)
    ws = rng.uniform(0.01, 0.05, c).astype(np.float32)
    g = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    mask = rng.integers(0, 256, (g.size + 7) // 8, dtype=np.uint8)
    gi = backward.conv2d_backward_input(g, wt, ws, (n, h, w, c), stride=(stride, stride), padding=pads,
                                        depthwise=True, mask=mask)
    passm = backward.unpack_mask(mask, g.shape)
    assert np.array_equal(_bits(gi), _bits(_dw_input_replay(g, passm, ws, wt, (n, h, w, c), stride, pads, 1)))
    x = rng.integers(-128, 128, (n, h, w, c), dtype=np.int8)
    sel = np.array([0, 2, 3], np.int32)
    gw, gb = backward.conv2d_backward_weight(g, np.ascontiguousarray(x[..., sel]), k, x_scale=np.float32(0.03),
                                             x_zero_point=7, stride=(stride, stride), padding=pads,
                                             depthwise=True, in_channels=c, sel=sel, mask=mask)
    rw, rb = _dw_weight_replay(g, passm, x, sel, 7, k, stride, pads, 1)
    assert np.array_equal(_bits(gw), _bits(rw * np.float32(0.03)))
    assert np.array_equal(_bits(gb), _bits(rb))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 11),
       k=st.sampled_from([1, 3, 5]), stride=st.sampled_from([1, 2, 3]), dil=st.sampled_from([1, 2]),
       masked=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_depthwise_gradients_equal_float32_replay(n, h, w, c, k, stride, dil, masked, seed):
    """The channel-blocked depthwise input and weight gradients give, bit for
    bit, a NumPy float32 replay of the documented order: terms added from
    +0.0 over the output pixels in row-major order ((g * w_scale) * w for the
    input, g * (x - zero point) for the weights of a channel subset, then
    times the input scale)."""
    rng = np.random.default_rng(seed)
    eff = (k - 1) * dil + 1
    pads = [int(v) for v in rng.integers(0, eff, 4)]
    h, w = max(h, eff - pads[0] - pads[2]), max(w, eff - pads[1] - pads[3])
    oh = (h + pads[0] + pads[2] - eff) // stride + 1
    ow = (w + pads[1] + pads[3] - eff) // stride + 1
    wt = rng.integers(-127, 128, (1, k, k, c), dtype=np.int8)
    ws = rng.uniform(0.01, 0.05, c).astype(np.float32)
    g = rng.standard_normal((n, oh, ow, c)).astype(np.float32)
    mask = rng.integers(0, 256, (g.size + 7) // 8, dtype=np.uint8) if masked else None
    gi = backward.conv2d_backward_input(g, wt, ws, (n, h, w, c), stride=(stride, stride), padding=tuple(pads),
                                        dilation=(dil, dil), depthwise=True, mask=mask)
    passm = np.ones(g.shape, bool) if mask is None else backward.unpack_mask(mask, g.shape)
    assert np.array_equal(_bits(gi), _bits(_dw_input_replay(g, passm, ws, wt, (n, h, w, c), stride, pads, dil)))

    # the weight gradient of a channel subset, blocked four channels at a time
    x = rng.integers(-128, 128, (n, h, w, c), dtype=np.int8)
    sel = np.sort(rng.choice(c, int(rng.integers(1, c + 1)), replace=False)).astype(np.int32)
    x_zp, x_scale = int(rng.integers(-20, 20)), np.float32(0.03)
    gw, gb = backward.conv2d_backward_weight(g, np.ascontiguousarray(x[..., sel]), k, x_scale=x_scale,
                                             x_zero_point=x_zp, stride=(stride, stride), padding=tuple(pads),
                                             dilation=(dil, dil), depthwise=True, in_channels=c, sel=sel,
                                             mask=mask)
    rw, rb = _dw_weight_replay(g, passm, x, sel, x_zp, k, stride, pads, dil)
    assert np.array_equal(_bits(gw), _bits(rw * x_scale))
    assert np.array_equal(_bits(gb), _bits(rb))


@pytest.mark.parametrize("seed", range(6))
def test_fc_gradients_match_torch(seed):
    rng = np.random.default_rng(100 + seed)
    b_n, d_in, d_out = int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 20))
    x = rng.integers(-128, 128, (b_n, d_in), dtype=np.int8)
    w = rng.integers(-127, 128, (d_out, d_in), dtype=np.int8)
    bias = rng.integers(-500, 500, d_out, dtype=np.int32)
    xs, xz = np.float32(0.05), int(rng.integers(-10, 10))
    ws = rng.uniform(0.005, 0.05, d_out).astype(np.float32)
    ys, yz = np.float32(0.3), 3
    m, s = quant.conv_multipliers(xs, ws, ys)
    y = kernels.fully_connected(x, w, bias, m, s, input_offset=-xz, output_offset=yz, act_min=yz,
                                act_max=127)
    mask = backward.clamp_mask(y, yz, 127)
    g = rng.standard_normal(y.shape).astype(np.float32)
    xr = torch.tensor(np.float64(xs) * (x.astype(np.float64) - xz), requires_grad=True)
    wr = torch.tensor(w * ws.astype(np.float64)[:, None], requires_grad=True)
    br = torch.tensor(np.float64(xs) * ws.astype(np.float64) * bias, requires_grad=True)
    F.linear(xr, wr, br).backward(torch.tensor(g * backward.unpack_mask(mask, y.shape), dtype=torch.float64))
    assert_grad_close(backward.fc_backward_input(g, w, ws, mask), xr.grad.numpy(), "fc grad_x")
    sel = np.sort(rng.choice(d_in, int(rng.integers(1, d_in + 1)), replace=False))
    gw, gb = backward.fc_backward_weight(g, np.ascontiguousarray(x[:, sel]), x_scale=xs,
                                         x_zero_point=xz, mask=mask)
    assert_grad_close(gw, wr.grad.numpy()[:, sel], "fc grad_w")
    assert_grad_close(gb, br.grad.numpy(), "fc grad_b")


@pytest.mark.parametrize("seed", range(12))
def test_avgpool_mean_add_match_torch(seed):
    rng = np.random.default_rng(200 + seed)
    n, h, wd, c = 2, int(rng.integers(1, 10)), int(rng.integers(1, 10)), int(rng.integers(1, 6))
    fh, fw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(wd, 4) + 1))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pt, pl = int(rng.integers(0, fh)), int(rng.integers(0, fw))
    pb, pr = int(rng.integers(0, fh)), int(rng.integers(0, fw))
    x = rng.integers(-128, 128, (n, h, wd, c), dtype=np.int8)
    y = kernels.avgpool2d(x, (fh, fw), stride=stride, padding=(pt, pl, pb, pr), act_min=-100, act_max=100)
    mask = backward.clamp_mask(y, -100, 100)
    g = rng.standard_normal(y.shape).astype(np.float32)
    # real avgpool over in-bounds pixels only: sum pool / in-bounds count
    xr = torch.tensor(x.astype(np.float64) * 0.1, requires_grad=True)
    xp = F.pad(xr.permute(0, 3, 1, 2), (pl, pr, pt, pb))
    ones = F.pad(torch.ones(1, 1, h, wd, dtype=torch.float64), (pl, pr, pt, pb))
    cnt = F.avg_pool2d(ones, (fh, fw), stride) * (fh * fw)
    out = (F.avg_pool2d(xp, (fh, fw), stride) * (fh * fw) / cnt).permute(0, 2, 3, 1)
    assert tuple(out.shape) == y.shape
    out.backward(torch.tensor(g * backward.unpack_mask(mask, y.shape), dtype=torch.float64))
    gi = backward.avgpool2d_backward(g, x.shape, (fh, fw), stride=stride, padding=(pt, pl, pb, pr),
                                     mask=mask)
    assert_grad_close(gi, xr.grad.numpy(), "avgpool grad_x")

    gm = rng.standard_normal((n, 1, 1, c)).astype(np.float32)
    mmask = rng.integers(0, 256, (n * c + 7) // 8, dtype=np.uint8)
    xr = torch.tensor(x.astype(np.float64), requires_grad=True)
    xr.mean(dim=(1, 2), keepdim=True).backward(
        torch.tensor(gm * backward.unpack_mask(mmask, gm.shape), dtype=torch.float64))
    assert_grad_close(backward.mean_backward(gm, x.shape, mmask), xr.grad.numpy(), "mean grad_x")

    a = torch.tensor(rng.standard_normal(x.shape), requires_grad=True)
    b = torch.tensor(rng.standard_normal(x.shape), requires_grad=True)
    gadd = rng.standard_normal(x.shape).astype(np.float32)
    amask = rng.integers(0, 256, (x.size + 7) // 8, dtype=np.uint8)
    (a + b).backward(torch.tensor(gadd * backward.unpack_mask(amask, x.shape), dtype=torch.float64))
    ga, gb = backward.add_backward(gadd, amask)
    assert_grad_close(ga, a.grad.numpy(), "add grad_a")
    assert_grad_close(gb, b.grad.numpy(), "add grad_b")


def test_softmax_xent_and_head_match_torch():
    rng = np.random.default_rng(7)
    bsz, d, k = 3, 17, 10
    f = rng.standard_normal((bsz, d)).astype(np.float32)
    w = (rng.standard_normal((k, d)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(k) * 0.1).astype(np.float32)
    labels = rng.integers(0, k, bsz)
    ft = torch.tensor(f.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    bt = torch.tensor(b.astype(np.float64), requires_grad=True)
    logits_t = F.linear(ft, wt, bt)
    loss_t = F.cross_entropy(logits_t, torch.tensor(labels))
    loss_t.backward()
    logits = backward.linear(f, w, b)
    assert_grad_close(logits, logits_t.detach().numpy(), "logits")
    loss, gl = backward.softmax_cross_entropy(logits, labels)
    assert abs(loss - loss_t.item()) <= 1e-5 * abs(loss_t.item())
    lr = 0.1
    w2, b2 = w.copy(), b.copy()
    gf = backward.linear_backward_update(f, gl, w2, b2, lr)
    assert_grad_close(gf, ft.grad.numpy(), "head grad_f")
    assert_grad_close((w - w2) / lr, wt.grad.numpy(), "head grad_w")
    assert_grad_close((b - b2) / lr, bt.grad.numpy(), "head grad_b")
    # int8 head: loss on dequantized int8 logits
    q = rng.integers(-128, 128, (bsz, k), dtype=np.int8)
    lt = torch.tensor(0.125 * (q.astype(np.float64) - 5), requires_grad=True)
    lq = F.cross_entropy(lt, torch.tensor(labels))
    lq.backward()
    loss8, g8 = backward.softmax_cross_entropy_s8(q, 0.125, 5, labels)
    assert abs(loss8 - lq.item()) <= 1e-5 * abs(lq.item())
    assert_grad_close(g8, lt.grad.numpy(), "int8 head grad_logits")


def test_bad_arguments_raise_and_kernels_write_nothing():
    g = np.zeros((1, 3, 3, 4), np.float32)
    w = np.ones((4, 3, 3, 2), np.int8)
    with pytest.raises(ShapeError, match="grad_out"):
        backward.conv2d_backward_input(g, w, np.ones(4, np.float32), (1, 4, 4, 2))
    with pytest.raises(ShapeError, match="grad_out"):
        backward.conv2d_backward_input(g.astype(np.float64), w, np.ones(4), (1, 5, 5, 2))
    with pytest.raises(ShapeError, match="sel"):
        backward.conv2d_backward_weight(g, np.zeros((1, 5, 5, 2), np.int8), 3, x_scale=0.1,
                                        x_zero_point=0, sel=[1, 0])
    with pytest.raises(ShapeError, match="w_scales"):
        backward.conv2d_backward_input(g, w, np.ones(3, np.float32), (1, 5, 5, 2))
    with pytest.raises(KernelError, match="TQ_ERR_PARAM"):
        backward.conv2d_backward_input(g, w, np.zeros(4, np.float32), (1, 5, 5, 2))
    # direct C call with stride 0: error status and the output untouched
    gi = np.full(50, 7.0, np.float32)
    st = _ckernels.conv_backward_input("conv", (0, 1, 0, 0, 1, 1, 0, 0, -128, 127),
                                       np.ones(4, np.float32), g.shape, g.reshape(-1), None, w.shape,
                                       w.reshape(-1), (1, 5, 5, 2), gi)
    assert st == -3 and np.all(gi == 7.0)


@pytest.mark.parametrize("k,h,w,c,n,masked", [(3, 8, 8, 16, 1, True), (3, 5, 9, 3, 2, False), (5, 7, 6, 5, 1, True),
                                              (7, 9, 9, 4, 1, True), (3, 1, 4, 7, 1, True), (5, 3, 2, 2, 1, False),
                                              (3, 6, 5, 13, 2, True), (7, 8, 3, 9, 1, True)])
def test_inplace_depthwise_input_gradient_is_bit_identical(k, h, w, c, n, masked):
    """The in-place kernel (one fp32 buffer and a row ring) against the
    out-of-place one: the same bits, with and without a clamp mask, for
    symmetric and asymmetric 'same' padding."""
    from tinyqt import backward as B
    rng = np.random.default_rng(k * 100 + h)
    for pad in ((k // 2, k // 2, k - 1 - k // 2, k - 1 - k // 2), (k - 1, 0, 0, k - 1)):
        g = rng.normal(0, 1, (n, h, w, c)).astype(np.float32)
        wt = rng.integers(-127, 128, (1, k, k, c), dtype=np.int8)
        ws = rng.uniform(0.001, 0.05, c).astype(np.float32)
        mask = B.clamp_mask(rng.integers(-128, 128, g.shape, dtype=np.int8), -90, 90) if masked else None
        ref = B.conv2d_backward_input(g, wt, ws, g.shape, padding=pad, depthwise=True, mask=mask)
        out = B.depthwise_backward_input_inplace(g.copy(), wt, ws, padding=pad, mask=mask)
        assert out.tobytes() == ref.tobytes()


def test_inplace_depthwise_rejects_what_it_cannot_do():
    from tinyqt import backward as B
    from tinyqt.errors import ShapeError
    g = np.zeros((1, 6, 6, 4), np.float32)
    with pytest.raises(ShapeError, match="stride 1"):
        B.depthwise_backward_input_inplace(g, np.zeros((1, 3, 3, 8), np.int8), np.ones(8, np.float32),
                                           padding=(1, 1, 1, 1))
    with pytest.raises(ShapeError, match="stride 1"):
        B.depthwise_backward_input_inplace(g, np.zeros((1, 3, 3, 4), np.int8), np.ones(4, np.float32),
                                           padding=(0, 0, 0, 0))
    with pytest.raises(ShapeError, match="at most 49 taps"):
        B.depthwise_backward_input_inplace(np.zeros((1, 9, 9, 4), np.float32), np.zeros((1, 9, 9, 4), np.int8),
                                           np.ones(4, np.float32), padding=(4, 4, 4, 4))
    assert not B.depthwise_inplace_ok((1, 9, 9, 4), 4, (1, 1), (4, 4, 4, 4), (1, 1))
    assert B.depthwise_inplace_ok((1, 7, 7, 4), 4, (1, 1), (3, 3, 3, 3), (1, 1))
