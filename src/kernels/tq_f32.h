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

/* Every file with fp32 arithmetic includes this header for the check below.
 * Helium floating point (MVE-F) flushes subnormal inputs and results to zero
 * (the scalar FPU and the host do not), so a compiler that auto-vectorizes an
 * fp32 loop with it breaks host == MCU. Build Cortex-M55 code with
 * -mcpu=cortex-m55+nomve.fp: integer Helium and the scalar FPU remain. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2) && !defined(TQ_ALLOW_MVE_FLOAT)
#error "tinyqt: compile with -mcpu=cortex-m55+nomve.fp: Helium floating point flushes subnormals to zero, which breaks host == device bit-exactness (define TQ_ALLOW_MVE_FLOAT to accept that)"
#endif

#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
#define TQ_MLA_F32(acc, a, b) __asm__("vmla.f32 %0, %1, %2" : "+t"(acc) : "t"(a), "t"(b))
#else
#define TQ_MLA_F32(acc, a, b) ((acc) = (acc) + (a) * (b))
#endif

#endif /* TINYQT_F32_H */
