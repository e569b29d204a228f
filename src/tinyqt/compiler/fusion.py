"""Row-streamed inverted-bottleneck blocks for the frozen part of the forward.

A block pointwise1 (optional) -> depthwise -> pointwise2 (-> residual add)
whose outputs need no gradient is run as one step: the expanded tensor is
never materialized. Rows of it are computed into a band buffer of the
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


def find_blocks(model):
    """Every inverted-bottleneck block of model whose inner tensors have no
    other consumer (candidates for fusion), in forward order."""
    consumers = {}
    for op in model.ops:
        for x in op.inputs:
            consumers.setdefault(x, []).append(op)
    ops, blocks, k = model.ops, [], 0
    while k < len(ops):
        pw1 = ops[k] if _is_pointwise(ops[k]) else None
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


def block_scratch_bytes(model, block):
    """Band of the depthwise kernel's height of expanded rows, one depthwise
    output row, one pointwise2 row when a residual follows, and the larger of
    the two pointwise kernels' scratch."""
    t = model.tensors
    x = t[block.input].shape
    mid = block.dw.weight.shape[3]
    eff_k = (block.dw.weight.shape[1] - 1) * block.dw.dilation[0] + 1
    ow = t[block.dw.output].shape[2]
    c_out = block.pw2.out_channels
    band = eff_k * x[2] * mid
    dw_row = ow * mid
    pw2_row = ow * c_out if block.add else 0
    conv_scratch = max(
        _ckernels.conv_buffer_size("1x1", (1, 1, x[2], x[3]), tuple(block.pw1.weight.shape)) if block.pw1 else 0,
        _ckernels.conv_buffer_size("1x1", (1, 1, ow, mid), tuple(block.pw2.weight.shape)))
    return {"band": band, "dw_row": dw_row, "pw2_row": pw2_row, "conv": conv_scratch}
