"""The host runtime: a Plan executed over one arena at the planned offsets."""
import os

import numpy as np
import pytest

import tinyqt
from tinyqt.compiler import compile
from tinyqt.data import FASHION_MNIST_DIR, load_dataset, to_model_input
from tinyqt.errors import ShapeError
from tinyqt.optim import SGD
from tinyqt.runtime import Runtime

from conftest import require, shared_model_json


@pytest.fixture(scope="module")
def mcunet():
    return tinyqt.load_tiny_training(shared_model_json("mcunet-5fps"))


@pytest.mark.parametrize("scheme,opt,streamed", [
    ("paper:99kb", dict(), True),
    ("paper:99kb", dict(), False),
    ("bias-only:6", dict(momentum=0.9), True),
    ("last:5", dict(rounding="stochastic", momentum=0.5), True),
    ("paper:49kb", dict(rounding="master"), True),
])
def test_arena_execution_equals_separate_buffers(mcunet, scheme, opt, streamed):
    """Same bits whether tensors share one arena at the planned offsets or
    each has its own buffer: the plan's aliasing is sound."""
    plan = compile(mcunet, scheme, num_classes=10, momentum=opt.get("momentum", 0.0),
                   rounding=opt.get("rounding", "nearest"), fuse_backward=streamed)
    if scheme == "paper:99kb":  # the in-place depthwise gradients / streamed blocks are part of what is checked
        assert any(s.attrs.get("inplace") for s in plan.steps) != streamed
        assert any(s.kind == "backward_block" for s in plan.steps) == streamed
    rng = np.random.default_rng(3)
    xs = rng.integers(-128, 128, (3, 1, 128, 128, 3), dtype=np.int8)
    ys = rng.integers(0, 10, 3)
    a = Runtime(plan, mcunet, SGD(0.02, **opt))
    b = Runtime(plan, mcunet, SGD(0.02, **opt), separate_buffers=True)
    la = [a.step(x, y) for x, y in zip(xs, ys)]
    lb = [b.step(x, y) for x, y in zip(xs, ys)]
    assert la == lb
    ta, tb = a.trained_tensors(), b.trained_tensors()
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
    ops = {o.name: o for o in mcunet.ops}
    changed = sum(int((ta[k] != ops[k.split(":", 1)[1]].weight[..., :ta[k].shape[-1]]).sum())
                  for k in ta if k.startswith("weights:"))
    assert changed > 0 or not any(k.startswith("weights:") for k in ta)
    assert a.arena.nbytes == plan.peak_sram_bytes


@pytest.mark.parametrize("opt", [dict(), dict(momentum=0.9), dict(rounding="master")])
def test_streamed_block_backward_equals_per_layer_steps(mcunet, opt):
    """The streamed block backward (one step per block) trains exactly as
    the per-layer steps it replaces, and needs less memory."""
    kw = dict(num_classes=10, momentum=opt.get("momentum", 0.0), rounding=opt.get("rounding", "nearest"))
    streamed = compile(mcunet, "paper:99kb", **kw)
    layered = compile(mcunet, "paper:99kb", fuse_backward=False, **kw)
    assert streamed.peak_sram_bytes < layered.peak_sram_bytes
    assert streamed.trainable_params == layered.trainable_params
    rng = np.random.default_rng(4)
    xs = rng.integers(-128, 128, (3, 1, 128, 128, 3), dtype=np.int8)
    ys = rng.integers(0, 10, 3)
    a, b = Runtime(streamed, mcunet, SGD(0.05, **opt)), Runtime(layered, mcunet, SGD(0.05, **opt))
    assert [a.step(x, y) for x, y in zip(xs, ys)] == [b.step(x, y) for x, y in zip(xs, ys)]
    ta, tb = a.trained_tensors(), b.trained_tensors()
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_training_reduces_the_loss_on_fashion_mnist():
    require(os.path.isdir(FASHION_MNIST_DIR), "Debian dataset-fashion-mnist is not installed")
    model = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    plan = compile(model, "bias-only:10", num_classes=10, sram="256KB")
    ds = load_dataset("fashion-mnist")
    idx = np.random.default_rng(0).permutation(len(ds.y_train))[:300]
    x = to_model_input(ds.x_train[idx], model.input)
    y = ds.y_train[idx]
    rt = Runtime(plan, model, SGD(0.01))
    losses = [rt.step(x[i:i + 1], y[i]) for i in range(len(y))]
    assert np.mean(losses[-60:]) < 0.75 * np.mean(losses[:60])
    xt = to_model_input(ds.x_test[:200], model.input)
    acc = np.mean([rt.predict(xt[i:i + 1]) == ds.y_test[i] for i in range(200)])
    assert acc > 0.5  # chance is 0.1


