"""Independent numpy/Python-int reference of TFLite's int8 arithmetic, used as
the oracle for kernel unit tests. Written from the TFLite spec (gemmlowp
SaturatingRoundingDoublingHighMul with truncating division, RoundingDivideByPOT),
deliberately not sharing code with the C kernels."""
import numpy as np


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on Python ints."""
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) // (1 << 31)
    return q if ab + nudge >= 0 else -q


def rdbpot(x, exponent):
    """gemmlowp RoundingDivideByPOT on Python ints."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def requant(x, mult, shift):
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    v = (x << left)
    v = ((v + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32 wrap as in C
    return rdbpot(srdhm(v, mult), right)


def requant_array(acc, mult, shift):
    """acc [..., C] int64, per-channel mult/shift -> int64 array."""
    out = np.empty(acc.shape, dtype=np.int64)
    flat = acc.reshape(-1, acc.shape[-1])
    res = out.reshape(-1, acc.shape[-1])
    for c in range(acc.shape[-1]):
        for i in range(flat.shape[0]):
            res[i, c] = requant(int(flat[i, c]), int(mult[c]), int(shift[c]))
    return out


def conv_acc(x, w, bias, stride, padding, dilation, input_offset, depthwise):
    """int64 accumulators of conv2d / depthwise conv by explicit zero-point padding."""
    n, h, wd, c_in = x.shape
    pt, pl, pb, pr = padding
    xo = x.astype(np.int64) + input_offset
    xp = np.zeros((n, h + pt + pb, wd + pl + pr, c_in), dtype=np.int64)
    xp[:, pt:pt + h, pl:pl + wd, :] = xo
    kh, kw = w.shape[1], w.shape[2]
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    oh = (h + pt + pb - eh) // stride[0] + 1
    ow = (wd + pl + pr - ew) // stride[1] + 1
    c_out = w.shape[3] if depthwise else w.shape[0]
    acc = np.zeros((n, oh, ow, c_out), dtype=np.int64)
    if bias is not None:
        acc += bias.astype(np.int64)
    for ky in range(kh):
        for kx in range(kw):
            ys, xs = ky * dilation[0], kx * dilation[1]
            patch = xp[:, ys:ys + (oh - 1) * stride[0] + 1:stride[0],
                       xs:xs + (ow - 1) * stride[1] + 1:stride[1], :]
            if depthwise:
                mult = c_out // c_in
                acc += np.repeat(patch, mult, axis=3) * w[0, ky, kx, :].astype(np.int64)
            else:
                acc += np.einsum("nhwc,oc->nhwo", patch, w[:, ky, kx, :].astype(np.int64))
    return acc


def finish(acc, mult, shift, output_offset, act_min, act_max):
    y = requant_array(acc, mult, shift) + output_offset
    return np.clip(y, act_min, act_max).astype(np.int8)
