"""Host speed of the C forward kernels (through Cython) on every layer shape
of mbv2-w0.35 at 128x128, batch 1, reported in GMAC/s.

    python -m pytest bench/test_bench_host_kernels.py --benchmark-only \
        --benchmark-columns=mean,rounds --benchmark-sort=name
"""
import numpy as np
import pytest

import tinyqt
from tinyqt.executor import run_op
from tinyqt.graph import Conv2D

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
