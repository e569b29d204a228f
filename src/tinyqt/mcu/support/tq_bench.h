/*
 * tinyqt firmware support: instruction counting under QEMU.
 *
 * Under `qemu-system-arm -icount shift=0` every instruction advances virtual
 * time by 1 ns, and SysTick (processor clock) ticks once per clock period, so
 * instructions = ticks * TQ_NS_PER_TICK, where TQ_NS_PER_TICK is the board's
 * clock period in ns (40 on the MPS2 boards at 25 MHz, 31.25 on MPS3 at 32
 * MHz; the build passes -DTQ_SYSCLK_HZ). Overflows of the 24-bit counter
 * are counted by the SysTick interrupt.
 */
#ifndef TINYQT_BENCH_H
#define TINYQT_BENCH_H

#include <stdint.h>

void tq_bench_start(void);
/* Instructions executed since tq_bench_start (resolution: one tick). */
uint64_t tq_bench_stop(void);

#endif
