"""Loader of the tiny-training json+npz export (the paper's int8 models).

Format (see ../shared/models/README.md): NAME.json holds the graph
(`first_conv`, `blocks` with `pointwise1`/`depthwise`/`pointwise2`/`residual`,
`classifier`); arrays live in NAME.npz, referenced as
{"array": KEY, "dtype", "shape"}. Weights are OIHW (depthwise [C,1,kh,kw]),
symmetric per output channel; convs pad kernel_size//2 on every side (the
PyTorch convention); ReLU6 is folded into the output quantization, so no
activation is fused.

The IR built here: first conv, per block pointwise1 -> depthwise ->
pointwise2 (-> residual Add), a global Mean, the classifier as a 1x1 conv on
the 1x1 map, and a Reshape to [N, classes]. Op names follow the json path
(`blocks.3.depthwise`), so errors and summaries point back into the file.
"""
import json
import os

import numpy as np

from .errors import ModelFormatError
from .graph import Add, Conv2D, Mean, Model, Reshape


class _Reader:
    """Field access into the json with errors naming the json path."""

    def __init__(self, path, arrays):
        self.path = path
        self.arrays = arrays

    def get(self, node, key, where):
        if not isinstance(node, dict) or key not in node:
            raise ModelFormatError(f"{self.path}: {where}.{key}: missing")
        return node[key]

    def number(self, node, key, where, kind=float):
        v = self.get(node, key, where)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and int(v) != v):
            raise ModelFormatError(f"{self.path}: {where}.{key}: expected a {kind.__name__}, got {v!r}")
        return kind(v)

    def array(self, node, key, where, dtype, shape=None):
        ref = self.get(node, key, where)
        if not isinstance(ref, dict) or "array" not in ref:
            raise ModelFormatError(f"{self.path}: {where}.{key}: expected an array reference")
        name = ref["array"]
        if name not in self.arrays.files:
            raise ModelFormatError(f"{self.path}: {where}.{key}: array '{name}' is not in the .npz")
        try:
            a = self.arrays[name]
        except ValueError as e:
            raise ModelFormatError(f"{self.path}: {where}.{key}: unreadable array '{name}': {e}") from None
        if a.dtype != np.dtype(dtype):
            raise ModelFormatError(f"{self.path}: {where}.{key}: expected dtype {np.dtype(dtype).name}, got {a.dtype}")
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise ModelFormatError(f"{self.path}: {where}.{key}: expected shape {tuple(shape)}, got {a.shape}")
        return a


def _quant(r, params, where, prefix):
    scale = r.number(params, prefix + "_scale", where + ".params")
    zero = r.number(params, prefix + "_zero", where + ".params", int)
    if not scale > 0 or not -128 <= zero <= 127:
        raise ModelFormatError(f"{r.path}: {where}.params: {prefix}_scale={scale}, {prefix}_zero={zero} out of range")
    return scale, zero


class _Builder:
    def __init__(self, reader, model):
        self.r = reader
        self.m = model
        self.count = 0

    def conv(self, node, where, x_name):
        r = self.r
        c_in = r.number(node, "in_channel", where, int)
        c_out = r.number(node, "out_channel", where, int)
        ks = r.get(node, "kernel_size", where)
        if not (isinstance(ks, list) and len(ks) == 2 and all(isinstance(k, int) and k >= 1 for k in ks)):
            raise ModelFormatError(f"{r.path}: {where}.kernel_size: expected [kh, kw], got {ks!r}")
        kh, kw = ks
        stride = r.number(node, "stride", where, int)
        groups = r.number(node, "groups", where, int) if "groups" in node else 1
        depthwise = groups > 1
        if depthwise and not (groups == c_in == c_out):
            raise ModelFormatError(f"{r.path}: {where}: groups={groups} with {c_in}->{c_out} channels is not a depthwise conv")
        if groups < 1 or stride < 1:
            raise ModelFormatError(f"{r.path}: {where}: stride {stride} / groups {groups} invalid")
        params = r.get(node, "params", where)
        t_in = self.m.tensors[x_name]
        if t_in.shape[3] != c_in:
            raise ModelFormatError(f"{r.path}: {where}.in_channel: {c_in}, but its input has {t_in.shape[3]} channels")
        x_scale, x_zero = _quant(r, params, where, "x")
        if abs(x_scale - t_in.scale) > 1e-6 * t_in.scale or x_zero != t_in.zero_point:
            raise ModelFormatError(f"{r.path}: {where}.params: x quantization ({x_scale}, {x_zero}) differs from "
                                   f"its input's ({t_in.scale}, {t_in.zero_point})")
        y_scale, y_zero = _quant(r, params, where, "y")
        w_shape = (c_out, 1, kh, kw) if depthwise else (c_out, c_in, kh, kw)
        w = r.array(params, "weight", where + ".params", np.int8, w_shape)
        b = r.array(params, "bias", where + ".params", np.int32, (c_out,))
        ws = r.array(params, "w_scales", where + ".params", np.float32, (c_out,))
        if not np.all(ws > 0):
            raise ModelFormatError(f"{r.path}: {where}.params.w_scales: must be positive")
        weight = (w.transpose(1, 2, 3, 0) if depthwise else w.transpose(0, 2, 3, 1)).copy()
        n, h, wd, _ = t_in.shape
        ph, pw = kh // 2, kw // 2
        oh = (h + 2 * ph - kh) // stride + 1
        ow = (wd + 2 * pw - kw) // stride + 1
        if "out_shape" in node and node["out_shape"] != oh:
            raise ModelFormatError(f"{r.path}: {where}.out_shape: {node['out_shape']}, but a {kh}x{kw} stride-{stride} "
                                   f"conv with padding {ph} on {h}x{wd} gives {oh}")
        y_name = where
        self.m.add_tensor(y_name, (n, oh, ow, c_out), y_scale, y_zero)
        self.m.ops.append(Conv2D(name=where, inputs=[x_name], output=y_name, weight=weight,
                                 bias=b.copy(), w_scales=ws.copy(), stride=(stride, stride),
                                 padding=(ph, pw, ph, pw), depthwise=depthwise))
        self.count += 1
        return y_name

    def residual(self, node, where, a_name, shortcut_name):
        r = self.r
        x_scale, x_zero = _quant(r, node.get("params", node), where, "x")
        t_sc = self.m.tensors[shortcut_name]
        if abs(x_scale - t_sc.scale) > 1e-6 * t_sc.scale or x_zero != t_sc.zero_point:
            raise ModelFormatError(f"{r.path}: {where}: shortcut quantization differs from the block input's")
        y_scale, y_zero = _quant(r, node.get("params", node), where, "y")
        t_a = self.m.tensors[a_name]
        if t_a.shape != t_sc.shape:
            raise ModelFormatError(f"{r.path}: {where}: block output {t_a.shape} and shortcut {t_sc.shape} differ")
        self.m.add_tensor(where, t_a.shape, y_scale, y_zero)
        self.m.ops.append(Add(name=where, inputs=[a_name, shortcut_name], output=where))
        return where


