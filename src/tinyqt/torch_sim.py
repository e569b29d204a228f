"""A float PyTorch twin of an int8 Model, for baselines: the same graph in
real arithmetic (dequantized weights and biases, each layer's clamp at the
real range of its int8 output), an fp32 head on the pooled features, and
the scheme's trainable tensors marked requires_grad. Used for the PyTorch
step-time / memory comparisons and the float-SGD accuracy baseline.

PyTorch is an optional extra: importing this module imports torch.
"""
import numpy as np
import torch
import torch.nn.functional as F

from .compiler.training_graph import body_convs, classifier_op
from .graph import Add, Conv2D, Mean, Reshape
from .schemes import parse_scheme


class FloatTwin(torch.nn.Module):
    """model's body up to the global mean, then Linear(features, classes).
    Trainable per scheme: weights of convs with ratio > 0 (whole tensors;
    PyTorch has no per-channel requires_grad), biases of the last bias_k
    convs, and the head."""

    def __init__(self, model, scheme=None, num_classes=None):
        super().__init__()
        self.model = model
        head = classifier_op(model)
        self.body = [op for op in model.ops[:model.ops.index(head)] if not isinstance(op, Reshape)]
        convs = body_convs(model)
        scheme = parse_scheme(scheme or "bias-only:0", model.name, len(convs))
        index = {op.name: i for i, op in enumerate(convs)}
        n = len(convs)
        self.weights = torch.nn.ParameterDict()
        self.biases = torch.nn.ParameterDict()
        self.ranges = {}
        t = model.tensors
        for op in self.body:
            key = op.name.replace(".", "_")
            if isinstance(op, Conv2D):
                w = op.weight.astype(np.float32) * np.asarray(op.w_scales, np.float32).reshape(
                    (1, 1, 1, -1) if op.depthwise else (-1, 1, 1, 1))
                w = np.transpose(w, (3, 0, 1, 2)) if op.depthwise else np.transpose(w, (0, 3, 1, 2))
                b = (op.bias if op.bias is not None else np.zeros(op.out_channels, np.int32)).astype(np.float32)
                b = b * np.float32(t[op.inputs[0]].scale) * np.asarray(op.w_scales, np.float32)
                i = index[op.name]
                self.weights[key] = torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(w)),
                                                       requires_grad=scheme.weights.get(i, 0) > 0)
                self.biases[key] = torch.nn.Parameter(torch.from_numpy(b), requires_grad=i >= n - scheme.bias_k)
            if isinstance(op, (Conv2D, Add)):
                from .quant import activation_range
                to = t[op.output]
                lo, hi = activation_range(op.activation, to.scale, to.zero_point)
                self.ranges[op.name] = ((lo - to.zero_point) * to.scale, (hi - to.zero_point) * to.scale)
        classes = num_classes or t[model.outputs[0]].shape[-1]
        features = t[head.inputs[0]].shape[-1]
        self.head = torch.nn.Linear(features, classes)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, x):
        """x: float NCHW input in real units (dequantized)."""
        vals = {self.model.inputs[0]: x}
        for op in self.body:
            a = vals[op.inputs[0]]
            if isinstance(op, Conv2D):
                key = op.name.replace(".", "_")
                pt, pl, pb, pr = op.padding
                if any(op.padding):
                    a = F.pad(a, (pl, pr, pt, pb))
                y = F.conv2d(a, self.weights[key], self.biases[key], stride=tuple(op.stride),
                             dilation=tuple(op.dilation), groups=a.shape[1] if op.depthwise else 1)
                lo, hi = self.ranges[op.name]
                y = torch.clamp(y, lo, hi)
            elif isinstance(op, Add):
                lo, hi = self.ranges[op.name]
                y = torch.clamp(a + vals[op.inputs[1]], lo, hi)
            elif isinstance(op, Mean):
                y = a.mean(dim=(2, 3), keepdim=True)
            else:
                raise NotImplementedError(f"op '{op.name}' ({op.kind}) has no float twin")
            vals[op.output] = y
        return self.head(torch.flatten(vals[self.body[-1].output], 1))

    def dequantize_input(self, x_int8):
        """int8 NHWC numpy -> real float NCHW tensor."""
        t = self.model.input
        real = (x_int8.astype(np.float32) - t.zero_point) * np.float32(t.scale)
        return torch.from_numpy(np.ascontiguousarray(real.transpose(0, 3, 1, 2)))

    def sgd_step(self, x, label, lr):
        """One plain SGD step at batch 1; returns the loss."""
        params = [p for p in self.parameters() if p.requires_grad]
        loss = F.cross_entropy(self(x), torch.tensor([int(label)]))
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        return loss.item()


def saved_for_backward_bytes(twin, x, label):
    """Bytes autograd saves for backward in one step, plus the trainable
    parameters and their gradients: a lower bound of PyTorch's training
    memory for the step (its forward activations come on top)."""
    saved = {}

    def pack(t):
        saved[(t.data_ptr(), t.numel(), t.element_size())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(twin(x), torch.tensor([int(label)]))
    params = sum(p.numel() * p.element_size() for p in twin.parameters() if p.requires_grad)
    loss.backward()
    return sum(saved.values()) + 2 * params
