"""Update schemes: the paper's published tables, the built-in spellings, and
clear rejections of malformed schemes."""
import json

import pytest

from tinyqt.schemes import PAPER_SCHEMES, SchemeError, parse_scheme

NUM_CONVS = {"mcunet-5fps": 42, "mbv2-w0.35": 51, "proxyless-w0.3": 60}


@pytest.mark.parametrize("model", sorted(PAPER_SCHEMES))
@pytest.mark.parametrize("label", ["49kb", "74kb", "99kb", "124kb", "148kb"])
def test_every_paper_scheme_is_valid_for_its_model(model, label):
    s = parse_scheme(f"paper:{label}", model, NUM_CONVS[model])
    assert 0 < s.bias_k <= NUM_CONVS[model]
    assert all(0 <= r <= 1 for r in s.weights.values())


def test_paper_99kb_tables_match_the_issue():
    s = parse_scheme("paper:99kb", "mcunet-5fps", 42)
    assert s.bias_k == 22 and s.weights == {21: 1, 24: 1, 27: 1, 30: 1, 36: 0.125, 39: 0.25}
    s = parse_scheme("paper:98kb", "proxyless-w0.3", 60)
    assert s.bias_k == 25 and s.weights[48] == 0.25 and s.name == "paper:98kb"
    s = parse_scheme("paper:99kb", "proxyless-w0.3", 60)  # same tier, the model's own label
    assert s.name == "paper:98kb"
    s = parse_scheme("paper:73kb", "mbv2-w0.35", 51)
    assert s.bias_k == 20 and s.weights[32] == 0.125


def test_builtin_spellings():
    assert parse_scheme("bias-only:5", num_convs=10).weights == {}
    last = parse_scheme("last:3", num_convs=10)
    assert last.bias_k == 3 and sorted(last.weights) == [7, 8, 9]
    full = parse_scheme("full", num_convs=4)
    assert full.bias_k == 4 and full.weights == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}


def test_selected_channels_rounds_up():
    s = parse_scheme("paper:99kb", "mcunet-5fps", 42)
    assert s.selected_channels(36, 96) == 12
    assert s.selected_channels(39, 10) == 3
    assert s.selected_channels(5, 96) == 0


def test_json_scheme_roundtrip(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(parse_scheme("paper:49kb", "mbv2-w0.35", 51).to_json()))
    s = parse_scheme(str(p), num_convs=51)
    assert s.bias_k == 16 and s.weights[41] == 0.25


@pytest.mark.parametrize("spec,msg", [
    ("last:x", "K must be an integer"),
    ("bias-only:99", "outside"),
    ("nonsense", "unknown scheme"),
    ("paper:7kb", "unknown paper scheme"),
])
def test_malformed_schemes_are_rejected(spec, msg):
    with pytest.raises(SchemeError, match=msg):
        parse_scheme(spec, "mcunet-5fps", 42)


def test_bad_index_and_ratio_are_named(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"bias_k": 3, "weights": {"50": 1}}))
    with pytest.raises(SchemeError, match="conv index 50 does not exist"):
        parse_scheme(str(p), num_convs=42)
    p.write_text(json.dumps({"bias_k": 3, "weights": {"5": 1.5}}))
    with pytest.raises(SchemeError, match="ratio 1.5 of conv 5 is outside"):
        parse_scheme(str(p), num_convs=42)
    p.write_text("{not json")
    with pytest.raises(SchemeError, match="not JSON"):
        parse_scheme(str(p), num_convs=42)
    with pytest.raises(SchemeError, match="paper schemes exist"):
        parse_scheme("paper:99kb", "resnet", 42)
