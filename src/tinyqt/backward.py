"""numpy-facing wrappers of the C backward kernels, loss / head and the QAS
optimizer (src/kernels/include/tinyqt/backward.h has the full contract).

Gradients are float32 w.r.t. the REAL values of the int8 tensors
(x_r = s_x (x - z_x), W_r = s_w[c] W). A clamp mask (clamp_mask) makes the
forward clamp a straight-through estimator: the gradient passes where the
int8 output is strictly inside (act_min, act_max). Weight gradients are for
the saved input channels only (x_saved [N, H, W, n_sel], sel their indices;
None = the first n_sel channels). Every function checks dtypes and shapes
(tinyqt.ShapeError naming the argument) and raises tinyqt.KernelError on a
non-zero status. The *_update functions modify weights, biases, optimizer
state and the PRNG in place.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from . import _ckernels
from .errors import ShapeError
from .kernels import _check, _require, conv_output_size

F32 = np.float32


def _inplace(arr, name, dtype, shape=None):
    """An array the kernel writes in place: must already be contiguous."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(dtype):
        got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
        raise ShapeError(f"{name}: expected a numpy array of {np.dtype(dtype).name} (updated in place), got {got}")
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        raise ShapeError(f"{name}: must be a writeable C-contiguous array (it is updated in place)")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ShapeError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    return arr


def _scales(w_scales, n, name="w_scales"):
    """float32 [n] per-channel scales (a scalar or 1-element array broadcasts)."""
    s = np.asarray(w_scales, dtype=F32).reshape(-1)
    if s.size == 1:
        s = np.full(n, s[0], dtype=F32)
    if s.shape != (n,):
        raise ShapeError(f"{name}: expected {n} per-channel scales, got {np.shape(w_scales)}")
    return np.ascontiguousarray(s)


def _mask(mask, count, name="mask"):
    if mask is None:
        return None
    m = _require(mask, name, np.uint8).reshape(-1)
    if m.size != (count + 7) // 8:
        raise ShapeError(f"{name}: expected {(count + 7) // 8} bytes for {count} elements, got {m.size}")
    return m


def _sel(sel, n_sel, channels, name="sel"):
    if sel is None:
        return None
    s = np.ascontiguousarray(np.asarray(sel, dtype=np.int32).reshape(-1))
    if s.size != n_sel:
        raise ShapeError(f"{name}: {s.size} indices for {n_sel} saved channels")
    if s.size and (s.min() < 0 or s.max() >= channels or np.any(np.diff(s) <= 0)):
        raise ShapeError(f"{name}: indices must be strictly increasing within [0, {channels})")
    return s


def _dims(shape):
    return tuple(int(v) for v in shape)


def _params(stride, padding, dilation, x_zero_point=0):
    pt, pl = int(padding[0]), int(padding[1])
    return (int(stride[0]), int(stride[1]), pt, pl, int(dilation[0]), int(dilation[1]),
            -int(x_zero_point), 0, -128, 127)


def _check_geometry(in_hw, out_hw, k_hw, stride, padding, dilation, name="grad_out"):
    """grad_out's spatial extent must be what the forward produced."""
    pt, pl, pb, pr = (int(v) for v in padding)
    oh = conv_output_size(in_hw[0], k_hw[0], stride[0], dilation[0], pt, pb)
    ow = conv_output_size(in_hw[1], k_hw[1], stride[1], dilation[1], pl, pr)
    if (oh, ow) != tuple(out_hw):
        raise ShapeError(f"{name}: spatial extent {tuple(out_hw)} does not match the forward output {(oh, ow)} "
                         f"of a {in_hw[0]}x{in_hw[1]} input, kernel {tuple(k_hw)}, stride {tuple(stride)}, padding {tuple(padding)}")


def _opt_args(optimizer, state):
    wm, bm, wmaster = state.arrays() if state is not None else (None, None, None)
    return optimizer.params, optimizer.rng, wm, bm, wmaster


# ---- clamp mask -------------------------------------------------------------

