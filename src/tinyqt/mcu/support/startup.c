/*
 * tinyqt firmware support: vector table and reset handler for Cortex-M.
 *
 * Reset_Handler enables the FPU where there is one, copies .data from its
 * load address, zeroes .bss, opens the semihosting console, runs main() and
 * reports its return value on the console ("TQ_EXIT <code>") and through
 * semihosting exit. SysTick overflows are counted for tq_bench.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __stack_top;
extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern int main(void);
extern void initialise_monitor_handles(void);
void tq_systick_handler(void);

void Reset_Handler(void);
void Default_Handler(void);

void Default_Handler(void)
{
    printf("TQ_FAULT\n");
    exit(100);
}

typedef void (*tq_vector)(void);

__attribute__((section(".vectors"), used)) const tq_vector tq_vector_table[16 + 32] = {
    (tq_vector)(uintptr_t)&__stack_top,
    Reset_Handler,
    Default_Handler, /* NMI */
    Default_Handler, /* HardFault */
    Default_Handler, /* MemManage */
    Default_Handler, /* BusFault */
    Default_Handler, /* UsageFault */
    Default_Handler, /* SecureFault */
    0, 0, 0,
    Default_Handler, /* SVC */
    Default_Handler, /* DebugMon */
    0,
    Default_Handler, /* PendSV */
    tq_systick_handler,
};

void Reset_Handler(void)
{
    int rc;
#if defined(__ARM_FP)
    /* CPACR: full access to CP10 and CP11 (the FPU / MVE). */
    *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20);
    __asm volatile("dsb\n\tisb");
#endif
    *(volatile uint32_t *)0xE000ED08 = (uint32_t)(uintptr_t)tq_vector_table; /* VTOR */
    if (&__data_load != &__data_start) {
        memcpy(&__data_start, &__data_load,
               (size_t)((uintptr_t)&__data_end - (uintptr_t)&__data_start));
    }
    memset(&__bss_start, 0, (size_t)((uintptr_t)&__bss_end - (uintptr_t)&__bss_start));
    initialise_monitor_handles();
    rc = main();
    printf("TQ_EXIT %d\n", rc);
    fflush(stdout);
    exit(rc);
}

/* newlib's exit() runs __libc_fini_array, which calls _init/_fini from
 * crti.o; -nostartfiles leaves them out, and there is nothing to run. */
void _init(void);
void _fini(void);
void _init(void) {}
void _fini(void) {}
