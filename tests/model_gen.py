"""Generator of random int8 IR models for the TFLite Micro oracle: single ops
and small chains over odd spatial sizes, strides 1/2, SAME/VALID/explicit
asymmetric padding, kernels 1/3/5/7, 1..130 channels, depth multipliers,
random scales, zero points and fused activations. Deterministic per seed."""
import numpy as np

from tinyqt.graph import Add, AvgPool2D, Conv2D, FullyConnected, Mean, Model, Reshape, Softmax
from tinyqt.kernels import conv_output_size
from tinyqt.tflite_io import same_padding

ACTS = ["NONE", "NONE", "RELU", "RELU6"]


class _Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.m = Model(f"gen{seed}")
        self.n = 0

    def tensor(self, shape):
        self.n += 1
        name = f"t{self.n}"
        scale = float(self.rng.uniform(0.005, 0.3))
        zp = int(self.rng.integers(-128, 128))
        self.m.add_tensor(name, shape, scale, zp)
        return name

    def padding(self, h, w, k, stride, dil):
        kind = self.rng.choice(["SAME", "VALID", "EXPLICIT"])
        eff = (k - 1) * dil + 1
        if kind == "VALID" and h >= eff and w >= eff:
            return (0, 0, 0, 0)
        if kind == "EXPLICIT":
            pads = [int(self.rng.integers(0, eff)) for _ in range(4)]
            if h + pads[0] + pads[2] >= eff and w + pads[1] + pads[3] >= eff:
                return tuple(pads)
        (pt, pb), (pl, pr) = same_padding(h, k, stride, dil), same_padding(w, k, stride, dil)
        return (pt, pl, pb, pr)

    def conv(self, x, depthwise=None, k=None):
        rng = self.rng
        t = self.m.tensors[x]
        _, h, w, c_in = t.shape
        if depthwise is None:
            depthwise = bool(rng.integers(0, 3) == 0)
        k = int(k or rng.choice([1, 3, 5, 7]))
        stride = int(rng.choice([1, 2]))
        dil = int(rng.choice([1, 1, 1, 2])) if k > 1 else 1
        pad = self.padding(h, w, k, stride, dil)
        oh = conv_output_size(h, k, stride, dil, pad[0], pad[2])
        ow = conv_output_size(w, k, stride, dil, pad[1], pad[3])
        # every window must overlap the input (SAME/VALID always do)
        if (oh - 1) * stride - pad[0] >= h or (ow - 1) * stride - pad[1] >= w or oh < 1 or ow < 1:
            (pt, pb), (pl, pr) = same_padding(h, k, stride, dil), same_padding(w, k, stride, dil)
            pad = (pt, pl, pb, pr)
            oh, ow = -(-h // stride), -(-w // stride)
        if depthwise:
            mult = int(rng.choice([1, 1, 2]))
            c_out = c_in * mult
            weight = rng.integers(-127, 128, (1, k, k, c_out), dtype=np.int8)
        else:
            c_out = int(rng.integers(1, 131))
            weight = rng.integers(-127, 128, (c_out, k, k, c_in), dtype=np.int8)
        y = self.tensor((1, oh, ow, c_out))
        fan_in = k * k * (1 if depthwise else c_in)
        w_scales = (rng.uniform(0.2, 1.0, c_out) * 2.0 / (127 * np.sqrt(fan_in))).astype(np.float32)
        self._fit_output_scale(y, x, w_scales, fan_in)
        bias = rng.integers(-2000, 2000, c_out).astype(np.int32) if rng.integers(0, 4) else None
        self.m.ops.append(Conv2D(name=y, inputs=[x], output=y, weight=weight, bias=bias, w_scales=w_scales,
                                 stride=(stride, stride), padding=pad, dilation=(dil, dil),
                                 depthwise=depthwise, activation=str(rng.choice(ACTS))))
        return y

    def _fit_output_scale(self, y, x, w_scales, fan_in):
        # outputs neither all saturated nor all zero: scale ~ the accumulator's spread
        t_x, t_y = self.m.tensors[x], self.m.tensors[y]
        spread = t_x.scale * 74 * float(np.median(w_scales)) * 73 * np.sqrt(fan_in)
        t_y.scale = float(spread / 40 * self.rng.uniform(0.5, 2.0))

    def fc(self, x):
        rng = self.rng
        t = self.m.tensors[x]
        feat = int(np.prod(t.shape[1:]))
        if len(t.shape) != 2:
            r = self.tensor((1, feat))
            self.m.tensors[r].scale, self.m.tensors[r].zero_point = t.scale, t.zero_point
            self.m.ops.append(Reshape(name=r, inputs=[x], output=r))
            x = r
        n_out = int(rng.integers(1, 131))
        per_channel = bool(rng.integers(0, 2))
        w_scales = (rng.uniform(0.2, 1.0, n_out if per_channel else 1) * 2.0 / (127 * np.sqrt(feat))).astype(np.float32)
        y = self.tensor((1, n_out))
        self._fit_output_scale(y, x, w_scales, feat)
        self.m.ops.append(FullyConnected(name=y, inputs=[x], output=y,
                                         weight=rng.integers(-127, 128, (n_out, feat), dtype=np.int8),
                                         bias=rng.integers(-2000, 2000, n_out).astype(np.int32),
                                         w_scales=w_scales, activation=str(rng.choice(ACTS))))
        return y

    def add(self, x, other=None):
        t = self.m.tensors[x]
        if other is None:
            other = self.tensor(t.shape)
            self.m.inputs.append(other)  # a second graph input is not supported: build it from x
            self.m.inputs.pop()
            self.m.tensors.pop(other)
            other = self.conv(x, depthwise=True, k=1) if len(t.shape) == 4 else x
            if self.m.tensors[other].shape != t.shape:
                other = x
        y = self.tensor(t.shape)
        self.m.ops.append(Add(name=y, inputs=[x, other], output=y, activation=str(self.rng.choice(ACTS))))
        return y

    def avgpool(self, x):
        rng = self.rng
        t = self.m.tensors[x]
        _, h, w, c = t.shape
        k = (int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1)))
        stride = (int(rng.choice([1, 2])), int(rng.choice([1, 2])))
        if rng.integers(0, 2):
            (pt, pb), (pl, pr) = same_padding(h, k[0], stride[0]), same_padding(w, k[1], stride[1])
            oh, ow = -(-h // stride[0]), -(-w // stride[1])
        else:
            pt = pl = pb = pr = 0
            oh, ow = (h - k[0]) // stride[0] + 1, (w - k[1]) // stride[1] + 1
        y = self.tensor((1, oh, ow, c))
        self.m.tensors[y].scale, self.m.tensors[y].zero_point = t.scale, t.zero_point
        self.m.ops.append(AvgPool2D(name=y, inputs=[x], output=y, filter=k, stride=stride,
                                    padding=(pt, pl, pb, pr), activation=str(rng.choice(ACTS))))
        return y

    def mean(self, x):
        t = self.m.tensors[x]
        y = self.tensor((1, 1, 1, t.shape[3]))
        if self.rng.integers(0, 2):
            self.m.tensors[y].scale, self.m.tensors[y].zero_point = t.scale, t.zero_point
        self.m.ops.append(Mean(name=y, inputs=[x], output=y))
        return y

    def softmax(self, x):
        t = self.m.tensors[x]
        if len(t.shape) != 2:
            r = self.tensor((1, int(np.prod(t.shape[1:]))))
            self.m.tensors[r].scale, self.m.tensors[r].zero_point = t.scale, t.zero_point
            self.m.ops.append(Reshape(name=r, inputs=[x], output=r))
            x = r
        y = self.tensor(self.m.tensors[x].shape)
        self.m.tensors[y].scale, self.m.tensors[y].zero_point = 1 / 256, -128
        self.m.ops.append(Softmax(name=y, inputs=[x], output=y, beta=float(self.rng.choice([1.0, 0.5]))))
        return y


def random_model(seed, kind):
    """kind: 'conv' | 'depthwise' | 'pointwise' | 'fc' | 'add' | 'avgpool' |
    'mean' | 'softmax' | 'chain'. Returns (Model, int8 input batch)."""
    g = _Gen(seed)
    rng = g.rng
    small = kind == "chain"
    h = int(rng.integers(1, 12 if small else 20))
    w = int(rng.integers(1, 12 if small else 20))
    c = int(rng.integers(1, 40 if small else 131))
    if kind == "softmax":  # TFLM aborts on very long rows; keep them classifier-sized
        h, w = 1, int(rng.integers(1, 4))
    x = g.tensor((1, h, w, c))
    g.m.inputs = [x]
    if kind == "conv":
        y = g.conv(x, depthwise=False)
    elif kind == "depthwise":
        y = g.conv(x, depthwise=True)
    elif kind == "pointwise":
        y = g.conv(x, depthwise=False, k=1)
    elif kind == "fc":
        y = g.fc(x)
    elif kind == "add":
        y = g.add(x)
    elif kind == "avgpool":
        y = g.avgpool(x)
    elif kind == "mean":
        y = g.mean(x)
    elif kind == "softmax":
        y = g.softmax(x)
    elif kind == "chain":
        y = x
        for _ in range(int(rng.integers(2, 5))):
            step = rng.choice(["conv", "dw", "pw", "add", "pool"])
            if step == "conv":
                y = g.conv(y, depthwise=False, k=int(rng.choice([1, 3])))
            elif step == "dw":
                y = g.conv(y, depthwise=True, k=3)
            elif step == "pw":
                y = g.conv(y, depthwise=False, k=1)
            elif step == "add":
                y = g.add(y)
            else:
                y = g.avgpool(y)
        tail = rng.choice(["mean+fc+softmax", "mean", "none"])
        if tail.startswith("mean"):
            y = g.mean(y)
        if tail == "mean+fc+softmax":
            y = g.softmax(g.fc(y))
    else:
        raise ValueError(kind)
    g.m.outputs = [y]
    batch = g.rng.integers(-128, 128, (2,) + g.m.tensors[x].shape[1:], dtype=np.int8)
    return g.m, batch
