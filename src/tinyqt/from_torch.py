"""`tinyqt.from_torch`: a float PyTorch CNN -> an int8 tinyqt Model.

    model = tinyqt.from_torch(net, calibration_images)   # float NCHW tensor/array

The module is traced with torch.fx, BatchNorm2d is folded into the Conv2d
before it, and the float graph is run on the calibration batch to record the
range of every activation. Then, with TFLite's int8 conventions:
  - weights: symmetric per output channel, int8 in [-127, 127];
  - biases: int32 at scale s_x * s_w[c];
  - activations: asymmetric int8 from the calibrated [min, max] (widened to
    contain 0); ReLU / ReLU6 after a conv or an add become its fused clamp;
  - residual `a + b` -> ADD; AdaptiveAvgPool2d(1) / mean over H, W -> MEAN;
    AvgPool2d -> AVERAGE_POOL_2D; flatten; Dropout / Identity vanish;
  - the final Linear on the pooled features becomes a 1x1 conv classifier on
    the [N, 1, 1, C] map plus a reshape to [N, classes] (the form the
    training compiler expects); a Linear elsewhere is FULLY_CONNECTED.
Layouts: torch NCHW float in, tinyqt NHWC int8 (the input tensor carries the
calibrated scale and zero point; tinyqt.data.to_model_input uses them).
torch is imported lazily: it is an optional extra, never needed to train.
Anything else raises UnsupportedOpError naming the fx node and its target.
"""
import operator

import numpy as np

from .errors import ShapeError, TinyQTError, UnsupportedOpError
from .graph import Add, AvgPool2D, Conv2D, FullyConnected, Mean, Model, Reshape

_RELU6 = "RELU6"
_RELU = "RELU"


def _torch():
    try:
        import torch
        import torch.fx  # noqa: F401
    except ImportError:
        raise TinyQTError("from_torch needs PyTorch: pip install torch (the 'test' extra)") from None
    return torch


def _activation_quant(lo, hi):
    """(scale, zero_point) of an int8 tensor covering [lo, hi] (and 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = float(np.float32((hi - lo) / 255.0))
    zero = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return scale, zero


def _quantize_weight(w):
    """float [C_out, ...] -> (int8 same shape, float32 scales [C_out]):
    symmetric per output channel."""
    flat = w.reshape(w.shape[0], -1)
    amax = np.abs(flat).max(axis=1)
    scales = np.where(amax > 0, amax / 127.0, 1e-8).astype(np.float32)
    q = np.clip(np.round(flat / scales[:, None].astype(np.float64)), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scales


def _activation_kind(torch, gm, node):
    """'RELU' | 'RELU6' | None for an fx node that is a pure activation."""
    nn, F = torch.nn, torch.nn.functional
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, nn.ReLU):
            return _RELU
        if isinstance(m, nn.ReLU6) or (isinstance(m, nn.Hardtanh) and m.min_val == 0 and m.max_val == 6):
            return _RELU6
    elif node.op == "call_function":
        if node.target in (F.relu, torch.relu):
            return _RELU
        if node.target is F.relu6:
            return _RELU6
        if node.target is F.hardtanh and tuple(node.args[1:3]) == (0.0, 6.0):
            return _RELU6
    elif node.op == "call_method" and node.target == "relu":
        return _RELU
    return None


def _is_passthrough(torch, gm, node):
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), (torch.nn.Dropout, torch.nn.Identity))
    return node.op == "call_function" and node.target is torch.nn.functional.dropout


def _is_flatten(torch, node):
    if node.op == "call_function" and node.target is torch.flatten:
        return True
    if node.op == "call_module":
        return False
    return node.op == "call_method" and node.target in ("flatten", "view", "reshape", "squeeze")


def _is_global_pool(torch, gm, node):
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return isinstance(m, torch.nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1))
    if node.op == "call_function" and node.target is torch.nn.functional.adaptive_avg_pool2d:
        return node.args[1] in (1, (1, 1))
    if (node.op == "call_method" and node.target == "mean") or (node.op == "call_function" and node.target is torch.mean):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return dims is not None and sorted(int(d) % 4 for d in (dims if isinstance(dims, (tuple, list)) else [dims])) == [2, 3]
    return False


def _is_add(torch, node):
    return node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add) \
        or node.op == "call_method" and node.target in ("add", "add_")


def _calibrate(torch, gm, data):
    """{node name: (min, max, shape)} of every node's float output."""
    stats = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                stats[n.name] = (float(out.min()), float(out.max()), tuple(out.shape))
            return out

    with torch.no_grad():
        Recorder(gm).run(data)
    return stats