def clamp_mask(y, act_min=-128, act_max=127):
    """Packed 1-bit STE mask of an int8 forward output: bit i (flat NHWC
    order, LSB first) = act_min < y[i] < act_max."""
    y = _require(y, "y", np.int8).reshape(-1)
    if y.size == 0:
        raise ShapeError("y: empty")
    mask = np.zeros((y.size + 7) // 8, dtype=np.uint8)
    _check("tq_clamp_mask_s8", _ckernels.clamp_mask(y, int(act_min), int(act_max), mask))
    return mask


def unpack_mask(mask, shape):
    """bool array of shape from a packed mask (True = gradient passes)."""
    count = int(np.prod(shape))
    return np.unpackbits(np.asarray(mask, np.uint8), bitorder="little")[:count].astype(bool).reshape(shape)


# ---- conv / depthwise -------------------------------------------------------

def conv2d_backward_input(grad_out, w, w_scales, input_shape, *, stride=(1, 1),
                          padding=(0, 0, 0, 0), dilation=(1, 1), depthwise=False, mask=None):
    """dL/dx_r of conv2d / depthwise conv: float32 [N, H, W, C_in].
    grad_out [N, OH, OW, C_out] float32; w int8 as the forward (OHWI or
    [1, KH, KW, C_out]); w_scales [C_out]; padding (top, left, bottom, right)."""
    g = _require(grad_out, "grad_out", F32, 4)
    w = _require(w, "weight", np.int8, 4)
    n, h, wd, c_in = _dims(input_shape)
    c_out = w.shape[3] if depthwise else w.shape[0]
    if depthwise and (w.shape[0] != 1 or c_out % c_in):
        raise ShapeError(f"weight: depthwise filter must be [1, KH, KW, {c_in}*mult], got {w.shape}")
    if not depthwise and w.shape[3] != c_in:
        raise ShapeError(f"weight: expected [C_out, KH, KW, {c_in}], got {w.shape}")
    if g.shape[0] != n or g.shape[3] != c_out:
        raise ShapeError(f"grad_out: expected [{n}, OH, OW, {c_out}], got {g.shape}")
    _check_geometry((h, wd), g.shape[1:3], w.shape[1:3], stride, padding, dilation)
    s = _scales(w_scales, c_out)
    m = _mask(mask, g.size)
    pointwise = (not depthwise and w.shape[1] == w.shape[2] == 1 and
                 all(int(p) == 0 for p in padding))
    kind = "depthwise" if depthwise else ("1x1" if pointwise else "conv")
    gi = np.empty((n, h, wd, c_in), dtype=F32)
    st = _ckernels.conv_backward_input(kind, _params(stride, padding, dilation), s, _dims(g.shape),
                                       g.reshape(-1), m, _dims(w.shape), w.reshape(-1),
                                       gi.shape, gi.reshape(-1))
    _check(f"tq_{'depthwise_conv' if depthwise else ('conv_1x1' if pointwise else 'conv')}_backward_input_f32", st)
    return gi


DEPTHWISE_INPLACE_MAX_TAPS = 49  # TQ_DW_INPLACE_MAX_TAPS


def depthwise_inplace_ok(w_shape, in_channels, stride, padding, dilation):
    """True when depthwise_backward_input_inplace applies: stride 1, no
    dilation, multiplier 1, padding that keeps the input's extent, and at
    most 49 taps (7x7)."""
    kh, kw, c_out = int(w_shape[1]), int(w_shape[2]), int(w_shape[3])
    pt, pl, pb, pr = (int(v) for v in padding)
    return (tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and c_out == in_channels and
            kh * kw <= DEPTHWISE_INPLACE_MAX_TAPS and
            pt + pb == kh - 1 and pl + pr == kw - 1 and 0 <= pt < kh and 0 <= pl < kw)


def depthwise_inplace_scratch_bytes(w_shape, input_shape, padding):
    """Scratch of depthwise_backward_input_inplace (the row ring)."""
    return _ckernels.depthwise_inplace_buffer_size(_params((1, 1), padding, (1, 1)), _dims(input_shape),
                                                   _dims(w_shape))


def depthwise_backward_input_inplace(grad, w, w_scales, *, padding, mask=None):
    """Input gradient of a stride-1 depthwise conv computed in place:
    grad float32 [N, H, W, C] (contiguous) holds dL/dy on entry and dL/dx on
    return, bit-identical to conv2d_backward_input(..., depthwise=True).
    Only for depthwise_inplace_ok layers (ShapeError otherwise)."""
    g = _inplace(grad, "grad", F32)
    w = _require(w, "weight", np.int8, 4)
    if g.ndim != 4 or not depthwise_inplace_ok(w.shape, g.shape[3], (1, 1), padding, (1, 1)):
        raise ShapeError(f"grad {g.shape} / weight {w.shape} / padding {tuple(padding)}: the in-place "
                         "depthwise gradient needs stride 1, multiplier 1, an output as large as the input "
                         f"and at most {DEPTHWISE_INPLACE_MAX_TAPS} taps")
    s = _scales(w_scales, w.shape[3])
    m = _mask(mask, g.size)
    scratch = np.zeros(depthwise_inplace_scratch_bytes(w.shape, g.shape, padding), np.uint8)
    st = _ckernels.depthwise_backward_input_inplace(_params((1, 1), padding, (1, 1)), s, g.shape, g.reshape(-1), m,
                                                    _dims(w.shape), w.reshape(-1), scratch)
    _check("tq_depthwise_conv_backward_input_inplace_f32", st)
    return g


def _weight_common(grad_out, x_saved, kernel_size, _unused, stride, padding, dilation):
    g = _require(grad_out, "grad_out", F32, 4)
    x = _require(x_saved, "x_saved", np.int8, 4)
    if x.shape[0] != g.shape[0]:
        raise ShapeError(f"x_saved: batch {x.shape[0]} differs from grad_out's {g.shape[0]}")
    kh, kw = (int(kernel_size), int(kernel_size)) if np.isscalar(kernel_size) else map(int, kernel_size)
    _check_geometry(x.shape[1:3], g.shape[1:3], (kh, kw), stride, padding, dilation)
    return g, x, kh, kw


def conv2d_backward_weight(grad_out, x_saved, kernel_size, *, x_scale, x_zero_point,
                           stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                           depthwise=False, in_channels=None, sel=None, mask=None, bias=True):
    """dL/dW_r (and dL/db_r) for the saved input channels.

    x_saved [N, H, W, n_sel] int8: the forward input's selected channels (scale
    x_scale, zero point x_zero_point). Dense / 1x1: returns grad_w
    [C_out, KH, KW, n_sel]. Depthwise: in_channels = the full C_in, sel the
    selected input channels; returns grad_w [n_sel*mult, KH, KW] (trained
    output channels sel[j]*mult + m). grad_b ([C_out] or [n_sel*mult]) or
    None when bias is False."""
    g, x, kh, kw = _weight_common(grad_out, x_saved, kernel_size, None, stride, padding, dilation)
    n_sel, c_out = x.shape[3], g.shape[3]
    m = _mask(mask, g.size)
    params = _params(stride, padding, dilation, x_zero_point)
    if depthwise:
        c_in = int(in_channels) if in_channels is not None else c_out
        if c_in < 1 or c_out % c_in:
            raise ShapeError(f"in_channels: {c_in} does not divide C_out={c_out}")
        s = _sel(sel, n_sel, c_in)
        if n_sel > c_in:
            raise ShapeError(f"x_saved: {n_sel} channels but the layer has {c_in}")
        mult = c_out // c_in
        gw = np.empty((n_sel * mult, kh, kw), dtype=F32)
        gb = np.empty(n_sel * mult, dtype=F32) if bias else None
        st = _ckernels.depthwise_backward_weight(params, float(x_scale), _dims(x.shape), x.reshape(-1),
                                                 c_in, s, _dims(g.shape), g.reshape(-1), m,
                                                 (1, kh, kw, c_out), gw.reshape(-1), gb)
        _check("tq_depthwise_conv_backward_weight_f32", st)
        return gw, gb
    # the compact gradient does not depend on sel; it is checked for the caller's sake
    _sel(sel, n_sel, int(in_channels) if in_channels is not None else np.iinfo(np.int32).max)
    pointwise = kh == kw == 1 and all(int(p) == 0 for p in padding)
    gw = np.empty((c_out, kh, kw, n_sel), dtype=F32)
    gb = np.empty(c_out, dtype=F32) if bias else None
    st = _ckernels.conv_backward_weight("1x1" if pointwise else "conv", params, float(x_scale),
                                        _dims(x.shape), x.reshape(-1), _dims(g.shape), g.reshape(-1),
                                        m, gw.shape, gw.reshape(-1), gb)
    _check(f"tq_conv{'_1x1' if pointwise else ''}_backward_weight_f32", st)
    return gw, gb


def conv2d_backward_weight_update(grad_out, x_saved, w, bias, w_scales, optimizer, state=None, *,
                                  x_scale, x_zero_point, stride=(1, 1), padding=(0, 0, 0, 0),
                                  dilation=(1, 1), depthwise=False, in_channels=None, sel=None,
                                  mask=None):
    """Fused weight gradient + optimizer update, in place on w (int8, the
    full forward filter) and bias (int32 [C_out], or None = not trained).
    Call conv2d_backward_input first (it needs the old weights). state: the
    layer's tinyqt.optim.ParamState (momentum / master) or None. Depthwise:
    see depthwise_backward_weight_update (in_channels required)."""
    if depthwise:
        if in_channels is None:
            raise ShapeError("in_channels: required for a depthwise layer")
        return depthwise_backward_weight_update(
            grad_out, x_saved, w, bias, w_scales, optimizer, state, x_scale=x_scale,
            x_zero_point=x_zero_point, in_channels=in_channels, stride=stride, padding=padding,
            dilation=dilation, sel=sel, mask=mask)
    w = _inplace(w, "weight", np.int8)
    if w.ndim != 4:
        raise ShapeError(f"weight: expected 4 dimensions, got shape {w.shape}")
    g, x, _, _ = _weight_common(grad_out, x_saved, (w.shape[1], w.shape[2]), None, stride, padding,
                                dilation)
    c_out = w.shape[0]
    if g.shape[3] != c_out:
        raise ShapeError(f"grad_out: {g.shape[3]} channels, the filter has {c_out}")
    if bias is not None:
        bias = _inplace(bias, "bias", np.int32, (c_out,))
    pointwise = w.shape[1] == w.shape[2] == 1 and all(int(p) == 0 for p in padding)
    return _fused_conv("1x1" if pointwise else "conv", g, x, w, bias, _scales(w_scales, c_out),
                       optimizer, state, float(x_scale), int(x_zero_point), stride, padding,
                       dilation, sel, _mask(mask, g.size), x.shape[3], w.shape[3])


def depthwise_backward_weight_update(grad_out, x_saved, w, bias, w_scales, optimizer, state=None, *,
                                     x_scale, x_zero_point, in_channels, stride=(1, 1),
                                     padding=(0, 0, 0, 0), dilation=(1, 1), sel=None, mask=None):
    """Fused depthwise weight gradient + update: sel selects input channels
    of the in_channels-channel input; bias is the full [C_out] (only trained
    channels change); state buffers are indexed by trained channel."""
    g, x, _, _ = _weight_common(grad_out, x_saved, (w.shape[1], w.shape[2]), None, stride, padding,
                                dilation)
    w = _inplace(w, "weight", np.int8)
    if w.ndim != 4 or w.shape[0] != 1:
        raise ShapeError(f"weight: depthwise filter must be [1, KH, KW, C_out], got {w.shape}")
    c_out = w.shape[3]
    if g.shape[3] != c_out or int(in_channels) < 1 or c_out % int(in_channels):
        raise ShapeError(f"grad_out / in_channels: C_out={c_out}, grad_out {g.shape}, in_channels {in_channels}")
    if bias is not None:
        bias = _inplace(bias, "bias", np.int32, (c_out,))
    s = _scales(w_scales, c_out)
    m = _mask(mask, g.size)
    return _fused_conv("depthwise", g, x, w, bias, s, optimizer, state, float(x_scale),
                       int(x_zero_point), stride, padding, dilation, sel, m, x.shape[3],
                       int(in_channels))


def _fused_conv(kind, g, x, w, bias, s, optimizer, state, x_scale, x_zp, stride, padding, dilation,
                sel, m, n_sel, in_channels):
    sel_a = _sel(sel, n_sel, in_channels)
    if n_sel > in_channels:
        raise ShapeError(f"x_saved: {n_sel} channels but the layer has {in_channels}")
    scratch = np.zeros(_ckernels.weight_update_buffer_size(kind, _dims(w.shape), n_sel), dtype=np.uint8)
    opt, rng, wm, bm, wmaster = _opt_args(optimizer, state)
    st = _ckernels.conv_backward_weight_update(
        kind, _params(stride, padding, dilation, x_zp), x_scale, s, _dims(x.shape), x.reshape(-1),
        int(in_channels), sel_a, _dims(g.shape), g.reshape(-1), m, _dims(w.shape), w.reshape(-1),
        bias, opt, rng, wm, bm, wmaster, scratch if scratch.size else None)
    _check({"conv": "tq_conv_backward_weight_update", "1x1": "tq_conv_1x1_backward_weight_update",
            "depthwise": "tq_depthwise_conv_backward_weight_update"}[kind], st)


@dataclass
class BlockLayer:
    """One conv of an inverted-bottleneck block, for bottleneck_backward:
    its forward weights (1x1 [C_out, 1, 1, C_in]; depthwise [1, KH, KW, C]),
    per-channel scales, its input's scale and zero point, the forward's
    stride and padding (top, left, bottom, right), the packed clamp mask of
    its output (or None: all pass) and its trained int32 bias [C_out],
    updated in place (None: frozen)."""
    w: np.ndarray
    w_scales: np.ndarray
    x_scale: float
    x_zero_point: int = 0
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int, int, int] = (0, 0, 0, 0)
    mask: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None


