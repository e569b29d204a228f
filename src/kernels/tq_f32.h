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

#include <stdint.h>

/* Every file with fp32 arithmetic includes this header for the check below.
 * Helium floating point (MVE-F) flushes subnormal inputs and results to zero
 * (the scalar FPU and the host do not), so a compiler that auto-vectorizes an
 * fp32 loop with it breaks host == MCU. Build Cortex-M55 code with
 * -mcpu=cortex-m55+nomve.fp: integer Helium and the scalar FPU remain. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2) && !defined(TQ_ALLOW_MVE_FLOAT)
#error "tinyqt: compile with -mcpu=cortex-m55+nomve.fp: Helium floating point flushes subnormals to zero, which breaks host == device bit-exactness (define TQ_ALLOW_MVE_FLOAT to accept that)"
#endif

/* TQ_USE_MVE_F32 is 1 on a core with Helium floating point, told by
 * -DTQ_HELIUM_F32 (the M55 target's flags; the compiler itself is kept at
 * +nomve.fp, see above). Then the hottest fp32 blocks of the backward run
 * Helium assembly (".arch_extension mve.fp" inside the asm) and still give
 * the scalar FPU's bits: the only way Helium's arithmetic differs from the
 * scalar FPU's (both round to nearest; products and sums are separate
 * VMUL / VADD, never the fused VFMA) is the flush of a subnormal input or
 * result, and every such flush sets FPSCR.IDC or FPSCR.UFC. Two forms:
 * - a block that adds to sums in memory keeps them in registers, reads the
 *   two cumulative flags before it stores anything (TQ_MVEF_CHECK) and on
 *   a flush stores nothing, clears the flags and returns nonzero, so that
 *   the caller runs the scalar block on the same, untouched memory;
 * - a loop whose outputs are fresh values nothing has read yet (gathered
 *   factors, a row of input gradients) stores them, and its caller then
 *   asks tq_fpscr_flushed() and redoes the loop with the scalar code.
 * A flag left set by earlier scalar code only costs one block or row run
 * twice; the flags are cleared only by these two checks. Helium also
 * returns the default NaN where the scalar FPU propagates a NaN operand's
 * payload: a NaN gradient is NaN on both, with other bits. */
#if defined(__ARM_FEATURE_MVE) && defined(TQ_HELIUM_F32) && defined(__ARM_FP) && (__ARM_FP & 4) && \
    !defined(TQ_FORCE_PORTABLE)
#define TQ_USE_MVE_F32 1
/* FPSCR.IDC (bit 7) | FPSCR.UFC (bit 3) */
#define TQ_FPSCR_FLUSH_BITS "#0x88"
/* Assembly check at the end of a Helium block's loop: when no flush
 * happened, flush (a register operand) <- 0 and fall through to the stores;
 * otherwise clear the two flags, flush <- 1 and branch to label 9, which the
 * block puts after its stores. Uses local label 7. */
#define TQ_MVEF_CHECK(flush)                                                           \
    "vmrs " flush ", fpscr\n\t"                                                        \
    "tst " flush ", " TQ_FPSCR_FLUSH_BITS "\n\t"                                       \
    "beq 7f\n\t"                                                                      \
    "bic " flush ", " flush ", " TQ_FPSCR_FLUSH_BITS "\n\t"                            \
    "vmsr fpscr, " flush "\n\t"                                                        \
    "movs " flush ", #1\n\t"                                                          \
    "b 9f\n\t"                                                                        \
    "7:\n\t"                                                                          \
    "movs " flush ", #0\n\t"
/* Assembly: the fp32 lanes of q register q whose bit in core register m is
 * clear (lane i: bit i) become +0.0f, under a VPT predicate; t is a scratch
 * q register, lb holds the lanes' bits {1, 2, 4, 8} and z zeros. */
#define TQ_MVEF_KEEP4(q, m, t, lb, z)                                                  \
    "vdup.32 " t ", " m "\n\t"                                                         \
    "vand " t ", " t ", " lb "\n\t"                                                    \
    "vpt.i32 eq, " t ", " z "\n\t"                                                     \
    "vorrt " q ", " z ", " z "\n\t"

/* Assembly: q4..q7 <-> four fp32 vectors at the row pointers ptrs[0..3]
 * (an operand name) plus off (a register operand, shifted or not), op
 * vldrw.32 or vstrw.32; uses the block's operands g0..g3 as scratch. */
#define TQ_MVEF_ROWS4(op, ptrs, off)                                                   \
    "ldrd %[g0], %[g1], [%[" ptrs "]]\n\t"                                               \
    "ldrd %[g2], %[g3], [%[" ptrs "], #8]\n\t"                                           \
    "add %[g0], %[g0], " off "\n\t"                                                     \
    "add %[g1], %[g1], " off "\n\t"                                                     \
    "add %[g2], %[g2], " off "\n\t"                                                     \
    "add %[g3], %[g3], " off "\n\t"                                                     \
    op " q4, [%[g0]]\n\t"                                                              \
    op " q5, [%[g1]]\n\t"                                                              \
    op " q6, [%[g2]]\n\t"                                                              \
    op " q7, [%[g3]]\n\t"

