/* tinyqt MCU bench: SysTick-based instruction counting (see tq_bench.h). */
#include "tq_bench.h"

#define TQ_SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define TQ_SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define TQ_SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define TQ_SYST_RELOAD 0xFFFFFFu

static volatile uint32_t tq_systick_wraps;
static uint32_t tq_start_wraps, tq_start_cvr;
static int tq_started;

void SysTick_Handler(void)
{
    tq_systick_wraps++;
}

/* A consistent (wraps, counter) pair: re-read when a wrap slipped in. */
static void tq_bench_now(uint32_t *wraps, uint32_t *cvr)
{
    uint32_t w0, w1, v;
    do {
        w0 = tq_systick_wraps;
        v = TQ_SYST_CVR;
        w1 = tq_systick_wraps;
    } while (w0 != w1);
    *wraps = w0;
    *cvr = v;
}

void tq_bench_start(void)
{
    if (!tq_started) {
        TQ_SYST_CSR = 0;
        TQ_SYST_RVR = TQ_SYST_RELOAD;
        TQ_SYST_CVR = 0;
        /* ENABLE | TICKINT | CLKSOURCE = processor clock */
        TQ_SYST_CSR = 7u;
        /* The counter loads RELOAD on the first tick after enabling; start
         * from a loaded counter so the first interval counts no false wrap. */
        while (TQ_SYST_CVR == 0u) {
        }
        tq_started = 1;
    }
    tq_bench_now(&tq_start_wraps, &tq_start_cvr);
}

uint64_t tq_bench_stop_ticks(void)
{
    uint32_t wraps, cvr;
    tq_bench_now(&wraps, &cvr);
    /* The counter counts down from RELOAD to 0, then reloads. */
    return (uint64_t)(wraps - tq_start_wraps) * (TQ_SYST_RELOAD + 1u) + tq_start_cvr - cvr;
}

uint64_t tq_bench_ticks_to_instructions(uint64_t ticks)
{
    return (ticks * 1000000000u + TQ_SYSCLK_HZ / 2u) / TQ_SYSCLK_HZ;
}

uint64_t tq_bench_stop(void)
{
    return tq_bench_ticks_to_instructions(tq_bench_stop_ticks());
}
