"""The SysTick instruction counter (tinyqt/mcu/data/tq_bench.h) against loops
of known length under qemu -icount shift=0: one SysTick count is 40
instructions on mps2-an386/an500 (25 MHz) and 31.25 on mps3-an547 (32 MHz);
counts are exact to one SysTick period, and 24-bit counter wraps are
handled. Also documents that QEMU does not model the DWT cycle counter."""
import re

import pytest

import tinyqt.mcu.core as mcu
from mcu_support import require_qemu

pytestmark = pytest.mark.mcu

_LOOPS = (1000, 25000, 1000000)

_SRC = r"""
#include <stdio.h>
#include <stdint.h>
#include "tq_bench.h"

/* Exactly 4 instructions per iteration: subs, nop, nop, bne. */
static void tq_loop(uint32_t n)
{
    __asm volatile("1: subs %0, %0, #1\n\tnop\n\tnop\n\tbne 1b" : "+l"(n) : : "cc");
}

int main(void)
{
    static const uint32_t loops[] = {LOOPS};
    unsigned i;
    uint64_t t;
    /* DWT: enable the trace block and the cycle counter, then read it. */
    *(volatile uint32_t *)0xE000EDFCu |= 1u << 24;
    *(volatile uint32_t *)0xE0001004u = 0;
    *(volatile uint32_t *)0xE0001000u |= 1u;
    tq_loop(1000);
    printf("DWT_CYCCNT %lu\n", (unsigned long)*(volatile uint32_t *)0xE0001004u);
    for (i = 0; i < sizeof loops / sizeof loops[0]; i++) {
        tq_bench_start();
        tq_loop(loops[i]);
        t = tq_bench_stop_ticks();
        printf("LOOP %lu %lu %lu\n", (unsigned long)loops[i], (unsigned long)t,
               (unsigned long)tq_bench_ticks_to_instructions(t));
    }
#ifdef WRAP_LOOP
    /* > 2^24 SysTick counts: the 24-bit counter wraps. */
    tq_bench_start();
    tq_loop(WRAP_LOOP);
    t = tq_bench_stop_ticks();
    printf("LOOP %lu %lu %lu\n", (unsigned long)WRAP_LOOP, (unsigned long)t,
           (unsigned long)tq_bench_ticks_to_instructions(t));
#endif
    return 0;
}
"""


@pytest.mark.parametrize("target", mcu.RUNNABLE_TARGETS)
def test_systick_counts_instructions(target, tmp_path):
    require_qemu()
    t = mcu.get_target(target)
    src = tmp_path / "calib.c"
    src.write_text(_SRC)
    defines = ["LOOPS=" + ",".join(str(n) for n in _LOOPS)]
    if target == "m4":
        # 180M iterations = 720M instructions = 18M SysTick counts > 2^24.
        defines.append("WRAP_LOOP=180000000u")
    elf = mcu.build(t, [src], defines=defines, out_dir=tmp_path, opt="-O2", with_kernels=False)
    code, out = mcu.run_qemu(t, elf, timeout=120)
    assert code == 0, out
    # QEMU does not implement the DWT cycle counter: it reads 0.
    assert re.search(r"^DWT_CYCCNT 0$", out, re.M), out
    rows = [tuple(int(v) for v in m) for m in re.findall(r"^LOOP (\d+) (\d+) (\d+)$", out, re.M)]
    assert len(rows) == len(_LOOPS) + (target == "m4")
    for n, ticks, instr in rows:
        expected = 4 * n
        # exact up to one SysTick period (start/stop overhead and phase)
        assert abs(ticks * t.instructions_per_tick - expected) <= t.instructions_per_tick + 1, (n, ticks)
        assert abs(instr - expected) <= t.instructions_per_tick + 1, (n, instr)
    assert t.instructions_per_tick == {"m4": 40, "m7": 40, "m55": 31.25}[target]
