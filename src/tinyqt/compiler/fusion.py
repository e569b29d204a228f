"""Row-streamed inverted-bottleneck blocks for the frozen part of the forward.

A block expand (optional: a 1x1 conv, or any dense conv such as the
network's first conv) -> depthwise -> pointwise2 (-> residual add) whose
outputs need no gradient is run as one step: the expanded tensor is never
materialized. Rows of it are computed into a band buffer of the
depthwise kernel's height, each depthwise output row is projected by
pointwise2 straight into the block output (through a row buffer when a
residual add follows). The per-element arithmetic is the unfused kernels',
so the bytes are identical; only the memory schedule changes.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import _ckernels
from ..graph import Add, Conv2D


@dataclass
class Block:
    pw1: Optional[Conv2D]
    dw: Conv2D
    pw2: Conv2D
    add: Optional[Add]

    @property
    def ops(self):
        return [op for op in (self.pw1, self.dw, self.pw2, self.add) if op is not None]

    @property
    def input(self):
        return (self.pw1 or self.dw).inputs[0]

    @property
    def output(self):
        return (self.add or self.pw2).output

    @property
    def name(self):
        return f"block:{self.ops[0].name}"


def _is_pointwise(op):
    return (isinstance(op, Conv2D) and not op.depthwise and op.weight.shape[1:3] == (1, 1)
            and tuple(op.stride) == (1, 1) and not any(op.padding))


def _is_dense(op):
    return isinstance(op, Conv2D) and not op.depthwise


def find_blocks(model):
    """Every inverted-bottleneck block of model whose inner tensors have no
    other consumer (candidates for fusion), in forward order."""
    consumers = {}
    for op in model.ops:
        for x in op.inputs:
            consumers.setdefault(x, []).append(op)
    ops, blocks, k = model.ops, [], 0
    while k < len(ops):
        pw1 = ops[k] if _is_dense(ops[k]) else None
        j = k + (1 if pw1 else 0)
        dw = ops[j] if j < len(ops) else None
        ok = (isinstance(dw, Conv2D) and dw.depthwise and tuple(dw.dilation) == (1, 1)
              and dw.weight.shape[3] == model.tensors[dw.inputs[0]].shape[3]
              and (pw1 is None or (dw.inputs[0] == pw1.output and len(consumers[pw1.output]) == 1)))
        pw2 = ops[j + 1] if ok and j + 1 < len(ops) else None
        ok = ok and _is_pointwise(pw2) and pw2.inputs[0] == dw.output and len(consumers[dw.output]) == 1
        if not ok:
            k += 1
            continue
        block_in = (pw1 or dw).inputs[0]
        add = ops[j + 2] if j + 2 < len(ops) else None
        if not (isinstance(add, Add) and set(add.inputs) == {pw2.output, block_in}
                and len(consumers[pw2.output]) == 1):
            add = None
        blocks.append(Block(pw1, dw, pw2, add))
        k = j + (3 if add else 2)
    return blocks


def _stage(model, op):
    from .. import quant
    t = model.tensors
    t_in, t_out = t[op.inputs[0]], t[op.output]
    m, sh = quant.conv_multipliers(t_in.scale, op.w_scales, t_out.scale)
    lo, hi = quant.activation_range(op.activation, t_out.scale, t_out.zero_point)
    params = (op.stride[0], op.stride[1], op.padding[0], op.padding[1], op.dilation[0], op.dilation[1],
              -t_in.zero_point, t_out.zero_point, lo, hi)
    return (tuple(int(v) for v in params), m, sh, tuple(int(v) for v in op.weight.shape),
            op.weight.reshape(-1), None if op.bias is None else op.bias)


def bottleneck_spec(model, block, planar_rows=False):
    """The C kernel's parameters (tq_bottleneck_params) of a block;
    planar_rows: with the planar depthwise ring (tinyqt/fused.h)."""
    from .. import quant
    t = model.tensors
    add = None
    residual_first = 0
    if block.add is not None:
        a, b, o = (t[n] for n in (*block.add.inputs, block.add.output))
        lo, hi = quant.activation_range(block.add.activation, o.scale, o.zero_point)
        add = quant.add_params(a.scale, a.zero_point, b.scale, b.zero_point, o.scale, o.zero_point, lo, hi)
        residual_first = int(block.add.inputs[0] == block.input)
    mid = t[block.dw.inputs[0]].shape
    return _ckernels.BottleneckSpec(_stage(model, block.pw1) if block.pw1 else None, _stage(model, block.dw),
                                    _stage(model, block.pw2), add, residual_first,
                                    t[block.dw.output].shape[2], mid[1], mid[2], planar_rows)


def block_scratch_bytes(model, block, planar_rows=False):
    """Scratch of the fused block as the C kernel's size query gives it: a
    band of the depthwise kernel's height of expanded rows, the planar ring
    (planar_rows, where the depthwise stage allows it), one depthwise row,
    one projected row when a residual follows, the expand and projection
    kernels' scratch."""
    return bottleneck_spec(model, block, planar_rows).buffer_size(tuple(model.tensors[block.input].shape))


