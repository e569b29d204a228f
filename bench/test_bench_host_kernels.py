"""Host speed of the C kernels (through Cython) on every layer shape of
mbv2-w0.35 at 128x128, batch 1, reported in GMAC/s (the forward layer's
MACs): the int8 forward, the fp32 input gradient, and the fused weight
gradient + QAS update over all input channels.

    python -m pytest bench/test_bench_host_kernels.py --benchmark-only \
        --benchmark-columns=mean,rounds --benchmark-sort=name
"""
import numpy as np
import pytest

import tinyqt
from tinyqt import backward
from tinyqt.executor import run_op
from tinyqt.graph import Conv2D
from tinyqt.optim import SGD

from conftest import shared_model_path


def _layers():
    model = tinyqt.load_tiny_training(shared_model_path("mbv2-w0.35"))
    return model, [op for op in model.ops if isinstance(op, Conv2D)]


def _layer_ids():
    try:
        _, convs = _layers()
    except Exception:  # noqa: BLE001 - ids only; the bench itself skips or fails loudly
        return ["unavailable"]
    return [op.name for op in convs]


@pytest.mark.parametrize("layer", _layer_ids())
def test_conv_layer(benchmark, layer):
    model, convs = _layers()
    op = next(o for o in convs if o.name == layer)
    t_in = model.tensors[op.inputs[0]]
    x = np.random.default_rng(0).integers(-128, 128, t_in.shape, dtype=np.int8)
    benchmark.group = "mbv2-w0.35 conv layers"
    y = benchmark(run_op, model, op, [x])
    macs = op.macs(model)
    benchmark.extra_info["macs"] = macs
    benchmark.extra_info["gmacs_per_s"] = macs / benchmark.stats.stats.mean / 1e9
    benchmark.extra_info["shape"] = f"{t_in.shape[1:]}->{y.shape[1:]} k{op.weight.shape[1]} s{op.stride[0]}{' dw' if op.depthwise else ''}"


def test_whole_forward(benchmark):
    model, _ = _layers()
    x = np.random.default_rng(0).integers(-128, 128, model.input.shape, dtype=np.int8)
    benchmark.group = "mbv2-w0.35 forward"
    benchmark(model.forward, x)
    macs = sum(op.macs(model) for op in model.ops)
    benchmark.extra_info["macs"] = macs
    benchmark.extra_info["gmacs_per_s"] = macs / benchmark.stats.stats.mean / 1e9


def _record(benchmark, model, op):
    macs = op.macs(model)
    benchmark.extra_info["macs"] = macs
    benchmark.extra_info["gmacs_per_s"] = macs / benchmark.stats.stats.mean / 1e9


def _backward_inputs(model, op):
    t_in, t_out = model.tensors[op.inputs[0]], model.tensors[op.output]
    rng = np.random.default_rng(1)
    g = rng.standard_normal(t_out.shape).astype(np.float32)
    x = rng.integers(-128, 128, t_in.shape, dtype=np.int8)
    mask = backward.clamp_mask(rng.integers(-128, 128, t_out.shape, dtype=np.int8), -100, 127)
    return t_in, g, x, mask


@pytest.mark.parametrize("layer", _layer_ids())
def test_conv_layer_input_gradient(benchmark, layer):
    model, convs = _layers()
    op = next(o for o in convs if o.name == layer)
    t_in, g, _, mask = _backward_inputs(model, op)
    benchmark.group = "mbv2-w0.35 input gradient"
    benchmark(backward.conv2d_backward_input, g, op.weight, op.w_scales, t_in.shape, stride=op.stride,
              padding=op.padding, dilation=op.dilation, depthwise=op.depthwise, mask=mask)
    _record(benchmark, model, op)


@pytest.mark.parametrize("layer", _layer_ids())
def test_conv_layer_weight_gradient_and_update(benchmark, layer):
    model, convs = _layers()
    op = next(o for o in convs if o.name == layer)
    t_in, g, x, mask = _backward_inputs(model, op)
    w, b = op.weight.copy(), (op.bias if op.bias is not None else np.zeros(op.out_channels, np.int32)).copy()
    opt = SGD(1e-6)  # updates below half an LSB: the weights stay put across rounds
    benchmark.group = "mbv2-w0.35 weight gradient + update"
    benchmark(backward.conv2d_backward_weight_update, g, x, w, b, op.w_scales, opt, x_scale=t_in.scale,
              x_zero_point=t_in.zero_point, stride=op.stride, padding=op.padding, dilation=op.dilation,
              depthwise=op.depthwise, in_channels=t_in.shape[-1] if op.depthwise else None, mask=mask)
    _record(benchmark, model, op)
