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


def bottleneck_spec(model, block):
    """The C kernel's parameters (tq_bottleneck_params) of a block."""
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
                                    t[block.dw.output].shape[2], mid[1], mid[2])


def block_scratch_bytes(model, block):
    """Scratch of the fused block as the C kernel's size query gives it: a
    band of the depthwise kernel's height of expanded rows, one depthwise
    row, one projected row when a residual follows, the expand and
    projection kernels' scratch."""
    return bottleneck_spec(model, block).buffer_size(tuple(model.tensors[block.input].shape))
