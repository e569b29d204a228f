/*
 * tinyqt: fp32 helpers of the backward micro-kernels (private header).
 *
 * TQ_MLA_F32(acc, a, b) sets acc to acc + a * b with the product rounded to
 * fp32 before the add, i.e. exactly `acc = acc + a * b` compiled with
 * -ffp-contract=off, as the host computes it. On an Arm FPU with single
 * precision (Cortex-M4F, M7, M55) it is one VMLA.F32, which is that
 * unfused multiply-accumulate in one instruction; GCC does not emit VMLA
 * itself without contracting to the fused VFMA, whose single rounding
 * would break host == MCU.
 */
#ifndef TINYQT_F32_H
#define TINYQT_F32_H

#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
#define TQ_MLA_F32(acc, a, b) __asm__("vmla.f32 %0, %1, %2" : "+t"(acc) : "t"(a), "t"(b))
#else
#define TQ_MLA_F32(acc, a, b) ((acc) = (acc) + (a) * (b))
#endif

#endif /* TINYQT_F32_H */