def test_checkpoint_roundtrip(mcunet):
    plan = compile(mcunet, "bias-only:4", num_classes=10)
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (1, 128, 128, 3), dtype=np.int8)
    a = Runtime(plan, mcunet, SGD(0.05))
    for _ in range(2):
        a.step(x, 3)
    b = Runtime(plan, mcunet, SGD(0.05))
    b.load_trained_tensors(a.trained_tensors())
    assert a.predict(x) == b.predict(x)
    assert np.array_equal(a.views["logits"], b.views["logits"])
    with pytest.raises(ShapeError, match="does not fit"):
        b.load_trained_tensors({"head:weights": np.zeros(3, np.float32)})


def test_bad_step_input_is_named(mcunet):
    rt = Runtime(compile(mcunet, "bias-only:2", num_classes=10), mcunet)
    x = np.zeros((2, 128, 128, 3), np.int8)
    with pytest.raises(ShapeError, match="batch 1"):
        rt.step(x, 0)
    with pytest.raises(ShapeError, match="label 10 is outside 0..9"):
        rt.step(x[:1], 10)
    with pytest.raises(ShapeError, match="int8"):
        rt.step(x[:1].astype(np.float32), 0)


def test_trainer_fit_evaluate_and_checkpoint(mcunet, tmp_path):
    from tinyqt.trainer import Trainer
    plan = compile(mcunet, "bias-only:3", num_classes=4)
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (6, 128, 128, 3), dtype=np.int8)
    y = rng.integers(0, 4, 6)
    tr = Trainer(plan, mcunet, lr=0.01, progress=False)
    tr.fit(x, y, epochs=2)
    assert len(tr.history) == 2 and tr.runtime.steps_done == 12
    acc = tr.evaluate(x, y)
    path = tmp_path / "ckpt.npz"
    tr.save_checkpoint(str(path))
    again = Trainer(plan, mcunet, lr=0.01, progress=False)
    again.load_checkpoint(str(path))
    assert again.evaluate(x, y) == acc and again.runtime.steps_done == 12
    other = Trainer(compile(mcunet, "bias-only:4", num_classes=4), mcunet, progress=False)
    with pytest.raises(tinyqt.TinyQTError, match="checkpoint of scheme bias-only:3"):
        other.load_checkpoint(str(path))
    with pytest.raises(ShapeError, match="labels"):
        tr.fit(x, y[:3])


@pytest.mark.parametrize("name", ["mbv2-w0.35", "proxyless-w0.3", "mcunet-5fps"])
def test_fused_blocks_give_the_unfused_bytes(name):
    """Row-streamed frozen blocks: same logits and losses as layer by layer,
    with a smaller arena."""
    model = tinyqt.load_tiny_training(shared_model_json(name))
    fused = compile(model, "paper:49kb", num_classes=10)
    plain = compile(model, "paper:49kb", num_classes=10, fuse=False)
    assert any(s.kind == "fused_block" for s in fused.steps)
    assert fused.peak_sram_bytes < plain.peak_sram_bytes
    x = np.random.default_rng(2).integers(-128, 128, (1, 128, 128, 3), dtype=np.int8)
    a, b = Runtime(fused, model), Runtime(plain, model)
    assert a.predict(x) == b.predict(x)
    assert np.array_equal(a.views["logits"], b.views["logits"])
    assert [a.step(x, 1) for _ in range(2)] == [b.step(x, 1) for _ in range(2)]
    ta, tb = a.trained_tensors(), b.trained_tensors()
    assert all(np.array_equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize("scheme", ["paper:99kb", "paper:49kb"])
def test_trained_slices_train_exactly_like_whole_weights_in_sram(mcunet, scheme):
    """Partially trained layers keep only their trained channels in SRAM and
    assemble the full filter around each use; the training must be bit for
    bit that of the plan holding the whole weights in SRAM, for less memory.
    (Per-layer backward steps in both: streamed blocks draw the stochastic
    rounding in tile order, and only split weights stream.)"""
    split = compile(mcunet, scheme, num_classes=10, fuse_backward=False)
    whole = compile(mcunet, scheme, num_classes=10, split_weights=False, fuse_backward=False)
    assert any(s.kind == "expand" for s in split.steps)
    assert split.peak_sram_bytes < whole.peak_sram_bytes
    rng = np.random.default_rng(4)
    xs = rng.integers(-128, 128, (3, 1, 128, 128, 3), dtype=np.int8)
    ys = rng.integers(0, 10, 3)
    a = Runtime(split, mcunet, SGD(0.05, rounding="stochastic"))
    b = Runtime(whole, mcunet, SGD(0.05, rounding="stochastic"))
    assert [a.step(x, y) for x, y in zip(xs, ys)] == [b.step(x, y) for x, y in zip(xs, ys)]
    ta, tb = a.trained_tensors(), b.trained_tensors()
    assert ta.keys() == tb.keys()
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k][..., :ta[k].shape[-1]] if k.startswith("weights:") else tb[k])
        if k.startswith("weights:") and ta[k].shape != tb[k].shape:  # the frozen rest never moved
            op = next(o for o in mcunet.ops if o.name == k.split(":", 1)[1])
            np.testing.assert_array_equal(tb[k][..., ta[k].shape[-1]:], op.weight[..., ta[k].shape[-1]:])
    assert a.predict(xs[0]) == b.predict(xs[0])


