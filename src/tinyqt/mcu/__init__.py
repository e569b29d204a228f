"""Cortex-M builds of the kernel library and runs under QEMU.

    elf = build("m4", ["main.c"], out_dir="build/m4")
    exit_code, stdout = run_qemu("m4", elf)

Targets: m0plus (build only), m4 (QEMU mps2-an386), m7 (mps2-an500), m55
(mps3-an547). See tinyqt.mcu.core for the details and tinyqt.mcu.cgen /
tinyqt.mcu.bench for firmware that runs kernel test vectors and benches.
"""
from .core import *  # noqa: F401,F403 - the package's public API is core's
from .core import __all__  # noqa: F401
