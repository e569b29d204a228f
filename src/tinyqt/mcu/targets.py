"""The Cortex-M targets tinyqt builds for, and the QEMU board of each."""
from dataclasses import dataclass
from typing import Optional, Tuple

from ..errors import TinyQTError


@dataclass(frozen=True)
class Target:
    """A core: compiler flags, linker script, QEMU machine (None = build
    only) and the board's system clock (SysTick period -> instructions)."""
    name: str
    cflags: Tuple[str, ...]
    linker_script: str
    qemu_machine: Optional[str]
    sysclk_hz: int
    sram_bytes: int
    flash_bytes: int


TARGETS = {
    "cortex-m4": Target("cortex-m4", ("-mthumb", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
                        "mps2.ld", "mps2-an386", 25_000_000, 4 << 20, 4 << 20),
    "cortex-m7": Target("cortex-m7", ("-mthumb", "-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
                        "mps2.ld", "mps2-an500", 25_000_000, 4 << 20, 4 << 20),
    "cortex-m55": Target("cortex-m55", ("-mthumb", "-mcpu=cortex-m55", "-mfloat-abi=hard"),
                         "mps3_an547.ld", "mps3-an547", 32_000_000, 512 << 10, 2 << 20),
    "cortex-m0plus": Target("cortex-m0plus", ("-mthumb", "-mcpu=cortex-m0plus", "-mfloat-abi=soft"),
                            "mps2.ld", None, 25_000_000, 4 << 20, 4 << 20),
}

_ALIASES = {"m4": "cortex-m4", "m7": "cortex-m7", "m55": "cortex-m55", "m0plus": "cortex-m0plus",
            "m0+": "cortex-m0plus", "cortex-m0+": "cortex-m0plus"}


def get_target(name):
    """Target by name ('cortex-m4' or 'm4'); TinyQTError names the choices."""
    key = _ALIASES.get(name, name)
    if key not in TARGETS:
        raise TinyQTError(f"unknown target '{name}': expected one of {', '.join(TARGETS)}")
    return TARGETS[key]
