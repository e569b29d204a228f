"""The paper's three backbones as architectures: any resolution, any class
count, random int8 initialization or the ImageNet weights of a json+npz
export.

    model = tinyqt.zoo.build("mbv2-w0.35", resolution=96, num_classes=10)
    model = tinyqt.zoo.build("mcunet-5fps", weights="../shared/models/imagenet-int8/mcunet-5fps.json")

Each architecture is a table: the first conv's channels, then per inverted
bottleneck (expanded channels or None, depthwise kernel, stride, output
channels); a block has a residual add when its stride is 1 and its input and
output channel counts agree. The graph and op names are those of
tinyqt.load_tiny_training (first_conv, blocks.i.pointwise1 / depthwise /
pointwise2 / residual, pool, classifier, logits), so the paper's conv indices
and schemes apply unchanged. Convs pad kernel//2 (PyTorch's convention);
ReLU6 is folded into the output quantization (scale 6/255, zero point -128)
as in the export.

Random initialization (seeded): He-scaled symmetric int8 weights, zero
biases, and the ranges of the linear outputs (second pointwise, residual,
pool, logits) calibrated on random inputs in [-1, 1] by running the int8
layers built so far, so activations neither saturate nor collapse.
"""
import numpy as np

from .errors import TinyQTError
from .graph import Add, Conv2D, Mean, Model, Reshape

#   name: (first conv channels, [(expand or None, kernel, stride, out), ...])
ARCHITECTURES = {
    "mbv2-w0.35": (16, [
        (None, 3, 1, 8), (48, 3, 2, 8), (48, 3, 1, 8), (48, 3, 2, 16), (96, 3, 1, 16), (96, 3, 1, 16),
        (96, 3, 2, 24), (144, 3, 1, 24), (144, 3, 1, 24), (144, 3, 1, 24), (144, 3, 1, 32),
        (192, 3, 1, 32), (192, 3, 1, 32), (192, 3, 2, 56), (336, 3, 1, 56), (336, 3, 1, 56),
        (336, 3, 1, 112)]),
    "proxyless-w0.3": (16, [
        (None, 3, 1, 8), (24, 5, 2, 16), (48, 3, 1, 16), (48, 7, 2, 16), (48, 3, 1, 16), (48, 5, 1, 16),
        (48, 5, 1, 16), (96, 7, 2, 24), (72, 5, 1, 24), (72, 5, 1, 24), (72, 5, 1, 24), (144, 5, 1, 32),
        (96, 5, 1, 32), (96, 5, 1, 32), (96, 5, 1, 32), (192, 7, 2, 64), (384, 7, 1, 64),
        (192, 7, 1, 64), (192, 7, 1, 64), (384, 7, 1, 96)]),
    "mcunet-5fps": (16, [
        (None, 3, 1, 8), (32, 3, 2, 16), (48, 3, 1, 16), (48, 7, 2, 24), (120, 3, 1, 24), (120, 3, 2, 40),
        (160, 7, 1, 40), (160, 5, 1, 48), (144, 3, 1, 48), (192, 3, 1, 48), (240, 7, 2, 96),
        (384, 5, 1, 96), (384, 5, 1, 96), (576, 3, 1, 160)]),
}
INPUT_QUANT = (1 / 127.5, 0)          # pixels in [-1, 1]
RELU6_QUANT = (6 / 255, -128)         # ReLU6 folded into the output range
_INT8_STD = 127 / np.sqrt(3)          # std of uniform int8 weights in [-127, 127]


def names():
    return sorted(ARCHITECTURES)


