/*
 * tinyqt MCU runtime: minimal Cortex-M startup for the QEMU boards.
 *
 * Vector table, reset handler (.data copy, .bss zero, FPU/MVE enable where
 * the core has one, semihosting handles), then main(); main's return value
 * leaves through exit() so it reaches the host as QEMU's exit status.
 * Faults print their name over semihosting and exit with status 255.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int main(void);
extern void initialise_monitor_handles(void);

extern uint32_t __data_load__, __data_start__, __data_end__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __stack_top__, __stack_limit__;

void Reset_Handler(void);
static void tq_paint_stack(void);
uint32_t tq_stack_used(void);
void tq_default_handler(void);
void SysTick_Handler(void);

#define TQ_REG(addr) (*(volatile uint32_t *)(addr))

static void tq_fault(const char *name)
{
    printf("\nFAULT: %s (CFSR=0x%08lx HFSR=0x%08lx)\n", name,
           (unsigned long)TQ_REG(0xE000ED28u), (unsigned long)TQ_REG(0xE000ED2Cu));
    exit(255);
}

void NMI_Handler(void) { tq_fault("NMI"); }
void HardFault_Handler(void) { tq_fault("HardFault"); }
void MemManage_Handler(void) { tq_fault("MemManage"); }
void BusFault_Handler(void) { tq_fault("BusFault"); }
void UsageFault_Handler(void) { tq_fault("UsageFault"); }
void SecureFault_Handler(void) { tq_fault("SecureFault"); }
void tq_default_handler(void) { tq_fault("unexpected interrupt"); }

/* tq_bench.c overrides this (it counts SysTick wraps). */
void SysTick_Handler(void) __attribute__((weak, alias("tq_default_handler")));

typedef void (*tq_vector)(void);

__attribute__((section(".vectors"), used))
const tq_vector tq_vector_table[16 + 32] = {
    (tq_vector)(uintptr_t)&__stack_top__,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    SecureFault_Handler,
    0, 0, 0,
    tq_default_handler, /* SVCall */
    tq_default_handler, /* DebugMonitor */
    0,
    tq_default_handler, /* PendSV */
    SysTick_Handler,
    /* 32 external interrupts, none enabled */
    tq_default_handler, tq_default_handler, tq_default_handler, tq_default_handler,
    tq_default_handler, tq_default_handler, tq_default_handler, tq_default_handler,
    tq_default_handler, tq_default_handler, tq_default_handler, tq_default_handler,
    tq_default_handler, tq_default_handler, tq_default_handler, tq_default_handler,
    tq_default_handler, tq_default_handler, tq_default_handler, tq_default_handler,
    tq_default_handler, tq_default_handler, tq_default_handler, tq_default_handler,
    tq_default_handler, tq_default_handler, tq_default_handler, tq_default_handler,
    tq_default_handler, tq_default_handler, tq_default_handler, tq_default_handler,
};

__attribute__((noreturn)) void Reset_Handler(void)
{
    uint32_t *src = &__data_load__;
    uint32_t *dst = &__data_start__;
    while (dst < &__data_end__) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start__; dst < &__bss_end__; dst++) {
        *dst = 0;
    }
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* CPACR: full access to CP10/CP11 (FPU, and MVE on Armv8.1-M). */
    TQ_REG(0xE000ED88u) |= (0xFu << 20);
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
#if __ARM_ARCH >= 7
    /* Fault on unaligned LDM/STRD etc. only (the default); trap divide by 0. */
    TQ_REG(0xE000ED14u) |= (1u << 4);
    /* Enable MemManage, BusFault and UsageFault so they are named. */
    TQ_REG(0xE000ED24u) |= (7u << 16);
#endif
    tq_paint_stack();
    initialise_monitor_handles();
    exit(main());
}

#define TQ_STACK_PAINT 0xA5A5A5A5u

/* Fills the unused stack with a pattern so tq_stack_used() can find the
 * deepest point any code reached (the stack grows down from __stack_top__). */
static void tq_paint_stack(void)
{
    uint32_t sp;
    uint32_t *p = &__stack_limit__;
    __asm volatile("mov %0, sp" : "=r"(sp));
    while ((uintptr_t)p < (uintptr_t)sp - 64u) {
        *p++ = TQ_STACK_PAINT;
    }
}

uint32_t tq_stack_used(void)
{
    const uint32_t *p = &__stack_limit__;
    while (p < &__stack_top__ && *p == TQ_STACK_PAINT) {
        p++;
    }
    return (uint32_t)((uintptr_t)&__stack_top__ - (uintptr_t)p);
}
