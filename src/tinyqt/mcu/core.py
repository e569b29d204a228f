"""Cortex-M builds of the kernel library and runs under QEMU (tinyqt.mcu.core).

Targets (see TARGETS):
  m0plus  Cortex-M0+, soft float, no DSP: build-only (QEMU has no M0+ board)
  m4      Cortex-M4F on QEMU mps2-an386 (FPv4-SP, DSP)
  m7      Cortex-M7 on QEMU mps2-an500 (FPv5 double precision, DSP)
  m55     Cortex-M55 on QEMU mps3-an547 (FPv5, DSP, Helium/MVE)

Every build compiles with -std=c99 -Wall -Wextra -Werror -ffp-contract=off
-fno-fast-math, links a minimal startup (data/startup.c: vector table, .data
and .bss init, FPU enable) against newlib with semihosting (rdimon), so the
firmware's printf and its exit status (main's return value) reach the host.
``portable=True`` adds -DTQ_FORCE_PORTABLE (the kernels' reference C path).

Instruction counts: run_qemu uses ``-icount shift=0`` (one instruction = 1 ns
of virtual time); data/tq_bench.h reads SysTick around the measured code. One
SysTick count is 40 instructions on the mps2 boards (25 MHz) and 31.25 on the
mps3-an547 (32 MHz); Target.instructions_per_tick holds it and
tests/mcu/test_mcu_bench_calibration.py checks it against loops of known length.
"""
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..errors import TinyQTError

__all__ = [
    "Target", "TARGETS", "RUNNABLE_TARGETS", "get_target", "McuError", "BuildError",
    "QemuTimeout", "ToolchainStatus", "toolchain_status", "kernel_source_dir",
    "kernel_sources", "kernel_include_dirs", "runtime_dir", "compile_objects", "build",
    "run_qemu", "COMMON_CFLAGS",
]

GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"

# Flags every firmware build uses. -ffp-contract=off and no fast-math keep
# fp32 results identical to the host build (DESIGN.md, numerics contract).
COMMON_CFLAGS = ("-mthumb", "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off",
                 "-fno-fast-math", "-ffunction-sections", "-fdata-sections", "-g")

_DATA = Path(__file__).resolve().parent / "data"


class McuError(TinyQTError):
    """A firmware could not be built or run."""


class BuildError(McuError):
    """The cross compiler or linker failed; the message holds its output."""

    def __init__(self, cmd, output):
        self.cmd = list(cmd)
        self.output = output
        super().__init__(f"{Path(cmd[0]).name} failed:\n{output}\ncommand: {' '.join(cmd)}")


class QemuTimeout(McuError):
    """The firmware did not exit within the timeout; .stdout holds its output so far."""

    def __init__(self, timeout, stdout):
        self.stdout = stdout
        super().__init__(f"qemu did not exit within {timeout} s; output so far:\n{stdout[-2000:]}")


@dataclass(frozen=True)
class Target:
    """One Cortex-M build target and, when it can run, its QEMU board."""
    name: str
    cpu: str
    cflags: Tuple[str, ...]
    board: Optional[str]          # QEMU machine (-M), None = build-only
    linker_script: str            # file in the runtime dir
    sysclk_hz: int                # the board's processor (SysTick) clock
    has_dsp: bool
    has_mve: bool
    has_fpu: bool
    description: str = ""
    aliases: Tuple[str, ...] = field(default=())

    @property
    def runnable(self):
        return self.board is not None

    @property
    def instructions_per_tick(self):
        """Instructions per SysTick count under qemu -icount shift=0."""
        return 1e9 / self.sysclk_hz


