"""Loading the paper's int8 models from the tiny-training json+npz export."""
import json
import os
import shutil

import numpy as np
import pytest

import tinyqt
from tinyqt.errors import ModelFormatError
from tinyqt.graph import Add, Conv2D, Mean

from conftest import PAPER_MODELS, shared_model_json


def _json_convs(graph):
    """(json path, node) of every conv in forward order, read from the json itself."""
    out = [("first_conv", graph["first_conv"])]
    for i, b in enumerate(graph["blocks"]):
        for part in ("pointwise1", "depthwise", "pointwise2"):
            if b[part] is not None:
                out.append((f"blocks.{i}.{part}", b[part]))
    return out


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_structure_matches_the_json(name):
    path = shared_model_json(name)
    model = tinyqt.load_tiny_training(path)
    graph = json.load(open(path))["graph"]
    convs = [op for op in model.ops if isinstance(op, Conv2D)]
    expect = _json_convs(graph)
    assert [op.name for op in convs[:-1]] == [p for p, _ in expect]
    for op, (_, node) in zip(convs, expect):
        out = model.tensors[op.output].shape
        assert out[1] == node["out_shape"] and out[3] == node["out_channel"]
    assert sum(isinstance(op, Add) for op in model.ops) == sum(b["residual"] is not None for b in graph["blocks"])
    assert model.output.shape == (1, 1000)


def _conv_nhwc(x, w, k, s, depthwise):
    """float64 conv of NHWC x with OIHW w, padding k//2 (the export's convention)."""
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh = (x.shape[1] + 2 * pad - k) // s + 1
    out = np.zeros((x.shape[0], oh, oh, w.shape[0]))
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, ky:ky + s * (oh - 1) + 1:s, kx:kx + s * (oh - 1) + 1:s, :]
            if depthwise:
                out += patch * w[:, 0, ky, kx]
            else:
                out += np.einsum("nhwc,oc->nhwo", patch, w[:, :, ky, kx])
    return out


def _float_conv(x_q, node, z):
    """Independent float64 simulation of one json conv on int8 input x_q (NHWC).
    Outputs whose int32 accumulator wraps (the export saturated some biases at
    the int32 limit; TFLite's accumulator wraps there too) come back as NaN."""
    p = node["params"]
    ws = z[p["w_scales"]["array"]].astype(np.float64)
    w_q = z[p["weight"]["array"]].astype(np.float64)
    b_q = z[p["bias"]["array"]].astype(np.float64)
    k, s, dw = node["kernel_size"][0], node["stride"], node.get("groups", 1) > 1
    acc = _conv_nhwc(x_q.astype(np.float64) - p["x_zero"], w_q, k, s, dw) + b_q  # exact integers
    real = _conv_nhwc((x_q.astype(np.float64) - p["x_zero"]) * p["x_scale"],
                      w_q * ws[:, None, None, None], k, s, dw) + b_q * p["x_scale"] * ws
    y = np.clip(np.round(real / p["y_scale"]) + p["y_zero"], -128, 127)
    y[(acc < -2**31) | (acc >= 2**31)] = np.nan
    return y


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_every_conv_agrees_with_a_float_simulation(name):
    """Layer by layer, from the json (not the IR): wiring, layouts and padding
    are right when >= 99% of outputs match within one LSB."""
    path = shared_model_json(name)
    model = tinyqt.load_tiny_training(path)
    graph = json.load(open(path))["graph"]
    z = np.load(os.path.splitext(path)[0] + ".npz")
    x = np.random.default_rng(1).integers(-128, 128, (1, 128, 128, 3), dtype=np.int8)
    values = model.forward(x, return_all=True)
    ops = {op.name: op for op in model.ops}
    for where, node in _json_convs(graph):
        got = values[ops[where].output]
        want = _float_conv(values[ops[where].inputs[0]], node, z)
        valid = ~np.isnan(want)
        assert valid.mean() > 0.9, f"{where}: too many accumulators wrap"
        close = np.abs(got.astype(np.int64) - want)[valid] <= 1
        assert close.mean() >= 0.99, f"{where}: only {close.mean():.3f} within 1 LSB"


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_forward_batch_and_mean(name):
    model = tinyqt.load_tiny_training(shared_model_json(name))
    x = np.random.default_rng(2).integers(-128, 128, (2, 128, 128, 3), dtype=np.int8)
    values = model.forward(x, return_all=True)
    assert values["logits"].shape == (2, 1000) and values["logits"].dtype == np.int8
    pool = next(op for op in model.ops if isinstance(op, Mean))
    feat = values[pool.inputs[0]].astype(np.float64)
    assert np.abs(feat.mean(axis=(1, 2)) - values["pool"][:, 0, 0, :]).max() <= 1.0
    # the two images are independent
    np.testing.assert_array_equal(model.forward(x[1:]), values["logits"][1:])


def _copy_model(tmp_path, name):
    src = shared_model_json(name)
    dst = tmp_path / os.path.basename(src)
    shutil.copy(src, dst)
    shutil.copy(os.path.splitext(src)[0] + ".npz", os.path.splitext(str(dst))[0] + ".npz")
    return dst, json.load(open(src))


def test_missing_field_is_named(tmp_path):
    dst, doc = _copy_model(tmp_path, "mcunet-5fps")
    del doc["graph"]["blocks"][3]["depthwise"]["params"]["w_scales"]
    dst.write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match=r"blocks\.3\.depthwise\.params\.w_scales: missing"):
        tinyqt.load_tiny_training(str(dst))


def test_shape_and_dtype_mismatch_are_named(tmp_path):
    dst, doc = _copy_model(tmp_path, "mcunet-5fps")
    doc["graph"]["blocks"][2]["pointwise2"]["out_channel"] = 17
    dst.write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match=r"blocks\.2\.pointwise2\.params\.weight: expected shape"):
        tinyqt.load_tiny_training(str(dst))
    dst, doc = _copy_model(tmp_path, "mcunet-5fps")
    doc["graph"]["first_conv"]["params"]["bias"]["array"] = "first_conv.params.w_scales"
    dst.write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match=r"first_conv\.params\.bias: expected dtype int32"):
        tinyqt.load_tiny_training(str(dst))


def test_garbage_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        tinyqt.load_tiny_training(str(bad))
    with pytest.raises(ModelFormatError, match="No such file"):
        tinyqt.load_tiny_training(str(tmp_path / "absent.json"))
    bad.write_text("{}")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFormatError, match="weights archive"):
        tinyqt.load_tiny_training(str(bad))
