"""tinyqt.from_torch: float PyTorch CNNs -> int8 models, checked against the
float module itself (within the quantization step), against TFLite Micro
(the exported file runs byte-identical to Model.forward), and by training."""
import numpy as np
import pytest

import tinyqt
from tinyqt.errors import ShapeError, UnsupportedOpError

from tflm_oracle import run_tflm

torch = pytest.importorskip("torch")
nn = torch.nn


def _randomize_bn(net, seed):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return net.eval()


class Plain(nn.Module):
    """kxk convs with bias, stride 2, plain ReLU, AvgPool2d, mean, Linear."""
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 5, 2, 2)
        self.c2 = nn.Conv2d(8, 12, 3, 1, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(12, 7)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = self.pool(nn.functional.relu(self.c2(x)))
        return self.fc(x.mean((2, 3)))


class Separable(nn.Module):
    """depthwise-separable with BN and ReLU6, dropout, flatten."""
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU6(),
            nn.Conv2d(24, 24, 5, 2, 2, groups=24, bias=False), nn.BatchNorm2d(24), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        return self.fc(self.drop(torch.flatten(self.pool(self.body(x)), 1)))


class Bottleneck(nn.Module):
    """inverted residual blocks with a residual add, the paper's block."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.expand = nn.Sequential(nn.Conv2d(8, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(24, 24, 7, 1, 3, groups=24, bias=False), nn.BatchNorm2d(24), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(24, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.dw(self.expand(x)))
        return self.head(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


NETS = {"plain": (Plain, 3, 20), "separable": (Separable, 1, 33), "bottleneck": (Bottleneck, 3, 17)}


def _convert(kind, seed=0):
    cls, c, size = NETS[kind]
    torch.manual_seed(seed)
    net = _randomize_bn(cls(), seed)
    calib = torch.rand(64, c, size, size) * 2 - 1
    return net, tinyqt.from_torch(net, calib), torch.rand(24, c, size, size) * 2 - 1


def _quantize_input(model, x):
    t = model.input
    q = np.round(x.permute(0, 2, 3, 1).numpy() / np.float32(t.scale)) + t.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


@pytest.mark.parametrize("kind", sorted(NETS))
def test_int8_model_follows_the_float_module(kind):
    net, model, x = _convert(kind)
    with torch.no_grad():
        ref = net(x).numpy()
    out = model.forward(_quantize_input(model, x)).astype(np.float32)
    deq = (out - model.output.zero_point) * np.float32(model.output.scale)
    # int8 everywhere: a few output steps of error at most, and the same decisions
    err = np.abs(deq - ref)
    assert err.max() <= 6 * model.output.scale, (err.max(), model.output.scale)
    assert np.mean(deq.argmax(1) == ref.argmax(1)) >= 0.9
    assert len(np.unique(out)) > 10


@pytest.mark.oracle
@pytest.mark.parametrize("kind", sorted(NETS))
def test_imported_model_runs_bit_exact_in_tflite_micro(kind, tmp_path):
    _, model, x = _convert(kind, seed=1)
    path = tmp_path / f"{kind}.tflite"
    tinyqt.save_tflite(model, str(path))
    xq = _quantize_input(model, x[:6])
    np.testing.assert_array_equal(run_tflm(path.read_bytes(), xq), model.forward(xq))


def test_imported_model_compiles_and_learns():
    from tinyqt.trainer import Trainer
    _, model, _ = _convert("bottleneck", seed=2)
    plan = tinyqt.compile(model, "last:3", num_classes=2, sram="256KB")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    # class 1 bright, class 0 dark: the random features separate them, the fresh head must learn it
    x = (rng.integers(-30, 30, (64, 17, 17, 3)) + np.where(y == 1, 90, -90)[:, None, None, None]).astype(np.int8)
    tr = Trainer(plan, model, lr=0.1, progress=False)
    assert tr.evaluate(x, y) < 0.7
    first = tr.fit(x, y, epochs=1)
    for _ in range(3):
        last = tr.fit(x, y, epochs=1)
    assert last < 0.5 * first
    assert tr.evaluate(x, y) >= 0.95


def test_unsupported_modules_are_named():
    class WithSigmoid(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.sigmoid(self.c(x)).mean((2, 3))

    with pytest.raises(UnsupportedOpError, match="sigmoid"):
        tinyqt.from_torch(WithSigmoid(), torch.rand(4, 3, 8, 8))

    class Grouped(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(4, 8, 3, groups=2)

        def forward(self, x):
            return self.c(x)

    with pytest.raises(UnsupportedOpError, match="grouped conv"):
        tinyqt.from_torch(Grouped(), torch.rand(4, 4, 8, 8))


def test_bad_calibration_data_is_rejected():
    with pytest.raises(ShapeError, match="NCHW"):
        tinyqt.from_torch(Plain(), np.zeros((20, 20, 3), np.float32))