TARGETS = {
    "m0plus": Target(
        "m0plus", "cortex-m0plus", ("-mcpu=cortex-m0plus", "-mfloat-abi=soft"), None,
        "mps2.ld", 25_000_000, has_dsp=False, has_mve=False, has_fpu=False,
        description="Cortex-M0+ (ARMv6-M, no FPU, no DSP): compile and link check only; "
                    "linked with the mps2 memory map",
        aliases=("m0+", "cortex-m0plus", "cortex-m0+")),
    "m4": Target(
        "m4", "cortex-m4", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
        "mps2-an386", "mps2.ld", 25_000_000, has_dsp=True, has_mve=False, has_fpu=True,
        description="Cortex-M4F on QEMU mps2-an386",
        aliases=("cortex-m4", "mps2-an386")),
    "m7": Target(
        "m7", "cortex-m7", ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
        "mps2-an500", "mps2.ld", 25_000_000, has_dsp=True, has_mve=False, has_fpu=True,
        description="Cortex-M7 (FPv5-D16) on QEMU mps2-an500",
        aliases=("cortex-m7", "mps2-an500")),
    "m55": Target(
        # +nomve.fp: Helium floating point flushes subnormals (tq_f32.h); integer Helium stays.
        # TQ_HELIUM_F32: the core has it, for the fp32 backward's checked assembly blocks
        "m55", "cortex-m55", ("-mcpu=cortex-m55+nomve.fp", "-mfloat-abi=hard", "-DTQ_HELIUM_F32"),
        "mps3-an547", "mps3_an547.ld", 32_000_000, has_dsp=True, has_mve=True, has_fpu=True,
        description="Cortex-M55 (Helium/MVE, FPv5) on QEMU mps3-an547",
        aliases=("cortex-m55", "mps3-an547")),
}
RUNNABLE_TARGETS = tuple(name for name, t in TARGETS.items() if t.runnable)

# Debian packages that provide each tool.
DEBIAN_PACKAGES = {
    GCC: "gcc-arm-none-eabi",
    "newlib": "libnewlib-arm-none-eabi",
    QEMU: "qemu-system-arm",
}


def get_target(target):
    """A Target from a Target, its name ("m4") or an alias ("cortex-m4", "mps2-an386")."""
    if isinstance(target, Target):
        return target
    key = str(target).lower()
    if key in TARGETS:
        return TARGETS[key]
    for t in TARGETS.values():
        if key in t.aliases:
            return t
    raise McuError(f"unknown MCU target {target!r}; known: {', '.join(TARGETS)}")


@dataclass
class ToolchainStatus:
    gcc: Optional[str]            # path of arm-none-eabi-gcc or None
    newlib: bool                  # newlib with rdimon (semihosting) for the M4 multilib
    qemu: Optional[str]           # path of qemu-system-arm or None
    missing: Tuple[str, ...]      # tools missing ("arm-none-eabi-gcc", "newlib", "qemu-system-arm")
    debian_packages: Tuple[str, ...]  # the Debian packages that provide them

    @property
    def can_build(self):
        return self.gcc is not None and self.newlib

    @property
    def can_run(self):
        return self.can_build and self.qemu is not None

    def reason(self):
        """One line: what is missing and what to install (empty when complete)."""
        if not self.missing:
            return ""
        return (f"missing {', '.join(self.missing)} "
                f"(Debian: apt-get install {' '.join(self.debian_packages)})")