def _block_layer(layer, name, count, n_out, state):
    w = _require(layer.w, f"{name}.w", np.int8)
    mask = None if layer.mask is None else _mask(layer.mask, count, f"{name}.mask")
    bias = None if layer.bias is None else _inplace(layer.bias, f"{name}.bias", np.int32, (n_out,))
    arrays = state.arrays() if state is not None else (None, None, None)
    return (_params(layer.stride, layer.padding, (1, 1), layer.x_zero_point), _dims(w.shape), w.reshape(-1),
            _scales(layer.w_scales, n_out, f"{name}.w_scales"), float(layer.x_scale), mask, bias, arrays)


def bottleneck_spec(pw1, dw, pw2, input_shape, optimizer=None, *, pw1_weights=None, pw1_saved=None,
                    pw1_state=None, dw_state=None, tile=8, x_f32=False):
    """The C kernel tq_bottleneck_backward_f32 set up for one block pw1 (1x1)
    -> dw (depthwise, multiplier 1, frozen weights) -> pw2 (1x1, frozen
    weights) with input [1, H, W, C_in] (input_shape): a
    _ckernels.BottleneckBackward and its scratch size. pw1_weights: pw1's
    trained weights [C_mid, 1, 1, n_sel] (its first n_sel input channels),
    updated in place, with pw1_saved [1, H, W, n_sel] its saved input; None
    = pw1's weights frozen. pw1_state / dw_state: tinyqt.optim.ParamState of
    the trained tensors (momentum, master). tile: expanded channels per
    tile. x_f32: convert pw1_saved to fp32 once for all tiles (H*W*n_sel
    floats more scratch, fewer instructions in pw1's weight gradient, the
    same bits). Raises ShapeError for inconsistent layers."""
    n, h, w_, c_in = (int(v) for v in input_shape)
    c_mid, c_out = pw1.w.shape[0], pw2.w.shape[0]
    if n != 1 or pw1.w.shape[1:] != (1, 1, c_in) or dw.w.shape[::3] != (1, c_mid) or \
            pw2.w.shape[1:] != (1, 1, c_mid):
        raise ShapeError(f"bottleneck: input {tuple(input_shape)}, pw1 {pw1.w.shape}, dw {dw.w.shape}, pw2 "
                         f"{pw2.w.shape} are not a 1x1 -> depthwise (multiplier 1) -> 1x1 block at batch 1")
    kh, kw = dw.w.shape[1:3]
    pt, pl, pb, pr = (int(v) for v in dw.padding)
    oh = conv_output_size(h, kh, dw.stride[0], 1, pt, pb)
    ow = conv_output_size(w_, kw, dw.stride[1], 1, pl, pr)
    dims = ((1, h, w_, c_in), (1, h, w_, c_mid), (1, oh, ow, c_out))
    layers = (_block_layer(pw1, "pw1", h * w_ * c_mid, c_mid, pw1_state),
              _block_layer(dw, "dw", oh * ow * c_mid, c_mid, dw_state),
              _block_layer(pw2, "pw2", oh * ow * c_out, c_out, None))
    n_sel = 0
    if pw1_weights is not None:
        n_sel = pw1_weights.shape[-1]
        _inplace(pw1_weights, "pw1_weights", np.int8, (c_mid, 1, 1, n_sel))
        pw1_saved = _require(pw1_saved, "pw1_saved", np.int8)
        if pw1_saved.shape != (1, h, w_, n_sel):
            raise ShapeError(f"pw1_saved: expected shape {(1, h, w_, n_sel)}, got {pw1_saved.shape}")
        pw1_weights, pw1_saved = pw1_weights.reshape(-1), pw1_saved.reshape(-1)
    rng = optimizer.rng if optimizer is not None else np.ones(1, np.uint32)
    spec = _ckernels.BottleneckBackward(layers, dims, int(tile), pw1_weights, n_sel, pw1_saved, rng, bool(x_f32))
    return spec, spec.buffer_size()


