"""A tiny int8 network trained on-device style with tinyqt's kernels:
conv3x3/2 (ReLU) -> depthwise 3x3 (ReLU) -> 1x1 (linear bottleneck) ->
global mean -> fp32 head, forward through the graph IR executor, backward
with the fused gradient+update kernels, batch 1, Fashion-MNIST (4 classes,
downsampled to 14x14). With QAS the loss falls clearly; without QAS, at the
same learning rate, the int8 body barely moves (its updates are s_w^2 ~ 1e-4
times smaller and round away) and the model learns measurably slower, the
paper's point (Lin et al. 2022, Sec. 2.2)."""
import os

import numpy as np
import pytest

from conftest import require
from tinyqt import backward as B, quant
from tinyqt.data import FASHION_MNIST_DIR, read_idx
from tinyqt.executor import run_forward, run_op
from tinyqt.graph import Conv2D, Mean, Model
from tinyqt.optim import SGD

CLASSES = np.array([0, 1, 7, 8])  # T-shirt, trouser, sneaker, bag
STEPS, LR = 600, 0.1
N_TEST = 600


@pytest.fixture(scope="module")
def data():
    paths = [os.path.join(FASHION_MNIST_DIR, f) for f in
             ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    require(all(os.path.exists(p) for p in paths), f"Fashion-MNIST not found in {FASHION_MNIST_DIR}")
    x, y = read_idx(paths[0]), read_idx(paths[1]).astype(np.int64)
    keep = np.isin(y, CLASSES)
    x, y = x[keep], np.searchsorted(CLASSES, y[keep])
    x = x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))  # 2x2 average: 14x14
    xi = (np.round(x) - 128).astype(np.int8)[..., None]  # real = (p - 128) / 127.5
    return xi[:STEPS], y[:STEPS], xi[STEPS:STEPS + N_TEST], y[STEPS:STEPS + N_TEST]


def build_model(seed, x_calib):
    """Random int8 weights (He-scaled), zero biases; each activation's scale
    is calibrated on x_calib (99.9th percentile)."""
    rng = np.random.default_rng(seed)
    m = Model("tiny")
    m.add_tensor("x", (1, 14, 14, 1), 1 / 127.5, 0)
    m.inputs = ["x"]
    layers = [("c1", "x", "a1", (8, 3, 3, 1), False, (2, 2), (1, 1, 1, 1), "RELU", (1, 7, 7, 8)),
              ("dw", "a1", "a2", (1, 3, 3, 8), True, (1, 1), (1, 1, 1, 1), "RELU", (1, 7, 7, 8)),
              ("pw", "a2", "a3", (16, 1, 1, 8), False, (1, 1), (0, 0, 0, 0), "NONE", (1, 7, 7, 16))]
    cur = x_calib
    for name, i, o, wshape, dw, stride, pad, act, shape in layers:
        c_out = wshape[3] if dw else wshape[0]
        fan_in = wshape[1] * wshape[2] * (1 if dw else wshape[3])
        w = np.clip(np.round(rng.standard_normal(wshape) * 40), -127, 127).astype(np.int8)
        ws = np.full(c_out, np.sqrt(2.0 / fan_in) / 40, np.float32)
        op = Conv2D(name, [i], o, weight=w, bias=np.zeros(c_out, np.int32), w_scales=ws,
                    stride=stride, padding=pad, depthwise=dw, activation=act)
        zp = -128 if act == "RELU" else 0
        m.add_tensor(o, shape, 0.05, zp)  # wide provisional range
        hi = np.percentile(np.abs(run_op(m, op, [cur]).astype(np.float64) - zp) * 0.05, 99.9)
        m.add_tensor(o, shape, max(hi, 1e-3) / (255 if zp == -128 else 127), zp)
        m.ops.append(op)
        cur = run_op(m, op, [cur])
    t3 = m.tensors["a3"]
    m.add_tensor("p", (1, 1, 1, 16), t3.scale, t3.zero_point)
    m.ops.append(Mean("mean", ["a3"], "p"))
    m.outputs = ["p"]
    return m


def head_logits(m, vals, hw, hb):
    tp = m.tensors["p"]
    f = B.dequantize(vals["p"].reshape(1, -1), tp.scale, tp.zero_point)
    return f, B.linear(f, hw, hb)


