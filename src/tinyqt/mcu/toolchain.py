"""Cross compilation with arm-none-eabi-gcc and runs under qemu-system-arm."""
import os
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import TinyQTError
from .targets import get_target

SUPPORT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support")
DEBIAN_PACKAGES = {"arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
                   "qemu-system-arm": "qemu-system-arm"}

# Warnings are errors; fp32 code gives the same bits as on the host.
COMMON_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-fno-fast-math",
                 "-ffunction-sections", "-fdata-sections")


class ToolchainMissing(TinyQTError):
    """arm-none-eabi-gcc or qemu-system-arm is not installed."""


def toolchain_status():
    """{tool: path or None} plus 'missing_packages': the Debian packages
    that provide the missing tools."""
    status = {tool: shutil.which(tool) for tool in DEBIAN_PACKAGES}
    status["missing_packages"] = " ".join(DEBIAN_PACKAGES[t] for t, p in list(status.items()) if p is None)
    return status


def _require(tool):
    if shutil.which(tool) is None:
        raise ToolchainMissing(f"{tool} not found: install the Debian packages {DEBIAN_PACKAGES[tool]} "
                               f"(apt-get install {DEBIAN_PACKAGES[tool]})")


def kernel_source_dir():
    """The C kernel library: tinyqt/kernels_src in an installed wheel, or the
    repository's src/kernels in a source checkout."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for cand in (os.path.join(pkg, "kernels_src"), os.path.join(os.path.dirname(pkg), "kernels")):
        if os.path.isdir(os.path.join(cand, "include", "tinyqt")):
            return cand
    raise TinyQTError("the tinyqt C kernel sources were not found next to the package")


def kernel_sources():
    d = kernel_source_dir()
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".c"))


def kernel_include_dir():
    return os.path.join(kernel_source_dir(), "include")


def compile_flags(target, portable=False, opt="-O3", defines=()):
    t = get_target(target)
    flags = list(t.cflags) + list(COMMON_CFLAGS) + [opt, f"-DTQ_SYSCLK_HZ={t.sysclk_hz}u"]
    if portable:
        flags.append("-DTQ_FORCE_PORTABLE")
    flags += [f"-D{d}" for d in defines]
    return flags


def build(target, sources, out_dir, include_dirs=(), defines=(), opt="-O3", portable=False,
          with_kernels=True, name="firmware"):
    """Compiles and links sources (+ the kernel library and the startup code)
    into out_dir/name.elf for target. Returns the ELF path. Raises
    ToolchainMissing, or TinyQTError with the compiler's output."""
    _require("arm-none-eabi-gcc")
    t = get_target(target)
    os.makedirs(out_dir, exist_ok=True)
    elf = os.path.join(out_dir, name + ".elf")
    srcs = list(sources) + [os.path.join(SUPPORT_DIR, "startup.c"), os.path.join(SUPPORT_DIR, "tq_bench.c")]
    incs = [SUPPORT_DIR] + list(include_dirs)
    if with_kernels:
        srcs += kernel_sources()
        incs += [kernel_include_dir(), kernel_source_dir()]
    cmd = (["arm-none-eabi-gcc"] + compile_flags(target, portable, opt, defines) +
           [f"-I{i}" for i in incs] + srcs +
           ["-nostartfiles", "--specs=rdimon.specs", f"-L{SUPPORT_DIR}", f"-T{t.linker_script}",
            "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments", "-o", elf, "-lm"])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise TinyQTError(f"arm-none-eabi-gcc failed for {t.name}:\n{r.stderr[-4000:]}")
    return elf


@dataclass
class QemuResult:
    returncode: int
    stdout: str
    exit_code: int  # main()'s return value as printed by the startup code, or -1

    def lines(self, prefix):
        return [ln[len(prefix):].strip() for ln in self.stdout.splitlines() if ln.startswith(prefix)]


def run_qemu(target, elf, timeout=300, icount=True):
    """Runs elf on the target's QEMU board with semihosting. Raises
    TinyQTError when the target has no board or the run times out."""
    _require("qemu-system-arm")
    t = get_target(target)
    if t.qemu_machine is None:
        raise TinyQTError(f"{t.name} has no QEMU board here; it is a build-only target")
    cmd = ["qemu-system-arm", "-M", t.qemu_machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", elf]
    if icount:
        cmd += ["-icount", "shift=0"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TinyQTError(f"QEMU ({t.qemu_machine}) did not finish within {timeout} s") from None
    codes = [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("TQ_EXIT ")]
    return QemuResult(r.returncode, r.stdout + r.stderr, int(codes[-1]) if codes else -1)
