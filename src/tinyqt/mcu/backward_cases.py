"""Backward-kernel cases for the device firmware (tinyqt.mcu.cgen raw
cases): the host computes each result with tinyqt.backward, the firmware
calls the same C kernel and compares every byte. Used by the QEMU tests and
the MCU backward bench.

input_grad_case(): conv kxk / 1x1 / depthwise input gradient through a clamp
mask; inplace_input_grad_case(): the in-place depthwise one;
weight_grad_case(): the weight and bias gradients alone; fused_case():
the fused weight gradient + QAS update in place on the weights, bias,
optimizer buffers and PRNG state; bottleneck_case(): the streamed
inverted-bottleneck backward. All draw their data from rng; `macs` is the
forward layer's MAC count.
"""
import numpy as np

from .. import _ckernels, backward as B
from .cgen import c_float, raw_case

F32 = np.float32


def c_dims(shape):
    return "&(tq_dims){%d, %d, %d, %d}" % tuple(int(v) for v in shape)


def c_conv_params(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), x_zero_point=0, *, output_offset=0,
                  act=(-128, 127), clamp_mask="NULL"):
    return "&(tq_conv_params){%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %s}" % (
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], -x_zero_point, output_offset,
        act[0], act[1], clamp_mask)


def forward_mask_case(rng, name, h, w, c_in, c_out, k, stride, padding, depthwise=False):
    """A forward conv / 1x1 / depthwise asked for its clamp mask
    (tq_conv_params.clamp_mask): the device must give the host's output and
    mask bytes. The clamp range [-100, 90] makes both bounds bite."""
    from .. import kernels as K
    x = rng.integers(-128, 128, (1, h, w, c_in), dtype=np.int8)
    c_w = c_out if depthwise else c_in
    wt = rng.integers(-127, 128, (1, k, k, c_out) if depthwise else (c_out, k, k, c_w), dtype=np.int8)
    bias = rng.integers(-2000, 2000, c_out).astype(np.int32)
    mult = rng.integers(2**30, 2**31 - 1, c_out).astype(np.int32)
    shift = np.full(c_out, -7 if depthwise or k == 1 else -9, np.int32)
    y_probe = K.conv2d(x, wt, bias, mult, shift, stride=(stride, stride), padding=padding, input_offset=3,
                       output_offset=-5, act_min=-100, act_max=90, depthwise=depthwise)
    mask = np.zeros((y_probe.size + 7) // 8, np.uint8)
    y = K.conv2d(x, wt, bias, mult, shift, stride=(stride, stride), padding=padding, input_offset=3,
                 output_offset=-5, act_min=-100, act_max=90, depthwise=depthwise, mask_out=mask)
    kind = "depthwise" if depthwise else ("1x1" if k == 1 and not any(padding) else "conv")
    fn = {"depthwise": "tq_depthwise_conv_s8", "1x1": "tq_conv_1x1_s8", "conv": "tq_conv_s8"}[kind]
    params = c_conv_params((stride, stride), padding, x_zero_point=-3, output_offset=-5, act=(-100, 90),
                           clamp_mask="mask")
    call = (f"{fn}({params}, &(tq_channel_quant){{{{cn}}_mult, {{cn}}_shift}}, {c_dims(x.shape)}, {{cn}}_x, "
            f"{c_dims(wt.shape)}, {{cn}}_w, {{cn}}_bias, {c_dims(y.shape)}, y, scratch, scratch_size)")
    return raw_case(name, call, {"x": x, "w": wt, "bias": bias, "mult": mult, "shift": shift},
                    {"y": np.zeros_like(y), "mask": np.zeros_like(mask)}, {"y": y, "mask": mask},
                    scratch=_ckernels.conv_buffer_size(kind, tuple(x.shape), tuple(wt.shape)))


def c_sgd(opt):
    lr, momentum, qas, rounding = opt.params
    return f"&(tq_sgd_params){{{c_float(lr)}, {c_float(momentum)}, {qas}, {rounding}}}"


def c_state(rng="rng", wm="NULL", bm="NULL", master="NULL"):
    return f"&(tq_sgd_state){{{rng}, {wm}, {bm}, {master}}}"


def _out_hw(h, k, s, d, p0, p1):
    return (h + p0 + p1 - d * (k - 1) - 1) // s + 1


def forward_macs(g_shape, c_in, k, depthwise):
    """MACs of the forward layer whose output gradient has shape g_shape."""
    return int(np.prod(g_shape)) * k * k * (1 if depthwise else c_in)


def _layer(rng, h, w, c_in, c_out, k, stride, padding, depthwise=False, n=1, mask_range=(-100, 100)):
    oh = _out_hw(h, k, stride, 1, padding[0], padding[2])
    ow = _out_hw(w, k, stride, 1, padding[1], padding[3])
    x = rng.integers(-128, 128, (n, h, w, c_in), dtype=np.int8)
    wt = rng.integers(-127, 128, (1, k, k, c_out) if depthwise else (c_out, k, k, c_in), dtype=np.int8)
    g = rng.normal(0, 1e-2, (n, oh, ow, c_out)).astype(F32)
    ws = rng.uniform(0.002, 0.02, c_out).astype(F32)
    y = rng.integers(-128, 128, g.shape, dtype=np.int8)
    mask = B.clamp_mask(y, *mask_range)
    return x, wt, g, ws, mask


def input_grad_case(rng, name, h, w, c_in, c_out, k, stride, padding, depthwise=False, g_scale=1.0,
                    mask_range=(-100, 100)):
    """g_scale multiplies the output gradient (1e-36: subnormal terms and sums;
    an array broadcast against (1, oh, ow, c_out) scales some pixels only);
    a gradient passes the mask where the random int8 output is inside
    mask_range (the default passes 78%; None: no mask)."""
    x, wt, g, ws, mask = _layer(rng, h, w, c_in, c_out, k, stride, padding, depthwise,
                                mask_range=mask_range or (-100, 100))
    mask = mask if mask_range is not None else None
    g = (g * np.asarray(g_scale, F32)).astype(F32)
    gi = B.conv2d_backward_input(g, wt, ws, x.shape, stride=(stride, stride), padding=padding,
                                 depthwise=depthwise, mask=mask)
    pointwise = not depthwise and k == 1 and not any(padding)
    fn = ("tq_depthwise_conv_backward_input_f32" if depthwise else
          "tq_conv_1x1_backward_input_f32" if pointwise else "tq_conv_backward_input_f32")
    call = (f"{fn}({c_conv_params((stride, stride), padding)}, {{cn}}_ws, {c_dims(g.shape)}, {{cn}}_g, "
            f"{'{cn}_mask' if mask is not None else 'NULL'}, {c_dims(wt.shape)}, {{cn}}_w, {c_dims(x.shape)}, gi)")
    arrays = {"ws": ws, "g": g, "w": wt, **({"mask": mask} if mask is not None else {})}
    # gi starts as garbage: the kernels write every element, none adds to what was there
    return raw_case(name, call, arrays, {"gi": np.full_like(gi, -3.5)}, {"gi": gi},
                    macs=forward_macs(g.shape, c_in, k, depthwise))


def weight_grad_case(rng, name, h, w, c_in, c_out, k, stride, padding=(0, 0, 0, 0), *, depthwise=False,
                     g_scale=1.0, masked=True):
    """The weight and bias gradients alone (fp32 out, no update) of a conv
    kxk / 1x1 / depthwise layer, g scaled by g_scale (a number, or an array
    broadcast against the gradient), through a clamp mask or (masked False)
    none."""
    x, wt, g, ws, mask = _layer(rng, h, w, c_in, c_out, k, stride, padding, depthwise)
    mask = mask if masked else None
    g = (g * np.asarray(g_scale, F32)).astype(F32)
    x_zp, x_scale = int(rng.integers(-20, 20)), F32(0.02)
    gw, gb = B.conv2d_backward_weight(g, x, k, x_scale=x_scale, x_zero_point=x_zp, stride=(stride, stride),
                                      padding=padding, depthwise=depthwise, in_channels=c_in, mask=mask)
    head = (f"{c_conv_params((stride, stride), padding, x_zero_point=x_zp)}, {c_float(x_scale)}, "
            f"{c_dims(x.shape)}, {{cn}}_x, ")
    tail = f"{c_dims(g.shape)}, {{cn}}_g, {'{cn}_mask' if masked else 'NULL'}, "
    if depthwise:
        call = f"tq_depthwise_conv_backward_weight_f32({head}{c_in}, NULL, {tail}{c_dims(wt.shape)}, gw, gb)"
    else:
        pointwise = k == 1 and not any(padding)
        fn = "tq_conv_1x1_backward_weight_f32" if pointwise else "tq_conv_backward_weight_f32"
        call = f"{fn}({head}{tail}{c_dims(gw.shape)}, gw, gb)"
    # the outputs start as 7.0 so that an element the kernel never writes shows
    return raw_case(name, call, {"x": x, "g": g, "mask": mask} if masked else {"x": x, "g": g},
                    {"gw": np.full_like(gw, 7.0), "gb": np.full_like(gb, 7.0)}, {"gw": gw, "gb": gb},
                    macs=forward_macs(g.shape, c_in, k, depthwise))


def inplace_input_grad_case(rng, name, h, w, c, k, padding):
    """The in-place depthwise input gradient (stride 1, one fp32 buffer
    overwritten, a row ring as scratch) through a clamp mask."""
    _, wt, g, ws, mask = _layer(rng, h, w, c, c, k, 1, padding, depthwise=True)
    gi = B.depthwise_backward_input_inplace(g.copy(), wt, ws, padding=padding, mask=mask)
    ring = B.depthwise_inplace_scratch_bytes(wt.shape, g.shape, padding)
    call = (f"tq_depthwise_conv_backward_input_inplace_f32({c_conv_params((1, 1), padding)}, {{cn}}_ws, "
            f"{c_dims(g.shape)}, g, {{cn}}_mask, {c_dims(wt.shape)}, {{cn}}_w, scratch, scratch_size)")
    return raw_case(name, call, {"ws": ws, "mask": mask, "w": wt}, {"g": g}, {"g": gi}, scratch=ring,
                    macs=forward_macs(g.shape, c, k, True))


def fused_case(rng, name, h, w, c_in, c_out, k, stride, padding, opt, *, depthwise=False, sel=None,
                bias=True):
    """Fused weight gradient + update, in place on the weights, bias,
    optimizer buffers and PRNG state."""
    x, wt, g, ws, mask = _layer(rng, h, w, c_in, c_out, k, stride, padding, depthwise)
    sel = np.arange(c_in, dtype=np.int32) if sel is None else np.asarray(sel, np.int32)
    x_saved = np.ascontiguousarray(x[..., sel])
    b = rng.integers(-5000, 5000, c_out, dtype=np.int32) if bias else None
    state = opt.state_for(wt, sel=sel, depthwise=depthwise, in_channels=c_in, bias=bias)
    x_zp, x_scale = int(rng.integers(-20, 20)), F32(0.02)
    before = {"w": wt.copy(), "rng": opt.rng.copy()}
    if bias:
        before["b"] = b.copy()
    for key, arr in zip(("wm", "bm", "master"), state.arrays()):
        if arr is not None:
            before[key] = arr.copy()
    w_after, b_after = wt.copy(), None if b is None else b.copy()
    B.conv2d_backward_weight_update(g, x_saved, w_after, b_after, ws, opt, state, x_scale=x_scale,
                                    x_zero_point=x_zp, stride=(stride, stride), padding=padding,
                                    depthwise=depthwise, in_channels=c_in, sel=sel, mask=mask)
    after = {"w": w_after, "rng": opt.rng.copy()}
    if bias:
        after["b"] = b_after
    for key, arr in zip(("wm", "bm", "master"), state.arrays()):
        if arr is not None:
            after[key] = arr
    pointwise = not depthwise and k == 1 and not any(padding)
    kind = "depthwise_conv" if depthwise else ("conv_1x1" if pointwise else "conv")
    ptr = {key: (key if key in before else "NULL") for key in ("wm", "bm", "master")}
    bias_ptr = "b" if bias else "NULL"
    sel_args = (f"{c_in}, {{cn}}_sel, " if depthwise else "{cn}_sel, ")
    call = (f"tq_{kind}_backward_weight_update({c_conv_params((stride, stride), padding, x_zero_point=x_zp)}, "
            f"{c_float(x_scale)}, {{cn}}_ws, {c_dims(x_saved.shape)}, {{cn}}_x, {sel_args}{c_dims(g.shape)}, {{cn}}_g, "
            f"{{cn}}_mask, {c_dims(wt.shape)}, w, {bias_ptr}, {c_sgd(opt)}, "
            f"{c_state('rng', ptr['wm'], ptr['bm'], ptr['master'])}, scratch, scratch_size)")
    scratch = _ckernels.weight_update_buffer_size(
        "depthwise" if depthwise else ("1x1" if pointwise else "conv"), tuple(wt.shape), len(sel))
    return raw_case(name, call, {"ws": ws, "x": x_saved, "sel": sel, "g": g, "mask": mask}, before, after,
                    scratch=scratch, macs=forward_macs(g.shape, len(sel), k, depthwise))


def _c_block_layer(layer, tag, bias, state):
    """Designated initializer of a tq_block_bwd_layer: arrays `{cn}_<kind><tag>`,
    bias the name of a writable buffer or NULL."""
    params = c_conv_params(layer.stride, layer.padding, x_zero_point=layer.x_zero_point)
    mask = "NULL" if layer.mask is None else f"{{cn}}_m{tag}"
    return (f"{{.params = *{params}, .filter_dims = *{c_dims(layer.w.shape)}, .filter = {{cn}}_w{tag}, "
            f".w_scale = {{cn}}_ws{tag}, .input_scale = {c_float(layer.x_scale)}, .mask = {mask}, "
            f".bias = {bias}, .state = {state}}}")


def bottleneck_case(rng, name, h, w, c_in, c_mid, c_out, k, stride, n_sel, tile, opt, *, x_f32=False,
                    g_scale=1.0):
    """The streamed backward of a 1x1 -> depthwise k x k -> 1x1 block
    (tq_bottleneck_backward_f32): the block input's gradient, pw1's first
    n_sel input channels' weights, pw1's and the depthwise biases and the
    PRNG state, through clamp masks (about 80% pass); x_f32: pw1's saved
    inputs converted to fp32 once (pw1_x_f32); g_scale multiplies pw2's
    output gradient (1e-36: subnormal sums)."""
    from ..backward import BlockLayer
    from ..optim import ParamState, trained_weights
    pad = k // 2
    oh, ow = _out_hw(h, k, stride, 1, pad, pad), _out_hw(w, k, stride, 1, pad, pad)

    def scales(n):
        return rng.uniform(0.002, 0.02, n).astype(F32)

    def mask(shape):
        return np.packbits(rng.random(shape).reshape(-1) < 0.8, bitorder="little")

    pw1 = BlockLayer(rng.integers(-127, 128, (c_mid, 1, 1, c_in), dtype=np.int8), scales(c_mid), F32(0.05),
                     x_zero_point=int(rng.integers(-20, 20)), mask=mask((h, w, c_mid)),
                     bias=rng.integers(-500, 500, c_mid).astype(np.int32))
    dw = BlockLayer(rng.integers(-127, 128, (1, k, k, c_mid), dtype=np.int8), scales(c_mid), F32(0.03),
                    stride=(stride, stride), padding=(pad, pad, pad, pad), mask=mask((oh, ow, c_mid)),
                    bias=rng.integers(-500, 500, c_mid).astype(np.int32))
    pw2 = BlockLayer(rng.integers(-127, 128, (c_out, 1, 1, c_mid), dtype=np.int8), scales(c_out), F32(0.04),
                     mask=mask((oh, ow, c_out)))
    x = rng.integers(-128, 128, (1, h, w, c_in), dtype=np.int8)
    trained = np.ascontiguousarray(pw1.w[..., :n_sel])
    saved = np.ascontiguousarray(x[..., :n_sel])
    g = (rng.normal(0, 1e-2, (1, oh, ow, c_out)) * g_scale).astype(F32)
    # with rounding="master" the fp32 master copy shows every bit of pw1's weight gradient
    s1 = ParamState(w_master=trained_weights(trained).astype(F32).reshape(c_mid, n_sel)
                    if opt.rounding == "master" else None)
    before = {"wt": trained.copy(), "b1": pw1.bias.copy(), "bd": dw.bias.copy(), "rng": opt.rng.copy(),
              "gi": np.full((1, h, w, c_in), -3.5, F32)}
    if s1.w_master is not None:
        before["wm1"] = s1.w_master.copy()
    kw = dict(pw1_weights=trained, pw1_saved=saved, pw1_state=s1, dw_state=ParamState(), tile=tile, x_f32=x_f32)
    _, scratch = B.bottleneck_spec(pw1, dw, pw2, x.shape, opt, **kw)
    gi = B.bottleneck_backward(g, pw1, dw, pw2, x.shape, opt, **kw)
    after = {"wt": trained, "b1": pw1.bias, "bd": dw.bias, "rng": opt.rng.copy(), "gi": gi}
    if s1.w_master is not None:
        after["wm1"] = s1.w_master
    state1 = c_state("rng", master="wm1" if s1.w_master is not None else "NULL")
    params = (f"&(tq_bottleneck_backward_params){{.pw1 = {_c_block_layer(pw1, '1', 'b1', state1)}, "
              f".dw = {_c_block_layer(dw, 'd', 'bd', c_state('rng'))}, "
              f".pw2 = {_c_block_layer(pw2, '2', 'NULL', 'NULL')}, "
              f".pw1_weights = wt, .pw1_n_sel = {n_sel}, .pw1_saved = {{cn}}_x, "
              f".input_dims = *{c_dims(x.shape)}, .mid_dims = *{c_dims((1, h, w, c_mid))}, "
              f".output_dims = *{c_dims(g.shape)}, .tile = {tile}, .pw1_x_f32 = {int(x_f32)}}}")
    arrays = {"x": saved, "g": g}
    for tag, layer in (("1", pw1), ("d", dw), ("2", pw2)):
        arrays.update({f"w{tag}": layer.w, f"ws{tag}": layer.w_scales, f"m{tag}": layer.mask})
    call = f"tq_bottleneck_backward_f32({params}, {c_sgd(opt)}, {{cn}}_g, gi, scratch, scratch_size)"
    macs = h * w * c_mid * (c_in + n_sel) + oh * ow * c_mid * (k * k + c_out)
    return raw_case(name, call, arrays, before, after, scratch=scratch, macs=macs)
