/* tinyqt firmware support: SysTick-based instruction counting (tq_bench.h). */
#include "tq_bench.h"

#ifndef TQ_SYSCLK_HZ
#define TQ_SYSCLK_HZ 25000000u
#endif

#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define TQ_SYST_RELOAD 0x00FFFFFFu

static volatile uint32_t tq_systick_wraps;

void tq_systick_handler(void);
void tq_systick_handler(void)
{
    tq_systick_wraps++;
}

void tq_bench_start(void)
{
    SYST_CSR = 0;
    SYST_RVR = TQ_SYST_RELOAD;
    SYST_CVR = 0;
    tq_systick_wraps = 0;
    SYST_CSR = 7u; /* enable, interrupt on wrap, processor clock */
}

uint64_t tq_bench_stop(void)
{
    uint32_t cvr = SYST_CVR;
    uint64_t ticks;
    SYST_CSR = 0;
    ticks = (uint64_t)tq_systick_wraps * (TQ_SYST_RELOAD + 1u) + (TQ_SYST_RELOAD - cvr);
    /* ns per tick = 1e9 / sysclk; 1 instruction = 1 ns at icount shift=0 */
    return ticks * 1000000000ull / TQ_SYSCLK_HZ;
}
