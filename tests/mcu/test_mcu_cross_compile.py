"""The whole kernel library cross-compiles warning-free (-Wall -Wextra -Werror)
for Cortex-M0+, M4, M7 and M55, on the ARM DSP path and the portable path
(-DTQ_FORCE_PORTABLE): as objects at -Os and -O0 (warnings differ with the
optimization level), and at -O3 linked into a firmware that references every
public function."""
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

import tinyqt.mcu.core as mcu
from mcu_support import require_build_tools

pytestmark = pytest.mark.mcu

TARGETS = ("m0plus", "m4", "m7", "m55")
VARIANTS = ("dsp", "portable")

# Every public kernel-library function, referenced so the link pulls them all in.
_LINK_MAIN = r"""
#include <stdio.h>
#include "tinyqt/kernels.h"
#include "tinyqt/arena.h"
#include "tinyqt/fused.h"
typedef void (*tq_any_fn)(void);
static const tq_any_fn tq_all[] = {
    (tq_any_fn)tq_conv_s8_get_buffer_size, (tq_any_fn)tq_conv_s8,
    (tq_any_fn)tq_conv_1x1_s8_get_buffer_size, (tq_any_fn)tq_conv_1x1_s8,
    (tq_any_fn)tq_depthwise_conv_s8_get_buffer_size, (tq_any_fn)tq_depthwise_conv_s8,
    (tq_any_fn)tq_fully_connected_s8, (tq_any_fn)tq_avgpool_s8, (tq_any_fn)tq_mean_s8,
    (tq_any_fn)tq_add_s8, (tq_any_fn)tq_softmax_s8,
    (tq_any_fn)tq_bottleneck_s8_get_buffer_size, (tq_any_fn)tq_bottleneck_s8,
    (tq_any_fn)tq_arena_init, (tq_any_fn)tq_arena_alloc, (tq_any_fn)tq_arena_at,
    (tq_any_fn)tq_arena_reset, (tq_any_fn)tq_arena_remaining,
};
int main(void)
{
    unsigned i, n = 0;
    for (i = 0; i < sizeof tq_all / sizeof tq_all[0]; i++) {
        n += tq_all[i] != 0;
    }
    printf("%u kernel functions linked\n", n);
    return tq_conv_s8(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0) == TQ_ERR_NULL ? 0 : 1;
}
"""


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("target", TARGETS)
def test_kernel_library_compiles_warning_free(target, variant, tmp_path):
    require_build_tools()
    sources = mcu.kernel_sources()
    assert len(sources) >= 8, sources

    def one(opt):
        return mcu.compile_objects(target, sources, out_dir=tmp_path / opt.lstrip("-"), opt=opt,
                                   portable=(variant == "portable"))

    with ThreadPoolExecutor(max_workers=2) as ex:
        objs = [o for group in ex.map(one, ("-Os", "-O0")) for o in group]
    assert len(objs) == 2 * len(sources)


@pytest.mark.parametrize("target", TARGETS)
def test_target_features(target, tmp_path):
    """The DSP variant really sees __ARM_FEATURE_DSP (and MVE on the M55);
    the M0+ has neither, and only the FPU targets have __ARM_FP."""
    require_build_tools()
    t = mcu.get_target(target)
    checks = []
    for macro, present in (("__ARM_FEATURE_DSP", t.has_dsp), ("__ARM_FEATURE_MVE", t.has_mve),
                           ("__ARM_FP", t.has_fpu)):
        checks.append(f"#if {'!' if present else ''}defined({macro})\n"
                      f"#error {macro} should be {'defined' if present else 'undefined'}\n#endif\n")
    src = tmp_path / "features.c"
    src.write_text("".join(checks) + "int tq_features_ok;\n")
    mcu.compile_objects(t, [src], out_dir=tmp_path)


def test_fp32_kernels_refuse_helium_floating_point(tmp_path):
    """Helium floating point flushes subnormals (the host does not): an fp32
    kernel file built with plain -mcpu=cortex-m55 stops with the flag to use;
    the M55 target builds with +nomve.fp and keeps integer Helium."""
    require_build_tools()
    assert "-mcpu=cortex-m55+nomve.fp" in mcu.get_target("m55").cflags
    src = os.path.join(mcu.kernel_source_dir(), "loss.c")
    cmd = [mcu.GCC, "-mthumb", "-mcpu=cortex-m55", "-mfloat-abi=hard", "-std=c99", "-c", src,
           "-o", str(tmp_path / "loss.o")] + [f"-I{d}" for d in mcu.kernel_include_dirs()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0 and "cortex-m55+nomve.fp" in proc.stderr


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("target", TARGETS)
def test_kernel_library_links(target, variant, tmp_path):
    require_build_tools()
    src = tmp_path / "link_main.c"
    src.write_text(_LINK_MAIN)
    elf = mcu.build(target, [src], out_dir=tmp_path, portable=(variant == "portable"))
    assert elf.is_file() and elf.stat().st_size > 0


def test_library_uses_no_double_and_no_malloc(tmp_path):
    """On the FPU-less core, -Wdouble-promotion catches float->double
    promotions and the undefined symbols show any malloc or soft-double call."""
    import subprocess
    require_build_tools()
    objs = mcu.compile_objects("m0plus", mcu.kernel_sources(), defines=(), out_dir=tmp_path, opt="-Os",
                               extra_cflags=("-Wdouble-promotion",))
    nm = subprocess.run(["arm-none-eabi-nm", "-u"] + [str(o) for o in objs], capture_output=True, text=True)
    assert nm.returncode == 0, nm.stderr
    for forbidden in ("malloc", "calloc", "free", "__aeabi_d", "__aeabi_f2d"):
        assert forbidden not in nm.stdout, f"{forbidden} referenced:\n{nm.stdout}"
