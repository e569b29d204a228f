/*
 * tinyqt: four-lane fp32 sums of the depthwise backward kernels (private
 * header of depthwise_backward_blocked.c and depthwise_backward_inplace.c).
 */
#ifndef TINYQT_DW_LANES4_H
#define TINYQT_DW_LANES4_H

#include <stdint.h>

#include "tq_f32.h"

#define TQ_DW_LANES 4

/* TQ_DW_ACC4(v0..v3) declares the four lane sums a0..a3, starting at v0..v3;
 * TQ_DW_TAP4(f, w) adds f[i] * w[i] to them.
 * TQ_DW_ROW4(f, w_end, count) adds count taps of neighbouring output
 * columns, f[4k + i] * w_end[-4(k + 1) + i] for k = 0 .. count-1 in that
 * order (a filter row read backwards, count >= 1); TQ_DW_ROW4_STEP(f, step,
 * w_end, count) the same with f[step k + i].
 * TQ_DW_STRIDED4(f, x, step, count) adds f[4k + i] * x[step k + i] for
 * k = 0 .. count-1 (count >= 1).
 * On an Arm FPU the sums live in s8-s11 and each tap is two VLDM and four
 * VMLA.F32 (compiled C spends a VLDR per value). */
#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
#define TQ_DW_ACC4(v0, v1, v2, v3)                                                     \
    register float a0 __asm__("s8") = (v0), a1 __asm__("s9") = (v1),                   \
                   a2 __asm__("s10") = (v2), a3 __asm__("s11") = (v3)
#define TQ_DW_TAP4(f, w)                                                              \
    __asm__("vldmia %[fp], {s0-s3}\n\t"                                               \
            "vldmia %[wp], {s4-s7}\n\t"                                               \
            "vmla.f32 %[x0], s0, s4\n\t"                                              \
            "vmla.f32 %[x1], s1, s5\n\t"                                              \
            "vmla.f32 %[x2], s2, s6\n\t"                                              \
            "vmla.f32 %[x3], s3, s7"                                                  \
            : [x0] "+t"(a0), [x1] "+t"(a1), [x2] "+t"(a2), [x3] "+t"(a3)              \
            : [fp] "r"(f), [wp] "r"(w), "m"(*(const float(*)[4])(f)),                 \
              "m"(*(const float(*)[4])(w))                                            \
            : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7")
/* The loops: load_f brings f's four values into s0-s3 and load_w w's into
 * s4-s7, each advancing its pointer; extra_in is the input operands they
 * need (may be empty). */
#define TQ_DW_LOOP4(f, w, count, load_f, load_w, extra_in)                               \
    do {                                                                              \
        const float *fp_ = (f), *wp_ = (w);                                           \
        int32_t n_ = (count);                                                         \
        __asm__ volatile("1:\n\t"                                                     \
                         load_f                                                       \
                         load_w                                                       \
                         "vmla.f32 %[x0], s0, s4\n\t"                                 \
                         "vmla.f32 %[x1], s1, s5\n\t"                                 \
                         "vmla.f32 %[x2], s2, s6\n\t"                                 \
                         "vmla.f32 %[x3], s3, s7\n\t"                                 \
                         "subs %[n], %[n], #1\n\t"                                    \
                         "bne 1b"                                                     \
                         : [x0] "+t"(a0), [x1] "+t"(a1), [x2] "+t"(a2), [x3] "+t"(a3), \
                           [fp] "+r"(fp_), [wp] "+r"(wp_), [n] "+r"(n_)               \
                         : extra_in                                                   \
                         : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "cc",      \
                           "memory");                                                 \
    } while (0)
#define TQ_DW_ROW4(f, w_end, count)                                                       \
    TQ_DW_LOOP4(f, w_end, count, "vldmia %[fp]!, {s0-s3}\n\t", "vldmdb %[wp]!, {s4-s7}\n\t", )
#define TQ_DW_ROW4_STEP(f, step, w_end, count)                                            \
    TQ_DW_LOOP4(f, w_end, count, "vldmia %[fp], {s0-s3}\n\tadd %[fp], %[fp], %[st]\n\t",   \
                "vldmdb %[wp]!, {s4-s7}\n\t", [st] "r"((step) * (int32_t)sizeof(float)))
#define TQ_DW_STRIDED4(f, x, step, count)                                               \
    TQ_DW_LOOP4(f, x, count, "vldmia %[fp]!, {s0-s3}\n\t",                             \
                "vldmia %[wp], {s4-s7}\n\tadd %[wp], %[wp], %[st]\n\t",               \
                [st] "r"((step) * (int32_t)sizeof(float)))
#else
#define TQ_DW_ACC4(v0, v1, v2, v3) float a0 = (v0), a1 = (v1), a2 = (v2), a3 = (v3)
#define TQ_DW_TAP4(f, w)                                                              \
    do {                                                                              \
        TQ_MLA_F32(a0, (f)[0], (w)[0]);                                               \
        TQ_MLA_F32(a1, (f)[1], (w)[1]);                                               \
        TQ_MLA_F32(a2, (f)[2], (w)[2]);                                               \
        TQ_MLA_F32(a3, (f)[3], (w)[3]);                                               \
    } while (0)
#define TQ_DW_ROW4(f, w_end, count) TQ_DW_ROW4_STEP(f, TQ_DW_LANES, w_end, count)
#define TQ_DW_ROW4_STEP(f, step, w_end, count)                                            \
    do {                                                                              \
        const float *fp_ = (f), *wp_ = (w_end);                                       \
        int32_t n_;                                                                   \
        for (n_ = (count); n_ > 0; n_--, fp_ += (step)) {                               \
            wp_ -= TQ_DW_LANES;                                                       \
            TQ_DW_TAP4(fp_, wp_);                                                     \
        }                                                                             \
    } while (0)
#define TQ_DW_STRIDED4(f, x, step, count)                                               \
    do {                                                                              \
        const float *fp_ = (f), *xp_ = (x);                                           \
        int32_t n_;                                                                   \
        for (n_ = (count); n_ > 0; n_--, fp_ += TQ_DW_LANES, xp_ += (step)) {          \
            TQ_DW_TAP4(fp_, xp_);                                                     \
        }                                                                             \
    } while (0)
#endif

#endif /* TINYQT_DW_LANES4_H */