def from_torch(module, calibration_data, name=None):
    """module: a float torch.nn.Module CNN (Conv2d, BatchNorm2d, ReLU/ReLU6,
    residual add, average pooling, flatten, Linear); calibration_data: float
    NCHW batch (torch tensor or numpy) of representative inputs. Returns an
    int8 tinyqt Model with input [1, H, W, C]. Raises UnsupportedOpError
    naming the first node it cannot map, ShapeError for bad calibration data."""
    torch = _torch()
    from torch.fx.experimental.optimization import fuse
    data = torch.as_tensor(np.asarray(calibration_data, dtype=np.float32)) \
        if not isinstance(calibration_data, torch.Tensor) else calibration_data.float()
    if data.ndim != 4 or data.shape[0] < 1:
        raise ShapeError(f"calibration_data: expected a float NCHW batch [N, C, H, W], got shape {tuple(data.shape)}")
    import copy
    try:
        gm = fuse(copy.deepcopy(module).eval())
    except Exception as e:  # torch.fx raises many types on untraceable code
        raise UnsupportedOpError(f"from_torch: torch.fx cannot trace {type(module).__name__}: {e}") from None
    stats = _calibrate(torch, gm, data)
    return _Converter(torch, gm, stats, name or type(module).__name__).run(data.shape)


