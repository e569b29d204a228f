"""Firmware C for a training Plan: the same kernel calls the host runtime
makes, on the same arena offsets, so the device computes the host's bits.

generate(plan, model, optimizer, out_dir) writes
  tq_model.c     frozen weights, biases, requantization tables (const: Flash),
                 the arena (one static array of the plan's peak), tq_init()
                 and tq_train_step(image, label, &loss);
  tq_model.h     their declarations and sizes;
and returns the file paths. The kernel library (tinyqt.mcu.kernel_sources)
is compiled beside them.

Every optimizer option of tinyqt.optim.SGD is emitted: nearest, stochastic
or fp32-master rounding, with or without momentum. Their buffers are the
plan's `optimizer:` tensors (the runtime's layout: weight momentum, bias
momentum, then the master copy); tq_init() zeroes them and fills the
master copies from the Flash weights. Plans compiled with accumulate=True
are host-only and refused.
"""
import os

import numpy as np

from . import quant
from .compiler.fusion import _stage
from .errors import TinyQTError
from .graph import Add, Conv2D, Mean
from .runtime import Runtime, state_layout, trained_counts


def _f(v):
    """A float32 literal that round-trips exactly."""
    v = np.float32(v)
    if not np.isfinite(v):
        raise TinyQTError(f"non-finite constant {v} cannot be emitted")
    return np.format_float_scientific(v, unique=True, exp_digits=2).replace("+", "") + "f"


def _array(ctype, name, values, const=True):
    flat = np.asarray(values).reshape(-1)
    if ctype == "float":
        body = ",".join(_f(v) for v in flat)
    else:
        body = ",".join(str(int(v)) for v in flat)
    qual = "static const" if const else "static"
    return (f"{qual} {ctype} {name}[{max(1, flat.size)}] __attribute__((aligned(4), unused)) = "
            f"{{{body or '0'}}};\n")


def _ident(name):
    return "".join(c if c.isalnum() else "_" for c in name)


def _conv_params_init(params):
    """Designated initializer fields of a tq_conv_params (the _stage tuple)."""
    names = ("stride_h", "stride_w", "pad_top", "pad_left", "dilation_h", "dilation_w", "input_offset",
             "output_offset", "act_min", "act_max")
    return ", ".join(f".{n} = {int(v)}" for n, v in zip(names, params))


def _dims(shape):
    s = tuple(int(v) for v in shape)
    if len(s) == 2:
        s = (s[0], 1, 1, s[1])
    return "{%d, %d, %d, %d}" % s