def bottleneck_backward(grad_out, pw1, dw, pw2, input_shape, optimizer=None, *, need_grad_in=True, **kw):
    """The streamed backward of an inverted-bottleneck block (see
    bottleneck_spec and tinyqt/backward.h): from pw2's output gradient
    grad_out [1, OH, OW, C_out] fp32, updates the trained depthwise / pw1
    biases and pw1's weights in place and returns the block input's
    gradient [1, H, W, C_in] (None when need_grad_in is False). Bit for bit
    the unfused kernels' results (stochastic rounding: tile order)."""
    spec, size = bottleneck_spec(pw1, dw, pw2, input_shape, optimizer, **kw)
    g = _require(grad_out, "grad_out", F32)
    gi = np.empty(_dims(input_shape), F32) if need_grad_in else None
    opt = optimizer.params if optimizer is not None else (0.0, 0.0, 1, 0)
    _check("tq_bottleneck_backward_f32",
           spec.run(opt, g.reshape(-1), None if gi is None else gi.reshape(-1), np.zeros(size, np.uint8)))
    return gi


def bias_backward(grad_out, mask=None):
    """dL/db_r [C] = sum over N, H, W of the masked grad_out [N, OH, OW, C]."""
    g = _require(grad_out, "grad_out", F32)
    if g.ndim != 4:
        g = g.reshape(-1, 1, 1, g.shape[-1])
    gb = np.empty(g.shape[3], dtype=F32)
    _check("tq_bias_backward_f32", _ckernels.bias_backward(_dims(g.shape), g.reshape(-1),
                                                           _mask(mask, g.size), gb))
    return gb


