"""`tinyqt demo`: the embedded model learns the embedded classes on the host,
and the same training steps as firmware in QEMU give the host's bits."""
import json
import os

import numpy as np
import pytest

import tinyqt.mcu.core as mcu
from conftest import require
from tinyqt import demo
from tinyqt.cli import main
from tinyqt.errors import TinyQTError


def test_embedded_files_are_small_and_consistent():
    model, ds = demo.load_demo()
    assert os.path.getsize(demo.DATA_FILE) + os.path.getsize(demo.MODEL_FILE) < 4 * 1024 * 1024
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (28, 28)
    assert set(np.unique(ds.y_train)) == set(range(len(demo.CLASS_NAMES)))
    assert model.input.shape[0] == 1 and model.input.shape[3] == 1


def test_demo_learns_the_new_classes(tmp_path):
    # 600 steps of batch-1 sparse update: chance is 20 %; the pretrained
    # features make the five unseen classes separable well above it.
    report = demo.run_demo(out_dir=str(tmp_path), epochs=1, train_limit=600, qemu="no", progress=False,
                           log=lambda *a: None)
    assert report["accuracy_before"] < 0.4
    assert report["accuracy_after"] > report["accuracy_before"] + 0.35
    assert report["peak_sram_bytes"] <= 256 * 1024
    assert os.path.getsize(report["plot"]) > 10_000
    assert report["qemu"] is None


@pytest.mark.mcu
def test_demo_firmware_is_bitexact_in_qemu(tmp_path, capsys):
    status = mcu.toolchain_status()
    require(status.can_run, status.reason())
    rc = main(["demo", "--out", str(tmp_path), "--epochs", "1", "--train-limit", "50", "--qemu", "yes",
               "--qemu-steps", "4", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert report["qemu"]["bitexact"] is True and report["qemu"]["steps"] == 4
    assert report["qemu"]["instructions_per_step"] > 0


def test_demo_rejects_a_bad_qemu_mode():
    with pytest.raises(TinyQTError, match="qemu must be"):
        demo.run_demo(qemu="maybe")
