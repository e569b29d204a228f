"""Gradient accumulation: a plan compiled with accumulate=True sums each
image's gradients in the arena and applies their mean every N images."""
import numpy as np
import pytest

import tinyqt
from tinyqt.compiler import compile
from tinyqt.errors import TinyQTError
from tinyqt.optim import SGD
from tinyqt.runtime import Runtime
from tinyqt.trainer import Trainer

from conftest import shared_model_json


@pytest.fixture(scope="module")
def mcunet():
    return tinyqt.load_tiny_training(shared_model_json("mcunet-5fps"))


def _images(seed, n):
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, (n, 1, 128, 128, 3), dtype=np.int8), rng.integers(0, 10, n)


@pytest.mark.parametrize("scheme,opt", [
    ("paper:99kb", dict()),                                   # trained slices, in-place depthwise gradients
    ("paper:49kb", dict(rounding="master")),
    ("last:5", dict(rounding="stochastic", momentum=0.5)),
    ("bias-only:6", dict(momentum=0.9)),
])
def test_accumulating_one_image_is_the_fused_step(mcunet, scheme, opt):
    """N = 1: summing one gradient and applying it through the optimizer
    kernels gives the bits of the fused backward-and-update plan (itself
    checked against PyTorch and the firmware), and the sums cost exactly one
    fp32 per trained parameter in the plan."""
    kw = dict(num_classes=10, momentum=opt.get("momentum", 0.0), rounding=opt.get("rounding", "nearest"))
    fused, summing = compile(mcunet, scheme, **kw), compile(mcunet, scheme, accumulate=True, **kw)
    assert summing.accumulates and not fused.accumulates
    sums = sum(s.nbytes for s in summing.tensors.values() if s.kind == "accumulator")
    assert sums == 4 * summing.trainable_params
    assert summing.peak_sram_bytes > fused.peak_sram_bytes
    xs, ys = _images(3, 3)
    a, b = Runtime(fused, mcunet, SGD(0.05, **opt)), Runtime(summing, mcunet, SGD(0.05, **opt))
    for x, y in zip(xs, ys):
        assert a.step(x, y) == b.step(x, y)
        assert b.apply_accumulated() == 1
    ta, tb = a.trained_tensors(), b.trained_tensors()
    assert ta.keys() == tb.keys()
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)


def test_weights_hold_still_while_gradients_sum(mcunet):
    """Between applications nothing trained moves, and the sums equal the
    gradients of each image taken alone from the same weights, added."""
    plan = compile(mcunet, "paper:99kb", num_classes=10, accumulate=True)
    xs, ys = _images(5, 4)
    warm = Runtime(plan, mcunet, SGD(0.05))  # a new head starts at zero: no gradient reaches the body
    warm.step(xs[3], ys[3])
    warm.apply_accumulated()
    before = warm.trained_tensors()
    xs, ys = xs[:3], ys[:3]
    together = Runtime(plan, mcunet, SGD(0.05))
    together.load_trained_tensors(before)
    for x, y in zip(xs, ys):
        together.step(x, y)
    after = together.trained_tensors()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    sums = [n for n, s in plan.tensors.items() if s.kind == "accumulator"]
    expected = {n: np.zeros(plan.tensors[n].shape, np.float32) for n in sums}
    for x, y in zip(xs, ys):
        alone = Runtime(plan, mcunet, SGD(0.05))
        alone.load_trained_tensors(before)
        alone.step(x, y)
        for n in sums:
            expected[n] += alone.views[n]
    for n in sums:
        np.testing.assert_array_equal(together.views[n], expected[n], err_msg=n)
    assert any(np.abs(expected[n]).sum() > 0 for n in sums if n != "gradacc:head")
    assert together.apply_accumulated() == 3
    assert all(not together.views[n].any() for n in sums)
    moved = together.trained_tensors()
    assert any(not np.array_equal(before[k], moved[k]) for k in before)


def test_accumulated_head_steps_like_torch_minibatch_sgd(mcunet):
    """A frozen body and a head trained with accumulate=3 and momentum: the
    head follows torch.optim.SGD on mini-batches of 3 (mean loss), and a
    last partial group of 2 is applied as a mini-batch of 2 at the end of
    the epoch."""
    torch = pytest.importorskip("torch")
    plan = compile(mcunet, "bias-only:0", num_classes=4, momentum=0.9, accumulate=True)
    tr = Trainer(plan, mcunet, lr=0.05, momentum=0.9, accumulate=3, progress=False)
    rng = np.random.default_rng(6)
    xs = rng.integers(-128, 128, (8, 1, 128, 128, 3), dtype=np.int8)
    ys = np.array([1, 3, 1, 0, 2, 2, 3, 0])
    feats = []
    for x in xs:  # the body is frozen: each image's features are fixed
        tr.runtime.predict(x)
        feats.append(tr.runtime.views["features"].copy())
    tr.fit(xs.reshape(8, 128, 128, 3), ys, shuffle=False)
    d = plan.graph.head_shape[1]
    w = torch.zeros(4, d, requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.05, momentum=0.9)
    f = torch.from_numpy(np.concatenate(feats))
    for lo, hi in ((0, 3), (3, 6), (6, 8)):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(f[lo:hi] @ w.T + b, torch.from_numpy(ys[lo:hi])).backward()
        opt.step()
    hw = tr.runtime.views["head:weights"]
    np.testing.assert_allclose(hw[:4 * d].reshape(4, d), w.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hw[4 * d:], b.detach().numpy(), rtol=1e-5, atol=1e-7)
    assert tr.runtime.accumulated == 0


def test_optimizer_and_accumulation_errors_name_the_problem(mcunet, tmp_path):
    plain = compile(mcunet, "bias-only:2", num_classes=10)
    with pytest.raises(TinyQTError, match="accumulate=True"):
        Trainer(plain, mcunet, accumulate=4)
    summing = compile(mcunet, "bias-only:2", num_classes=10, accumulate=True)
    for bad in (0, 2.5, True):
        with pytest.raises(TinyQTError, match="accumulate"):
            Trainer(summing, mcunet, accumulate=bad)
    with pytest.raises(TinyQTError, match="compile with momentum=0.9"):
        Trainer(plain, mcunet, momentum=0.9)
    from tinyqt.codegen import generate
    with pytest.raises(TinyQTError, match="accumulation"):
        generate(summing, mcunet, SGD(0.01), str(tmp_path / "out"))