# ---- fully connected ----------------------------------------------------------

def fc_backward_input(grad_out, w, w_scales, mask=None):
    """dL/dx_r [batches, in] of the int8 FC layer (w [out, in] int8)."""
    g = _require(grad_out, "grad_out", F32, 2)
    w = _require(w, "weight", np.int8, 2)
    if g.shape[1] != w.shape[0]:
        raise ShapeError(f"grad_out: expected [batches, {w.shape[0]}], got {g.shape}")
    gi = np.empty((g.shape[0], w.shape[1]), dtype=F32)
    st = _ckernels.fc_backward_input(g.shape[0], w.shape[1], w.shape[0], _scales(w_scales, w.shape[0]),
                                     g.reshape(-1), _mask(mask, g.size), w.reshape(-1), gi.reshape(-1))
    _check("tq_fc_backward_input_f32", st)
    return gi


def fc_backward_weight(grad_out, x_saved, *, x_scale, x_zero_point, mask=None, bias=True):
    """(grad_w [out, n_sel], grad_b [out] or None) for the saved input
    features x_saved [batches, n_sel] int8."""
    g = _require(grad_out, "grad_out", F32, 2)
    x = _require(x_saved, "x_saved", np.int8, 2)
    if x.shape[0] != g.shape[0]:
        raise ShapeError(f"x_saved: batch {x.shape[0]} differs from grad_out's {g.shape[0]}")
    gw = np.empty((g.shape[1], x.shape[1]), dtype=F32)
    gb = np.empty(g.shape[1], dtype=F32) if bias else None
    st = _ckernels.fc_backward_weight(-int(x_zero_point), float(x_scale), g.shape[0], x.shape[1],
                                      g.shape[1], x.reshape(-1), g.reshape(-1), _mask(mask, g.size),
                                      gw.reshape(-1), gb)
    _check("tq_fc_backward_weight_f32", st)
    return gw, gb