class _Emitter:
    def __init__(self, plan, model, optimizer):
        if plan.accumulates:
            raise TinyQTError("codegen: gradient accumulation is host-only for now; compile the plan "
                              "without accumulate=True")
        self.plan, self.model, self.opt = plan, model, optimizer
        # the host runtime of the same plan: raises when the plan has no room for the
        # optimizer's state, and gives the head's initial weights
        self.host = Runtime(plan, model, optimizer)
        self.t = model.tensors
        self.ops = {op.name: op for op in model.ops}
        self.consts = []
        self.body = []
        self.emitted = set()
        self.conv_params = {}   # conv key -> its tq_conv_params field values
        self.inference = False  # while emitting tq_infer: forward kernels write no clamp masks

    def ptr(self, name, ctype):
        return f"(({ctype} *)(tq_arena + {self.plan.memory.offsets[name]}u /* {name} */))"

    def const_once(self, key, text):
        """Adds a constant definition once; True when it was new."""
        if key in self.emitted:
            return False
        self.emitted.add(key)
        self.consts.append(text)
        return True

    def conv_consts(self, op):
        """Flash constants of a conv: weights, bias, multipliers, shifts, w_scales."""
        key = _ident(op.name)
        if key not in self.emitted:
            self.emitted.add(key)
            params, m, sh, fdims, w, b = _stage(self.model, op)
            self.conv_params[key] = params
            self.consts.append(_array("int8_t", f"w_{key}", w))
            self.consts.append(_array("int32_t", f"b_{key}", b if b is not None else np.zeros(op.out_channels)))
            self.consts.append(_array("int32_t", f"m_{key}", m))
            self.consts.append(_array("int32_t", f"s_{key}", sh))
            self.consts.append(_array("float", f"ws_{key}", np.asarray(op.w_scales, np.float32)))
            self.consts.append(f"static const tq_conv_params p_{key} __attribute__((unused)) = "
                               f"{{{_conv_params_init(params)}}};\n")
            self.consts.append(f"static const tq_channel_quant q_{key} __attribute__((unused)) = {{m_{key}, s_{key}}};\n")
            self.consts.append(f"static const tq_dims fd_{key} __attribute__((unused)) = {_dims(fdims)};\n")
        return key

    def call(self, expr, what):
        """One kernel call; under -DTQ_PROFILE its instructions accumulate
        into tq_profile[] under the name of its plan step."""
        step = what.split(":mask")[0].split(":sgd")[0]
        if step not in self.profile_index:
            self.profile_index[step] = len(self.profile_index)
        i = self.profile_index[step]
        self.body.append(f"    TQ_PROF_BEGIN();\n    st = {expr};\n    TQ_PROF_END({i});\n"
                         f"    if (st != TQ_OK) {{ tq_failed_step = \"{what}\"; return st; }}\n")

    def params_ref(self, op, key, values):
        """&params of a forward call (values: its tq_conv_params / tq_add_params
        field values). When the training step keeps the op's clamp mask, a
        second Flash copy whose clamp_mask points at the mask's arena bytes
        (tq_arena is static: an address constant), so the kernel writes the
        mask as it finishes; inference keeps the plain one."""
        mask = f"mask:{op.name}"
        if mask not in self.plan.tensors or self.inference:
            return f"&p_{key}"
        init = _conv_params_init(values) if isinstance(op, Conv2D) else ", ".join(str(int(v)) for v in values)
        ctype = "tq_conv_params" if isinstance(op, Conv2D) else "tq_add_params"
        self.const_once(f"pm_{key}", f"static const {ctype} pm_{key} = {{{init}, "
                                     f".clamp_mask = {self.ptr(mask, 'uint8_t')}}};\n")
        return f"&pm_{key}"

    def weights_ptr(self, op, s, key):
        """The weights step s computes with: the assembled full copy of a
        partially trained layer, its SRAM copy, or the Flash constants."""
        full = [n for n in s.reads if n.startswith("wfull:")]
        if full:
            return self.ptr(full[0], "int8_t")
        if f"weights:{op.name}" in self.plan.tensors:
            return self.ptr(f"weights:{op.name}", "int8_t")
        return f"w_{key}"

    @staticmethod
    def copy_rows(dst, src, rows, dst_len, src_len, n):
        """C statement: dst[r * dst_len + j] = src[r * src_len + j] for j < n,
        scattering or gathering the trained slice (last axis) of a weight tensor."""
        return (f"    {{ int32_t r, j; int8_t *d = {dst}; const int8_t *s = {src};\n"
                f"      for (r = 0; r < {rows}; r++) for (j = 0; j < {n}; j++) "
                f"d[r * {dst_len} + j] = s[r * {src_len} + j]; }}\n")

    def step_expand(self, s):
        op = self.ops[s.op]
        key = self.conv_consts(op)
        full, part = s.writes[0], s.reads[0]
        n, c = self.plan.tensors[part].shape[-1], op.weight.shape[-1]
        self.body.append(f"    memcpy({self.ptr(full, 'int8_t')}, w_{key}, {op.weight.size});\n")
        self.body.append(self.copy_rows(self.ptr(full, "int8_t"), self.ptr(part, "int8_t"), op.weight.size // c, c, n, n))

    def step_compact(self, s):
        op = self.ops[s.op]
        full, part = s.reads[0], s.writes[0]
        n, c = self.plan.tensors[part].shape[-1], op.weight.shape[-1]
        self.body.append(self.copy_rows(self.ptr(part, "int8_t"), self.ptr(full, "int8_t"), op.weight.size // c, n, c, n))

    # ------------------------------------------------------------- steps
    def step_forward(self, s):
        op = self.ops[s.op]
        t = self.t
        x, y = op.inputs[0], op.output
        if isinstance(op, Conv2D):
            key = self.conv_consts(op)
            w = self.weights_ptr(op, s, key)
            b = self.ptr(f"bias:{op.name}", "int32_t") if f"bias:{op.name}" in self.plan.tensors else f"b_{key}"
            fn = "tq_depthwise_conv_s8" if op.depthwise else (
                "tq_conv_1x1_s8" if op.weight.shape[1:3] == (1, 1) and not any(op.padding)
                and tuple(op.dilation) == (1, 1) else "tq_conv_s8")
            scratch = (self.ptr(s.scratch, "uint8_t"), self.plan.tensors[s.scratch].nbytes) if s.scratch else ("NULL", 0)
            split = s.attrs.get("split")
            if split:  # Flash weights + the trained slice in SRAM
                fn, w = "tq_conv_1x1_s8_split", (f"w_{key}, {self.ptr(split, 'int8_t')}, "
                                                 f"{self.plan.tensors[split].shape[-1]}")
            self.call(f"{fn}({self.params_ref(op, key, self.conv_params[key])}, &q_{key}, "
                      f"&(tq_dims){_dims(t[x].shape)}, "
                      f"{self.ptr(x, 'int8_t')}, &fd_{key}, "
                      f"{w}, {b}, &(tq_dims){_dims(t[y].shape)}, {self.ptr(y, 'int8_t')}, {scratch[0]}, {scratch[1]})",
                      s.name)
        elif isinstance(op, Add):
            a, b, o = (t[n] for n in (*op.inputs, op.output))
            lo, hi = quant.activation_range(op.activation, o.scale, o.zero_point)
            p = quant.add_params(a.scale, a.zero_point, b.scale, b.zero_point, o.scale, o.zero_point, lo, hi)
            key = _ident(op.name)
            self.const_once(key, "static const tq_add_params p_%s = {%s, NULL};\n" % (key, ", ".join(str(int(v)) for v in p)))
            self.call(f"tq_add_s8({self.params_ref(op, key, p)}, {int(np.prod(o.shape))}, "
                      f"{self.ptr(op.inputs[0], 'int8_t')}, "
                      f"{self.ptr(op.inputs[1], 'int8_t')}, {self.ptr(y, 'int8_t')})", s.name)
        elif isinstance(op, Mean):
            p = quant.mean_params(t[x].scale, t[x].zero_point, t[y].scale, t[y].zero_point)
            key = _ident(op.name)
            self.const_once(key, "static const tq_mean_params p_%s = {%s};\n" % (key, ", ".join(str(int(v)) for v in p)))
            self.call(f"tq_mean_s8(&p_{key}, &(tq_dims){_dims(t[x].shape)}, {self.ptr(x, 'int8_t')}, "
                      f"{self.ptr(y, 'int8_t')})", s.name)
        else:
            raise TinyQTError(f"codegen: no forward for op '{op.name}' ({op.kind})")
        if f"mask:{op.name}" in self.plan.tensors and not isinstance(op, (Conv2D, Add)):
            raise TinyQTError(f"codegen: op '{op.name}' ({op.kind}) cannot write a clamp mask")
        saved = s.attrs.get("saved")
        if saved and saved.startswith("saved:"):
            shape = t[x].shape
            n_sel, c = s.attrs["n_sel"], shape[3]
            self.body.append(f"    {{ int32_t i, j; const int8_t *src = {self.ptr(x, 'int8_t')}; int8_t *dst = {self.ptr(saved, 'int8_t')};\n"
                             f"      for (i = 0; i < {shape[1] * shape[2]}; i++) for (j = 0; j < {n_sel}; j++) "
                             f"dst[i * {n_sel} + j] = src[i * {c} + j]; }}\n")

    def step_fused_block(self, s):
        blk = s.attrs["block"]
        t = self.t
        names = {}
        for role, op in (("pw1", blk.pw1), ("dw", blk.dw), ("pw2", blk.pw2)):
            if op is not None:
                names[role] = self.conv_consts(op)
        key = _ident(blk.name)
        fields = [f".has_expand = {1 if blk.pw1 else 0}"]
        for role, k in names.items():
            fields += [f".{role}_params = p_{k}", f".{role}_quant = {{m_{k}, s_{k}}}", f".{role}_filter_dims = {_dims(self.ops_shape(k))}",
                       f".{role}_filter = w_{k}", f".{role}_bias = b_{k}"]
        mid = t[blk.dw.inputs[0]].shape
        fields += [f".out_w = {t[blk.dw.output].shape[2]}", f".mid_h = {mid[1]}", f".mid_w = {mid[2]}",
                   f".planar_rows = {int(s.attrs.get('planar_rows', False))}"]
        if blk.add is not None:
            a, b, o = (t[n] for n in (*blk.add.inputs, blk.add.output))
            lo, hi = quant.activation_range(blk.add.activation, o.scale, o.zero_point)
            p = quant.add_params(a.scale, a.zero_point, b.scale, b.zero_point, o.scale, o.zero_point, lo, hi)
            fields += [".has_residual = 1", f".residual_first = {int(blk.add.inputs[0] == blk.input)}",
                       ".add_params = {%s, NULL}" % ", ".join(str(int(v)) for v in p)]
        # struct initializers of other const objects are not constant expressions in C99:
        # the block params are filled at run time from the constants
        if self.const_once(f"bp_{key}", f"static tq_bottleneck_params bp_{key};\n"):
            self.init_blocks.append((f"bp_{key}", "tq_bottleneck_params", fields))
        self.call(f"tq_bottleneck_s8(&bp_{key}, &(tq_dims){_dims(t[blk.input].shape)}, {self.ptr(blk.input, 'int8_t')}, "
                  f"&(tq_dims){_dims(t[blk.output].shape)}, {self.ptr(blk.output, 'int8_t')}, "
                  f"{self.ptr(s.scratch, 'uint8_t')}, {self.plan.tensors[s.scratch].nbytes})", s.name)

    def step_backward_block(self, s):
        """tq_bottleneck_backward_f32 of a streamed block; its parameters
        (pointers into the arena and Flash) are filled in tq_init."""
        blk, t = s.attrs["block"], self.t
        states = {u.op: self.state(u, self.ops[u.op], self.conv_consts(self.ops[u.op])) for u in s.attrs["updates"]}
        fields = []
        for role, op in (("pw1", blk.pw1), ("dw", blk.dw), ("pw2", blk.pw2)):
            k = self.conv_consts(op)
            bias = self.ptr(f"bias:{op.name}", "int32_t") if op.name in states else "NULL"
            fields.append(f".{role} = {{.params = p_{k}, .filter_dims = fd_{k}, .filter = w_{k}, .w_scale = ws_{k}, "
                          f".input_scale = {_f(t[op.inputs[0]].scale)}, "
                          f".mask = {self.ptr(f'mask:{op.name}', 'uint8_t')}, .bias = {bias}, "
                          f".state = {states.get(op.name, 'NULL')}}}")
        n_sel = s.attrs["n_sel"]
        if n_sel:
            fields += [f".pw1_weights = {self.ptr(f'weights:{blk.pw1.name}', 'int8_t')}", f".pw1_n_sel = {n_sel}",
                       f".pw1_saved = {self.ptr(s.attrs['saved'], 'int8_t')}",
                       f".pw1_x_f32 = {int(s.attrs.get('x_f32', False))}"]
        fields += [f".input_dims = {_dims(t[blk.input].shape)}", f".mid_dims = {_dims(t[blk.dw.inputs[0]].shape)}",
                   f".output_dims = {_dims(t[blk.pw2.output].shape)}", f".tile = {s.attrs['tile']}"]
        key = _ident(blk.name)
        if self.const_once(f"bbp_{key}", f"static tq_bottleneck_backward_params bbp_{key};\n"):
            self.init_blocks.append((f"bbp_{key}", "tq_bottleneck_backward_params", fields))
        gi = s.attrs["grad_in"]
        self.call(f"tq_bottleneck_backward_f32(&bbp_{key}, &tq_opt, {self.ptr(s.reads[0], 'float')}, "
                  f"{self.ptr(gi, 'float') if gi else 'NULL'}, {self.ptr(s.scratch, 'uint8_t')}, "
                  f"{self.plan.tensors[s.scratch].nbytes})", s.name)

    def ops_shape(self, key):
        op = next(o for o in self.model.ops if _ident(o.name) == key)
        return op.weight.shape

    def step_head(self, s):
        k, d = self.plan.graph.head_shape
        hw = self.ptr("head:weights", "float")
        if s.name == "head:dequantize":
            t = self.t[s.reads[0]]
            self.call(f"tq_dequantize_s8_f32({d}, {self.ptr(s.reads[0], 'int8_t')}, {_f(t.scale)}, {t.zero_point}, "
                      f"{self.ptr('features', 'float')})", s.name)
        else:
            self.call(f"tq_linear_f32(1, {d}, {k}, {self.ptr('features', 'float')}, {hw}, {hw} + {k * d}, "
                      f"{self.ptr('logits', 'float')})", s.name)

    def step_loss(self, s):
        k, _ = self.plan.graph.head_shape
        self.call(f"tq_softmax_xent_f32(1, {k}, {self.ptr('logits', 'float')}, &label, loss, "
                  f"{self.ptr('grad:logits', 'float')})", s.name)

    def step_update(self, s):
        t = self.t
        if s.op is None:
            k, d = self.plan.graph.head_shape
            hw = self.ptr("head:weights", "float")
            gi = self.ptr("grad:features", "float") if "grad:features" in self.plan.tensors else "NULL"
            self.call(f"tq_linear_backward_update_f32(1, {d}, {k}, {self.ptr('features', 'float')}, "
                      f"{self.ptr('grad:logits', 'float')}, {hw}, {hw} + {k * d}, {_f(self.opt.head_lr)}, "
                      f"{self.head_momentum()}, {gi})", s.name)
            return
        op = self.ops[s.op]
        key = self.conv_consts(op)
        g, mask, x_saved, w, b = s.reads
        xs = t[op.inputs[0]].shape
        n_sel = s.attrs["n_sel"]
        saved_dims = _dims(xs[:3] + (n_sel if x_saved.startswith("saved:") else xs[3],))
        scratch = (self.ptr(s.scratch, "uint8_t"), self.plan.tensors[s.scratch].nbytes) if s.scratch else ("NULL", 0)
        common = (f"&p_{key}, {_f(t[op.inputs[0]].scale)}, ws_{key}, &(tq_dims){saved_dims}, {self.ptr(x_saved, 'int8_t')}")
        tail = (f"&(tq_dims){_dims(t[op.output].shape)}, {self.ptr(g, 'float')}, {self.ptr(mask, 'uint8_t')}, "
                f"&fd_{key}, {self.ptr(w, 'int8_t')}, {self.ptr(b, 'int32_t')}, &tq_opt, {self.state(s, op, key)}, "
                f"{scratch[0]}, {scratch[1]}")
        if op.depthwise:
            self.call(f"tq_depthwise_conv_backward_weight_update({common}, {xs[3]}, NULL, {tail})", s.name)
        elif op.weight.shape[1:3] == (1, 1) and not any(op.padding):
            self.call(f"tq_conv_1x1_backward_weight_update({common}, NULL, {tail})", s.name)
        else:
            self.call(f"tq_conv_backward_weight_update({common}, NULL, {tail})", s.name)

    def step_update_bias(self, s):
        op = self.ops[s.op]
        key = self.conv_consts(op)
        g, mask, b = s.reads
        c = op.out_channels
        self.grad_b_max = max(self.grad_b_max, c)
        self.call(f"tq_bias_backward_f32(&(tq_dims){_dims(self.t[op.output].shape)}, {self.ptr(g, 'float')}, "
                  f"{self.ptr(mask, 'uint8_t')}, tq_grad_b)", s.name)
        self.call(f"tq_sgd_update_bias(&tq_opt, {self.state(s, op, key)}, {_f(self.t[op.inputs[0]].scale)}, ws_{key}, {c}, "
                  f"{self.ptr(b, 'int32_t')}, tq_grad_b)", s.name + ":sgd")

    # ------------------------------------------------------------- optimizer state
    def head_momentum(self):
        """The head's momentum arguments of tq_linear_backward_update_f32."""
        if "optimizer:head" not in self.plan.tensors or not self.opt.momentum:
            return "0.0f, NULL, NULL"
        k, d = self.plan.graph.head_shape
        m = self.ptr("optimizer:head", "float")
        return f"{_f(self.opt.momentum)}, {m}, {m} + {k * d}"

    def state(self, s, op, key):
        """&tq_sgd_state of a trained layer: its momentum and master buffers
        in the arena (tinyqt.runtime's layout), or the shared rng-only state."""
        name = f"optimizer:{op.name}"
        self.uses_opt = True
        if name not in self.plan.tensors:
            self.shared_state = True
            return "&tq_state"
        buf = self.ptr(name, "float")
        layout = state_layout(s, op, self.t[op.inputs[0]].shape[-1], self.opt.momentum > 0,
                              self.opt.rounding == "master")
        wm, bm, master = (f"{buf} + {layout[f][0]}" if f in layout else "NULL"
                          for f in ("w_momentum", "b_momentum", "w_master"))
        if master != "NULL":
            self.master_inits.append(self.master_init(s, op, key, master))
        self.consts.append(f"static const tq_sgd_state st_{key} = {{&tq_rng, {wm}, {bm}, {master}}};\n")
        return f"&st_{key}"

    def master_init(self, s, op, key, master):
        """C statement filling the master copy of update step s (weight-gradient
        layout, the first n_sel input channels) from the Flash weights."""
        kh, kw = op.weight.shape[1:3]
        taps = kh * kw
        n_sel = s.attrs["n_sel"]
        if op.depthwise:
            n_b = trained_counts(s, op, self.t[op.inputs[0]].shape[-1])[1]
            return (f"    {{ int32_t c, p; float *m = {master};\n"
                    f"      for (c = 0; c < {n_b}; c++) for (p = 0; p < {taps}; p++) "
                    f"m[c * {taps} + p] = (float)w_{key}[p * {op.out_channels} + c]; }}\n")
        c_in = op.weight.shape[3]
        rows = op.out_channels * taps
        return (f"    {{ int32_t r, j; float *m = {master};\n"
                f"      for (r = 0; r < {rows}; r++) for (j = 0; j < {n_sel}; j++) "
                f"m[r * {n_sel} + j] = (float)w_{key}[r * {c_in} + j]; }}\n")

    def step_backward_input(self, s):
        op = self.ops[s.op]
        t = self.t
        if op.kind == "mean":
            self.call(f"tq_mean_backward_f32(&(tq_dims){_dims(t[op.inputs[0]].shape)}, {self.ptr(s.reads[0], 'float')}, "
                      f"NULL, {self.ptr(s.writes[0], 'float')})", s.name)
        elif isinstance(op, Add):
            size = int(np.prod(t[op.output].shape))
            for name in s.writes:
                self.call(f"tq_add_backward_f32({size}, {self.ptr(s.reads[0], 'float')}, {self.ptr(s.reads[1], 'uint8_t')}, "
                          f"{self.ptr(name, 'float')}, NULL)", s.name)
        elif isinstance(op, Conv2D) and s.attrs.get("inplace"):
            key = self.conv_consts(op)
            self.call(f"tq_depthwise_conv_backward_input_inplace_f32(&p_{key}, ws_{key}, "
                      f"&(tq_dims){_dims(t[op.output].shape)}, {self.ptr(s.reads[0], 'float')}, "
                      f"{self.ptr(s.reads[1], 'uint8_t')}, &fd_{key}, {self.weights_ptr(op, s, key)}, "
                      f"{self.ptr(s.scratch, 'uint8_t')}, {self.plan.tensors[s.scratch].nbytes})", s.name)
        elif isinstance(op, Conv2D):
            key = self.conv_consts(op)
            w = self.weights_ptr(op, s, key)
            fn = "tq_depthwise_conv_backward_input_f32" if op.depthwise else (
                "tq_conv_1x1_backward_input_f32" if op.weight.shape[1:3] == (1, 1) and not any(op.padding)
                and tuple(op.dilation) == (1, 1) else "tq_conv_backward_input_f32")
            self.call(f"{fn}(&p_{key}, ws_{key}, &(tq_dims){_dims(t[op.output].shape)}, {self.ptr(s.reads[0], 'float')}, "
                      f"{self.ptr(s.reads[1], 'uint8_t')}, &fd_{key}, {w}, &(tq_dims){_dims(t[op.inputs[0]].shape)}, "
                      f"{self.ptr(s.writes[0], 'float')})", s.name)
        else:
            raise TinyQTError(f"codegen: no backward for op '{op.name}' ({op.kind})")

    def step_accumulate(self, s):
        src, dst = s.reads
        n = int(np.prod(self.plan.tensors[dst].shape))
        self.body.append(f"    {{ int32_t i; const float *a = {self.ptr(src, 'float')}; float *d = {self.ptr(dst, 'float')};\n"
                         f"      for (i = 0; i < {n}; i++) d[i] += a[i]; }}\n")

    # ------------------------------------------------------------- files
    def render(self):
        self.profile_index = {}
        self.master_inits = []
        self.shared_state = False
        self.uses_opt = False   # a head-only plan calls no int8 optimizer
        self.init_blocks = []
        self.grad_b_max = 0
        for s in self.plan.steps:
            getattr(self, "step_" + s.kind)(s)
        train_body, self.body = self.body, []
        self.inference = True
        for s in self.plan.steps:  # inference: the forward and the head
            if s.kind in ("forward", "fused_block", "head") or (s.kind == "expand" and not s.name.endswith("@bwd")):
                getattr(self, "step_" + s.kind)(s)
        infer_body, self.body = self.body, train_body
        self.inference = False
        plan, model = self.plan, self.model
        k, d = plan.graph.head_shape
        init = []
        for name, spec in plan.tensors.items():
            if spec.kind in ("weights", "bias"):
                op = self.ops[name.split(":", 1)[1]]
                key = self.conv_consts(op)
                src = f"w_{key}" if spec.kind == "weights" else f"b_{key}"
                if spec.kind == "weights" and tuple(spec.shape) != tuple(op.weight.shape):
                    n, c = spec.shape[-1], op.weight.shape[-1]  # the trained slice only
                    init.append(self.copy_rows(self.ptr(name, "int8_t"), f"w_{key}", op.weight.size // c, n, c, n))
                else:
                    init.append(f"    memcpy({self.ptr(name, 'uint8_t')}, {src}, {spec.nbytes});\n")
        head = self.host.views["head:weights"]
        self.consts.append(_array("float", "tq_head_init", head))
        init.append(f"    memcpy({self.ptr('head:weights', 'uint8_t')}, tq_head_init, {head.nbytes});\n")
        for name, spec in plan.tensors.items():
            if spec.kind == "optimizer":  # momentum starts at zero; master copies are filled below
                init.append(f"    memset({self.ptr(name, 'uint8_t')}, 0, {spec.nbytes});\n")
        init += self.master_inits
        init.append(f"    tq_rng = {int(self.opt.rng[0])}u;  /* the stochastic rounding's stream restarts too */\n")
        for var, ctype, fields in self.init_blocks:
            init.append(f"    {var} = ({ctype}){{{', '.join(fields)}}};\n")
        x = model.inputs[0]
        rounding = {"nearest": 0, "stochastic": 1, "master": 2}[self.opt.rounding]
        src = ["/* generated by tinyqt.codegen: one batch-1 training step of "
               f"{model.name} / {plan.scheme_name}; arena {plan.peak_sram_bytes} bytes */\n",
               "#include <string.h>\n#include \"tq_model.h\"\n#include \"tinyqt/kernels.h\"\n",
               "#include \"tinyqt/backward.h\"\n#include \"tinyqt/fused.h\"\n\n",
               f"static uint8_t tq_arena[{plan.peak_sram_bytes}] __attribute__((aligned(8)));\n",
               f"static uint32_t tq_rng = {int(self.opt.rng[0])}u;\n",
               f"static const tq_sgd_params tq_opt = {{{_f(self.opt.lr)}, {_f(self.opt.momentum)}, {int(self.opt.qas)}, "
               f"{rounding}}};\n" if self.uses_opt else "",
               "static const tq_sgd_state tq_state = {&tq_rng, NULL, NULL, NULL};\n" if self.shared_state else "",
               f"static float tq_grad_b[{self.grad_b_max}];\n" if self.grad_b_max else "",
               "const char *tq_failed_step = 0;\n",
               "#ifdef TQ_PROFILE\n#include \"tq_bench.h\"\n"
               f"uint64_t tq_profile[{max(1, len(self.profile_index))}];\n"
               "const char *const tq_profile_names[] = {%s};\n" % ", ".join(f'"{n}"' for n in self.profile_index),
               f"const uint32_t tq_profile_count = {len(self.profile_index)}u;\n"
               "#define TQ_PROF_BEGIN() tq_bench_start()\n#define TQ_PROF_END(i) (tq_profile[i] += tq_bench_stop())\n"
               "#else\n#define TQ_PROF_BEGIN() ((void)0)\n#define TQ_PROF_END(i) ((void)0)\n#endif\n\n"] + self.consts
        src.append("\nint tq_init(void)\n{\n" + "".join(init) + "    return TQ_OK;\n}\n\n")
        src.append("int tq_train_step(const int8_t *image, int32_t label, float *loss)\n{\n    tq_status st;\n"
                   f"    memcpy({self.ptr(x, 'int8_t')}, image, {int(np.prod(self.t[x].shape))});\n"
                   + "".join(self.body) + "    return TQ_OK;\n}\n\n")
        src.append("int tq_infer(const int8_t *image, int32_t *label)\n{\n    tq_status st;\n    int32_t k, best = 0;\n"
                   f"    const float *logits = {self.ptr('logits', 'float')};\n"
                   f"    memcpy({self.ptr(x, 'int8_t')}, image, {int(np.prod(self.t[x].shape))});\n"
                   + "".join(infer_body) +
                   f"    for (k = 1; k < {k}; k++) {{ if (logits[k] > logits[best]) {{ best = k; }} }}\n"
                   "    *label = best;\n    return TQ_OK;\n}\n\n")
        src.append("const uint8_t *tq_tensor(const char *name, uint32_t *nbytes)\n{\n")
        for name, spec in plan.tensors.items():
            if spec.kind in ("weights", "bias", "head"):
                src.append(f"    if (strcmp(name, \"{name}\") == 0) {{ *nbytes = {spec.nbytes}u; "
                           f"return {self.ptr(name, 'uint8_t')}; }}\n")
        src.append("    *nbytes = 0;\n    return 0;\n}\n")
        header = ("/* generated by tinyqt.codegen */\n#ifndef TQ_MODEL_H\n#define TQ_MODEL_H\n#include <stdint.h>\n"
                  f"#define TQ_ARENA_BYTES {plan.peak_sram_bytes}u\n#define TQ_INPUT_BYTES {int(np.prod(self.t[x].shape))}u\n"
                  f"#define TQ_CLASSES {k}\n"
                  "int tq_init(void);\n/* Class of one image with the current trained tensors. */\n"
                  "int tq_infer(const int8_t *image, int32_t *label);\n"
                  "/* One training step; returns TQ_OK (0) or the failing kernel's status\n"
                  " * (tq_failed_step names the step). */\nint tq_train_step(const int8_t *image, int32_t label, float *loss);\n"
                  "/* A trained tensor (weights:*, bias:*, head:weights) by name, or NULL. */\n"
                  "const uint8_t *tq_tensor(const char *name, uint32_t *nbytes);\nextern const char *tq_failed_step;\n"
                  "#ifdef TQ_PROFILE\n/* instructions per plan step, summed over the steps run (QEMU -icount) */\n"
                  "extern uint64_t tq_profile[];\nextern const char *const tq_profile_names[];\n"
                  "extern const uint32_t tq_profile_count;\n#endif\n#endif\n")
        return "".join(src), header


def generate(plan, model, optimizer, out_dir):
    """Writes tq_model.c / tq_model.h for plan into out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    src, header = _Emitter(plan, model, optimizer).render()
    paths = []
    for name, text in (("tq_model.c", src), ("tq_model.h", header)):
        p = os.path.join(out_dir, name)
        tmp = p + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, p)
        paths.append(p)
    return paths


def _fnv1a(data):
    h = 0x811C9DC5
    for byte in bytes(data):
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def emit_test_main(plan, images, labels, out_dir):
    """A firmware main() that runs len(images) training steps on embedded
    inputs and prints each loss's float bits, the instructions of each step
    (SysTick under QEMU -icount) and an FNV-1a of every trained tensor
    ("TQ_LOSS i bits", "TQ_INSTR i n", "TQ_TENSOR name hash"). Returns its path."""
    names = [n for n, s in plan.tensors.items() if s.kind in ("weights", "bias", "head")]
    lines = ["#include <stdio.h>\n#include <string.h>\n#include \"tq_model.h\"\n#include \"tq_bench.h\"\n",
             _array("int8_t", "tq_images", np.asarray(images, np.int8)),
             _array("int32_t", "tq_labels", np.asarray(labels, np.int32)),
             "static const char *const tq_names[] = {%s};\n" % ", ".join(f'"{n}"' for n in names),
             "static uint32_t fnv(const uint8_t *p, uint32_t n)\n{\n    uint32_t h = 0x811C9DC5u;\n"
             "    while (n--) { h = (h ^ *p++) * 0x01000193u; }\n    return h;\n}\n",
             "int main(void)\n{\n    uint32_t i, n;\n    if (tq_init() != 0) { return 2; }\n",
             f"    for (i = 0; i < {len(labels)}u; i++) {{\n        float loss = 0.0f; uint32_t bits;\n"
             "        int st;\n        uint64_t instr = 0;\n"
             "#ifdef TQ_PROFILE\n        st = tq_train_step(tq_images + i * TQ_INPUT_BYTES, tq_labels[i], &loss);\n"
             "#else\n        tq_bench_start();\n"
             "        st = tq_train_step(tq_images + i * TQ_INPUT_BYTES, tq_labels[i], &loss);\n"
             "        instr = tq_bench_stop();\n#endif\n"
             "        if (st != 0) { printf(\"TQ_FAIL %s %d\\n\", tq_failed_step, st); return 1; }\n"
             "        memcpy(&bits, &loss, 4);\n        printf(\"TQ_LOSS %lu %08lx\\n\", (unsigned long)i, (unsigned long)bits);\n"
             "        printf(\"TQ_INSTR %lu %lu\\n\", (unsigned long)i, (unsigned long)instr);\n    }\n",
             "    for (i = 0; i < sizeof tq_names / sizeof tq_names[0]; i++) {\n"
             "        const uint8_t *p = tq_tensor(tq_names[i], &n);\n"
             "        printf(\"TQ_TENSOR %s %08lx\\n\", tq_names[i], (unsigned long)fnv(p, n));\n    }\n"
             "    printf(\"TQ_STACK %lu\\n\", (unsigned long)tq_stack_used());\n"
             "#ifdef TQ_PROFILE\n    for (i = 0; i < tq_profile_count; i++) {\n"
             "        printf(\"TQ_PROFILE %s %lu\\n\", tq_profile_names[i], (unsigned long)tq_profile[i]);\n    }\n#endif\n"
             "    return 0;\n}\n"]
    path = os.path.join(out_dir, "tq_test_main.c")
    with open(path, "w") as f:
        f.write("".join(lines))
    return path


def host_reference(plan, model, optimizer, images, labels):
    """(loss bits, {tensor: fnv}) of the same steps on the host runtime."""
    rt = Runtime(plan, model, optimizer)
    bits = []
    for x, y in zip(images, labels):
        loss = rt.step(np.asarray(x, np.int8).reshape(model.input.shape), int(y))
        bits.append(int(np.float32(loss).view(np.uint32)))
    return bits, {n: _fnv1a(v.tobytes()) for n, v in rt.trained_tensors().items()}


def image_sizes(elf):
    """(flash_bytes, static_sram_bytes, stack_reserved) of a linked firmware
    from arm-none-eabi-size: text+rodata+data (+ exception/init tables, less
    the test harness's embedded inputs), data+bss, and the stack reservation. The newlib heap the test harness's
    printf draws from is not counted (the library itself never allocates)."""
    import subprocess
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sec = {}
    for line in out.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    flash = sum(v for k, v in sec.items() if k in (".text", ".rodata", ".data", ".ARM.exidx", ".init_array", ".fini_array"))
    static = sum(v for k, v in sec.items() if k in (".data", ".bss"))
    # the test harness's embedded input images are not part of the model's Flash
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in ("tq_images", "tq_labels"):
            flash -= int(parts[1], 16)
    return flash, static, sec.get(".stack", 0)


def run_firmware(plan, model, optimizer, target, steps=2, out_dir=None, seed=0, profile=False,
                 images=None, labels=None):
    """Builds the plan's firmware for target, runs `steps` training steps in
    QEMU on the given int8 images [steps, ...] and labels (default:
    deterministic random ones from seed), and compares every loss and trained tensor
    with the host runtime. Returns a dict: bitexact, flash_bytes, sram_bytes
    (data + bss + measured stack), stack_bytes_used, instructions_per_step,
    target, steps; with profile, also
    "per_step_instructions": {plan step: instructions per training step}."""
    import tempfile

    import tinyqt.mcu.core as mcu
    t = mcu.get_target(target)
    if not t.runnable:
        raise TinyQTError(f"target {t.name} has no QEMU board here; build it with codegen and flash a board")
    out_dir = out_dir or tempfile.mkdtemp(prefix="tq-fw-")
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(model.input.shape))
    if images is None:
        images = rng.integers(-128, 128, (steps, n_in), dtype=np.int8)
        labels = rng.integers(0, plan.graph.head_shape[0], steps)
    images = np.asarray(images)
    if images.dtype != np.int8 or images.size != steps * n_in or labels is None or len(labels) != steps:
        raise TinyQTError(f"run_firmware: expected {steps} int8 images of {n_in} bytes and {steps} labels")
    images = images.reshape(steps, n_in)
    opt_args = optimizer.options()
    src, _ = generate(plan, model, optimizer.__class__(optimizer.lr, **opt_args), out_dir)
    main = emit_test_main(plan, images, labels, out_dir)
    elf = mcu.build(t.name, [src, main], include_dirs=[out_dir], out_dir=out_dir, opt="-O3",
                    defines=("TQ_PROFILE",) if profile else ())
    code, stdout = mcu.run_qemu(t.name, elf, timeout=1800)
    if code != 0:
        raise TinyQTError(f"firmware on {t.name} exited with {code}: {stdout[-1500:]}")
    lines = stdout.splitlines()
    losses = [int(ln.split()[2], 16) for ln in lines if ln.startswith("TQ_LOSS")]
    tensors = {ln.split()[1]: int(ln.split()[2], 16) for ln in lines if ln.startswith("TQ_TENSOR")}
    instr = [int(ln.split()[2]) for ln in lines if ln.startswith("TQ_INSTR")]
    prof = {ln.split()[1]: int(ln.split()[2]) // steps for ln in lines if ln.startswith("TQ_PROFILE")}
    if profile:
        instr = [sum(prof.values())]
    host_losses, host_tensors = host_reference(plan, model, optimizer.__class__(optimizer.lr, **opt_args),
                                               images, labels)
    flash, static_sram, stack_reserved = image_sizes(elf)
    stack_used = [int(ln.split()[1]) for ln in lines if ln.startswith("TQ_STACK")]
    return {"target": t.name, "steps": steps, "bitexact": losses == host_losses and tensors == host_tensors,
            "flash_bytes": flash,
            # data + bss + the stack the run actually used (the harness reserves more)
            "sram_bytes": static_sram + (stack_used[0] if stack_used else stack_reserved),
            "stack_bytes_used": stack_used[0] if stack_used else None,
            "instructions_per_step": int(np.median(instr)) if instr else None,
            "arena_bytes": plan.peak_sram_bytes, "elf": str(elf),
            **({"per_step_instructions": prof} if profile else {})}