class _Converter:
    def __init__(self, torch, gm, stats, name):
        self.torch, self.gm, self.stats = torch, gm, stats
        self.m = Model(name)
        self.tname = {}      # fx node name -> tinyqt tensor name
        self.pooled = set()  # fx nodes that are flattened pooled features [N, C]
        self.users = {n.name: len(n.users) for n in gm.graph.nodes}

    def fail(self, node, why):
        raise UnsupportedOpError(f"from_torch: node '{node.name}' ({node.op} {getattr(node.target, '__name__', node.target)}): {why}")

    def out_range(self, node):
        """The node whose output range a tensor takes: its single fused
        activation user, if any; returns (activation, range node)."""
        if len(node.users) == 1:
            user = next(iter(node.users))
            act = _activation_kind(self.torch, self.gm, user)
            if act is not None:
                return act, user
        return "NONE", node

    def new_tensor(self, node, shape, range_node):
        lo, hi, _ = self.stats[range_node.name]
        scale, zero = _activation_quant(lo, hi)
        t = self.m.add_tensor(node.name, shape, scale, zero)
        self.tname[range_node.name] = t.name
        self.tname[node.name] = t.name
        return t

    def src(self, node, arg):
        if not hasattr(arg, "name") or arg.name not in self.tname:
            self.fail(node, f"input {arg!r} is not a tensor produced by a supported op")
        return self.tname[arg.name]

    def run(self, in_shape):
        torch = self.torch
        for node in self.gm.graph.nodes:
            if node.name in self.tname:      # an activation already fused into its producer
                continue
            if node.op == "placeholder":
                if self.m.inputs:
                    self.fail(node, "only one input is supported")
                lo, hi, _ = self.stats[node.name]
                scale, zero = _activation_quant(lo, hi)
                self.m.add_tensor("input", (1, in_shape[2], in_shape[3], in_shape[1]), scale, zero)
                self.m.inputs = ["input"]
                self.tname[node.name] = "input"
            elif node.op == "output":
                arg = node.args[0]
                if isinstance(arg, (tuple, list)):
                    if len(arg) != 1:
                        self.fail(node, "only one output is supported")
                    arg = arg[0]
                self.m.outputs = [self.src(node, arg)]
            elif node.op == "call_module" and isinstance(self.gm.get_submodule(node.target), torch.nn.Conv2d):
                self.conv(node)
            elif node.op == "call_module" and isinstance(self.gm.get_submodule(node.target), torch.nn.Linear):
                self.linear(node)
            elif node.op == "call_module" and isinstance(self.gm.get_submodule(node.target), torch.nn.AvgPool2d):
                self.avgpool(node)
            elif _is_add(torch, node):
                self.add(node)
            elif _is_global_pool(torch, self.gm, node):
                self.mean(node)
            elif _is_flatten(torch, node) or _is_passthrough(torch, self.gm, node):
                self.alias(node)
            elif _activation_kind(torch, self.gm, node) is not None:
                self.fail(node, "an activation must follow a conv, a linear or an add (with no other user)")
            elif node.op == "call_module" and isinstance(self.gm.get_submodule(node.target), torch.nn.BatchNorm2d):
                self.fail(node, "BatchNorm2d is folded only directly after a Conv2d whose output it alone reads")
            else:
                what = type(self.gm.get_submodule(node.target)).__name__ if node.op == "call_module" else ""
                self.fail(node, f"unsupported {what or 'operation'}")
        if not self.m.outputs:
            raise UnsupportedOpError("from_torch: the traced graph has no output")
        return self.m

    def alias(self, node):
        src = node.args[0]
        name = self.src(node, src)
        t = self.m.tensors[name]
        if _is_flatten(self.torch, node):
            shape = self.stats[node.name][2]
            if len(shape) != 2 or t.shape[1:3] != (1, 1):
                self.fail(node, "flatten/reshape is supported only on the globally pooled [N, C, 1, 1] features")
            self.pooled.add(node.name)
        elif src.name in self.pooled:
            self.pooled.add(node.name)
        self.tname[node.name] = name

    def conv(self, node):
        conv = self.gm.get_submodule(node.target)
        x = self.src(node, node.args[0])
        t_in = self.m.tensors[x]
        pad = conv.padding
        if isinstance(pad, str) or conv.padding_mode != "zeros":
            self.fail(node, f"padding {pad!r} / mode {conv.padding_mode!r}: give integer zero padding")
        c_in, c_out, g = conv.in_channels, conv.out_channels, conv.groups
        depthwise = g > 1
        if depthwise and not (g == c_in == c_out):
            self.fail(node, f"grouped conv (groups={g}, {c_in}->{c_out}) other than depthwise")
        w = conv.weight.detach().numpy().astype(np.float64)
        b = conv.bias.detach().numpy().astype(np.float64) if conv.bias is not None else np.zeros(c_out)
        act, range_node = self.out_range(node)
        _, _, shape = self.stats[node.name]
        t = self.new_tensor(node, (1, shape[2], shape[3], shape[1]), range_node)
        wq, ws = _quantize_weight(w)
        weight = wq.transpose(1, 2, 3, 0) if depthwise else wq.transpose(0, 2, 3, 1)
        bias = np.round(b / (np.float64(np.float32(t_in.scale)) * ws.astype(np.float64)))
        self.m.ops.append(Conv2D(name=node.name, inputs=[x], output=t.name, weight=np.ascontiguousarray(weight),
                                 bias=np.clip(bias, -2**31, 2**31 - 1).astype(np.int32), w_scales=ws,
                                 stride=tuple(conv.stride), padding=(pad[0], pad[1], pad[0], pad[1]),
                                 dilation=tuple(conv.dilation), depthwise=depthwise, activation=act))

    def linear(self, node):
        lin = self.gm.get_submodule(node.target)
        x = self.src(node, node.args[0])
        t_in = self.m.tensors[x]
        w = lin.weight.detach().numpy().astype(np.float64)
        b = lin.bias.detach().numpy().astype(np.float64) if lin.bias is not None else np.zeros(lin.out_features)
        wq, ws = _quantize_weight(w)
        bias = np.clip(np.round(b / (np.float64(np.float32(t_in.scale)) * ws.astype(np.float64))),
                       -2**31, 2**31 - 1).astype(np.int32)
        act, range_node = self.out_range(node)
        lo, hi, _ = self.stats[range_node.name]
        scale, zero = _activation_quant(lo, hi)
        if node.args[0].name in self.pooled and len(t_in.shape) == 4:
            # classifier on pooled features: 1x1 conv on [N, 1, 1, C] + reshape to [N, classes]
            conv_out = self.m.add_tensor(node.name + ".conv", (1, 1, 1, lin.out_features), scale, zero)
            self.m.ops.append(Conv2D(name=node.name, inputs=[x], output=conv_out.name,
                                     weight=wq.reshape(lin.out_features, 1, 1, lin.in_features), bias=bias,
                                     w_scales=ws, activation=act))
            t = self.m.add_tensor(node.name, (1, lin.out_features), scale, zero)
            self.m.ops.append(Reshape(name=node.name + ".reshape", inputs=[conv_out.name], output=t.name))
        elif len(t_in.shape) == 2:
            t = self.m.add_tensor(node.name, (1, lin.out_features), scale, zero)
            self.m.ops.append(FullyConnected(name=node.name, inputs=[x], output=t.name, weight=wq, bias=bias,
                                             w_scales=ws, activation=act))
        else:
            self.fail(node, f"Linear on a {len(t_in.shape)}-D tensor: flatten the pooled features first")
        self.tname[node.name] = self.tname[range_node.name] = t.name

    def add(self, node):
        a, b = node.args[0], node.args[1]
        if not (hasattr(a, "name") and hasattr(b, "name")) or node.kwargs.get("alpha", 1) != 1:
            self.fail(node, "only the sum of two tensors is supported")
        xa, xb = self.src(node, a), self.src(node, b)
        if self.m.tensors[xa].shape != self.m.tensors[xb].shape:
            self.fail(node, f"shapes {self.m.tensors[xa].shape} and {self.m.tensors[xb].shape} differ (no broadcasting)")
        act, range_node = self.out_range(node)
        t = self.new_tensor(node, self.m.tensors[xa].shape, range_node)
        self.m.ops.append(Add(name=node.name, inputs=[xa, xb], output=t.name, activation=act))

    def mean(self, node):
        x = self.src(node, node.args[0])
        t_in = self.m.tensors[x]
        t = self.new_tensor(node, (1, 1, 1, t_in.shape[3]), node)
        self.m.ops.append(Mean(name=node.name, inputs=[x], output=t.name))
        self.pooled.add(node.name)   # [N, C, 1, 1] or, without keepdim, already [N, C]

    def avgpool(self, node):
        pool = self.gm.get_submodule(node.target)
        x = self.src(node, node.args[0])

        def pair(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
        k, s, p = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size), pair(pool.padding)
        if p != (0, 0) or pool.ceil_mode:
            self.fail(node, "AvgPool2d with padding or ceil_mode is not supported")
        act, range_node = self.out_range(node)
        shape = self.stats[node.name][2]
        # TFLite's int8 AVERAGE_POOL_2D keeps its input's quantization
        t_in = self.m.tensors[x]
        t = self.m.add_tensor(node.name, (1, shape[2], shape[3], shape[1]), t_in.scale, t_in.zero_point)
        self.tname[node.name] = self.tname[range_node.name] = t.name
        self.m.ops.append(AvgPool2D(name=node.name, inputs=[x], output=t.name, filter=k, stride=s, activation=act))
