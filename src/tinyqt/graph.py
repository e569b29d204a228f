"""The int8 graph IR shared by the importers, exporters and executors.

A Model is a list of ops in execution order over named tensors. Tensors
carry shape (activations NHWC), scale and zero point. Weights live on the ops
in tinyqt's kernel layouts (conv OHWI, depthwise [1, KH, KW, C_out], FC
[out, in]) with per-output-channel float32 scales and int32 biases.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import ShapeError

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


@dataclass
class Tensor:
    """An int8 activation tensor: shape (NHWC for 4-D), scale, zero point."""
    name: str
    shape: Tuple[int, ...]
    scale: float
    zero_point: int

    @property
    def nbytes(self):
        return int(np.prod(self.shape))


@dataclass
class Op:
    """Base op: names of its input tensors and its output tensor."""
    name: str
    inputs: List[str]
    output: str

    kind = "op"

    def macs(self, model):
        return 0

    def param_bytes(self):
        return 0


@dataclass
class Conv2D(Op):
    """conv2d or depthwise conv. weight: OHWI int8 (dense) or [1, KH, KW, C_out]
    (depthwise); bias int32 [C_out]; w_scales float32 [C_out] (symmetric);
    padding (top, left, bottom, right); activation: fused clamp name."""
    weight: np.ndarray = None
    bias: Optional[np.ndarray] = None
    w_scales: np.ndarray = None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: Tuple[int, int] = (1, 1)
    depthwise: bool = False
    activation: str = "NONE"

    @property
    def kind(self):
        return "depthwise_conv" if self.depthwise else "conv"

    @property
    def out_channels(self):
        return self.weight.shape[3] if self.depthwise else self.weight.shape[0]

    def macs(self, model):
        out = model.tensors[self.output].shape
        kh, kw = self.weight.shape[1], self.weight.shape[2]
        per_out = kh * kw * (1 if self.depthwise else self.weight.shape[3])
        return int(np.prod(out)) * per_out

    def param_bytes(self):
        return self.weight.size + (0 if self.bias is None else 4 * self.bias.size)


@dataclass
class FullyConnected(Op):
    """FC: weight [out, in] int8, bias int32 [out], w_scales float32 [out] or [1]."""
    weight: np.ndarray = None
    bias: Optional[np.ndarray] = None
    w_scales: np.ndarray = None
    activation: str = "NONE"
    kind = "fully_connected"

    def macs(self, model):
        return int(np.prod(model.tensors[self.output].shape)) * self.weight.shape[1]

    def param_bytes(self):
        return self.weight.size + (0 if self.bias is None else 4 * self.bias.size)


@dataclass
class Add(Op):
    activation: str = "NONE"
    kind = "add"


@dataclass
class AvgPool2D(Op):
    filter: Tuple[int, int] = (1, 1)
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int, int, int] = (0, 0, 0, 0)
    activation: str = "NONE"
    kind = "average_pool"


@dataclass
class Mean(Op):
    """Mean over H and W (keep_dims=True: output [N, 1, 1, C])."""
    kind = "mean"


@dataclass
class Reshape(Op):
    kind = "reshape"


@dataclass
class Softmax(Op):
    beta: float = 1.0
    kind = "softmax"


@dataclass
class Model:
    """An int8 model: tensors by name, ops in execution order, the graph's
    input and output tensor names."""
    name: str
    tensors: Dict[str, Tensor] = field(default_factory=dict)
    ops: List[Op] = field(default_factory=list)
    inputs: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)

    def add_tensor(self, name, shape, scale, zero_point):
        t = Tensor(name, tuple(int(s) for s in shape), float(scale), int(zero_point))
        self.tensors[name] = t
        return t

    @property
    def input(self):
        return self.tensors[self.inputs[0]]

    @property
    def output(self):
        return self.tensors[self.outputs[0]]

    def forward(self, x, return_all=False):
        """Runs the model with the C kernels. x: int8 array of the input
        tensor's shape (any batch size N in the first axis). Returns the int8
        output (or, with return_all, a dict of every tensor)."""
        from .executor import run_forward
        return run_forward(self, x, return_all=return_all)

    def check_input(self, x):
        t = self.input
        if not isinstance(x, np.ndarray) or x.dtype != np.int8:
            got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise ShapeError(f"input '{t.name}': expected an int8 numpy array, got {got}")
        if x.ndim != len(t.shape) or tuple(x.shape[1:]) != tuple(t.shape[1:]):
            raise ShapeError(f"input '{t.name}': expected shape (N, {', '.join(map(str, t.shape[1:]))}), got {x.shape}")
