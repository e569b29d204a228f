"""Host runtime: executes a Plan step by step with the C kernels, every
tensor a view at its planned offset in one numpy arena (the device's single
SRAM array), so a planning mistake corrupts data here exactly as it would on
the MCU. `separate_buffers=True` gives every tensor its own array instead:
the same bits must come out (tests check it).

    rt = Runtime(plan, model, SGD(lr=0.05))
    loss = rt.step(image_int8[1, H, W, C], label)

A plan compiled with accumulate=True does not update in step(): each update
step adds its gradient to the layer's `gradacc:` sum in the arena, and
apply_accumulated() applies their mean with the same optimizer kernels
(tinyqt.backward.sgd_update / sgd_update_bias) and clears them.
"""
import numpy as np

from . import backward, kernels, quant
from .compiler.training_graph import update_steps
from .errors import KernelError, ShapeError, TinyQTError
from .executor import run_op
from .graph import Add, Conv2D
from .optim import SGD, ParamState


def trained_counts(step, op, in_channels):
    """(trained weights, trained biases) of an update or update_bias step of
    conv op whose input has in_channels channels."""
    if step.kind == "update_bias":
        return 0, step.attrs["trained_params"]
    n_b = step.attrs["n_sel"] * (op.out_channels // in_channels) if op.depthwise else op.out_channels
    return step.attrs["trained_params"] - n_b, n_b


def state_layout(step, op, in_channels, momentum, master):
    """Element ranges {ParamState field: (start, stop)} of a trained layer's
    optimizer state inside its `optimizer:` tensor: the weight momentum, the
    bias momentum, then the fp32 master copy (only the fields the options
    use). tinyqt.codegen lays the firmware's state out the same way."""
    n_w, n_b = trained_counts(step, op, in_channels)
    out, pos = {}, 0
    if momentum:
        if n_w:
            out["w_momentum"] = (0, n_w)
        out["b_momentum"] = (n_w, n_w + n_b)
        pos = n_w + n_b
    if master and n_w:
        out["w_master"] = (pos, pos + n_w)
    return out


class Runtime:
    """plan: tinyqt.compile's Plan of model; optimizer: tinyqt.optim.SGD for
    the int8 body (the fp32 head takes SGD with the same lr and momentum).
    The trained weights and biases start from the model's and live
    in the arena; model itself is never modified."""

    def __init__(self, plan, model, optimizer=None, separate_buffers=False):
        self.plan = plan
        self.model = model
        self.opt = optimizer or SGD(0.05)
        self.graph = plan.graph
        self.ops = {op.name: op for op in model.ops}
        self.head_classes, self.head_features = self.graph.head_shape
        if separate_buffers:
            self.arena = None
            self.views = {n: np.zeros(s.shape, s.dtype) for n, s in plan.tensors.items() if s.first >= 0}
        else:
            self.arena = np.zeros(plan.peak_sram_bytes, dtype=np.uint8)
            self.views = {}
            for name, spec in plan.tensors.items():
                if spec.first < 0:
                    continue
                off = plan.memory.offsets[name]
                raw = self.arena[off:off + spec.nbytes]
                self.views[name] = raw.view(spec.dtype).reshape(spec.shape)
        self._check_optimizer_state()
        self._quant = {}
        self._specs = {}
        self._states = {}
        self._init_persistent()
        self.steps_done = 0

    # ------------------------------------------------------------------ setup
    def _check_optimizer_state(self):
        """Momentum and master copies live in buffers the plan must have
        counted: a plan compiled without them cannot run such an optimizer."""
        o = self.opt
        for s in update_steps(self.plan.steps):
            name = "optimizer:head" if s.op is None else f"optimizer:{s.op}"
            need = o.momentum > 0 or (o.rounding == "master" and s.kind == "update" and s.op is not None)
            if need and name not in self.plan.tensors:
                raise TinyQTError(f"optimizer (momentum {o.momentum:g}, rounding '{o.rounding}') needs "
                                  f"'{name}', which this plan has no room for: compile with "
                                  f"momentum={o.momentum:g}, rounding='{o.rounding}'")

    def _init_persistent(self):
        t = self.model.tensors
        for name, spec in self.plan.tensors.items():
            if spec.kind == "weights":
                w = self.ops[name.split(":", 1)[1]].weight
                self.views[name][...] = w[..., :spec.shape[-1]]  # the trained slice (or all)
            elif spec.kind == "bias":
                op = self.ops[name.split(":", 1)[1]]
                self.views[name][...] = op.bias if op.bias is not None else 0
        head = self.views["head:weights"]
        head[...] = 0.0
        cls = self._classifier()
        k, d = self.head_classes, self.head_features
        if cls is not None and cls.out_channels == k:
            # start from the model's own classifier, dequantized
            s_x = quant.f32(t[cls.inputs[0]].scale)
            ws = np.asarray(cls.w_scales, np.float32)
            head[:k * d] = (cls.weight.reshape(k, d).astype(np.float32) * ws[:, None]).reshape(-1)
            if cls.bias is not None:
                head[k * d:] = cls.bias.astype(np.float32) * np.float32(s_x) * ws
        if "optimizer:head" in self.views:
            self.views["optimizer:head"][...] = 0.0
        for name, spec in self.plan.tensors.items():
            if spec.kind == "accumulator":
                self.views[name][...] = 0.0
        self.accumulated = 0
        for s in update_steps(self.plan.steps):
            self._states[s.op] = self._new_state(s)

    def _classifier(self):
        from .compiler.training_graph import classifier_op
        op = classifier_op(self.model)
        return op if isinstance(op, Conv2D) else None

    def _new_state(self, step):
        """ParamState whose buffers are views of the arena's optimizer tensor."""
        name = f"optimizer:{step.op}"
        if name not in self.views:
            return None
        buf = self.views[name].reshape(-1)
        buf[...] = 0.0
        op = self.ops[step.op]
        c_in = self.model.tensors[op.inputs[0]].shape[-1]
        st = ParamState()
        for field, (a, b) in state_layout(step, op, c_in, self.opt.momentum > 0,
                                          self.opt.rounding == "master").items():
            setattr(st, field, buf[a:b])
        if st.w_master is not None:
            from .optim import trained_weights
            sel = np.arange(step.attrs["n_sel"], dtype=np.int32)
            st.w_master[...] = trained_weights(op.weight, sel, op.depthwise, c_in).astype(np.float32).reshape(-1)
        return st

    def _conv_quant(self, op):
        if op.name not in self._quant:
            t = self.model.tensors
            t_in, t_out = t[op.inputs[0]], t[op.output]
            m, s = quant.conv_multipliers(t_in.scale, op.w_scales, t_out.scale)
            lo, hi = quant.activation_range(op.activation, t_out.scale, t_out.zero_point)
            self._quant[op.name] = (m, s, lo, hi)
        return self._quant[op.name]

    # ------------------------------------------------------------------ execution
    def _weights(self, op, s):
        """(weights, bias) step s computes with: the assembled full copy of a
        partially trained layer, its SRAM copy, or the frozen ones."""
        full = [n for n in s.reads if n.startswith("wfull:")]
        w = self.views[full[0]] if full else self.views.get(f"weights:{op.name}")
        b = self.views.get(f"bias:{op.name}")
        return (op.weight if w is None else w), (op.bias if b is None else b)

    def _expand(self, s, _label):
        """Full weights of a partially trained layer: Flash + its SRAM slice."""
        op = self.ops[s.op]
        w, full = self.views[s.reads[0]], self.views[s.writes[0]]
        full[...] = op.weight
        full[..., :w.shape[-1]] = w

    def _compact(self, s, _label):
        full, w = self.views[s.reads[0]], self.views[s.writes[0]]
        w[...] = full[..., :w.shape[-1]]

    def step(self, image, label):
        """One training step on one int8 image [1, H, W, C] with an integer
        label; returns the loss (float)."""
        x_name = self.model.inputs[0]
        self.model.check_input(image)
        if image.shape[0] != 1:
            raise ShapeError(f"input '{x_name}': the training step takes batch 1, got {image.shape[0]}")
        label = int(label)
        if not 0 <= label < self.head_classes:
            raise ShapeError(f"label {label} is outside 0..{self.head_classes - 1}")
        self.views[x_name][...] = image
        loss = None
        for s in self.plan.steps:
            out = getattr(self, "_" + s.kind)(s, label)
            if s.kind == "loss":
                loss = out
        self.steps_done += 1
        if self.plan.accumulates:
            self.accumulated += 1
        return loss

    def _forward(self, s, _label):
        """One forward op; a conv or add the backward passes through writes its
        clamp mask itself (the kernels' clamp_mask)."""
        op = self.ops[s.op]
        v = self.views
        args = [v[n] for n in op.inputs]
        mask = v.get(f"mask:{op.name}")
        if isinstance(op, Conv2D):
            w, b = self._weights(op, s)
            split = s.attrs.get("split")
            m, sh, lo, hi = self._conv_quant(op)
            t = self.model.tensors
            y = kernels.conv2d(args[0], op.weight if split else w, b, m, sh, stride=op.stride, padding=op.padding,
                               dilation=op.dilation, input_offset=-t[op.inputs[0]].zero_point,
                               output_offset=t[op.output].zero_point, act_min=lo, act_max=hi,
                               depthwise=op.depthwise, trained=v[split] if split else None, mask_out=mask)
        elif isinstance(op, Add):
            y = run_op(self.model, op, args, mask_out=mask)
        else:
            if mask is not None:
                raise TinyQTError(f"runtime: op '{op.name}' ({op.kind}) cannot write a clamp mask")
            y = run_op(self.model, op, args)
        v[op.output][...] = y.reshape(v[op.output].shape)
        saved = s.attrs.get("saved")
        if saved and saved.startswith("saved:"):
            v[saved][...] = args[0][..., :s.attrs["n_sel"]]

    def _fused_block(self, s, _label):
        """An inverted-bottleneck block streamed row by row by the C kernel
        tq_bottleneck_s8 (compiler/fusion.py): same bytes as the unfused ops."""
        from .compiler.fusion import bottleneck_spec
        spec = self._specs.get(s.name)
        if spec is None:
            spec = self._specs[s.name] = bottleneck_spec(self.model, s.attrs["block"],
                                                         s.attrs.get("planar_rows", False))
        x, y = self.views[s.reads[0]], self.views[s.writes[0]]
        st = spec.run(x.shape, x.reshape(-1), y.shape, y.reshape(-1), self.views[s.scratch].reshape(-1))
        if st != 0:
            from .errors import KernelError
            raise KernelError("tq_bottleneck_s8", st)

    def _head_views(self):
        k, d = self.head_classes, self.head_features
        hw = self.views["head:weights"]
        return hw[:k * d].reshape(k, d), hw[k * d:]

    def _head(self, s, _label):
        v = self.views
        if s.name == "head:dequantize":
            t = self.model.tensors[s.reads[0]]
            v["features"][...] = backward.dequantize(v[s.reads[0]].reshape(1, -1), t.scale, t.zero_point)
        else:
            w, b = self._head_views()
            v["logits"][...] = backward.linear(v["features"], w, b)

    def _loss(self, s, label):
        loss, grad = backward.softmax_cross_entropy(self.views["logits"], np.array([label]))
        self.views["grad:logits"][...] = grad
        return loss

    def _update(self, s, _label):
        if self.plan.accumulates:
            return self._accumulate_gradient(s)
        v = self.views
        if s.op is None:  # the fp32 head, with momentum when the plan has its buffers
            w, b = self._head_views()
            wm = bm = None
            if "optimizer:head" in v:
                k, d = self.head_classes, self.head_features
                wm, bm = v["optimizer:head"][:k * d].reshape(k, d), v["optimizer:head"][k * d:]
            g = backward.linear_backward_update(v["features"], v["grad:logits"], w, b, self.opt.head_lr,
                                                momentum=self.opt.momentum if wm is not None else 0.0,
                                                w_momentum=wm, b_momentum=bm,
                                                need_grad_in="grad:features" in v)
            if g is not None:
                v["grad:features"][...] = g
            return
        op = self.ops[s.op]
        t = self.model.tensors
        g, mask, x_saved, w, b = (v[n] for n in s.reads)
        common = dict(x_scale=t[op.inputs[0]].scale, x_zero_point=t[op.inputs[0]].zero_point,
                      stride=op.stride, padding=op.padding, dilation=op.dilation, mask=mask)
        sel = np.arange(s.attrs["n_sel"], dtype=np.int32)
        if op.depthwise:
            backward.depthwise_backward_weight_update(g, x_saved, w, b, op.w_scales, self.opt, self._states[s.op],
                                                      in_channels=t[op.inputs[0]].shape[-1], sel=sel, **common)
        else:
            backward.conv2d_backward_weight_update(g, x_saved, w, b, op.w_scales, self.opt, self._states[s.op],
                                                   sel=sel, **common)

    def _update_bias(self, s, _label):
        v = self.views
        op = self.ops[s.op]
        g, mask, b = (v[n] for n in s.reads)
        gb = backward.bias_backward(g, mask)
        if self.plan.accumulates:
            v[f"gradacc:{op.name}"] += gb
            return
        backward.sgd_update_bias(b, gb, op.w_scales, self.model.tensors[op.inputs[0]].scale, self.opt,
                                 self._states[s.op])

    # ------------------------------------------------------------------ gradient accumulation
    def _accumulate_gradient(self, s):
        """The update step of an accumulating plan: adds this image's gradient
        to the `gradacc:` sum (the head's input gradient uses its unchanged
        weights, as the fused update does)."""
        v = self.views
        if s.op is None:
            w, b = self._head_views()
            g, x = v["grad:logits"], v["features"]
            k, d = self.head_classes, self.head_features
            acc = v["gradacc:head"]
            acc[:k * d] += (g.reshape(k, 1) * x.reshape(1, d)).reshape(-1)
            acc[k * d:] += g.reshape(-1)
            if "grad:features" in v:
                v["grad:features"][...] = backward.linear_backward_update(x, g, w, b, 0.0)
            return
        op = self.ops[s.op]
        t = self.model.tensors
        g, mask, x_saved = (v[n] for n in s.reads[:3])
        gw, gb = backward.conv2d_backward_weight(
            g, x_saved, op.weight.shape[1:3], x_scale=t[op.inputs[0]].scale,
            x_zero_point=t[op.inputs[0]].zero_point, stride=op.stride, padding=op.padding,
            dilation=op.dilation, depthwise=op.depthwise, in_channels=t[op.inputs[0]].shape[-1],
            sel=np.arange(s.attrs["n_sel"], dtype=np.int32), mask=mask)
        acc = v[f"gradacc:{op.name}"]
        acc[:gw.size] += gw.reshape(-1)
        acc[gw.size:] += gb

    def apply_accumulated(self):
        """Applies the mean of the gradients summed since the last call (one
        optimizer step for every trained tensor, in plan order) and clears
        the sums; returns how many steps were averaged (0: nothing to do)."""
        n = self.accumulated
        if not self.plan.accumulates or n == 0:
            return 0
        v = self.views
        inv = np.float32(1.0 / n)
        for s in self.plan.steps:
            if s.kind not in ("update", "update_bias"):
                continue
            if s.op is None:
                self._apply_head(v["gradacc:head"] * inv)
                v["gradacc:head"][...] = 0.0
                continue
            op = self.ops[s.op]
            acc = v[f"gradacc:{op.name}"]
            x_scale = self.model.tensors[op.inputs[0]].scale
            if s.kind == "update_bias":
                backward.sgd_update_bias(v[f"bias:{op.name}"], acc * inv, op.w_scales, x_scale, self.opt,
                                         self._states[s.op])
            else:
                self._apply_weights(op, s, acc * inv, x_scale)
            acc[...] = 0.0
        self.accumulated = 0
        return n

    def _apply_weights(self, op, s, grad, x_scale):
        """sgd_update of a weight-trained layer from its mean gradient, on its
        persistent SRAM weights (the trained slice when split: the selected
        channels are its first n_sel)."""
        w, b = self.views[f"weights:{op.name}"], self.views[f"bias:{op.name}"]
        n_sel = s.attrs["n_sel"]
        c_in = self.model.tensors[op.inputs[0]].shape[-1]
        kh, kw = op.weight.shape[1:3]
        sel = np.arange(n_sel, dtype=np.int32)
        n_w, n_b = trained_counts(s, op, c_in)
        if op.depthwise:
            sliced = w.shape[-1] != op.out_channels
            backward.sgd_update(w, b[:n_b] if sliced else b, grad[:n_w].reshape(n_b, kh, kw),
                                grad[n_w:], op.w_scales[:n_b] if sliced else op.w_scales, x_scale,
                                self.opt, self._states[s.op], sel=sel, depthwise=True,
                                in_channels=n_sel if sliced else c_in)
        else:
            backward.sgd_update(w, b, grad[:n_w].reshape(op.out_channels, kh, kw, n_sel), grad[n_w:],
                                op.w_scales, x_scale, self.opt, self._states[s.op], sel=sel)

    def _apply_head(self, grad):
        """fp32 SGD of the head (the arithmetic of tq_linear_backward_update_f32)."""
        hw = self.views["head:weights"]
        if "optimizer:head" in self.views:
            m = self.views["optimizer:head"]
            m[...] = np.float32(self.opt.momentum) * m + grad
            grad = m
        hw[...] = hw - np.float32(self.opt.head_lr) * grad

    def _backward_input(self, s, _label):
        v = self.views
        op = self.ops[s.op]
        t = self.model.tensors
        if s.name.startswith("backward:pool") or op.kind == "mean":
            x = op.inputs[0]
            v[s.writes[0]][...] = backward.mean_backward(v[s.reads[0]].reshape(1, 1, 1, -1), t[x].shape)
        elif isinstance(op, Add):
            ga, _ = backward.add_backward(v[s.reads[0]], mask=v[s.reads[1]])
            for name in s.writes:
                v[name][...] = ga
        elif isinstance(op, Conv2D) and s.attrs.get("inplace"):
            w, _ = self._weights(op, s)
            backward.depthwise_backward_input_inplace(v[s.reads[0]], w, op.w_scales, padding=op.padding,
                                                      mask=v[s.reads[1]])
        elif isinstance(op, Conv2D):
            w, _ = self._weights(op, s)
            v[s.writes[0]][...] = backward.conv2d_backward_input(
                v[s.reads[0]], w, op.w_scales, t[op.inputs[0]].shape, stride=op.stride, padding=op.padding,
                dilation=op.dilation, depthwise=op.depthwise, mask=v[s.reads[1]])
        else:
            raise TinyQTError(f"step '{s.name}': no backward for {op.kind}")

    def _backward_block(self, s, _label):
        """A block's backward streamed over expanded channels by the C kernel
        tq_bottleneck_backward_f32 (training_graph.py, fuse_backward): the
        same bits as the per-layer steps it replaces."""
        spec = self._specs.get(s.name)
        if spec is None:
            spec = self._specs[s.name] = self._block_backward_spec(s)
        v = self.views
        gi = s.attrs["grad_in"]
        st = spec.run(self.opt.params, v[s.reads[0]].reshape(-1), None if gi is None else v[gi].reshape(-1),
                      v[s.scratch].reshape(-1))
        if st != 0:
            raise KernelError("tq_bottleneck_backward_f32", st)

    def _block_backward_spec(self, s):
        from .compiler.fusion import block_backward_layers
        blk, v = s.attrs["block"], self.views
        masks = tuple(v[f"mask:{o.name}"] for o in (blk.pw1, blk.dw, blk.pw2))
        biases = tuple(v.get(f"bias:{o.name}") for o in (blk.pw1, blk.dw))
        n_sel, saved = s.attrs["n_sel"], s.attrs["saved"]
        spec, _ = backward.bottleneck_spec(
            *block_backward_layers(self.model, blk, masks, biases), self.model.tensors[blk.input].shape, self.opt,
            pw1_weights=v[f"weights:{blk.pw1.name}"] if n_sel else None,
            pw1_saved=v[saved] if n_sel else None, pw1_state=self._states.get(blk.pw1.name),
            dw_state=self._states.get(blk.dw.name), tile=s.attrs["tile"], x_f32=s.attrs.get("x_f32", False))
        return spec

    def _accumulate(self, s, _label):
        src, dst = s.reads
        self.views[dst] += self.views[src]

    # ------------------------------------------------------------------ results
    def trained_tensors(self):
        """{name: copy} of every trained tensor (weights, biases, head): a
        checkpoint of what training changed."""
        return {n: self.views[n].copy() for n, s in self.plan.tensors.items()
                if s.kind in ("weights", "bias", "head")}

    def load_trained_tensors(self, tensors):
        """Restores a trained_tensors() checkpoint (shapes must match)."""
        for n, a in tensors.items():
            if n not in self.views or self.views[n].shape != np.shape(a):
                raise ShapeError(f"checkpoint tensor '{n}' does not fit this plan")
            self.views[n][...] = a

    def predict(self, image):
        """Class index for one int8 image with the current trained tensors
        (runs the forward and the head only)."""
        self.model.check_input(image)
        self.views[self.model.inputs[0]][...] = image
        for s in self.plan.steps:
            if s.kind in ("forward", "fused_block") or (s.kind == "expand" and not s.name.endswith("@bwd")):
                getattr(self, "_" + s.kind)(s, 0)
            elif s.kind == "head":
                self._head(s, 0)
        return int(np.argmax(self.views["logits"]))