def load_tiny_training(json_path, npz_path=None, name=None):
    """Model from a tiny-training json (+ the .npz beside it unless given).
    Raises ModelFormatError naming the json path of a missing or bad field."""
    if npz_path is None:
        npz_path = os.path.splitext(json_path)[0] + ".npz"
    try:
        with open(json_path) as f:
            doc = json.load(f)
    except OSError as e:
        raise ModelFormatError(f"{json_path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{json_path}: not valid JSON ({e})") from None
    try:
        arrays = np.load(npz_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ModelFormatError(f"{npz_path}: cannot read the weights archive: {e}") from None
    with arrays:
        return _build(doc, _Reader(json_path, arrays), name)


def _build(doc, r, name):
    graph = r.get(doc, "graph", "")
    first = r.get(graph, "first_conv", "graph")
    res = r.number(first, "in_shape", "first_conv", int)
    c_in = r.number(first, "in_channel", "first_conv", int)
    fp = r.get(first, "params", "first_conv")
    x_scale, x_zero = _quant(r, fp, "first_conv", "x")
    model = Model(name or doc.get("model") or os.path.splitext(os.path.basename(r.path))[0])
    model.add_tensor("input", (1, res, res, c_in), x_scale, x_zero)
    model.inputs = ["input"]
    b = _Builder(r, model)
    x = b.conv(first, "first_conv", "input")
    blocks = r.get(graph, "blocks", "graph")
    if not isinstance(blocks, list):
        raise ModelFormatError(f"{r.path}: graph.blocks: expected a list")
    for i, blk in enumerate(blocks):
        where = f"blocks.{i}"
        block_in = x
        for part in ("pointwise1", "depthwise", "pointwise2"):
            node = r.get(blk, part, where)
            if node is None:
                if part == "pointwise1":
                    continue
                raise ModelFormatError(f"{r.path}: {where}.{part}: missing")
            x = b.conv(node, f"{where}.{part}", x)
        if blk.get("se") is not None:
            raise ModelFormatError(f"{r.path}: {where}.se: squeeze-excite blocks are not supported")
        if blk.get("residual") is not None:
            x = b.residual(blk["residual"], f"{where}.residual", x, block_in)
    if graph.get("feature_mix") is not None:
        x = b.conv(graph["feature_mix"], "feature_mix", x)
    cls = r.get(graph, "classifier", "graph")
    cp = r.get(cls, "params", "classifier")
    pooled_scale, pooled_zero = _quant(r, cp, "classifier", "x")
    t_x = model.tensors[x]
    model.add_tensor("pool", (t_x.shape[0], 1, 1, t_x.shape[3]), pooled_scale, pooled_zero)
    model.ops.append(Mean(name="pool", inputs=[x], output="pool"))
    logits = b.conv(cls, "classifier", "pool")
    t_l = model.tensors[logits]
    model.add_tensor("logits", (t_l.shape[0], t_l.shape[3]), t_l.scale, t_l.zero_point)
    model.ops.append(Reshape(name="logits", inputs=[logits], output="logits"))
    model.outputs = ["logits"]
    return model