# ---- the streamed backward of a block (tq_bottleneck_backward_f32) ------------

def streams_backward(block):
    """A block whose backward can run streamed over expanded channels: a
    1x1 expand (stride 1), the depthwise (multiplier 1) and the projection."""
    return block.pw1 is not None and _is_pointwise(block.pw1)


def block_backward_layers(model, block, masks=(None, None, None), biases=(None, None)):
    """tinyqt.backward.BlockLayer of pw1, dw and pw2 from the model, with the
    given output masks and the trained biases of pw1 and dw (arrays or None)."""
    from ..backward import BlockLayer
    t = model.tensors

    def layer(op, mask, bias):
        x = t[op.inputs[0]]
        return BlockLayer(op.weight, np.asarray(op.w_scales, np.float32), float(x.scale), int(x.zero_point),
                          tuple(op.stride), tuple(op.padding), mask, bias)
    return (layer(block.pw1, masks[0], biases[0]), layer(block.dw, masks[1], biases[1]),
            layer(block.pw2, masks[2], None))


# Bytes of the two fp32 tile buffers (expanded gradient before and after the
# depthwise) a tile may take; the widest tile of 16, 8 or 4 channels that
# fits is used (4 at least: the 1x1 micro-kernels work on four channels).
# The compiler then widens tiles where the plan has room (compiler/plan.py).
BACKWARD_TILE_BYTES = 8192
# Tile widths the compiler tries when widening: wider tiles rescale the
# projection's gradient fewer times.
BACKWARD_TILES = (128, 64, 32, 16, 8, 4)


def block_backward_tile(model, block):
    """Expanded channels per tile of the block's streamed backward."""
    t = model.tensors
    mid, out = t[block.dw.inputs[0]].shape, t[block.dw.output].shape
    per_channel = 4 * (mid[1] * mid[2] + out[1] * out[2])
    return next((n for n in (16, 8) if n * per_channel <= BACKWARD_TILE_BYTES), 4)


def block_backward_scratch_bytes(model, block, n_sel, tile=None, x_f32=False):
    """Scratch of the block's streamed backward (the C size query) when pw1
    trains its first n_sel input channels (0: pw1's weights frozen), with
    tile expanded channels per tile (None: block_backward_tile); x_f32: with
    pw1's saved inputs converted to fp32 once (tinyqt/backward.h)."""
    from ..backward import bottleneck_spec
    layers = block_backward_layers(model, block)
    c_mid = block.pw1.weight.shape[0]
    x = model.tensors[block.input].shape
    w = np.zeros((c_mid, 1, 1, n_sel), np.int8) if n_sel else None
    saved = np.zeros(tuple(x[:3]) + (n_sel,), np.int8) if n_sel else None
    return bottleneck_spec(*layers, x, None, pw1_weights=w, pw1_saved=saved,
                           tile=tile or block_backward_tile(model, block), x_f32=x_f32)[1]


# ---- a row-streamed block writing its output over its dying input --------------

def _input_row_read_after(block, mid_h, row):
    """The lowest input row tq_bottleneck_s8 reads after writing output row
    `row`: it keeps its band of expanded rows and only computes rows past
    the band's end, each from the input rows its expand window covers."""
    dw = block.dw
    m = min(row * dw.stride[0] - dw.padding[0] + dw.weight.shape[1], mid_h)
    if block.pw1 is not None:
        m = max(0, m * block.pw1.stride[0] - block.pw1.padding[0])
    return m


def output_over_input(model, block, align=8):
    """The byte distance delta (a multiple of align) at which the block's
    output may start above its input's start and still overlap it: output
    row r only covers input rows the kernel never reads again
    (tq_bottleneck_s8 streams rows in order). None when the block has a residual add (it reads input row r
    while writing output row r) or overlapping saves nothing."""
    if block.add is not None:
        return None
    t = model.tensors
    xin, xout = t[block.input].shape, t[block.output].shape
    row_in, row_out = xin[2] * xin[3], xout[2] * xout[3]
    size_in, size_out = row_in * xin[1], row_out * xout[1]
    mid_h = t[block.dw.inputs[0]].shape[1]
    limit = min((_input_row_read_after(block, mid_h, r) * row_in - (r + 1) * row_out for r in range(xout[1] - 1)),
                default=size_in)
    delta = min(limit, size_in - size_out)
    delta -= delta % align   # floor, negative values included
    footprint = max(size_in, delta + size_out) - min(0, delta)
    return delta if footprint < size_in + size_out else None
