"""The zoo architectures: structurally the paper's exports, bit-identical
with them when their weights are loaded, and usable at other resolutions and
class counts with random initialization."""
import numpy as np
import pytest

import tinyqt
from tinyqt import zoo
from tinyqt.errors import TinyQTError
from tinyqt.graph import Conv2D

from conftest import PAPER_MODELS, shared_model_json


def _structure(model):
    out = []
    for op in model.ops:
        row = [type(op).__name__, op.name, tuple(op.inputs), model.tensors[op.output].shape]
        if isinstance(op, Conv2D):
            row += [op.weight.shape, op.stride, op.padding, op.depthwise, op.activation]
        out.append(tuple(row))
    return out


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_random_architecture_matches_the_export_layer_by_layer(name):
    exported = tinyqt.load_tiny_training(shared_model_json(name))
    assert _structure(zoo.build(name, resolution=128, num_classes=1000)) == _structure(exported)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_loaded_weights_give_the_exports_bits(name):
    path = shared_model_json(name)
    exported = tinyqt.load_tiny_training(path)
    model = zoo.build(name, weights=path)
    x = np.random.default_rng(1).integers(-128, 128, (2, 128, 128, 3), dtype=np.int8)
    np.testing.assert_array_equal(model.forward(x), exported.forward(x))


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_other_resolutions_and_class_counts_build_run_and_compile(name):
    model = zoo.build(name, resolution=96, num_classes=10, seed=3)
    x = np.random.default_rng(2).integers(-128, 128, (4, 96, 96, 3), dtype=np.int8)
    feats = model.forward(x, return_all=True)
    # random init neither saturates nor collapses: every linear output uses the int8 range
    for op in model.ops:
        if op.name.endswith("pointwise2") or op.name.endswith("residual"):
            dev = np.abs(feats[op.output].astype(int) - model.tensors[op.output].zero_point)
            assert dev.max() > 8 and np.mean(dev >= 127) < 0.01, op.name
    assert feats["logits"].shape == (4, 10) and len(np.unique(feats["logits"])) > 5
    plan = tinyqt.compile(model, "last:3", sram="256KB")
    assert plan.peak_sram_bytes < 256 * 1024


def test_imagenet_backbone_at_a_new_class_count_keeps_its_body(tmp_path):
    path = shared_model_json("mcunet-5fps")
    exported = tinyqt.load_tiny_training(path)
    model = zoo.build("mcunet-5fps", weights=path, num_classes=10, resolution=160)
    assert model.tensors["logits"].shape == (1, 10)
    ops = {op.name: op for op in exported.ops}
    for op in model.ops:
        if isinstance(op, Conv2D) and op.name != "classifier":
            np.testing.assert_array_equal(op.weight, ops[op.name].weight)


def test_bad_requests_are_named():
    with pytest.raises(TinyQTError, match="unknown zoo model 'resnet'"):
        zoo.build("resnet")
    with pytest.raises(TinyQTError, match="resolution"):
        zoo.build("mbv2-w0.35", resolution=8)
    with pytest.raises(TinyQTError, match="not a proxyless-w0.3"):
        zoo.build("proxyless-w0.3", weights=shared_model_json("mbv2-w0.35"))


def test_cli_plans_a_zoo_model_by_name(capsys):
    import json

    from tinyqt.cli import main
    assert main(["plan", "--model", "mcunet-5fps", "--resolution", "128", "--classes", "10", "--scheme",
                 "paper:99kb", "--weights", shared_model_json("mcunet-5fps"), "--json"]) in (0, 1)
    by_name = json.loads(capsys.readouterr().out)
    assert main(["plan", "--model-file", shared_model_json("mcunet-5fps"), "--classes", "10", "--scheme",
                 "paper:99kb", "--json"]) in (0, 1)
    by_file = json.loads(capsys.readouterr().out)
    assert by_name["peak_sram_bytes"] == by_file["peak_sram_bytes"] > 0
    assert main(["plan", "--model", "proxyless-w0.3", "--resolution", "64", "--classes", "5", "--scheme",
                 "last:4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fits"] is True
