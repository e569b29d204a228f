"""Helpers of the MCU tests: toolchain checks that skip with a one-line reason
where the cross toolchain or QEMU is missing, and fail instead in CI."""
from conftest import require

import tinyqt.mcu.core as mcu


def require_build_tools():
    status = mcu.toolchain_status()
    require(status.can_build, status.reason())
    return status


def require_qemu():
    status = mcu.toolchain_status()
    require(status.can_run, status.reason())
    return status
