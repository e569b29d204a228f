"""The codegen folder is self-contained: its Makefile builds it for every
target (M0+ soft float and the STM32F746 memory map included) and it trains
and infers in QEMU."""
import shutil
import subprocess

import pytest

import tinyqt
from tinyqt.cli import main
from tinyqt.firmware_project import write_project
from tinyqt.compiler import compile
from tinyqt.errors import TinyQTError
from tinyqt.optim import SGD

from conftest import require, shared_model_json
from mcu_support import require_build_tools, require_qemu

pytestmark = pytest.mark.mcu


def test_folder_builds_for_every_target_and_runs(tmp_path, capsys):
    require_build_tools()
    require(shutil.which("make") is not None, "make is missing: apt-get install make")
    out = tmp_path / "fw"
    assert main(["codegen", "--model-file", shared_model_json("mbv2-w0.35"), "--scheme", "bias-only:4",
                 "--out", str(out)]) == 0
    assert "make -C" in capsys.readouterr().out
    for target in ("cortex-m0plus", "stm32f746", "cortex-m7", "cortex-m55", "cortex-m4"):
        subprocess.run(["make", "-s", "-C", str(out), "clean"], check=True, capture_output=True)
        r = subprocess.run(["make", "-s", "-C", str(out), f"TARGET={target}"], capture_output=True, text=True)
        assert r.returncode == 0, f"{target}:\n{r.stderr[-2000:]}"
    require_qemu()
    r = subprocess.run(["make", "-s", "-C", str(out), "run"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "step 2 loss" in r.stdout and "class " in r.stdout, r.stdout[-1000:]


def test_unknown_folder_target_is_named(tmp_path):
    model = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    plan = compile(model, "bias-only:1", num_classes=10)
    with pytest.raises(TinyQTError, match="unknown firmware target 'esp32'"):
        write_project(plan, model, SGD(0.01), str(tmp_path), target="esp32")
