"""Cortex-M builds and QEMU runs: targets, cross compilation, emulation.

    elf = build("cortex-m4", ["main.c"], out_dir="build/m4")
    result = run_qemu("cortex-m4", elf)      # .returncode, .stdout, .exit_code

Targets: cortex-m4 (QEMU mps2-an386), cortex-m7 (mps2-an500), cortex-m55
(mps3-an547, Helium), cortex-m0plus (build only: portable path, soft float).
"""
from .targets import TARGETS, Target, get_target
from .toolchain import (ToolchainMissing, build, kernel_include_dir, kernel_source_dir,
                        kernel_sources, run_qemu, toolchain_status)

__all__ = ["TARGETS", "Target", "get_target", "build", "run_qemu", "toolchain_status",
           "ToolchainMissing", "kernel_source_dir", "kernel_sources", "kernel_include_dir"]
