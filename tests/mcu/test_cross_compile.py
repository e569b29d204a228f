"""The C kernel library compiles warning-free (-Wall -Wextra -Werror) for
every Cortex-M target, on its DSP/Helium path and on its portable path."""
import os
import subprocess

import pytest

from tinyqt import mcu
from tinyqt.mcu.toolchain import compile_flags


@pytest.mark.mcu
@pytest.mark.parametrize("portable", [False, True], ids=["simd", "portable"])
@pytest.mark.parametrize("target", sorted(mcu.TARGETS))
def test_library_compiles_warning_free(target, portable, cross_compiler, tmp_path):
    for src in mcu.kernel_sources():
        obj = tmp_path / (os.path.basename(src) + ".o")
        cmd = (["arm-none-eabi-gcc"] + compile_flags(target, portable=portable) +
               [f"-I{mcu.kernel_include_dir()}", f"-I{mcu.kernel_source_dir()}", "-c", src, "-o", str(obj)])
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{os.path.basename(src)} for {target}:\n{r.stderr}"


@pytest.mark.mcu
def test_library_uses_no_double_and_no_malloc(cross_compiler, tmp_path):
    """-Wdouble-promotion catches float->double promotions; the symbol check
    catches malloc and the soft double routines on the FPU-less core."""
    objs = []
    for src in mcu.kernel_sources():
        obj = tmp_path / (os.path.basename(src) + ".o")
        cmd = (["arm-none-eabi-gcc"] + compile_flags("cortex-m0plus") + ["-Wdouble-promotion"] +
               [f"-I{mcu.kernel_include_dir()}", f"-I{mcu.kernel_source_dir()}", "-c", src, "-o", str(obj)])
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        objs.append(str(obj))
    nm = subprocess.run(["arm-none-eabi-nm", "-u"] + objs, capture_output=True, text=True).stdout
    for forbidden in ("malloc", "calloc", "free", "__aeabi_d", "__aeabi_f2d"):
        assert forbidden not in nm, f"{forbidden} referenced:\n{nm}"