def test_head_momentum_follows_torch_sgd(mcunet):
    """With momentum the fp32 head keeps its own buffers in the arena and
    steps like torch.optim.SGD (no dampening) on the same features."""
    torch = pytest.importorskip("torch")
    plan = compile(mcunet, "bias-only:0", num_classes=4, momentum=0.9)
    assert "optimizer:head" in plan.tensors
    rt = Runtime(plan, mcunet, SGD(0.05, momentum=0.9))
    rng = np.random.default_rng(6)
    xs = rng.integers(-128, 128, (3, 1, 128, 128, 3), dtype=np.int8)
    ys = [1, 3, 1]
    w = torch.zeros(4, plan.graph.head_shape[1], requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.05, momentum=0.9)
    for x, y in zip(xs, ys):
        rt.step(x, y)
        feats = torch.from_numpy(rt.views["features"].copy())
        opt.zero_grad()
        torch.nn.functional.cross_entropy(feats @ w.T + b, torch.tensor([y])).backward()
        opt.step()
    hw = rt.views["head:weights"]
    k, d = 4, plan.graph.head_shape[1]
    np.testing.assert_allclose(hw[:k * d].reshape(k, d), w.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hw[k * d:], b.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_head_learning_rate_is_its_own(mcunet):
    """SGD(lr, head_lr=): the fp32 head steps like torch SGD at head_lr (with
    lr = 0) while the int8 body follows lr (lr 0 leaves it as it was)."""
    torch = pytest.importorskip("torch")
    head_only = compile(mcunet, "bias-only:0", num_classes=4)
    rt = Runtime(head_only, mcunet, SGD(0.0, head_lr=0.07))
    rng = np.random.default_rng(9)
    w = torch.zeros(4, head_only.graph.head_shape[1], requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.07)
    for y in (2, 0, 3):
        rt.step(rng.integers(-128, 128, (1, 128, 128, 3), dtype=np.int8), y)
        feats = torch.from_numpy(rt.views["features"].copy())
        opt.zero_grad()
        torch.nn.functional.cross_entropy(feats @ w.T + b, torch.tensor([y])).backward()
        opt.step()
    k, d = 4, head_only.graph.head_shape[1]
    np.testing.assert_allclose(rt.views["head:weights"][:k * d].reshape(k, d), w.detach().numpy(), rtol=1e-5,
                               atol=1e-7)
    plan = compile(mcunet, "bias-only:4", num_classes=4)
    x = rng.integers(-128, 128, (1, 128, 128, 3), dtype=np.int8)
    for lr, moves in ((0.0, False), (0.05, True)):
        rt = Runtime(plan, mcunet, SGD(lr, head_lr=0.07))
        body = {n: rt.views[n].copy() for n in rt.views if n.startswith("bias:")}
        rt.step(x, 1)  # the zero head passes no gradient to the body yet
        rt.step(x, 2)
        assert len(body) == 4 and any(not np.array_equal(rt.views[n], v) for n, v in body.items()) == moves