/* 1 when FPSCR.IDC or FPSCR.UFC is set, which it then clears; else 0 */
static inline int tq_fpscr_flushed(void)
{
    uint32_t fpscr;
    __asm__ volatile("vmrs %0, fpscr" : "=r"(fpscr));
    if ((fpscr & 0x88u) == 0) {
        return 0;
    }
    __asm__ volatile("vmsr fpscr, %0" : : "r"(fpscr & ~0x88u));
    return 1;
}
#else
#define TQ_USE_MVE_F32 0
/* Without Helium floating point nothing flushes: the scalar FPU keeps
 * subnormals, so a caller's flush check is always 0. */
static inline int tq_fpscr_flushed(void)
{
    return 0;
}
#endif

#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
#define TQ_MLA_F32(acc, a, b) __asm__("vmla.f32 %0, %1, %2" : "+t"(acc) : "t"(a), "t"(b))
#else
#define TQ_MLA_F32(acc, a, b) ((acc) = (acc) + (a) * (b))
#endif

/* wf[4t + i] = (float)w[t * w_stride + i] for t < nt (nt >= 1), i < 4: four
 * int8 values a row (a block of weights) in fp32. With Helium one
 * VLDRB.S32, one VCVT and one VSTRW per t in a DLS / LE loop (the
 * conversions are of integers, so exact and flag-free); on the scalar FPU
 * one LDR of the four bytes (unaligned loads are allowed on these cores),
 * four SXTB, two VMOV and four VCVT per t, one VSTM per two (27
 * instructions per two t with the loop, where compiled C spends 40). */
static inline void tq_f32_from_s8x4(const int8_t *w, int32_t w_stride, int32_t nt, float *wf)
{
#if TQ_USE_MVE_F32
    __asm__ volatile(
        ".arch_extension mve.fp\n\t"
        "dls lr, %[n]\n\t"
        "1:\n\t"
        "vldrb.s32 q0, [%[w]]\n\t"
        "add %[w], %[w], %[st]\n\t"
        "vcvt.f32.s32 q0, q0\n\t"
        "vstrw.32 q0, [%[wf]], #16\n\t"
        "le lr, 1b"
        : [w] "+l"(w), [wf] "+r"(wf) /* VLDRB.S32 takes a low register */
        : [st] "r"(w_stride), [n] "r"(nt)
        : "q0", "lr", "memory");
#elif defined(__ARM_FP) && (__ARM_FP & 4) && defined(__ARM_ARCH_7EM__) && !defined(TQ_FORCE_PORTABLE)
    /* one row of four into s(r)..s(r + 3), converted in place */
#define TQ_F32_FROM_S8X4_ROW(S0, S1, S2, S3)                                           \
    "ldr %[b3], [%[w]]\n\t"                                                             \
    "add %[w], %[w], %[st]\n\t"                                                         \
    "sxtb %[b0], %[b3]\n\t"                                                             \
    "sxtb %[b1], %[b3], ror #8\n\t"                                                     \
    "sxtb %[b2], %[b3], ror #16\n\t"                                                    \
    "sxtb %[b3], %[b3], ror #24\n\t"                                                    \
    "vmov " S0 ", " S1 ", %[b0], %[b1]\n\t"                                              \
    "vmov " S2 ", " S3 ", %[b2], %[b3]\n\t"                                              \
    "vcvt.f32.s32 " S0 ", " S0 "\n\t"                                                    \
    "vcvt.f32.s32 " S1 ", " S1 "\n\t"                                                    \
    "vcvt.f32.s32 " S2 ", " S2 "\n\t"                                                    \
    "vcvt.f32.s32 " S3 ", " S3 "\n\t"
    /* two rows a loop step, one VSTM of eight (an odd nt takes one first):
     * 27 instructions per 8 values, where a row a step took 15 per 4 */
    uint32_t b0, b1, b2, b3;
    __asm__ volatile(
        "tst %[n], #1\n\t"
        "beq 2f\n\t"
        TQ_F32_FROM_S8X4_ROW("s0", "s1", "s2", "s3")
        "vstmia %[wf]!, {s0-s3}\n\t"
        "2:\n\t"
        "lsrs %[n], %[n], #1\n\t"
        "beq 3f\n\t"
        "1:\n\t"
        TQ_F32_FROM_S8X4_ROW("s0", "s1", "s2", "s3")
        TQ_F32_FROM_S8X4_ROW("s4", "s5", "s6", "s7")
        "vstmia %[wf]!, {s0-s7}\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "3:"
        : [w] "+r"(w), [wf] "+r"(wf), [n] "+r"(nt), [b0] "=&r"(b0), [b1] "=&r"(b1), [b2] "=&r"(b2),
          [b3] "=&r"(b3)
        : [st] "r"(w_stride)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "cc", "memory");
#undef TQ_F32_FROM_S8X4_ROW
#else
    int32_t t;
    for (t = 0; t < nt; t++, w += w_stride, wf += 4) {
        wf[0] = (float)w[0];
        wf[1] = (float)w[1];
        wf[2] = (float)w[2];
        wf[3] = (float)w[3];
    }
#endif
}

#endif /* TINYQT_F32_H */