def fc_backward_weight_update(grad_out, x_saved, w, bias, w_scales, optimizer, state=None, *,
                              x_scale, x_zero_point, sel=None, mask=None):
    """Fused FC gradient + update in place on w [out, in] int8 and bias."""
    g = _require(grad_out, "grad_out", F32, 2)
    x = _require(x_saved, "x_saved", np.int8, 2)
    w = _inplace(w, "weight", np.int8)
    if w.ndim != 2 or g.shape[1] != w.shape[0] or x.shape[0] != g.shape[0]:
        raise ShapeError(f"shapes: grad_out {g.shape}, x_saved {x.shape}, weight {w.shape} do not fit")
    if bias is not None:
        bias = _inplace(bias, "bias", np.int32, (w.shape[0],))
    n_sel = x.shape[1]
    if n_sel > w.shape[1]:
        raise ShapeError(f"x_saved: {n_sel} features but the layer has {w.shape[1]}")
    sel_a = _sel(sel, n_sel, w.shape[1])
    scratch = np.zeros(_ckernels.weight_update_buffer_size("fc", (1, 1, 1, 1), n_sel), dtype=np.uint8)
    opt, rng, wm, bm, wmaster = _opt_args(optimizer, state)
    st = _ckernels.fc_backward_weight_update(
        -int(x_zero_point), float(x_scale), _scales(w_scales, w.shape[0]), g.shape[0], w.shape[1],
        w.shape[0], n_sel, sel_a, x.reshape(-1), g.reshape(-1), _mask(mask, g.size), w.reshape(-1),
        bias, opt, rng, wm, bm, wmaster, scratch)
    _check("tq_fc_backward_weight_update", st)


# ---- separate optimizer updates -----------------------------------------------

def sgd_update(w, bias, grad_w, grad_b, w_scales, x_scale, optimizer, state=None, *, sel=None,
               depthwise=False, in_channels=None):
    """Applies grad_w (weight-gradient layout) / grad_b to w and bias in place.
    w: conv OHWI, FC [out, in] or depthwise [1, KH, KW, C_out] (then
    in_channels and sel select input channels; bias is the full [C_out])."""
    w = _inplace(w, "weight", np.int8)
    gw = _require(grad_w, "grad_w", F32)
    gb = None if grad_b is None else _require(grad_b, "grad_b", F32, 1)
    if w.ndim == 2:
        fdims = (w.shape[0], 1, 1, w.shape[1])
    elif w.ndim == 4:
        fdims = _dims(w.shape)
    else:
        raise ShapeError(f"weight: expected a 2-D (FC) or 4-D filter, got {w.shape}")
    opt, rng, wm, bm, wmaster = _opt_args(optimizer, state)
    if depthwise:
        c_out = fdims[3]
        c_in = int(in_channels) if in_channels is not None else c_out
        if c_in < 1 or c_out % c_in:
            raise ShapeError(f"in_channels: {c_in} does not divide C_out={c_out}")
        mult = c_out // c_in
        n_sel = gw.shape[0] // mult if gw.ndim == 3 else -1
        if gw.ndim != 3 or gw.shape != (n_sel * mult, fdims[1], fdims[2]) or n_sel < 1:
            raise ShapeError(f"grad_w: expected [n_sel*{mult}, {fdims[1]}, {fdims[2]}], got {gw.shape}")
        n_b = n_sel * mult
        kind = "depthwise"
    else:
        c_out, c_in = fdims[0], fdims[3]
        n_sel = gw.shape[-1]
        if gw.size != c_out * fdims[1] * fdims[2] * n_sel or gw.shape[0] != c_out:
            raise ShapeError(f"grad_w: expected [{c_out}, {fdims[1]}, {fdims[2]}, n_sel], got {gw.shape}")
        n_b = c_out
        kind = "conv"
    if bias is not None:
        bias = _inplace(bias, "bias", np.int32, (c_out,))
        if gb is None or gb.shape != (n_b,):
            raise ShapeError(f"grad_b: expected shape ({n_b},), got {None if gb is None else gb.shape}")
    sel_a = _sel(sel, n_sel, c_in)
    st = _ckernels.sgd_update(kind, opt, rng, wm, bm, wmaster, float(x_scale), _scales(w_scales, c_out),
                              fdims, w.reshape(-1), bias, c_in, n_sel, sel_a, gw.reshape(-1),
                              gb if bias is not None else None)
    _check(f"tq_sgd_update_{kind}", st)


