"""The float PyTorch twin of an int8 model (the baselines' reference)."""
import numpy as np
import pytest

import tinyqt

from conftest import require, shared_model_json

try:
    import torch
except ImportError:
    torch = None


@pytest.fixture(autouse=True)
def _torch_present():
    require(torch is not None, "PyTorch is not installed (pip install torch)")


@pytest.mark.parametrize("name", ["mcunet-5fps", "mbv2-w0.35"])
def test_twin_tracks_the_int8_network(name):
    from tinyqt.torch_sim import FloatTwin
    model = tinyqt.load_tiny_training(shared_model_json(name))
    twin = FloatTwin(model, "paper:99kb", num_classes=10)
    x = np.random.default_rng(0).integers(-128, 128, (2, 128, 128, 3), dtype=np.int8)
    vals = model.forward(x, return_all=True)
    pool = next(op for op in model.ops if op.kind == "mean")
    t = model.tensors[pool.output]
    q = (vals[pool.output].reshape(2, -1).astype(np.float64) - t.zero_point) * t.scale
    captured = {}
    twin.head.register_forward_hook(lambda m, inp, out: captured.setdefault("f", inp[0].detach().numpy()))
    twin(twin.dequantize_input(x))
    f = captured["f"].astype(np.float64)
    cos = (q * f).sum(axis=1) / np.linalg.norm(q, axis=1) / np.linalg.norm(f, axis=1)
    assert cos.min() > 0.95, cos


def test_twin_trains_only_the_scheme():
    from tinyqt.torch_sim import FloatTwin, saved_for_backward_bytes
    model = tinyqt.load_tiny_training(shared_model_json("mcunet-5fps"))
    twin = FloatTwin(model, "bias-only:3", num_classes=10)
    trainable = [n for n, p in twin.named_parameters() if p.requires_grad]
    assert len(trainable) == 3 + 2 and all(n.startswith(("biases.", "head.")) for n in trainable)
    x = twin.dequantize_input(np.zeros((1, 128, 128, 3), np.int8))
    before = twin.head.weight.detach().clone()
    loss = twin.sgd_step(x, 4, lr=0.1)
    assert np.isfinite(loss) and not torch.equal(before, twin.head.weight)
    assert saved_for_backward_bytes(twin, x, 4) > 0
