"""The command line: version, info table and JSON, clean errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tinyqt import __version__
from tinyqt.cli import main

from conftest import shared_model_json


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"tinyqt {__version__}"


def test_info_table_and_json(capsys):
    path = shared_model_json("mbv2-w0.35")
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "blocks.16.pointwise2" in out and "total: 64 ops" in out
    assert main(["info", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["macs"] == sum(r["macs"] for r in data["layers"])
    first = data["layers"][0]
    assert first["output_shape"] == [1, 64, 64, 16] and first["macs"] == 64 * 64 * 16 * 27
    assert first["param_bytes"] == 16 * 27 + 16 * 4


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    (tmp_path / "m.onnx").write_text("x")
    assert main(["info", str(tmp_path / "m.onnx")]) == 2
    assert "unknown model format" in capsys.readouterr().err


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "tinyqt", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout


def test_plan_json_keys_and_exit_codes(capsys):
    path = shared_model_json("mcunet-5fps")
    assert main(["plan", "--model-file", path, "--scheme", "bias-only:4", "--classes", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("peak_sram_bytes", "flash_bytes", "trainable_params", "fits", "live_at_peak"):
        assert key in report
    assert report["fits"] is True and report["live_at_peak"][0]["bytes"] > 0
    # the first block writes its output over the input image, at a distance the plan reports
    assert report["output_over_input"]["blocks.0.pointwise2"][0] == "input"
    # over budget: still a report, fits false, exit 1
    assert main(["plan", "--model-file", path, "--scheme", "paper:99kb", "--sram", "64KB", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["fits"] is False
    assert main(["plan", "--model-file", path, "--scheme", "last:x"]) == 2
    assert "K must be an integer" in capsys.readouterr().err
    # --speed-sram reaches the compiler: the peak grows, by at most the bytes given
    lean = ["plan", "--model-file", path, "--scheme", "paper:99kb", "--classes", "10", "--json"]
    assert main(lean) == 0
    lean_peak = json.loads(capsys.readouterr().out)["peak_sram_bytes"]
    assert main(lean + ["--speed-sram", "16KB"]) == 0
    assert lean_peak < json.loads(capsys.readouterr().out)["peak_sram_bytes"] <= lean_peak + 16384
    assert main(lean + ["--speed-sram", "lots"]) == 2
    assert "cannot read 'lots' as a size" in capsys.readouterr().err


def test_train_json_keys_with_an_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    images = (rng.integers(0, 60, (60, 20, 20)) + 60 * labels[:, None, None]).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x_train=images[:40], y_train=labels[:40], x_test=images[40:], y_test=labels[40:])
    ckpt = tmp_path / "c.npz"
    assert main(["train", "--model-file", shared_model_json("mbv2-w0.35"), "--data", str(tmp_path / "d.npz"),
                 "--scheme", "bias-only:3", "--lr", "0.01", "--json", "--checkpoint", str(ckpt)]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("test_accuracy", "train_accuracy", "steps", "seconds", "peak_sram_bytes"):
        assert key in report
    assert report["steps"] == 40 and 0 <= report["test_accuracy"] <= 1
    assert ckpt.exists()
    # momentum, master copies and accumulation: the plan is compiled with their buffers, and costs more
    assert main(["train", "--model-file", shared_model_json("mbv2-w0.35"), "--data", str(tmp_path / "d.npz"),
                 "--scheme", "bias-only:3", "--lr", "0.01", "--momentum", "0.9", "--rounding", "master",
                 "--accumulate", "4", "--json"]) == 0
    with_state = json.loads(capsys.readouterr().out)
    assert with_state["steps"] == 40 and with_state["peak_sram_bytes"] > report["peak_sram_bytes"]
    assert main(["train", "--model-file", shared_model_json("mbv2-w0.35"), "--data", str(tmp_path / "nope.npz"),
                 "--scheme", "bias-only:3"]) == 2
    assert "nope.npz" in capsys.readouterr().err
