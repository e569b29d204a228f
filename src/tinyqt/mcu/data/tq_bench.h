/*
 * tinyqt MCU bench: instruction counts under QEMU -icount shift=0.
 *
 * With -icount shift=0 QEMU advances its virtual clock by exactly 1 ns per
 * executed instruction, and the SysTick, clocked from the processor clock
 * (CLKSOURCE = 1), decrements once per 1e9 / TQ_SYSCLK_HZ ns of that clock.
 * So instructions = ticks * 1e9 / TQ_SYSCLK_HZ:
 *   mps2-an386, mps2-an500: 25 MHz -> 40 instructions per SysTick count;
 *   mps3-an547:             32 MHz -> 31.25 instructions per SysTick count.
 * The build passes -DTQ_SYSCLK_HZ=<board clock>. The resolution is one
 * SysTick count (40 / 31.25 instructions); wraps of the 24-bit counter are
 * counted by the SysTick exception, so any length can be measured.
 * QEMU does not model the DWT cycle counter (DWT_CYCCNT reads as 0), hence
 * SysTick. On real silicon the same code counts cycles, not instructions.
 */
#ifndef TINYQT_TQ_BENCH_H
#define TINYQT_TQ_BENCH_H

#include <stdint.h>

#ifndef TQ_SYSCLK_HZ
#define TQ_SYSCLK_HZ 25000000u
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Starts SysTick (processor clock, reload 0xFFFFFF, wrap interrupt) on the
 * first call and records the current count. */
void tq_bench_start(void);

/* SysTick counts elapsed since tq_bench_start. */
uint64_t tq_bench_stop_ticks(void);

/* Instructions executed since tq_bench_start: ticks * 1e9 / TQ_SYSCLK_HZ,
 * rounded (valid under qemu -icount shift=0). Not corrected for the cost of
 * the start/stop pair itself, which is below one SysTick count. */
uint64_t tq_bench_stop(void);

/* Converts SysTick counts to instructions (no overhead correction). */
uint64_t tq_bench_ticks_to_instructions(uint64_t ticks);

#ifdef __cplusplus
}
#endif

/* Bytes of stack used so far: the deepest point reached below the stack top
 * since reset (startup.c paints the stack before main). */
uint32_t tq_stack_used(void);

#endif /* TINYQT_TQ_BENCH_H */