def sgd_update_bias(bias, grad_b, w_scales, x_scale, optimizer, state=None):
    """Bias-only update of int32 bias [C] in place (one PRNG draw per bias)."""
    bias = _inplace(bias, "bias", np.int32)
    if bias.ndim != 1:
        raise ShapeError(f"bias: expected 1 dimension, got {bias.shape}")
    gb = _require(grad_b, "grad_b", F32, 1)
    if gb.shape != bias.shape:
        raise ShapeError(f"grad_b: expected shape {bias.shape}, got {gb.shape}")
    opt, rng, wm, bm, wmaster = _opt_args(optimizer, state)
    st = _ckernels.sgd_update("bias", opt, rng, wm, bm, wmaster, float(x_scale),
                              _scales(w_scales, bias.size), (1, 1, 1, 1), np.zeros(1, np.int8), bias,
                              bias.size, 1, None, np.zeros(1, F32), gb)
    _check("tq_sgd_update_bias", st)


# ---- pooling / add --------------------------------------------------------------

def avgpool2d_backward(grad_out, input_shape, filter_hw, *, stride=(1, 1), padding=(0, 0, 0, 0),
                       mask=None):
    """dL/dx_r [N, H, W, C] of AVERAGE_POOL_2D."""
    g = _require(grad_out, "grad_out", F32, 4)
    n, h, wd, c = _dims(input_shape)
    if g.shape[0] != n or g.shape[3] != c:
        raise ShapeError(f"grad_out: expected [{n}, OH, OW, {c}], got {g.shape}")
    _check_geometry((h, wd), g.shape[1:3], filter_hw, stride, padding, (1, 1))
    gi = np.empty((n, h, wd, c), dtype=F32)
    st = _ckernels.avgpool_backward(_params(stride, padding, (1, 1)), int(filter_hw[0]), int(filter_hw[1]),
                                    _dims(g.shape), g.reshape(-1), _mask(mask, g.size), gi.shape,
                                    gi.reshape(-1))
    _check("tq_avgpool_backward_f32", st)
    return gi


def mean_backward(grad_out, input_shape, mask=None):
    """dL/dx_r [N, H, W, C] of MEAN over H, W; grad_out [N, 1, 1, C] or [N, C]."""
    g = _require(grad_out, "grad_out", F32)
    n, h, wd, c = _dims(input_shape)
    if g.size != n * c:
        raise ShapeError(f"grad_out: expected {n}x{c} values, got shape {g.shape}")
    gi = np.empty((n, h, wd, c), dtype=F32)
    st = _ckernels.mean_backward((n, h, wd, c), g.reshape(-1), _mask(mask, g.size), gi.reshape(-1))
    _check("tq_mean_backward_f32", st)
    return gi


def add_backward(grad_out, mask=None):
    """(dL/da_r, dL/db_r) of ADD: both the masked grad_out."""
    g = _require(grad_out, "grad_out", F32)
    ga = np.empty(g.shape, dtype=F32)
    gb = np.empty(g.shape, dtype=F32)
    _check("tq_add_backward_f32", _ckernels.add_backward(g.reshape(-1), _mask(mask, g.size),
                                                         ga.reshape(-1), gb.reshape(-1)))
    return ga, gb


# ---- loss and head --------------------------------------------------------------

def dequantize(x, scale, zero_point):
    """float32 scale * (x - zero_point), as the device computes it."""
    x = _require(x, "x", np.int8)
    y = np.empty(x.shape, dtype=F32)
    _check("tq_dequantize_s8_f32", _ckernels.dequantize(x.reshape(-1), float(scale), int(zero_point),
                                                        y.reshape(-1)))
    return y