def toolchain_status():
    """Which of arm-none-eabi-gcc, newlib (rdimon) and qemu-system-arm are present."""
    gcc = shutil.which(GCC)
    qemu = shutil.which(QEMU)
    newlib = False
    if gcc is not None:
        t = TARGETS["m4"]
        try:
            out = subprocess.run([gcc, "-mthumb", *t.cflags, "-print-file-name=librdimon.a"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
            newlib = os.path.isabs(out) and os.path.exists(out)
        except (OSError, subprocess.SubprocessError):
            newlib = False
    missing = []
    if gcc is None:
        missing.append(GCC)
    if not newlib:
        missing.append("newlib")
    if qemu is None:
        missing.append(QEMU)
    return ToolchainStatus(gcc, newlib, qemu, tuple(missing),
                           tuple(DEBIAN_PACKAGES[m] for m in missing))


def runtime_dir():
    """Directory of the startup code, linker scripts and tq_bench.[ch]."""
    return _DATA


def kernel_source_dir():
    """The kernel library's C sources: tinyqt/kernels_src in an installed
    wheel (copied there by setup.py), else src/kernels of a source tree."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "kernels_src", here.parent.parent / "kernels"):
        if (cand / "include" / "tinyqt" / "kernels.h").is_file():
            return cand
    raise McuError("kernel C sources not found (neither tinyqt/kernels_src nor src/kernels)")


def kernel_sources():
    """Every .c file of the kernel library, sorted."""
    return sorted(kernel_source_dir().glob("*.c"))


def kernel_include_dirs():
    """Include directories the kernel library needs (public and private headers)."""
    d = kernel_source_dir()
    return [d / "include", d]


def _cflags(t, include_dirs, defines, opt, portable):
    flags = [*t.cflags, *COMMON_CFLAGS, opt, f"-DTQ_SYSCLK_HZ={t.sysclk_hz}u"]
    if portable:
        flags.append("-DTQ_FORCE_PORTABLE")
    for d in defines or ():
        flags.append(d if d.startswith("-D") else f"-D{d}")
    for inc in [*(include_dirs or ()), *kernel_include_dirs(), _DATA]:
        flags.append(f"-I{inc}")
    return flags


def _run(cmd, cwd=None):
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError as exc:
        raise McuError(f"{cmd[0]} not found; {toolchain_status().reason()}") from exc
    if proc.returncode != 0:
        raise BuildError([str(c) for c in cmd], (proc.stdout + proc.stderr).strip())
    return proc


def compile_objects(target, sources, include_dirs=(), defines=(), out_dir=None, opt="-O3",
                    portable=False, extra_cflags=(), jobs=None):
    """Compiles each source to an object file (no link, jobs compilers in
    parallel); returns their paths.
    Raises BuildError with the compiler's diagnostics on any warning/error."""
    t = get_target(target)
    out = Path(out_dir or tempfile.mkdtemp(prefix=f"tq-{t.name}-"))
    out.mkdir(parents=True, exist_ok=True)
    flags = _cflags(t, include_dirs, defines, opt, portable) + list(extra_cflags)

    def one(src):
        src = Path(src)
        obj = out / (src.stem + ".o")
        _run([GCC, *flags, "-c", src, "-o", obj])
        return obj

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as ex:
        return list(ex.map(one, sources))


def build(target, sources, include_dirs=(), defines=(), out_dir=None, opt="-O3",
          portable=False, name="firmware", with_kernels=True, extra_cflags=()):
    """Builds a firmware ELF for target and returns its path.

    sources: the application's C files (one of them defines int main(void));
    with_kernels adds every kernel library source, and the runtime (startup,
    tq_bench) is always linked. include_dirs/defines are added to the kernel
    library's include paths; defines are "NAME" or "NAME=VALUE". portable
    selects the kernels' reference C path (-DTQ_FORCE_PORTABLE)."""
    t = get_target(target)
    out = Path(out_dir or tempfile.mkdtemp(prefix=f"tq-{t.name}-"))
    out.mkdir(parents=True, exist_ok=True)
    elf = out / f"{name}.elf"
    srcs = [Path(s) for s in sources]
    if with_kernels:
        srcs += kernel_sources()
    srcs += [_DATA / "startup.c", _DATA / "tq_bench.c"]
    cmd = [GCC, *_cflags(t, include_dirs, defines, opt, portable), *extra_cflags, *srcs,
           f"-L{_DATA}", "-T", _DATA / t.linker_script, "-nostartfiles",
           "--specs=nano.specs", "--specs=rdimon.specs", "-Wl,--gc-sections",
           f"-Wl,-Map={out / (name + '.map')}", "-o", elf]
    _run(cmd)
    return elf


def qemu_command(target, elf, icount=True):
    """The qemu-system-arm command line that runs elf on target's board."""
    t = get_target(target)
    if not t.runnable:
        raise McuError(f"target {t.name} is build-only (QEMU has no {t.cpu} board)")
    cmd = [QEMU, "-M", t.board, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native"]
    if icount:
        cmd += ["-icount", "shift=0"]
    return cmd + ["-kernel", str(elf)]


def run_qemu(target, elf, timeout=120, icount=True):
    """Runs elf on target's QEMU board with semihosting; returns
    (exit_code, stdout). exit_code is main's return value (255 on a fault).
    Raises QemuTimeout when it has not exited within timeout seconds."""
    cmd = qemu_command(target, elf, icount=icount)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except FileNotFoundError as exc:
        raise McuError(f"{QEMU} not found; {toolchain_status().reason()}") from exc
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, _ = proc.communicate()
        raise QemuTimeout(timeout, stdout.decode(errors="replace")) from None
    return proc.returncode, stdout.decode(errors="replace")