def train(data, *, qas, seed, rounding="nearest", steps=STEPS, lr=LR):
    """Returns (per-step losses, test accuracy, test loss, fraction of int8
    weights changed, model)."""
    xtr, ytr, xte, yte = data
    m = build_model(seed, xtr[:64])
    rng = np.random.default_rng(seed + 1000)
    hw = (rng.standard_normal((len(CLASSES), 16)) * 0.1).astype(np.float32)
    hb = np.zeros(len(CLASSES), np.float32)
    opt = SGD(lr, qas=qas, rounding=rounding, seed=1234 + seed)
    convs = [op for op in m.ops if isinstance(op, Conv2D)]
    w0 = {op.name: op.weight.copy() for op in convs}
    states = {op.name: opt.state_for(op.weight, depthwise=op.depthwise, in_channels=op.weight.shape[3])
              for op in convs}
    losses = []
    for step in range(steps):
        i = step % len(xtr)
        vals = run_forward(m, xtr[i:i + 1], return_all=True)
        f, logits = head_logits(m, vals, hw, hb)
        loss, g_logits = B.softmax_cross_entropy(logits, [ytr[i]])
        losses.append(loss)
        g_f = B.linear_backward_update(f, g_logits, hw, hb, lr)  # fp32 head, in place
        g = B.mean_backward(g_f.reshape(1, 1, 1, -1), vals["a3"].shape, B.clamp_mask(vals["p"]))
        for op in reversed(convs):
            t_in, t_out = m.tensors[op.inputs[0]], m.tensors[op.output]
            lo, hi = quant.activation_range(op.activation, t_out.scale, t_out.zero_point)
            mask = B.clamp_mask(vals[op.output], lo, hi)
            x_in = vals[op.inputs[0]]
            geo = dict(stride=op.stride, padding=op.padding, dilation=op.dilation)
            g_in = None
            if op is not convs[0]:  # input gradient first: it needs the weights before the update
                g_in = B.conv2d_backward_input(g, op.weight, op.w_scales, x_in.shape,
                                               depthwise=op.depthwise, mask=mask, **geo)
            B.conv2d_backward_weight_update(g, x_in, op.weight, op.bias, op.w_scales, opt,
                                            states[op.name], x_scale=t_in.scale,
                                            x_zero_point=t_in.zero_point, depthwise=op.depthwise,
                                            in_channels=x_in.shape[3], mask=mask, **geo)
            g = g_in
    correct, test_loss = 0, 0.0
    for j in range(len(xte)):
        _, logits = head_logits(m, run_forward(m, xte[j:j + 1], return_all=True), hw, hb)
        test_loss += B.softmax_cross_entropy(logits, [yte[j]])[0]
        correct += int(np.argmax(logits) == yte[j])
    changed = sum(int(np.count_nonzero(op.weight != w0[op.name])) for op in convs)
    total = sum(op.weight.size for op in convs)
    return np.array(losses), correct / len(xte), test_loss / len(xte), changed / total, m


def test_qas_learns_and_no_qas_learns_slower(data):
    res = {True: [], False: []}
    for seed in (0, 1, 2):
        for qas in (True, False):
            res[qas].append(train(data, qas=qas, seed=seed)[:4])
    for (losses, acc, tl, changed), (nl, nacc, ntl, nchanged) in zip(res[True], res[False]):
        # QAS: the training loss falls clearly (chance level is ln 4 = 1.386)
        assert losses[-150:].mean() < 0.7 * losses[:50].mean(), (losses[:50].mean(), losses[-150:].mean())
        assert changed > 0.3  # the int8 body trains
        assert nchanged < 0.02  # without QAS the int8 updates round away
        assert tl < ntl  # lower held-out loss on every seed
    acc_q = np.mean([r[1] for r in res[True]])
    acc_n = np.mean([r[1] for r in res[False]])
    tl_q = np.mean([r[2] for r in res[True]])
    tl_n = np.mean([r[2] for r in res[False]])
    assert acc_q > 0.65 and acc_q > acc_n + 0.1, (acc_q, acc_n)
    assert tl_q < tl_n - 0.2, (tl_q, tl_n)


@pytest.mark.parametrize("rounding", ["stochastic", "master"])
def test_other_rounding_modes_train(data, rounding):
    losses, acc, _, changed, _ = train(data, qas=True, seed=0, rounding=rounding, steps=400)
    assert losses[-150:].mean() < 0.8 * losses[:50].mean()
    assert acc > 0.5 and changed > 0.3


def test_training_is_deterministic(data):
    a = train(data, qas=True, seed=3, rounding="stochastic", steps=60)
    b = train(data, qas=True, seed=3, rounding="stochastic", steps=60)
    assert np.array_equal(a[0].view(np.uint32), b[0].view(np.uint32))
    for op_a, op_b in zip(a[4].ops, b[4].ops):
        if isinstance(op_a, Conv2D):
            assert np.array_equal(op_a.weight, op_b.weight) and np.array_equal(op_a.bias, op_b.bias)