def linear(x, w, b=None):
    """fp32 head: x [batches, D] @ w[K, D].T + b -> [batches, K]."""
    x = _require(x, "x", F32, 2)
    w = _require(w, "weight", F32, 2)
    if w.shape[1] != x.shape[1]:
        raise ShapeError(f"weight: expected [K, {x.shape[1]}], got {w.shape}")
    if b is not None:
        b = _require(b, "bias", F32, 1)
        if b.shape != (w.shape[0],):
            raise ShapeError(f"bias: expected ({w.shape[0]},), got {b.shape}")
    y = np.empty((x.shape[0], w.shape[0]), dtype=F32)
    _check("tq_linear_f32", _ckernels.linear(x.shape[0], x.shape[1], w.shape[0], x.reshape(-1),
                                             w.reshape(-1), b, y.reshape(-1)))
    return y


def _labels(labels, batches):
    lab = np.ascontiguousarray(np.asarray(labels, dtype=np.int32).reshape(-1))
    if lab.size != batches:
        raise ShapeError(f"labels: expected {batches} labels, got {lab.size}")
    return lab


def softmax_cross_entropy(logits, labels):
    """(mean loss, grad w.r.t. logits [batches, K]) of softmax cross-entropy."""
    lg = _require(logits, "logits", F32, 2)
    lab = _labels(labels, lg.shape[0])
    loss = np.zeros(1, dtype=F32)
    grad = np.empty(lg.shape, dtype=F32)
    _check("tq_softmax_xent_f32", _ckernels.softmax_xent(lg.shape[0], lg.shape[1], lg.reshape(-1), lab,
                                                         loss, grad.reshape(-1)))
    return float(loss[0]), grad


def softmax_cross_entropy_s8(logits, scale, zero_point, labels):
    """int8 head: (mean loss, grad w.r.t. the real logits) from int8 logits."""
    lg = _require(logits, "logits", np.int8, 2)
    lab = _labels(labels, lg.shape[0])
    loss = np.zeros(1, dtype=F32)
    grad = np.empty(lg.shape, dtype=F32)
    _check("tq_softmax_xent_s8", _ckernels.softmax_xent_s8(lg.shape[0], lg.shape[1], lg.reshape(-1),
                                                           float(scale), int(zero_point), lab, loss,
                                                           grad.reshape(-1)))
    return float(loss[0]), grad


def linear_backward_update(x, grad_out, w, b, lr, *, momentum=0.0, w_momentum=None,
                           b_momentum=None, need_grad_in=True):
    """fp32 head backward + SGD step in place on w [K, D] and b [K] (or None).
    Returns dL/dx [batches, D] (computed with the old weights) or None."""
    x = _require(x, "x", F32, 2)
    g = _require(grad_out, "grad_out", F32, 2)
    w = _inplace(w, "weight", F32)
    if w.ndim != 2 or w.shape[1] != x.shape[1] or g.shape != (x.shape[0], w.shape[0]):
        raise ShapeError(f"shapes: x {x.shape}, grad_out {g.shape}, weight {w.shape} do not fit")
    if b is not None:
        b = _inplace(b, "bias", F32, (w.shape[0],))
    if w_momentum is not None:
        w_momentum = _inplace(w_momentum, "w_momentum", F32, w.shape).reshape(-1)
    if b_momentum is not None:
        b_momentum = _inplace(b_momentum, "b_momentum", F32, (w.shape[0],))
    gi = np.empty(x.shape, dtype=F32) if need_grad_in else None
    st = _ckernels.linear_backward_update(x.shape[0], x.shape[1], w.shape[0], x.reshape(-1),
                                          g.reshape(-1), w.reshape(-1), b, float(lr), float(momentum),
                                          w_momentum, b_momentum,
                                          None if gi is None else gi.reshape(-1))
    _check("tq_linear_backward_update_f32", st)
    return gi


# ---- fp32 math and PRNG (device bits on the host) ---------------------------------

def expf(x):
    """tq_expf elementwise (float32, no libm)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=F32))
    y = np.empty(x.shape, dtype=F32)
    _ckernels.expf(x.reshape(-1), y.reshape(-1))
    return y


def logf(x):
    """tq_logf elementwise (float32, no libm)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=F32))
    y = np.empty(x.shape, dtype=F32)
    _ckernels.logf(x.reshape(-1), y.reshape(-1))
    return y


def xorshift32(state, count):
    """count values of tq_xorshift32, advancing state (uint32 array [1]) in place."""
    state = _inplace(state, "state", np.uint32, (1,))
    out = np.empty(int(count), dtype=np.uint32)
    _ckernels.xorshift32(state, int(count), out)
    return out


def xorshift32_uniform(state, count):
    """count values of tq_xorshift32_uniform ([0, 1) float32)."""
    state = _inplace(state, "state", np.uint32, (1,))
    out = np.empty(int(count), dtype=F32)
    _ckernels.xorshift32_uniform(state, int(count), out)
    return out