def _out(size, k, stride):
    return (size + 2 * (k // 2) - k) // stride + 1


class _Builder:
    """Appends ops to a Model; parameters come from `source` (a loaded
    model's ops, by name) or random initialization, calibrated on the fly."""

    def __init__(self, model, source, rng, calib):
        self.m, self.source, self.rng = model, source, rng
        self.values = {"input": calib}
        self.src_ops = {op.name: op for op in source.ops} if source is not None else {}

    def _run(self, op):
        from .executor import run_op
        self.values[op.output] = run_op(self.m, op, [self.values[i] for i in op.inputs])

    def _calibrated(self, name, real_fn):
        """Quantization of a linear output: its source model's, or symmetric
        over the calibrated real range."""
        if self.source is not None and name in self.source.tensors:
            t = self.source.tensors[name]
            return t.scale, t.zero_point
        amax = float(np.abs(real_fn()).max())
        return max(amax, 1e-3) * 1.2 / 127, 0

    def conv(self, name, x, c_out, k, stride, relu6, depthwise=False, shape_hw=None):
        t_in = self.m.tensors[x]
        n, h, w, c_in = t_in.shape
        oh, ow = (_out(h, k, stride), _out(w, k, stride)) if shape_hw is None else shape_hw
        src = self.src_ops.get(name)
        if src is not None and src.weight.shape == ((1, k, k, c_out) if depthwise else (c_out, k, k, c_in)):
            weight, bias, ws = src.weight.copy(), src.bias.copy(), src.w_scales.copy()
        else:
            fan_in = k * k * (1 if depthwise else c_in)
            shape = (1, k, k, c_out) if depthwise else (c_out, k, k, c_in)
            weight = self.rng.integers(-127, 128, shape, dtype=np.int8)
            gain = 2.0 if relu6 else 1.0
            ws = np.full(c_out, np.sqrt(gain / fan_in) / _INT8_STD, np.float32)
            bias = np.zeros(c_out, np.int32)
        pad = k // 2
        op = Conv2D(name=name, inputs=[x], output=name, weight=weight, bias=bias, w_scales=ws,
                    stride=(stride, stride), padding=(pad, pad, pad, pad), depthwise=depthwise)
        if relu6:
            src_t = self.source.tensors.get(name) if self.source is not None else None
            scale, zero = (src_t.scale, src_t.zero_point) if src_t is not None else RELU6_QUANT
        else:
            # provisional wide range, then the calibrated one
            self.m.add_tensor(name, (n, oh, ow, c_out), 1e3, 0)
            scale, zero = self._calibrated(name, lambda: self._real_conv(op))
        self.m.add_tensor(name, (n, oh, ow, c_out), scale, zero)
        self.m.ops.append(op)
        self._run(op)
        return name

    def _real_conv(self, op):
        """The conv's real output before requantization, from an int8 run with
        a provisional output scale fine enough for the accumulator range."""
        t_in = self.m.tensors[op.inputs[0]]
        acc_scale = float(np.max(op.w_scales)) * t_in.scale
        k_eff = op.weight[0].size if not op.depthwise else op.weight.shape[1] * op.weight.shape[2]
        probe = acc_scale * 127 * 128 * np.sqrt(k_eff) / 32   # ~4 sigma of the accumulator fills int8
        self.m.tensors[op.output].scale = probe
        from .executor import run_op
        y = run_op(self.m, op, [self.values[op.inputs[0]]])
        return (y.astype(np.float32) - self.m.tensors[op.output].zero_point) * probe

    def add(self, name, a, b):
        ta, tb = self.m.tensors[a], self.m.tensors[b]
        scale, zero = self._calibrated(name, lambda: (self.values[a] - ta.zero_point) * ta.scale
                                       + (self.values[b] - tb.zero_point) * tb.scale)
        self.m.add_tensor(name, ta.shape, scale, zero)
        op = Add(name=name, inputs=[a, b], output=name)
        self.m.ops.append(op)
        self._run(op)
        return name


def build(name, resolution=128, num_classes=1000, weights=None, seed=0):
    """The zoo architecture `name` as an int8 Model with input [1, R, R, 3].
    weights: None (random, seeded) or a tiny-training .json export of the same
    architecture (its weights and quantization; a different class count gets
    a fresh random classifier). Raises TinyQTError for an unknown name, a
    resolution too small for the strides, or weights of another architecture."""
    if name not in ARCHITECTURES:
        raise TinyQTError(f"unknown zoo model '{name}'; known: {', '.join(names())}")
    if not isinstance(resolution, (int, np.integer)) or resolution < 32:
        raise TinyQTError(f"resolution must be an integer >= 32 (the backbones downsample 32x), got {resolution!r}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise TinyQTError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    source = None
    if weights is not None:
        from .tiny_training import load_tiny_training
        source = load_tiny_training(weights)
        _check_same_architecture(name, source)
    first, blocks = ARCHITECTURES[name]
    rng = np.random.default_rng(seed)
    model = Model(name)
    model.add_tensor("input", (1, resolution, resolution, 3), *(
        (source.input.scale, source.input.zero_point) if source else INPUT_QUANT))
    model.inputs = ["input"]
    calib = np.clip(np.round(rng.uniform(-1, 1, (2, resolution, resolution, 3)) / model.input.scale)
                    + model.input.zero_point, -128, 127).astype(np.int8)
    b = _Builder(model, source, rng, calib)
    x = b.conv("first_conv", "input", first, 3, 2, relu6=True)
    for i, (expand, k, stride, c_out) in enumerate(blocks):
        block_in, where = x, f"blocks.{i}"
        if expand is not None:
            x = b.conv(f"{where}.pointwise1", x, expand, 1, 1, relu6=True)
        x = b.conv(f"{where}.depthwise", x, model.tensors[x].shape[3], k, stride, relu6=True, depthwise=True)
        x = b.conv(f"{where}.pointwise2", x, c_out, 1, 1, relu6=False)
        if stride == 1 and model.tensors[block_in].shape[3] == c_out:
            x = b.add(f"{where}.residual", x, block_in)
    t_x = model.tensors[x]
    pool_q = (source.tensors["pool"].scale, source.tensors["pool"].zero_point) if source else \
        (t_x.scale, t_x.zero_point)
    model.add_tensor("pool", (1, 1, 1, t_x.shape[3]), *pool_q)
    pool = Mean(name="pool", inputs=[x], output="pool")
    model.ops.append(pool)
    b._run(pool)
    same_head = source is not None and source.tensors["logits"].shape[-1] == num_classes
    if not same_head:
        b.src_ops.pop("classifier", None)
        if source is not None:
            source.tensors.pop("classifier", None)
    b.conv("classifier", "pool", num_classes, 1, 1, relu6=False)
    t_l = model.tensors["classifier"]
    model.add_tensor("logits", (1, num_classes), t_l.scale, t_l.zero_point)
    model.ops.append(Reshape(name="logits", inputs=["classifier"], output="logits"))
    model.outputs = ["logits"]
    return model


def _check_same_architecture(name, source):
    first, blocks = ARCHITECTURES[name]
    want = [("first_conv", first)]
    for i, (expand, _, _, c_out) in enumerate(blocks):
        if expand is not None:
            want.append((f"blocks.{i}.pointwise1", expand))
        want.append((f"blocks.{i}.pointwise2", c_out))
    ops = {op.name: op for op in source.ops}
    for op_name, c in want:
        if op_name not in ops or ops[op_name].out_channels != c:
            raise TinyQTError(f"weights '{source.name}' are not a {name}: {op_name} "
                              f"{'is missing' if op_name not in ops else f'has {ops[op_name].out_channels} channels, expected {c}'}")
