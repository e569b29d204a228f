"""numpy-facing wrappers of the C forward kernels.

Each function checks dtypes and shapes, raises tinyqt.ShapeError naming the
argument at fault, allocates the output, runs the C kernel (GIL released)
and raises tinyqt.KernelError on a non-zero status. Layouts: activations
int8 NHWC; conv filters int8 OHWI; depthwise filters int8 [1, KH, KW, C_out];
FC weights int8 [out, in]; biases int32; multiplier/shift int32 per output
channel (see tinyqt.quant.conv_multipliers).

The conv, FC, pool and add wrappers take mask_out: a C-contiguous uint8
array of at least ceil(y.size / 8) bytes that the kernel fills with the
packed clamp mask of its output (bit i of byte i // 8 = act_min < y[i] <
act_max, the straight-through mask the backward kernels take).
"""
import numpy as np

from . import _ckernels
from .errors import KernelError, ShapeError


def _require(arr, name, dtype, ndim=None):
    if not isinstance(arr, np.ndarray):
        raise ShapeError(f"{name}: expected a numpy array of {np.dtype(dtype).name}, got {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        raise ShapeError(f"{name}: expected dtype {np.dtype(dtype).name}, got {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ShapeError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _check(kernel, status):
    if status != 0:
        raise KernelError(kernel, status)


def _mask_out(mask, count):
    """mask_out as the kernels take it (None stays None); ShapeError when unfit."""
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or not mask.flags.c_contiguous \
            or not mask.flags.writeable:
        raise ShapeError("mask_out: expected a writable C-contiguous numpy uint8 array")
    need = (count + 7) // 8
    if mask.size < need:
        raise ShapeError(f"mask_out: {mask.size} bytes for {count} outputs, {need} needed")
    return mask.reshape(-1)


def conv_output_size(size, k, stride, dilation, pad_before, pad_after):
    """Output extent of one spatial axis with explicit padding."""
    eff = (k - 1) * dilation + 1
    return (size + pad_before + pad_after - eff) // stride + 1


def _quant_arrays(multiplier, shift, channels):
    m = _require(np.asarray(multiplier), "multiplier", np.int32, 1)
    s = _require(np.asarray(shift), "shift", np.int32, 1)
    if m.shape[0] != channels or s.shape[0] != channels:
        raise ShapeError(f"multiplier/shift: expected {channels} values each, got {m.shape[0]} and {s.shape[0]}")
    return m, s


def _bias_array(bias, channels):
    if bias is None:
        return None
    b = _require(bias, "bias", np.int32, 1)
    if b.shape[0] != channels:
        raise ShapeError(f"bias: expected shape ({channels},), got {b.shape}")
    return b


def conv2d(x, w, bias, multiplier, shift, *, stride=(1, 1), padding=(0, 0, 0, 0),
           dilation=(1, 1), input_offset=0, output_offset=0, act_min=-128, act_max=127,
           depthwise=False, trained=None, mask_out=None):
    """int8 conv2d / depthwise conv (TFLite semantics).

    x [N, H, W, C_in] int8; w [C_out, KH, KW, C_in] (dense) or [1, KH, KW, C_out]
    (depthwise); padding = (top, left, bottom, right); input_offset = -x_zero_point,
    output_offset = y_zero_point. Returns y [N, OH, OW, C_out] int8. A 1x1
    dense filter with no padding and dilation runs the pointwise kernel.
    trained [C_out, 1, 1, n_sel] (1x1 only): a partially trained layer's
    SRAM slice, which replaces w's first n_sel input channels
    (tq_conv_1x1_s8_split: no full copy of the filter is made). mask_out:
    the clamp mask's buffer (module docstring) or None."""
    x = _require(x, "x", np.int8, 4)
    w = _require(w, "weight", np.int8, 4)
    n, h, wd, c_in = x.shape
    c_out = w.shape[3] if depthwise else w.shape[0]
    if depthwise:
        if w.shape[0] != 1 or c_out % c_in != 0:
            raise ShapeError(f"weight: depthwise filter must be [1, KH, KW, C_in*mult] with C_in={c_in}, got {w.shape}")
    elif w.shape[3] != c_in:
        raise ShapeError(f"weight: expected [C_out, KH, KW, {c_in}] for an input with {c_in} channels, got {w.shape}")
    pt, pl, pb, pr = (int(v) for v in padding)
    oh = conv_output_size(h, w.shape[1], stride[0], dilation[0], pt, pb)
    ow = conv_output_size(wd, w.shape[2], stride[1], dilation[1], pl, pr)
    if oh < 1 or ow < 1:
        raise ShapeError(f"x: input {h}x{wd} is smaller than the {w.shape[1]}x{w.shape[2]} kernel with padding {padding}")
    m, s = _quant_arrays(multiplier, shift, c_out)
    b = _bias_array(bias, c_out)
    if depthwise:
        kind = "depthwise"
    elif w.shape[1] == 1 and w.shape[2] == 1 and pt == pl == pb == pr == 0 and tuple(dilation) == (1, 1):
        kind = "1x1"
    else:
        kind = "conv"
    in_dims, f_dims = tuple(int(v) for v in x.shape), tuple(int(v) for v in w.shape)
    out_dims = (n, oh, ow, c_out)
    y = np.empty(out_dims, dtype=np.int8)
    mask = _mask_out(mask_out, y.size)
    params = (int(stride[0]), int(stride[1]), pt, pl, int(dilation[0]), int(dilation[1]),
              int(input_offset), int(output_offset), int(act_min), int(act_max))
    if trained is not None:
        t = _require(trained, "trained", np.int8, 4)
        if kind != "1x1" or t.shape[:3] != (c_out, 1, 1) or not 1 <= t.shape[3] <= c_in:
            raise ShapeError(f"trained: a 1x1 layer's slice [{c_out}, 1, 1, n_sel <= {c_in}] is expected, "
                             f"got {t.shape} for a {kind} filter {w.shape}")
        scratch = np.zeros(_ckernels.conv_1x1_split_buffer_size(in_dims, out_dims, f_dims), dtype=np.uint8)
        st = _ckernels.conv_1x1_split(params, m, s, in_dims, x.reshape(-1), f_dims, w.reshape(-1), t.reshape(-1),
                                      int(t.shape[3]), b, out_dims, y.reshape(-1), scratch, mask)
        _check("tq_conv_1x1_s8_split", st)
        return y
    scratch = np.zeros(_ckernels.conv_buffer_size(kind, in_dims, f_dims), dtype=np.uint8)
    st = _ckernels.conv(kind, params, m, s, in_dims, x.reshape(-1), f_dims, w.reshape(-1), b,
                        out_dims, y.reshape(-1), scratch if scratch.size else None, mask)
    _check(f"tq_{'depthwise_conv' if depthwise else ('conv_1x1' if kind == '1x1' else 'conv')}_s8", st)
    return y


def fully_connected(x, w, bias, multiplier, shift, *, input_offset=0, output_offset=0,
                    act_min=-128, act_max=127, mask_out=None):
    """int8 FC: x [batches, in] int8, w [out, in] int8 -> [batches, out] int8
    (mask_out: module docstring)."""
    x = _require(x, "x", np.int8, 2)
    w = _require(w, "weight", np.int8, 2)
    if w.shape[1] != x.shape[1]:
        raise ShapeError(f"weight: expected [out, {x.shape[1]}], got {w.shape}")
    m, s = _quant_arrays(multiplier, shift, w.shape[0])
    b = _bias_array(bias, w.shape[0])
    y = np.empty((x.shape[0], w.shape[0]), dtype=np.int8)
    params = (1, 1, 0, 0, 1, 1, int(input_offset), int(output_offset), int(act_min), int(act_max))
    st = _ckernels.fully_connected(params, m, s, x.shape[0], x.shape[1], w.shape[0],
                                   x.reshape(-1), w.reshape(-1), b, y.reshape(-1), _mask_out(mask_out, y.size))
    _check("tq_fully_connected_s8", st)
    return y


def avgpool2d(x, filter_hw, *, stride=(1, 1), padding=(0, 0, 0, 0), act_min=-128, act_max=127, mask_out=None):
    """int8 average pool (TFLite AVERAGE_POOL_2D): x [N, H, W, C] -> [N, OH, OW, C]
    (mask_out: module docstring)."""
    x = _require(x, "x", np.int8, 4)
    n, h, wd, c = x.shape
    pt, pl, pb, pr = (int(v) for v in padding)
    oh = conv_output_size(h, filter_hw[0], stride[0], 1, pt, pb)
    ow = conv_output_size(wd, filter_hw[1], stride[1], 1, pl, pr)
    if oh < 1 or ow < 1:
        raise ShapeError(f"x: input {h}x{wd} is smaller than the pool window {tuple(filter_hw)}")
    y = np.empty((n, oh, ow, c), dtype=np.int8)
    params = (int(stride[0]), int(stride[1]), pt, pl, 1, 1, 0, 0, int(act_min), int(act_max))
    st = _ckernels.avgpool(params, int(filter_hw[0]), int(filter_hw[1]),
                           tuple(int(v) for v in x.shape), x.reshape(-1), y.shape, y.reshape(-1),
                           _mask_out(mask_out, y.size))
    _check("tq_avgpool_s8", st)
    return y


def mean_hw(x, params):
    """int8 mean over H and W: x [N, H, W, C] -> [N, 1, 1, C]; params from
    tinyqt.quant.mean_params."""
    x = _require(x, "x", np.int8, 4)
    y = np.empty((x.shape[0], 1, 1, x.shape[3]), dtype=np.int8)
    st = _ckernels.mean(tuple(int(v) for v in params), tuple(int(v) for v in x.shape),
                        x.reshape(-1), y.reshape(-1))
    _check("tq_mean_s8", st)
    return y


def add(a, b, params, mask_out=None):
    """int8 elementwise add of equal shapes; params from tinyqt.quant.add_params
    (mask_out: module docstring)."""
    a = _require(a, "input1", np.int8)
    b = _require(b, "input2", np.int8)
    if a.shape != b.shape:
        raise ShapeError(f"add: input shapes differ: {a.shape} vs {b.shape}")
    y = np.empty(a.shape, dtype=np.int8)
    st = _ckernels.add(tuple(int(v) for v in params), a.reshape(-1), b.reshape(-1), y.reshape(-1),
                       _mask_out(mask_out, y.size))
    _check("tq_add_s8", st)
    return y


def softmax(x, params):
    """int8 softmax along the last axis; params = (input_multiplier,
    input_left_shift, diff_min) from tinyqt.quant.softmax_params. Output
    scale 1/256, zero point -128."""
    x = _require(x, "x", np.int8)
    depth = x.shape[-1]
    rows = x.size // depth
    y = np.empty(x.shape, dtype=np.int8)
    st = _ckernels.softmax(tuple(int(v) for v in params), rows, depth, x.reshape(-1), y.reshape(-1))
    _check("tq_softmax_s8", st)
    return y
