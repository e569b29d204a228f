"""Compile-time autodiff: the static list of steps of one training step and
every tensor it touches, derived from an int8 Model and an update Scheme.

The step list is the forward (writing the clamp masks of the layers the
gradient flows through and the selected input channels of the layers whose
weights train), the fp32 head and its loss, and the backward pruned to what
the scheme needs:
- no input gradient below the deepest trained layer;
- no weight gradient for frozen weights; a bias-only layer gets a bias update;
- each layer's input gradient first (it needs the old weights), then its
  fused weight/bias update, so no weight-gradient buffer ever exists and
  every gradient buffer dies as soon as both are done.
Tensors carry their size in bytes and kind; lifetimes are the first and last
step that touch them (persistent tensors span the whole step).
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import _ckernels
from ..backward import depthwise_inplace_ok, depthwise_inplace_scratch_bytes
from ..errors import TinyQTError
from ..graph import Add, Conv2D, FullyConnected, Mean, Reshape
from .fusion import (block_backward_scratch_bytes, block_backward_tile, block_scratch_bytes, find_blocks,
                     streams_backward)

# tensor kinds, in the order reports list them
KINDS = ("input", "activation", "saved", "mask", "gradient", "scratch", "weights", "bias", "head",
         "optimizer", "accumulator", "features")
PERSISTENT = ("weights", "bias", "head", "optimizer", "accumulator")


@dataclass
class TensorSpec:
    """One buffer of the training step: shape, dtype, kind, and its lifetime
    in steps (first and last step touching it)."""
    name: str
    shape: Tuple[int, ...]
    dtype: str
    kind: str
    first: int = -1
    last: int = -1

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass
class Step:
    """One kernel call of the training step."""
    name: str
    kind: str                 # forward | head | loss | backward_input | update | update_bias | accumulate
    #                           | expand | compact (partially trained weights, see _expand_weights)
    op: Optional[str]         # the model op it belongs to
    reads: List[str] = field(default_factory=list)
    writes: List[str] = field(default_factory=list)
    scratch: Optional[str] = None
    attrs: Dict = field(default_factory=dict)


@dataclass
class TrainingGraph:
    steps: List[Step]
    tensors: Dict[str, TensorSpec]
    convs: List[Conv2D]          # trainable convs in paper index order
    trained: Dict[str, Tuple[int, float, bool]]  # op name -> (conv index, ratio, bias trained)
    head_shape: Tuple[int, int]  # (classes, features)


def body_convs(model):
    """The model's convs in forward order, the classifier excluded: the paper's
    conv indexing (0 = first conv)."""
    convs = [op for op in model.ops if isinstance(op, Conv2D)]
    head = classifier_op(model)
    return [op for op in convs if op is not head]


def classifier_op(model):
    """The op producing the logits (a 1x1 conv on the pooled map or an FC)."""
    name = model.outputs[0]
    producers = {op.output: op for op in model.ops}
    op = producers.get(name)
    while isinstance(op, Reshape):
        op = producers.get(op.inputs[0])
    if not isinstance(op, (Conv2D, FullyConnected)):
        raise TinyQTError(f"model '{model.name}': the output is not produced by a classifier conv/FC")
    return op


def _pool_op(model, head):
    producers = {op.output: op for op in model.ops}
    op = producers.get(head.inputs[0])
    if not isinstance(op, Mean):
        raise TinyQTError(f"model '{model.name}': the classifier must read a global mean (found "
                          f"{type(op).__name__ if op else 'the model input'})")
    return op


def _numel(shape):
    return int(np.prod(shape))


def build_training_graph(model, scheme, num_classes=None, momentum=False, master_copy=False, fuse=True,
                         split_weights=True, accumulate=False, fuse_backward=True, block_tiles=None,
                         planar_blocks=(), x_f32_blocks=()):
    """Steps and tensors of one batch-1 training step of model under scheme.

    num_classes: the head's class count (default: the model's). The head is
    fp32 on the dequantized pooled features (DESIGN.md). Optimizer state
    (momentum: one fp32 per trained weight and bias) and master_copy (one
    fp32 master per trained weight) live in the arena too. fuse: run the
    frozen inverted-bottleneck blocks row-streamed (fusion.py). split_weights:
    keep only the trained slice of a partially trained layer in SRAM
    (_expand_weights); False keeps its whole weights there. accumulate:
    gradient accumulation, one persistent fp32 sum per trained weight, bias
    and the head (`gradacc:NAME`, kind "accumulator"); the update steps then
    add to it and tinyqt.runtime applies the mean every N steps.
    fuse_backward: a block 1x1 -> depthwise -> 1x1 inside the backward whose
    depthwise and projection weights are frozen runs as one step
    (`backward_block`, tq_bottleneck_backward_f32) streamed over expanded
    channels; its update steps are in the step's attrs["updates"] (see
    update_steps). Not with accumulate. block_tiles: {block name: expanded
    channels per tile} overriding block_backward_tile. planar_blocks: names
    of streamed blocks that keep the planar depthwise ring (tinyqt/fused.h:
    more scratch, fewer instructions on Cortex-M4/M7). x_f32_blocks: names
    of streamed-backward blocks whose pw1 update reads its saved inputs
    converted to fp32 once (tinyqt/backward.h: more scratch, fewer
    instructions)."""
    convs = body_convs(model)
    head = classifier_op(model)
    pool = _pool_op(model, head)
    t = model.tensors
    features = t[pool.output].shape[-1]
    classes = num_classes or t[model.outputs[0]].shape[-1]

    trained = {}
    n = len(convs)
    for i, op in enumerate(convs):
        ratio = scheme.weights.get(i, 0.0)
        bias = i >= n - scheme.bias_k
        if ratio > 0 or bias:
            trained[op.name] = (i, ratio, bias)
    if not trained:
        deepest_pos = None
    else:
        deepest_pos = min(model.ops.index(op) for op in convs if op.name in trained)

    producer_pos = {op.output: k for k, op in enumerate(model.ops)}
    producer_pos[model.inputs[0]] = -1

    def needs_grad(tensor_name):
        """A tensor's gradient is needed when it is produced at or after the
        deepest trained layer (and before the pool)."""
        return deepest_pos is not None and producer_pos[tensor_name] >= deepest_pos

    tensors = {}
    steps = []

    def tensor(name, shape, dtype, kind):
        if name not in tensors:
            tensors[name] = TensorSpec(name, tuple(int(v) for v in shape), dtype, kind)
        return name

    def act(name, kind="activation"):
        return tensor(name, t[name].shape, "int8", kind)

    def grad(name, of):
        return tensor(name, t[of].shape, "float32", "gradient")

    def mask(op):
        return tensor(f"mask:{op.name}", (math.ceil(_numel(t[op.output].shape) / 8),), "uint8", "mask")

    def step(s):
        steps.append(s)
        return s

    act(model.inputs[0], "input")
    pool_pos = model.ops.index(pool)
    fused = {}
    if fuse:
        for blk in find_blocks(model):
            if not any(needs_grad(op.output) or op.name in trained for op in blk.ops):
                fused[blk.ops[0].name] = blk
    in_block = set()
    # ---- forward ------------------------------------------------------------
    for k, op in enumerate(model.ops[:pool_pos + 1]):
        if op.name in in_block:
            continue
        if op.name in fused:
            blk = fused[op.name]
            in_block.update(o.name for o in blk.ops)
            planar = blk.name in planar_blocks
            s = step(Step(f"forward:{blk.name}", "fused_block", op.name, reads=[blk.input],
                          writes=[act(blk.output)], attrs={"block": blk, "planar_rows": planar}))
            s.scratch = tensor(f"scratch:{blk.name}", (block_scratch_bytes(model, blk, planar),), "uint8",
                               "scratch")
            continue
        out = act(op.output)
        split = _split_forward(op, trained, t, tensor) if split_weights else None
        full_w = _expand_weights(op, "", trained, t, tensor, step) if split_weights and not split else []
        s = step(Step(f"forward:{op.name}", "forward", op.name, reads=list(op.inputs) + full_w + ([split] * bool(split)),
                      writes=[out], attrs={"split": split} if split else {}))
        if isinstance(op, Conv2D):
            kind = "depthwise" if op.depthwise else (
                "1x1" if op.weight.shape[1:3] == (1, 1) and not any(op.padding) else "conv")
            x_dims, w_dims = tuple(t[op.inputs[0]].shape), tuple(op.weight.shape)
            need = (_ckernels.conv_1x1_split_buffer_size(x_dims, tuple(t[op.output].shape), w_dims) if split
                    else _ckernels.conv_buffer_size(kind, x_dims, w_dims))
            if need:
                s.scratch = tensor(f"scratch:{op.name}", (need,), "uint8", "scratch")
        if isinstance(op, (Conv2D, Add)) and needs_grad(op.output):
            s.writes.append(mask(op))
        if op.name in trained and trained[op.name][1] > 0:
            x = t[op.inputs[0]]
            c_in = x.shape[-1]
            n_sel = max(1, math.ceil(trained[op.name][1] * c_in))
            if n_sel < c_in:
                s.writes.append(tensor(f"saved:{op.name}", x.shape[:-1] + (n_sel,), "int8", "saved"))
                s.attrs["saved"] = f"saved:{op.name}"
            else:
                s.attrs["saved"] = op.inputs[0]  # the whole input stays alive
            s.attrs["n_sel"] = n_sel
    # ---- head and loss --------------------------------------------------------
    feats = tensor("features", (1, features), "float32", "features")
    step(Step("head:dequantize", "head", None, reads=[pool.output], writes=[feats]))
    hw = tensor("head:weights", (classes * features + classes,), "float32", "head")
    logits = tensor("logits", (1, classes), "float32", "gradient")
    step(Step("head:forward", "head", None, reads=[feats, hw], writes=[logits]))
    glog = tensor("grad:logits", (1, classes), "float32", "gradient")
    step(Step("loss", "loss", None, reads=[logits], writes=[glog]))
    gfeat = tensor("grad:features", (1, features), "float32", "gradient") if deepest_pos is not None else None
    head_state = [tensor("optimizer:head", (classes * features + classes,), "float32", "optimizer")] \
        if momentum else []   # the head's momentum buffers
    if accumulate:
        tensor("gradacc:head", (classes * features + classes,), "float32", "accumulator")
    step(Step("head:update", "update", None, reads=[glog, feats, hw] + head_state,
              writes=[hw] + head_state + ([gfeat] if gfeat else [])))
    # ---- backward -------------------------------------------------------------
    if deepest_pos is not None:
        gname = grad(f"grad:{pool.inputs[0]}", pool.inputs[0])
        step(Step(f"backward:{pool.name}", "backward_input", pool.name, reads=[gfeat], writes=[gname]))
        alias = {}  # gradient name -> the buffer that holds it (in-place steps)
        readers = {}
        for o in model.ops:
            for name in o.inputs:
                readers[name] = readers.get(name, 0) + 1

        def grad_into(x, by):
            """(the buffer op `by` writes the gradient of x to, whether it must
            then be added to grad:x, which an earlier op already wrote)."""
            if f"grad:{x}" in tensors:
                return grad(f"grad:{x}@{by}", x), True
            return grad(f"grad:{x}", x), False

        def accumulate_into(x, gx, by):
            step(Step(f"accumulate:{x}", "accumulate", by, reads=[gx, f"grad:{x}"], writes=[f"grad:{x}"]))

        streamed = {}  # pw2 name -> block whose backward runs streamed
        if fuse_backward and not accumulate:
            for blk in find_blocks(model):
                if _streams_backward(blk, model, trained, deepest_pos, split_weights, t):
                    streamed[blk.pw2.name] = blk
        streamed_adds = {blk.add.name: blk for blk in streamed.values() if blk.add is not None}
        deferred = {}  # block input -> the projection gradient that is also its shortcut gradient
        done = set()
        for k in range(pool_pos - 1, deepest_pos - 1, -1):
            op = model.ops[k]
            g = alias.get(f"grad:{op.output}", f"grad:{op.output}")
            if g not in tensors or op.name in done:
                continue  # no gradient reaches this op, or a streamed block covered it
            mask = f"mask:{op.name}"
            if isinstance(op, Add):
                outs = []
                for x in op.inputs:
                    blk = streamed_adds.get(op.name)
                    if blk is not None and x == blk.input and needs_grad(x) and f"grad:{x}" not in tensors:
                        # the shortcut's gradient equals the projection's: added to the
                        # block's input gradient after the streamed step, not copied
                        deferred[x] = f"grad:{blk.pw2.output}"
                        continue
                    if needs_grad(x):
                        gx = f"grad:{x}"
                        if gx in tensors:  # second contribution: accumulate
                            gx = grad(f"grad:{x}@{op.name}", x)
                            step(Step(f"backward:{op.name}:{x}", "backward_input", op.name, reads=[g, mask],
                                      writes=[gx]))
                            step(Step(f"accumulate:{x}", "accumulate", op.name, reads=[gx, f"grad:{x}"],
                                      writes=[f"grad:{x}"]))
                        else:
                            outs.append(grad(gx, x))
                if outs:
                    step(Step(f"backward:{op.name}", "backward_input", op.name, reads=[g, mask], writes=outs))
                continue
            if not isinstance(op, Conv2D):
                raise TinyQTError(f"op '{op.name}' ({op.kind}) inside the trained range has no backward")
            if op.name in streamed:
                blk = streamed[op.name]
                done.update((blk.dw.name, blk.pw1.name))
                if op.name in trained:  # pw2's bias (its weights are frozen here)
                    step(_bias_update_step(op, g, mask, trained[op.name][0], tensor, momentum, accumulate))
                updates = []
                for o in (blk.dw, blk.pw1):
                    if o.name in trained and trained[o.name][1] > 0:
                        fwd = next(s for s in steps if s.name == f"forward:{o.name}")
                        updates.append(_weight_update_step(o, g, f"mask:{o.name}", fwd, None, trained[o.name][0],
                                                           t, tensor, momentum, master_copy, accumulate,
                                                           own_scratch=False))
                    elif o.name in trained:
                        updates.append(_bias_update_step(o, g, f"mask:{o.name}", trained[o.name][0], tensor,
                                                         momentum, accumulate))
                x = blk.input
                shortcut = deferred.pop(x, None)
                gx, add = (grad_into(x, blk.pw1.name) if shortcut is None else (grad(f"grad:{x}", x), False)) \
                    if needs_grad(x) else (None, False)
                trained_t = [n for u in updates for n in u.writes]
                pw1_update = next((u for u in updates if u.kind == "update"), None)
                saved = [pw1_update.reads[2]] if pw1_update else []
                n_sel = pw1_update.attrs["n_sel"] if pw1_update else 0
                s = step(Step(f"backward_block:{blk.name}", "backward_block", op.name,
                              reads=[g] + [f"mask:{o.name}" for o in (blk.pw1, blk.dw, op)] + saved + trained_t,
                              writes=trained_t + ([gx] if gx else []),
                              attrs={"block": blk, "tile": block_backward_tile(model, blk), "updates": updates,
                                     "n_sel": n_sel, "saved": saved[0] if saved else None, "grad_in": gx}))
                if blk.name in (block_tiles or {}):
                    s.attrs["tile"] = block_tiles[blk.name]
                s.attrs["x_f32"] = n_sel > 0 and blk.name in x_f32_blocks
                s.scratch = tensor(f"scratch:backward:{blk.name}",
                                   (block_backward_scratch_bytes(model, blk, n_sel, s.attrs["tile"],
                                                                 s.attrs["x_f32"]),), "uint8", "scratch")
                if add:
                    accumulate_into(x, gx, blk.pw1.name)
                elif shortcut is not None and gx is not None:  # s + r: the same bits as r + s
                    step(Step(f"accumulate:{x}", "accumulate", blk.pw1.name, reads=[shortcut, gx], writes=[gx]))
                continue
            full_w = _expand_weights(op, "@bwd", trained, t, tensor, step) if split_weights else []
            x = op.inputs[0]
            bias_done = False
            if needs_grad(x) and readers[x] == 1 and _inplace_depthwise(op, x, t, trained, tensors, alias):
                # the input gradient overwrites the output gradient: the bias
                # update, which reads the latter, runs first
                if op.name in trained and trained[op.name][2]:
                    step(_bias_update_step(op, g, mask, trained[op.name][0], tensor, momentum, accumulate))
                    bias_done = True
                alias[f"grad:{x}"] = g
                s = step(Step(f"backward_input:{op.name}", "backward_input", op.name,
                              reads=[g, mask, _weights_name(op, trained)], writes=[g], attrs={"inplace": True}))
                need = depthwise_inplace_scratch_bytes(op.weight.shape, t[x].shape, op.padding)
                s.scratch = tensor(f"scratch:backward:{op.name}", (need,), "uint8", "scratch")
            elif needs_grad(x):
                gx, add = grad_into(x, op.name)
                step(Step(f"backward_input:{op.name}", "backward_input", op.name,
                          reads=[g, mask, (full_w or [_weights_name(op, trained)])[0]], writes=[gx]))
                if add:
                    accumulate_into(x, gx, op.name)
            if op.name in trained:
                idx, ratio, bias = trained[op.name]
                fwd = next(s for s in steps if s.name == f"forward:{op.name}")
                if ratio > 0:
                    wu = full_w[0] if full_w else None
                    step(_weight_update_step(op, g, mask, fwd, wu, idx, t, tensor, momentum, master_copy,
                                             accumulate))
                    if full_w:  # the trained channels go back to their SRAM slice
                        step(Step(f"compact:{op.name}", "compact", op.name, reads=[wu],
                                  writes=[f"weights:{op.name}"]))
                elif bias and not bias_done:
                    step(_bias_update_step(op, g, mask, idx, tensor, momentum, accumulate))
    _lifetimes(steps, tensors)
    return TrainingGraph(steps, tensors, convs, trained, (classes, features))


def update_steps(steps):
    """The update and update_bias steps of a step list, those inside
    streamed block backward steps included, in execution order."""
    out = []
    for s in steps:
        if s.kind in ("update", "update_bias"):
            out.append(s)
        elif s.kind == "backward_block":
            out.extend(s.attrs["updates"])
    return out


def trained_slice(op, trained, tensors):
    """Length of the last weight axis that trains (the selected input
    channels; depthwise: their output channels), or None when the layer's
    weights are not trained or train whole."""
    if op.name not in trained or trained[op.name][1] <= 0:
        return None
    c_in = tensors[op.inputs[0]].shape[-1]
    n_sel = max(1, math.ceil(trained[op.name][1] * c_in))
    if n_sel >= c_in:
        return None
    return n_sel * (op.out_channels // c_in) if op.depthwise else n_sel


def _expand_weights(op, suffix, trained, t, tensor, step):
    """For a partially trained conv only the trained slice of its weights
    lives in SRAM (persistent `weights:` [..., slice]); the rest stays in
    Flash. Before the layer's forward (suffix "") and its backward ("@bwd")
    a short-lived full copy `wfull:` is assembled from both. Returns
    [the full copy's name] or []."""
    if not isinstance(op, Conv2D):
        return []
    n = trained_slice(op, trained, t)
    if n is None:
        return []
    w = tensor(f"weights:{op.name}", op.weight.shape[:-1] + (n,), "int8", "weights")
    full = tensor(f"wfull:{op.name}{suffix}", op.weight.shape, "int8", "scratch")
    step(Step(f"expand:{op.name}{suffix}", "expand", op.name, reads=[w], writes=[full]))
    return [full]


def _weight_update_step(op, g, mask, fwd, wu, idx, t, tensor, momentum, master_copy, accumulate,
                        own_scratch=True):
    """The fused gradient + update step of a weight-trained conv (not yet in
    the step list), reading g and mask, and its persistent tensors: the SRAM
    weights (wu: the assembled full copy it updates instead, or None), bias,
    optimizer state, gradient sum and (own_scratch) its scratch."""
    w = tensor(f"weights:{op.name}", op.weight.shape, "int8", "weights")
    b = tensor(f"bias:{op.name}", (op.out_channels,), "int32", "bias")
    n_sel = fwd.attrs["n_sel"]
    kind = "depthwise" if op.depthwise else ("1x1" if op.weight.shape[1:3] == (1, 1) else "conv")
    wu = wu or w
    s = Step(f"update:{op.name}", "update", op.name, reads=[g, mask, fwd.attrs["saved"], wu, b], writes=[wu, b],
             attrs={"n_sel": n_sel, "conv_index": idx})
    need = _ckernels.weight_update_buffer_size(kind, tuple(op.weight.shape), n_sel) if own_scratch else 0
    if need:
        s.scratch = tensor(f"scratch:update:{op.name}", (need,), "uint8", "scratch")
    kh, kw = op.weight.shape[1:3]
    if op.depthwise:
        n_b = n_sel * (op.out_channels // t[op.inputs[0]].shape[-1])
        n_w = n_b * kh * kw
    else:
        n_b = op.out_channels
        n_w = n_b * kh * kw * n_sel
    s.attrs["trained_params"] = n_w + n_b
    n_state = (n_w + n_b if momentum else 0) + (n_w if master_copy else 0)
    if n_state:
        tensor(f"optimizer:{op.name}", (n_state,), "float32", "optimizer")
    if accumulate:  # the weight gradient's layout, then the bias gradient
        tensor(f"gradacc:{op.name}", (n_w + n_b,), "float32", "accumulator")
    return s


def _streams_backward(blk, model, trained, deepest_pos, split_weights, t):
    """Whether blk's backward runs as one streamed step (tq_bottleneck_backward_f32):
    a 1x1 expand at or above the deepest trained layer, frozen depthwise and
    projection weights, and pw1's trained weights (if any) whole or split."""
    if not streams_backward(blk) or model.ops.index(blk.pw1) < deepest_pos:
        return False
    if any(o.name in trained and trained[o.name][1] > 0 for o in (blk.dw, blk.pw2)):
        return False
    return split_weights or trained_slice(blk.pw1, trained, t) is None


def _split_forward(op, trained, t, tensor):
    """The SRAM slice (`weights:` name) a partially trained 1x1 conv's
    forward reads beside its Flash weights (tq_conv_1x1_s8_split, no full
    copy), or None for any other layer."""
    if not (isinstance(op, Conv2D) and not op.depthwise and op.weight.shape[1:3] == (1, 1)
            and not any(op.padding) and tuple(op.dilation) == (1, 1)):
        return None
    n = trained_slice(op, trained, t)
    if n is None:
        return None
    return tensor(f"weights:{op.name}", op.weight.shape[:-1] + (n,), "int8", "weights")


def _bias_update_step(op, g, mask, idx, tensor, momentum, accumulate):
    """The bias-only update step of op (not yet in the step list) and its
    persistent tensors."""
    b = tensor(f"bias:{op.name}", (op.out_channels,), "int32", "bias")
    if momentum:
        tensor(f"optimizer:{op.name}", (op.out_channels,), "float32", "optimizer")
    if accumulate:
        tensor(f"gradacc:{op.name}", (op.out_channels,), "float32", "accumulator")
    return Step(f"update_bias:{op.name}", "update_bias", op.name, reads=[g, mask, b], writes=[b],
                attrs={"conv_index": idx, "trained_params": op.out_channels})


def _inplace_depthwise(op, x, t, trained, tensors, alias):
    """A depthwise layer whose input gradient can overwrite its output
    gradient: stride 1, multiplier 1, same extent, its weights frozen (their
    update would need the output gradient after the input gradient), and no
    other gradient of its input yet."""
    return (op.depthwise and not (op.name in trained and trained[op.name][1] > 0) and
            f"grad:{x}" not in tensors and f"grad:{x}" not in alias and
            depthwise_inplace_ok(op.weight.shape, t[x].shape[-1], op.stride, op.padding, op.dilation))


def _weights_name(op, trained):
    """The weights an input-gradient step reads: the SRAM copy of a
    weight-trained layer, otherwise the frozen weights in Flash (no tensor)."""
    if op.name in trained and trained[op.name][1] > 0:
        return f"weights:{op.name}"
    return f"flash:{op.name}"


def _lifetimes(steps, tensors):
    for k, s in enumerate(steps):
        for name in s.reads + s.writes + ([s.scratch] if s.scratch else []):
            spec = tensors.get(name)
            if spec is None:
                continue  # Flash-resident weights
            if spec.first < 0:
                spec.first = k
            spec.last = k
    last = len(steps) - 1
    for spec in tensors.values():
        if spec.kind in PERSISTENT:
            spec.first, spec.last = 0, last
