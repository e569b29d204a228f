"""Generated training firmware (tinyqt.codegen) runs the host runtime's
training steps bit for bit in QEMU: every loss and every trained tensor."""
import numpy as np
import pytest

import tinyqt
import tinyqt.mcu.core as mcu
from tinyqt import codegen
from tinyqt.compiler import compile
from tinyqt.errors import TinyQTError
from tinyqt.optim import SGD

from conftest import shared_model_json
from mcu_support import require_build_tools, require_qemu

pytestmark = pytest.mark.mcu


@pytest.mark.parametrize("target,name,scheme,rounding,momentum", [
    ("m4", "mbv2-w0.35", "paper:49kb", "stochastic", 0.0),
    ("m55", "proxyless-w0.3", "paper:98kb", "nearest", 0.0),
    # trained slices (split 1x1 forward), streamed block backward, streamed block outputs over their inputs
    ("m7", "mcunet-5fps", "paper:99kb", "nearest", 0.0),
    # optimizer state in the arena: momentum (weights, biases, head) and fp32 master copies
    # (273 KB: more than the 256 KB part, within the QEMU board's SRAM)
    ("m4", "mcunet-5fps", "paper:49kb", "master", 0.9),
    ("m55", "mbv2-w0.35", "bias-only:8", "stochastic", 0.5),
    ("m7", "mbv2-w0.35", "bias-only:0", "nearest", 0.9),   # the head alone: no int8 optimizer call
])
def test_training_firmware_matches_the_host(target, name, scheme, rounding, momentum, tmp_path):
    require_build_tools()
    require_qemu()
    model = tinyqt.load_tiny_training(shared_model_json(name))
    plan = compile(model, scheme, num_classes=10, sram="320KB" if momentum else "256KB", flash="1MB",
                   momentum=momentum, rounding=rounding)
    rng = np.random.default_rng(7)
    images = rng.integers(-128, 128, (3, int(np.prod(model.input.shape))), dtype=np.int8)
    labels = rng.integers(0, 10, 3)
    # the head at its own learning rate
    src, _ = codegen.generate(plan, model, SGD(0.02, head_lr=0.05, rounding=rounding, momentum=momentum),
                              str(tmp_path))
    main = codegen.emit_test_main(plan, images, labels, str(tmp_path))
    elf = mcu.build(target, [src, main], include_dirs=[str(tmp_path)], out_dir=str(tmp_path), opt="-O2")
    code, stdout = mcu.run_qemu(target, elf, timeout=600)
    assert code == 0, stdout[-2000:]
    losses = [int(ln.split()[2], 16) for ln in stdout.splitlines() if ln.startswith("TQ_LOSS")]
    tensors = {ln.split()[1]: int(ln.split()[2], 16) for ln in stdout.splitlines() if ln.startswith("TQ_TENSOR")}
    host_losses, host_tensors = codegen.host_reference(
        plan, model, SGD(0.02, head_lr=0.05, rounding=rounding, momentum=momentum), images, labels)
    assert losses == host_losses
    assert tensors == host_tensors and "head:weights" in tensors and (len(tensors) > 5 or scheme == "bias-only:0")
    instr = [int(ln.split()[2]) for ln in stdout.splitlines() if ln.startswith("TQ_INSTR")]
    assert len(instr) == 3 and min(instr) > 1_000_000


def test_optimizer_state_the_plan_lacks_is_refused(tmp_path):
    model = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    plan = compile(model, "bias-only:2", num_classes=10)
    with pytest.raises(TinyQTError, match="compile with momentum=0.9"):
        codegen.generate(plan, model, SGD(0.02, momentum=0.9), str(tmp_path))
    with pytest.raises(TinyQTError, match="accumulation"):
        codegen.generate(compile(model, "bias-only:2", num_classes=10, accumulate=True), model, SGD(0.02),
                         str(tmp_path))


def test_firmware_cli_reports_bitexact_sizes_and_instructions(capsys, tmp_path):
    import json

    from tinyqt.cli import main
    require_build_tools()
    require_qemu()
    path = shared_model_json("mbv2-w0.35")
    assert main(["firmware", "--model-file", path, "--scheme", "bias-only:6", "--target", "cortex-m7",
                 "--steps", "2", "--head-lr", "0.05", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bitexact"] is True and report["target"] == "m7"
    assert 0 < report["flash_bytes"] <= 1 << 20 and report["sram_bytes"] >= report["arena_bytes"]
    assert 0 < report["stack_bytes_used"] < 65536
    assert report["instructions_per_step"] > 1_000_000
    # over budget: refused before anything is built; unknown and build-only targets are named
    assert main(["firmware", "--model-file", path, "--scheme", "paper:99kb", "--target", "m7", "--sram", "64KB"]) == 2
    assert "peak SRAM" in capsys.readouterr().err
    assert main(["firmware", "--model-file", path, "--scheme", "bias-only:2", "--target", "cortex-m3"]) == 2
    assert "unknown MCU target 'cortex-m3'" in capsys.readouterr().err


def test_profile_breaks_the_step_down_by_plan_step(tmp_path):
    require_build_tools()
    require_qemu()
    model = tinyqt.load_tiny_training(shared_model_json("mbv2-w0.35"))
    plan = compile(model, "bias-only:4", num_classes=10)
    report = codegen.run_firmware(plan, model, SGD(0.02), "m4", steps=1, out_dir=str(tmp_path), profile=True)
    prof = report["per_step_instructions"]
    assert report["bitexact"] is True
    assert "forward:block:first_conv" in prof and "loss" in prof and len(prof) > 20  # the stem, streamed
    assert sum(prof.values()) == report["instructions_per_step"]
    assert max(prof, key=prof.get).startswith("forward")  # the frozen forward dominates a bias-only step
