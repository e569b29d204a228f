/* tinyqt: register-blocked fp32 backward of the 1x1 and the dense conv
 * (input gradient and weight-gradient rows), called by the checked entry
 * points of conv_backward.c. Contracts and the summation order:
 * tq_conv_blocked.h.
 *
 * Each micro-kernel keeps a block of sums in FPU registers: 4 pixels x 4
 * input channels for the 1x1 input gradient (weights converted to fp32 once
 * for several pixel blocks), 1 pixel x 4 input channels for
 * the dense one (neighbouring windows overlap, so pixels go one at a time to
 * keep each sum's order), 8 output channels x 2 saved channels for the
 * weight gradient of any kernel size on an Arm FPU (4 x 4, twice, in C).
 * Every product is one TQ_MLA_F32 (one VMLA on an Arm FPU),
 * where the plain loops spend a load, a store and a conversion per term.
 * The factors of a tile (pre-scaled, masked gradients; pixel addresses)
 * are gathered once into small stack buffers; partial sums of a block go
 * back to memory between tiles, which keeps every sum's order. */
#include <string.h>

#include "tq_check.h"
#include "tq_f32.h"
#include "tq_conv_blocked.h"
#include "tq_sgd.h"

#define TQ_PW_PIX 4   /* pixels of an input-gradient block */
#define TQ_PW_OCT 32  /* output channels of a tile of scaled gradients */
/* Input-gradient pixel blocks that share a converted weight tile: as many as
 * TQ_PW_GS floats of gathered gradients hold (6 at 32 output channels, 12
 * at 16), at most TQ_PW_SUB. 3 KB of stack: with 2 KB (4 blocks) the
 * 8x8x64->192 input gradient ran 0.545 MAC/instruction on M7, with 3 KB 0.569. */
#define TQ_PW_GS 768
#define TQ_PW_SUB 16
#define TQ_PW_PT 64   /* output pixels of a 1x1 weight-gradient tile */
#define TQ_CONV_PT 32 /* output pixels of a dense weight-gradient tile (it keeps two copies) */

/* The 4 x 4 register block a<row><col> of both micro-kernels: declared,
 * started from 0 (first) or from the partial sums at p0..p3, advanced by one
 * outer product u[0..3] x v0..v3 (term u[row] * v<col>), stored to p0..p3.
 * A short last block has duplicated rows holding equal sums: the order of
 * their stores is moot. */
#define TQ_BLOCK4X4_DECLARE                                                            \
    float a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33
#define TQ_BLOCK4X4_ROW_START(r, p, first)                                             \
    a##r##0 = (first) ? 0.0f : (p)[0]; a##r##1 = (first) ? 0.0f : (p)[1];             \
    a##r##2 = (first) ? 0.0f : (p)[2]; a##r##3 = (first) ? 0.0f : (p)[3]
#define TQ_BLOCK4X4_START(p0, p1, p2, p3, first)                                       \
    TQ_BLOCK4X4_ROW_START(0, p0, first); TQ_BLOCK4X4_ROW_START(1, p1, first);          \
    TQ_BLOCK4X4_ROW_START(2, p2, first); TQ_BLOCK4X4_ROW_START(3, p3, first)
#define TQ_BLOCK4X4_ROW_STEP(r, ur, v0, v1, v2, v3)                                    \
    TQ_MLA_F32(a##r##0, ur, v0); TQ_MLA_F32(a##r##1, ur, v1);                          \
    TQ_MLA_F32(a##r##2, ur, v2); TQ_MLA_F32(a##r##3, ur, v3)
#define TQ_BLOCK4X4_STEP(u, v0, v1, v2, v3)                                            \
    TQ_BLOCK4X4_ROW_STEP(0, (u)[0], v0, v1, v2, v3);                                   \
    TQ_BLOCK4X4_ROW_STEP(1, (u)[1], v0, v1, v2, v3);                                   \
    TQ_BLOCK4X4_ROW_STEP(2, (u)[2], v0, v1, v2, v3);                                   \
    TQ_BLOCK4X4_ROW_STEP(3, (u)[3], v0, v1, v2, v3)
#define TQ_BLOCK4X4_ROW_STORE(r, p)                                                    \
    (p)[0] = a##r##0; (p)[1] = a##r##1; (p)[2] = a##r##2; (p)[3] = a##r##3
#define TQ_BLOCK4X4_STORE(p0, p1, p2, p3)                                              \
    TQ_BLOCK4X4_ROW_STORE(0, p0); TQ_BLOCK4X4_ROW_STORE(1, p1);                        \
    TQ_BLOCK4X4_ROW_STORE(2, p2); TQ_BLOCK4X4_ROW_STORE(3, p3)

static int32_t tq_min_i32(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

/* Element offset / in_c of the input pixel that output pixel po reads. */
static size_t tq_pw_in_pixel(const tq_conv_params *p, const tq_dims *out_d, const tq_dims *in_d,
                             int32_t po)
{
    const int32_t per_image = out_d->h * out_d->w;
    const int32_t b = po / per_image, r = po - b * per_image;
    const int32_t oy = r / out_d->w, ox = r - oy * out_d->w;
    return ((size_t)b * in_d->h + (size_t)oy * p->stride_h) * in_d->w + (size_t)ox * p->stride_w;
}

/* ---- input gradient ----------------------------------------------------- */

/* Channels [ic, ic + 4) of the four pixel rows gi[0..3]: from 0 (first) or
 * their stored partial sums, add gs[4t + k] * wf[4t + i] for t < nt
 * (nt >= 1), where wf holds the weights already converted to fp32; with a
 * list wp (not NULL), the weights of t are at wp[t] instead (the blocks
 * whose all-zero t tq_pw_gin_compact dropped). On an Arm FPU the whole
 * block is one assembly loop: the 16 sums stay in s8-s23 and each pair of
 * t is one VLDM of the eight gradients, one VLDM of the eight weights (two
 * of four and one LDRD of their addresses with a list) and 32 VMLA.F32
 * (an odd nt takes one t first; compiled C spends a VLDR per value);
 * elsewhere it is the same sums in C. */
/* The 16 terms of one t: gradients G0..G3 (pixels) times weights W0..W3
 * (input channels) into s8-s23 (pixel-major). */
#define TQ_GIN_MLA16(G0, G1, G2, G3, W0, W1, W2, W3)                                  \
    "vmla.f32 s8, " G0 ", " W0 "\n\t" "vmla.f32 s9, " G0 ", " W1 "\n\t"               \
    "vmla.f32 s10, " G0 ", " W2 "\n\t" "vmla.f32 s11, " G0 ", " W3 "\n\t"             \
    "vmla.f32 s12, " G1 ", " W0 "\n\t" "vmla.f32 s13, " G1 ", " W1 "\n\t"             \
    "vmla.f32 s14, " G1 ", " W2 "\n\t" "vmla.f32 s15, " G1 ", " W3 "\n\t"             \
    "vmla.f32 s16, " G2 ", " W0 "\n\t" "vmla.f32 s17, " G2 ", " W1 "\n\t"             \
    "vmla.f32 s18, " G2 ", " W2 "\n\t" "vmla.f32 s19, " G2 ", " W3 "\n\t"             \
    "vmla.f32 s20, " G3 ", " W0 "\n\t" "vmla.f32 s21, " G3 ", " W1 "\n\t"             \
    "vmla.f32 s22, " G3 ", " W2 "\n\t" "vmla.f32 s23, " G3 ", " W3 "\n\t"

#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
/* Row r's four sums at channel ic (register operands gi, ic in bytes)
 * <-> the registers regs, through p: op vldmia or vstmia. */
#define TQ_GIN_ROW(op, r, regs)                                                       \
    "ldr %[p], [%[gi], #" #r "*4]\n\t"                                                 \
    "add %[p], %[p], %[ic]\n\t"                                                       \
    op " %[p], {" regs "}\n\t"
#define TQ_GIN_ROWS(op)                                                               \
    TQ_GIN_ROW(op, 0, "s8-s11") TQ_GIN_ROW(op, 1, "s12-s15")                          \
    TQ_GIN_ROW(op, 2, "s16-s19") TQ_GIN_ROW(op, 3, "s20-s23")
/* The block's loop around the t steps ODD (one t) and PAIR (two t): the
 * sums from +0.0f (first) or memory, the odd t first, pairs from label 3,
 * the stores at label 4. */
#define TQ_GIN_BLOCK(ODD, PAIR)                                                       \
    __asm__ volatile("cmp %[first], #0\n\t"                                           \
                     "beq 2f\n\t"                                                     \
                     "vldmia %[z], {s8-s23}\n\t"                                      \
                     "b 1f\n\t"                                                       \
                     "2:\n\t"                                                         \
                     TQ_GIN_ROWS("vldmia")                                            \
                     "1:\n\t"                                                         \
                     "tst %[n], #1\n\t"                                               \
                     "beq 3f\n\t"                                                     \
                     ODD                                                              \
                     TQ_GIN_MLA16("s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7")     \
                     "subs %[n], %[n], #1\n\t"                                        \
                     "beq 4f\n\t"                                                     \
                     "3:\n\t"                                                         \
                     PAIR                                                             \
                     TQ_GIN_MLA16("s0", "s1", "s2", "s3", "s24", "s25", "s26", "s27") \
                     TQ_GIN_MLA16("s4", "s5", "s6", "s7", "s28", "s29", "s30", "s31") \
                     "subs %[n], %[n], #2\n\t"                                        \
                     "bne 3b\n\t"                                                     \
                     "4:\n\t"                                                         \
                     TQ_GIN_ROWS("vstmia")                                            \
                     : [g] "+r"(gs), [w] "+r"(w), [n] "+r"(nt), [p] "=&r"(p), [q] "=&r"(q) \
                     : [gi] "r"(gi), [ic] "r"(ic_bytes), [first] "r"(first), [z] "r"(zero) \
                     : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", \
                       "s11", "s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19", "s20", \
                       "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30", \
                       "s31", "cc", "memory")
#endif

static void tq_pw_gin_4x4(const float *gs, const float *wf, const float *const *wp, int32_t nt,
                          float *const *gi, int32_t ic, int first)
{
#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
    static const float zero[16] = {0.0f};
    const int32_t ic_bytes = ic * (int32_t)sizeof(float);
    float *p, *q;
    if (wp == NULL) {
        const float *w = wf;
        TQ_GIN_BLOCK("vldmia %[g]!, {s0-s3}\n\t" "vldmia %[w]!, {s4-s7}\n\t",
                     "vldmia %[g]!, {s0-s7}\n\t" "vldmia %[w]!, {s24-s31}\n\t");
    } else {
        const float *const *w = wp;
        TQ_GIN_BLOCK("ldr %[p], [%[w]], #4\n\t" "vldmia %[g]!, {s0-s3}\n\t" "vldmia %[p], {s4-s7}\n\t",
                     "ldrd %[p], %[q], [%[w]], #8\n\t" "vldmia %[g]!, {s0-s7}\n\t"
                     "vldmia %[p], {s24-s27}\n\t" "vldmia %[q], {s28-s31}\n\t");
    }
#else
    float *g0 = gi[0] + ic, *g1 = gi[1] + ic, *g2 = gi[2] + ic, *g3 = gi[3] + ic;
    TQ_BLOCK4X4_DECLARE;
    int32_t t;
    TQ_BLOCK4X4_START(g0, g1, g2, g3, first);
    for (t = 0; t < nt; t++, gs += TQ_PW_PIX) {
        const float *w = wp != NULL ? wp[t] : wf + 4 * t;
        TQ_BLOCK4X4_STEP(gs, w[0], w[1], w[2], w[3]);
    }
    TQ_BLOCK4X4_STORE(g0, g1, g2, g3);
#endif
}
#undef TQ_GIN_BLOCK
#undef TQ_GIN_ROWS
#undef TQ_GIN_ROW

#if TQ_USE_MVE_F32
/* tq_pw_gin_4x4 with Helium floating point (tq_f32.h): pixel k's four sums
 * in q(4 + k), the four weights of a t in q0 (and the next t's in q3),
 * each product one VMUL.F32 by the gradient in a core register and one
 * VADD.F32, in the same order as the scalar block. Two t a loop step (an
 * odd nt takes one first): W1 loads one t's weights into q0, W2 two t's
 * into q0 and q3, from w or through the list; so a t costs two LDRD, eight
 * vector instructions and about one load. Returns 0 with the sums stored,
 * or nonzero after a subnormal flush, with nothing stored (the caller runs
 * tq_pw_gin_4x4). */
#define TQ_GIN_HELIUM_T(W)                                                             \
    "ldrd %[g0], %[g1], [%[g]], #8\n\t"                                                \
    "ldrd %[g2], %[g3], [%[g]], #8\n\t"                                                \
    "vmul.f32 q1, " W ", %[g0]\n\t"                                                    \
    "vadd.f32 q4, q4, q1\n\t"                                                          \
    "vmul.f32 q2, " W ", %[g1]\n\t"                                                    \
    "vadd.f32 q5, q5, q2\n\t"                                                          \
    "vmul.f32 q1, " W ", %[g2]\n\t"                                                    \
    "vadd.f32 q6, q6, q1\n\t"                                                          \
    "vmul.f32 q2, " W ", %[g3]\n\t"                                                    \
    "vadd.f32 q7, q7, q2\n\t"
#define TQ_GIN_HELIUM(W1, W2)                                                          \
    __asm__ volatile(                                                                  \
        ".arch_extension mve.fp\n\t"                                                   \
        "cmp %[fl], #0\n\t"                                                            \
        "beq 2f\n\t"                                                                   \
        "vmov.i32 q4, #0\n\t"                                                          \
        "vmov.i32 q5, #0\n\t"                                                          \
        "vmov.i32 q6, #0\n\t"                                                          \
        "vmov.i32 q7, #0\n\t"                                                          \
        "b 1f\n\t"                                                                     \
        "2:\n\t"                                                                       \
        TQ_MVEF_ROWS4("vldrw.32", "gi", "%[ic]")                                       \
        "1:\n\t"                                                                       \
        "tst %[n], #1\n\t"                                                             \
        "beq 5f\n\t"                                                                   \
        W1                                                                             \
        TQ_GIN_HELIUM_T("q0")                                                          \
        "5:\n\t"                                                                       \
        "lsrs %[n], %[n], #1\n\t"                                                      \
        "wls lr, %[n], 8f\n\t"                                                         \
        "3:\n\t"                                                                       \
        W2                                                                             \
        TQ_GIN_HELIUM_T("q0")                                                          \
        TQ_GIN_HELIUM_T("q3")                                                          \
        "le lr, 3b\n\t"                                                                \
        "8:\n\t"                                                                       \
        TQ_MVEF_CHECK("%[fl]")                                                         \
        TQ_MVEF_ROWS4("vstrw.32", "gi", "%[ic]")                                       \
        "9:"                                                                           \
        : [g] "+r"(gs), [w] "+r"(w), [fl] "+r"(flush), [n] "+r"(nt), [g0] "=&r"(g0),     \
          [g1] "=&r"(g1), [g2] "=&r"(g2), [g3] "=&r"(g3), [p] "=&r"(p)                 \
        : [gi] "r"(gi), [ic] "r"(ic_bytes)                                             \
        : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "lr", "cc", "memory")
static int tq_pw_gin_4x4_helium(const float *gs, const float *wf, const float *const *wp, int32_t nt,
                                float *const *gi, int32_t ic, int first)
{
    const int32_t ic_bytes = ic * (int32_t)sizeof(float);
    int32_t flush = first;
    uint32_t g0, g1, g2, g3;
    const float *p;
    if (wp == NULL) {
        const float *w = wf;
        TQ_GIN_HELIUM("vldrw.32 q0, [%[w]], #16\n\t",
                      "vldrw.32 q0, [%[w]], #16\n\t" "vldrw.32 q3, [%[w]], #16\n\t");
    } else {
        const float *const *w = wp;
        TQ_GIN_HELIUM("ldr %[p], [%[w]], #4\n\t" "vldrw.32 q0, [%[p]]\n\t",
                      "ldrd %[p], %[g3], [%[w]], #8\n\t" "vldrw.32 q0, [%[p]]\n\t" "vldrw.32 q3, [%[g3]]\n\t");
    }
    (void)p;
    return flush;
}
#undef TQ_GIN_HELIUM
#undef TQ_GIN_HELIUM_T
#endif

/* One channel of the four pixel rows (the in_c % 4 tail): t's weight is
 * w[t * w_stride], or with a list wp (of tq_pw_gin_compact over wf),
 * w[((wp[t] - wf) / 4) * w_stride]. */
static void tq_pw_gin_4x1(const float *gs, int32_t nt, const int8_t *w, int32_t w_stride,
                          const float *wf, const float *const *wp, float *g0, float *g1, float *g2,
                          float *g3, int first)
{
    float a0 = first ? 0.0f : *g0, a1 = first ? 0.0f : *g1;
    float a2 = first ? 0.0f : *g2, a3 = first ? 0.0f : *g3;
    int32_t t;
    for (t = 0; t < nt; t++, gs += TQ_PW_PIX) {
        const float wv = (float)w[(wp != NULL ? (int32_t)(wp[t] - wf) / 4 : t) * w_stride];
        TQ_MLA_F32(a0, gs[0], wv);
        TQ_MLA_F32(a1, gs[1], wv);
        TQ_MLA_F32(a2, gs[2], wv);
        TQ_MLA_F32(a3, gs[3], wv);
    }
    *g0 = a0;
    *g1 = a1;
    *g2 = a2;
    *g3 = a3;
}

#if TQ_USE_MVE_F32
/* Four t of tq_pw_gin_gather with Helium: for pixel k, gradients
 * g[k][0..3] times w_scale ws[0..3] (one VMUL.F32), the lanes whose mask bit
 * (bit 8k + t of m) is clear set to +0.0f under a VPT predicate, and the
 * four pixels' vectors stored interleaved as gs[4t + k] by VST40..VST43.
 * The flags are the caller's to check. */
static void tq_pw_gin_gather4_helium(float *const *g, const float *ws, uint32_t m, float *gs)
{
    static const uint32_t lane_bits[4] = {1u, 2u, 4u, 8u};
    const uint32_t *tmp = lane_bits; /* then a scratch register */
    uint32_t g0, g1, g2, g3;
    /* pixel k: q<k> <- keep(g<k>[0..3] * ws[0..3]) with its 4 mask bits at
     * bit sh of m (PASS: every bit set, nothing to keep) */
#define TQ_GATHER_PIXEL(k, gk, sh)                                                     \
    "vldrw.32 q" #k ", [%[" gk "]]\n\t"                                                 \
    "vmul.f32 q" #k ", q" #k ", q4\n\t"                                                 \
    "lsr %[tmp], %[m], #" #sh "\n\t"                                                    \
    TQ_MVEF_KEEP4("q" #k, "%[tmp]", "q5", "q6", "q7")
#define TQ_GATHER_PIXEL_PASS(k, gk, sh)                                                \
    "vldrw.32 q" #k ", [%[" gk "]]\n\t"                                                 \
    "vmul.f32 q" #k ", q" #k ", q4\n\t"
#define TQ_GATHER4_HELIUM(SETUP, PIXEL)                                                \
    __asm__ volatile(                                                                  \
        ".arch_extension mve.fp\n\t"                                                   \
        SETUP                                                                          \
        "vldrw.32 q4, [%[ws]]\n\t"                                                     \
        "ldrd %[g0], %[g1], [%[g]]\n\t"                                                \
        "ldrd %[g2], %[g3], [%[g], #8]\n\t"                                            \
        PIXEL(0, "g0", 0)                                                              \
        PIXEL(1, "g1", 8)                                                              \
        PIXEL(2, "g2", 16)                                                             \
        PIXEL(3, "g3", 24)                                                             \
        "vst40.32 {q0, q1, q2, q3}, [%[gs]]\n\t"                                       \
        "vst41.32 {q0, q1, q2, q3}, [%[gs]]\n\t"                                       \
        "vst42.32 {q0, q1, q2, q3}, [%[gs]]\n\t"                                       \
        "vst43.32 {q0, q1, q2, q3}, [%[gs]]"                                           \
        : [tmp] "+r"(tmp), [g0] "=&r"(g0), [g1] "=&r"(g1), [g2] "=&r"(g2), [g3] "=&r"(g3) \
        : [g] "r"(g), [ws] "r"(ws), [gs] "r"(gs), [m] "r"(m)                           \
        : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "p0", "memory") /* p0: the VPR predicate */
    if ((m & 0x0F0F0F0Fu) == 0x0F0F0F0Fu) { /* no lane masked (the usual case with few clamps) */
        TQ_GATHER4_HELIUM("", TQ_GATHER_PIXEL_PASS);
    } else {
        TQ_GATHER4_HELIUM("vldrw.32 q6, [%[tmp]]\n\t" "vmov.i32 q7, #0\n\t", TQ_GATHER_PIXEL);
    }
#undef TQ_GATHER4_HELIUM
#undef TQ_GATHER_PIXEL_PASS
#undef TQ_GATHER_PIXEL
}
#endif

#if !TQ_USE_MVE_F32 && defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
#define TQ_GATHER4_FPU 1
/* Four t of tq_pw_gin_gather on the scalar FPU: one VLDM of each pixel's
 * four gradients and of the four w_scale, then per t four VMUL.F32, each
 * masked lane set to +0.0f by TST + IT + VMOV, or TST + VSEL on FPv5 (mask
 * bit 8k + t of m), and one VSTM of the four pixels' values (about 5 / 4
 * instructions a value, where compiled C spends 8-11); when no lane of the
 * four t is masked, the tests are left out (5 instructions a t). */
#if __ARM_FP & 8 /* FPv5 (a double-precision FPU on these cores): VSEL */
#define TQ_ZERO_IF_EQ(s) "vseleq.f32 " s ", s24, " s "\n\t"
#else
#define TQ_ZERO_IF_EQ(s) "it eq\n\t" "vmoveq.f32 " s ", s24\n\t"
#endif
#define TQ_GATHER4_T(s0, s1, s2, s3, sw, b0, b1, b2, b3)                               \
    "vmul.f32 s20, " s0 ", " sw "\n\t" "vmul.f32 s21, " s1 ", " sw "\n\t"               \
    "vmul.f32 s22, " s2 ", " sw "\n\t" "vmul.f32 s23, " s3 ", " sw "\n\t"               \
    "tst %[m], #" b0 "\n\t" TQ_ZERO_IF_EQ("s20")                                        \
    "tst %[m], #" b1 "\n\t" TQ_ZERO_IF_EQ("s21")                                        \
    "tst %[m], #" b2 "\n\t" TQ_ZERO_IF_EQ("s22")                                        \
    "tst %[m], #" b3 "\n\t" TQ_ZERO_IF_EQ("s23")                                        \
    "vstmia %[gs]!, {s20-s23}\n\t"
/* TQ_GATHER4_T where no lane is masked: four VMUL.F32 and the VSTM. */
#define TQ_GATHER4_TP(s0, s1, s2, s3, sw, b0, b1, b2, b3)                              \
    "vmul.f32 s20, " s0 ", " sw "\n\t" "vmul.f32 s21, " s1 ", " sw "\n\t"               \
    "vmul.f32 s22, " s2 ", " sw "\n\t" "vmul.f32 s23, " s3 ", " sw "\n\t"               \
    "vstmia %[gs]!, {s20-s23}\n\t"
static void tq_pw_gin_gather4_fpu(float *const *g, const float *ws, uint32_t m, float *gs)
{
    uint32_t g0, g1, g2, g3;
#define TQ_GATHER4_FPU_ASM(T)                                                            \
    __asm__ volatile(                                                                    \
        "ldrd %[g0], %[g1], [%[g]]\n\t"                                                  \
        "ldrd %[g2], %[g3], [%[g], #8]\n\t"                                              \
        "vldmia %[g0], {s0-s3}\n\t"                                                      \
        "vldmia %[g1], {s4-s7}\n\t"                                                      \
        "vldmia %[g2], {s8-s11}\n\t"                                                     \
        "vldmia %[g3], {s12-s15}\n\t"                                                    \
        "vldmia %[ws], {s16-s19}\n\t"                                                    \
        "movs %[g0], #0\n\t"                                                             \
        "vmov s24, %[g0]\n\t"                                                            \
        T("s0", "s4", "s8", "s12", "s16", "0x1", "0x100", "0x10000", "0x1000000")        \
        T("s1", "s5", "s9", "s13", "s17", "0x2", "0x200", "0x20000", "0x2000000")        \
        T("s2", "s6", "s10", "s14", "s18", "0x4", "0x400", "0x40000", "0x4000000")       \
        T("s3", "s7", "s11", "s15", "s19", "0x8", "0x800", "0x80000", "0x8000000")       \
        : [gs] "+r"(gs), [g0] "=&r"(g0), [g1] "=&r"(g1), [g2] "=&r"(g2), [g3] "=&r"(g3)   \
        : [g] "r"(g), [ws] "r"(ws), [m] "r"(m)                                           \
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", \
          "s13", "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", \
          "cc", "memory")
    if ((m & 0x0F0F0F0Fu) == 0x0F0F0F0Fu) { /* no lane masked (the usual case with few clamps) */
        TQ_GATHER4_FPU_ASM(TQ_GATHER4_TP);
    } else {
        TQ_GATHER4_FPU_ASM(TQ_GATHER4_T);
    }
#undef TQ_GATHER4_FPU_ASM
}
#undef TQ_GATHER4_TP
#undef TQ_GATHER4_T
#undef TQ_ZERO_IF_EQ
#endif

/* The scaled, masked gradients of output channels oc0 .. oc0 + nt - 1 at
 * the four pixels po[0..3], as gs[4t + k]. A masked gradient is +0.0f
 * (tq_f32_keep of the product); the mask bits of each pixel's channels are
 * read eight at a time. Returns 0 when no t has all four pixels masked
 * (nothing for tq_pw_gin_compact to drop), else 1 (also where it did not
 * look). */
static int tq_pw_gin_gather(const float *grad_out, const uint8_t *mask, const float *w_scale,
                            const int32_t *po, int32_t out_c, int32_t oc0, int32_t nt, float *gs)
{
    const float *ws = w_scale + oc0;
    const int32_t o0 = po[0] * out_c + oc0, o1 = po[1] * out_c + oc0;
    const int32_t o2 = po[2] * out_c + oc0, o3 = po[3] * out_c + oc0;
    const float *g0 = grad_out + o0, *g1 = grad_out + o1, *g2 = grad_out + o2, *g3 = grad_out + o3;
    int32_t t, j;
#if TQ_USE_MVE_F32 || defined(TQ_GATHER4_FPU)
    /* groups of four t in assembly; the last nt % 4 in C. With Helium a
     * flush (FPSCR flags, tq_f32.h) in any product redoes every t in C
     * below. */
    /* with every offset a multiple of 8, the four pixels' mask bytes make one
     * word whose byte k holds pixel k's bits t .. t + 3 after a shift by t & 4
     * (the gathers test bits 8k .. 8k + 3 only) */
    const int bytes = mask != NULL && out_c % 8 == 0 && oc0 % 8 == 0;
    uint32_t word = 0, any = 0xFu; /* bit i: some pixel passes t + i, in every group so far */
    for (t = 0; t + 4 <= nt; t += 4) {
        float *const g[4] = {(float *)g0 + t, (float *)g1 + t, (float *)g2 + t, (float *)g3 + t};
        uint32_t m;
        if (bytes) {
            if ((t & 4) == 0) {
                word = (uint32_t)mask[(o0 + t) >> 3] | (uint32_t)mask[(o1 + t) >> 3] << 8 |
                       (uint32_t)mask[(o2 + t) >> 3] << 16 | (uint32_t)mask[(o3 + t) >> 3] << 24;
            }
            m = word >> (t & 4);
        } else {
            m = tq_mask_bits(mask, o0 + t, 4) | tq_mask_bits(mask, o1 + t, 4) << 8 |
                tq_mask_bits(mask, o2 + t, 4) << 16 | tq_mask_bits(mask, o3 + t, 4) << 24;
        }
        any &= m | m >> 8 | m >> 16 | m >> 24;
#if TQ_USE_MVE_F32
        tq_pw_gin_gather4_helium(g, ws + t, m, gs + TQ_PW_PIX * t);
#else
        tq_pw_gin_gather4_fpu(g, ws + t, m, gs + TQ_PW_PIX * t);
#endif
    }
    if (!tq_fpscr_flushed()) {
        gs += TQ_PW_PIX * (nt & ~3);
        for (t = nt & ~3; t < nt; t++, gs += TQ_PW_PIX) {
            const float w = ws[t];
            const int p0 = tq_mask_pass(mask, o0 + t), p1 = tq_mask_pass(mask, o1 + t);
            const int p2 = tq_mask_pass(mask, o2 + t), p3 = tq_mask_pass(mask, o3 + t);
            gs[0] = p0 ? g0[t] * w : 0.0f;
            gs[1] = p1 ? g1[t] * w : 0.0f;
            gs[2] = p2 ? g2[t] * w : 0.0f;
            gs[3] = p3 ? g3[t] * w : 0.0f;
            any &= (p0 | p1 | p2 | p3) ? 0xFu : 0u;
        }
        return mask != NULL && (any & 0xFu) != 0xFu;
    }
#endif
    if (mask == NULL) {
        for (t = 0; t < nt; t++, gs += TQ_PW_PIX) {
            const float w = ws[t];
            gs[0] = g0[t] * w;
            gs[1] = g1[t] * w;
            gs[2] = g2[t] * w;
            gs[3] = g3[t] * w;
        }
        return 0;
    }
    for (t = 0; t < nt; t += 8) {
        const int32_t n = tq_min_i32(nt - t, 8);
        uint32_t m0 = tq_mask_bits(mask, o0 + t, n), m1 = tq_mask_bits(mask, o1 + t, n);
        uint32_t m2 = tq_mask_bits(mask, o2 + t, n), m3 = tq_mask_bits(mask, o3 + t, n);
        for (j = t; j < t + n; j++, gs += TQ_PW_PIX) {
            const float w = ws[j];
            gs[0] = tq_f32_keep(g0[j] * w, m0 & 1u);
            gs[1] = tq_f32_keep(g1[j] * w, m1 & 1u);
            gs[2] = tq_f32_keep(g2[j] * w, m2 & 1u);
            gs[3] = tq_f32_keep(g3[j] * w, m3 & 1u);
            m0 >>= 1;
            m1 >>= 1;
            m2 >>= 1;
            m3 >>= 1;
        }
    }
    return 1;
}

/* Drops from a gathered block gs (nt t of four values) every t whose four
 * values are all +0.0f (bits 0: mostly clamp-masked gradients), moving the
 * others down in order, and lists where their weights will be:
 * wp[j] = wf + 4 t_j (nt >= 1). Returns the count. Exact: such a t adds products
 * +0.0f * w = +-0.0f, and a sum that starts at +0.0f is never -0.0f, so
 * they change no sum (tq_conv_blocked.h). */
static int32_t tq_pw_gin_compact(float *gs, int32_t nt, const float *wf, const float **wp)
{
#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE) && defined(__OPTIMIZE__)
    /* one loop: LDM of a t's four words, three ORR, STM and STR of the kept
     * ones (10 instructions a kept t, 8 a dropped one; compiled C spent 21
     * and 10). Not at -O0, where GCC cannot give the operands registers
     * beside r0-r3. */
    const float **l = wp;
    float *d = gs;
    __asm__ volatile("1:\n\t"
                     "ldmia %[s]!, {r0-r3}\n\t"
                     "orr r12, r0, r1\n\t"
                     "orr r12, r12, r2\n\t"
                     "orrs r12, r12, r3\n\t"
                     "beq 2f\n\t"
                     "stmia %[d]!, {r0-r3}\n\t"
                     "str %[w], [%[l]], #4\n\t"
                     "2:\n\t"
                     "add %[w], %[w], #16\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b"
                     : [s] "+r"(gs), [d] "+r"(d), [w] "+r"(wf), [l] "+r"(l), [n] "+r"(nt)
                     :
                     : "r0", "r1", "r2", "r3", "r12", "cc", "memory");
    return (int32_t)(l - wp);
#else
    uint32_t v[TQ_PW_PIX];
    int32_t t, j = 0;
    for (t = 0; t < nt; t++, wf += 4) {
        memcpy(v, gs + TQ_PW_PIX * t, sizeof v);
        if ((v[0] | v[1] | v[2] | v[3]) != 0u) {
            memcpy(gs + TQ_PW_PIX * j, v, sizeof v);
            wp[j++] = wf;
        }
    }
    return j;
#endif
}

void tq_pw_backward_input_blocked(const tq_conv_params *p, const float *w_scale,
                                  const tq_dims *out_d, const float *grad_out,
                                  const uint8_t *mask, const int8_t *filter,
                                  const tq_dims *in_d, float *grad_in, int accumulate)
{
    const int32_t out_c = out_d->c, in_c = in_d->c;
    const int32_t pixels = out_d->n * out_d->h * out_d->w;
    /* a super-block of sub pixel blocks shares each converted weight tile */
    const int32_t sub = tq_min_i32(TQ_PW_GS / (TQ_PW_PIX * tq_min_i32(out_c, TQ_PW_OCT)), TQ_PW_SUB);
    float gs[TQ_PW_GS];
    float wf[TQ_PW_OCT * 4];
    /* with a mask, each block's t with all four gradients masked are dropped
     * (tq_pw_gin_compact): block b keeps nk[b] t, their weights at
     * wp[b * nt ..] where nk[b] < nt */
    const float *wp[TQ_PW_GS / TQ_PW_PIX];
    int32_t nk[TQ_PW_SUB];
    int32_t s0;
    if (!accumulate &&
        (p->stride_h != 1 || p->stride_w != 1 || out_d->h != in_d->h || out_d->w != in_d->w)) {
        memset(grad_in, 0, (size_t)tq_dims_count(in_d) * sizeof(float));
    }
    for (s0 = 0; s0 < pixels; s0 += sub * TQ_PW_PIX) {
        const int32_t nb = tq_min_i32((pixels - s0 + TQ_PW_PIX - 1) / TQ_PW_PIX, sub);
        int32_t po[TQ_PW_SUB][TQ_PW_PIX];
        float *gi[TQ_PW_SUB][TQ_PW_PIX];
        int32_t b, k, oc0;
        for (b = 0; b < nb; b++) {
            /* a short last block repeats its last pixel */
            const int32_t p0 = s0 + b * TQ_PW_PIX;
            const int32_t last = tq_min_i32(pixels - p0, TQ_PW_PIX) - 1;
            for (k = 0; k < TQ_PW_PIX; k++) {
                po[b][k] = p0 + tq_min_i32(k, last);
                gi[b][k] = grad_in + tq_pw_in_pixel(p, out_d, in_d, po[b][k]) * (size_t)in_c;
            }
        }
        for (oc0 = 0; oc0 < out_c; oc0 += TQ_PW_OCT) {
            const int32_t nt = tq_min_i32(out_c - oc0, TQ_PW_OCT);
            const int8_t *w = filter + (size_t)oc0 * in_c;
            const int first = oc0 == 0 && !accumulate;
            int32_t ic;
            for (b = 0; b < nb; b++) {
                float *gb = gs + b * nt * TQ_PW_PIX;
                nk[b] = tq_pw_gin_gather(grad_out, mask, w_scale, po[b], out_c, oc0, nt, gb)
                            ? tq_pw_gin_compact(gb, nt, wf, wp + b * nt)
                            : nt;
            }
            for (ic = 0; ic + 4 <= in_c; ic += 4) {
                tq_f32_from_s8x4(w + ic, in_c, nt, wf);
                for (b = 0; b < nb; b++) {
                    const float *gb = gs + b * nt * TQ_PW_PIX;
                    /* a block that kept every t runs without the list */
                    const float *const *wb = nk[b] < nt ? wp + b * nt : NULL;
                    if (nk[b] == 0) { /* every t dropped: the sums stay (or start at +0.0f) */
                        if (first) {
                            for (k = 0; k < TQ_PW_PIX; k++) {
                                memset(gi[b][k] + ic, 0, 4 * sizeof(float));
                            }
                        }
                        continue;
                    }
#if TQ_USE_MVE_F32
                    if (!tq_pw_gin_4x4_helium(gb, wf, wb, nk[b], gi[b], ic, first)) {
                        continue;
                    }
#endif
                    tq_pw_gin_4x4(gb, wf, wb, nk[b], gi[b], ic, first);
                }
            }
            for (; ic < in_c; ic++) {
                for (b = 0; b < nb; b++) {
                    tq_pw_gin_4x1(gs + b * nt * TQ_PW_PIX, nk[b], w + ic, in_c, wf,
                                  nk[b] < nt ? wp + b * nt : NULL, gi[b][0] + ic, gi[b][1] + ic,
                                  gi[b][2] + ic, gi[b][3] + ic, first);
                }
            }
        }
    }
}

/* ---- weight-gradient rows --------------------------------------------------- */

#if defined(__ARM_FP) && (__ARM_FP & 4) && defined(__ARM_FEATURE_DSP) && !defined(TQ_FORCE_PORTABLE)
#define TQ_WROW_ASM 1
#define TQ_WROW_SCALES 1 /* the loops apply the input scale on the last tile */
/* Row r's sums of saved channels from j on <-> the registers regs:
 * xt = rp[r] + j floats, then VLDM / VSTM. */
#define TQ_WROW_ROW(op, r, regs)                                                       \
    "ldr %[xt], [%[rp], #" #r "*4]\n\t"                                                \
    "add %[xt], %[xt], %[j], lsl #2\n\t"                                               \
    op " %[xt], {" regs "}\n\t"
/* channels j, j + 1: row r in s(16 + 2r), s(17 + 2r) */
#define TQ_WROW_ROWS(op)                                                               \
    TQ_WROW_ROW(op, 0, "s16-s17") TQ_WROW_ROW(op, 1, "s18-s19")                        \
    TQ_WROW_ROW(op, 2, "s20-s21") TQ_WROW_ROW(op, 3, "s22-s23")                        \
    TQ_WROW_ROW(op, 4, "s24-s25") TQ_WROW_ROW(op, 5, "s26-s27")                        \
    TQ_WROW_ROW(op, 6, "s28-s29") TQ_WROW_ROW(op, 7, "s30-s31")
/* channel j alone: row r in s(16 + r) */
#define TQ_WROW_ROWS1(op)                                                              \
    TQ_WROW_ROW(op, 0, "s16") TQ_WROW_ROW(op, 1, "s17") TQ_WROW_ROW(op, 2, "s18")      \
    TQ_WROW_ROW(op, 3, "s19") TQ_WROW_ROW(op, 4, "s20") TQ_WROW_ROW(op, 5, "s21")      \
    TQ_WROW_ROW(op, 6, "s22") TQ_WROW_ROW(op, 7, "s23")
/* One pixel's 16 terms: the eight gradients at g (VLDM, g advances) times
 * the two converted inputs in sa, sb. */
#define TQ_WROW_MLA(sa, sb)                                                            \
    "vldmia %[g]!, {s0-s7}\n\t"                                                        \
    "vmla.f32 s16, s0, " sa "\n\t" "vmla.f32 s17, s0, " sb "\n\t"                      \
    "vmla.f32 s18, s1, " sa "\n\t" "vmla.f32 s19, s1, " sb "\n\t"                      \
    "vmla.f32 s20, s2, " sa "\n\t" "vmla.f32 s21, s2, " sb "\n\t"                      \
    "vmla.f32 s22, s3, " sa "\n\t" "vmla.f32 s23, s3, " sb "\n\t"                      \
    "vmla.f32 s24, s4, " sa "\n\t" "vmla.f32 s25, s4, " sb "\n\t"                      \
    "vmla.f32 s26, s5, " sa "\n\t" "vmla.f32 s27, s5, " sb "\n\t"                      \
    "vmla.f32 s28, s6, " sa "\n\t" "vmla.f32 s29, s6, " sb "\n\t"                      \
    "vmla.f32 s30, s7, " sa "\n\t" "vmla.f32 s31, s7, " sb "\n\t"
/* A first pass (flags bit 0) sets s16-s23 to +0.0f through xt and goes on
 * (the caller zeroes any other sums and branches past the loads); any
 * other pass jumps to label 1, the loads of the stored sums. */
#define TQ_WROW_ZERO_S16_S23                                                           \
    "tst %[flags], #1\n\t"                                                             \
    "beq 1f\n\t"                                                                       \
    "movs %[xt], #0\n\t"                                                               \
    "vmov s16, s17, %[xt], %[xt]\n\t"                                                  \
    "vmov s18, s19, %[xt], %[xt]\n\t"                                                  \
    "vmov s20, s21, %[xt], %[xt]\n\t"                                                  \
    "vmov s22, s23, %[xt], %[xt]\n\t"
/* Eight sums times the scale in register sc (one VMUL.F32 each). */
#define TQ_WROW_SCALE(sc, a, b, c, d, e, f, g, h)                                      \
    "vmul.f32 " a ", " a ", " sc "\n\t" "vmul.f32 " b ", " b ", " sc "\n\t"               \
    "vmul.f32 " c ", " c ", " sc "\n\t" "vmul.f32 " d ", " d ", " sc "\n\t"               \
    "vmul.f32 " e ", " e ", " sc "\n\t" "vmul.f32 " f ", " f ", " sc "\n\t"               \
    "vmul.f32 " g ", " g ", " sc "\n\t" "vmul.f32 " h ", " h ", " sc "\n\t"
/* The 8 x 2 loops' start: sums from +0.0f (flags bit 0) or from rows
 * rp[0..7] at channel j, in s16-s31; the loop follows at label 2. */
#define TQ_WROW8X2_START                                                               \
    TQ_WROW_ZERO_S16_S23                                                               \
    "vmov s24, s25, %[xt], %[xt]\n\t"                                                   \
    "vmov s26, s27, %[xt], %[xt]\n\t"                                                   \
    "vmov s28, s29, %[xt], %[xt]\n\t"                                                   \
    "vmov s30, s31, %[xt], %[xt]\n\t"                                                   \
    "b 2f\n\t"                                                                          \
    "1:\n\t"                                                                            \
    TQ_WROW_ROWS("vldmia")                                                             \
    "2:\n\t"
/* The 8 x 2 loops' end: the sums times the scale in register SC (LOAD_SC
 * puts it there) where flags bit 1 asks, then stored to the rows; local
 * label L skips the scaling. */
#define TQ_WROW8X2_END(LOAD_SC, SC, L)                                                 \
    "tst %[flags], #2\n\t"                                                              \
    "beq " L "f\n\t"                                                                    \
    LOAD_SC                                                                            \
    TQ_WROW_SCALE(SC, "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23")          \
    TQ_WROW_SCALE(SC, "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31")          \
    L ":\n\t"                                                                           \
    TQ_WROW_ROWS("vstmia")
/* The 8 x 1 loops' start (sums in s16-s23) and end: times the scale
 * operand sc (flags bit 1), stored to the rows. */
#define TQ_WROW8X1_START                                                               \
    TQ_WROW_ZERO_S16_S23                                                               \
    "b 2f\n\t"                                                                          \
    "1:\n\t"                                                                            \
    TQ_WROW_ROWS1("vldmia")                                                            \
    "2:\n\t"
#define TQ_WROW8X1_END                                                                 \
    "tst %[flags], #2\n\t"                                                              \
    "beq 3f\n\t"                                                                        \
    TQ_WROW_SCALE("%[sc]", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23")     \
    "3:\n\t"                                                                            \
    TQ_WROW_ROWS1("vstmia")
/* One pixel of a single channel: its eight gradients s0-s7 times the input in s8. */
#define TQ_WROW_MLA1                                                                   \
    "vmla.f32 s16, s0, s8\n\t" "vmla.f32 s17, s1, s8\n\t"                               \
    "vmla.f32 s18, s2, s8\n\t" "vmla.f32 s19, s3, s8\n\t"                               \
    "vmla.f32 s20, s4, s8\n\t" "vmla.f32 s21, s5, s8\n\t"                               \
    "vmla.f32 s22, s6, s8\n\t" "vmla.f32 s23, s7, s8\n\t"
/* Saved channels j, j + 1 of the eight rows rp[0..7]: from 0 (flags bit 0)
 * or their stored partial sums, add gt[8t + r] * (xp[t][j + i] + off) for
 * t < npx (npx >= 1), in order of t, then (flags bit 1) multiply by scale.
 * One assembly loop: the 16 sums stay in s16-s31; two pixels per iteration
 * are one LDRD of their input pointers, two LDRH of their saved int8 pairs
 * (SXTAB adds the offset, VMOV moves two, VCVT), two VLDM of eight
 * gradients and 32 VMLA.F32: 49 instructions per 32 terms. With an odd
 * n_sel the LDRH is unaligned, which Cortex-M4/M7/M55 allow unless
 * CCR.UNALIGN_TRP is set (the DSP forward kernels' word reads make the same
 * assumption). */
static void tq_wrow_8x2(const float *gt, const int8_t *const *xp, int32_t npx, int32_t j,
                        int32_t off, float *const *rp, int flags, float scale)
{
    int32_t x0, x1, xt;
    __asm__ volatile(
        TQ_WROW8X2_START
        "subs %[n], %[n], #2\n\t"
        "blt 4f\n\t"
        "3:\n\t"
        "ldrd %[x0], %[xt], [%[xp]], #8\n\t"
        "ldrh %[x0], [%[x0], %[j]]\n\t"
        "ldrh %[xt], [%[xt], %[j]]\n\t"
        "sxtab %[x1], %[off], %[x0]\n\t"
        "sxtab %[x0], %[off], %[x0], ror #8\n\t"
        "vmov s8, s9, %[x1], %[x0]\n\t"
        "sxtab %[x1], %[off], %[xt]\n\t"
        "sxtab %[xt], %[off], %[xt], ror #8\n\t"
        "vmov s10, s11, %[x1], %[xt]\n\t"
        "vcvt.f32.s32 s8, s8\n\t"
        "vcvt.f32.s32 s9, s9\n\t"
        "vcvt.f32.s32 s10, s10\n\t"
        "vcvt.f32.s32 s11, s11\n\t"
        TQ_WROW_MLA("s8", "s9")
        TQ_WROW_MLA("s10", "s11")
        "subs %[n], %[n], #2\n\t"
        "bge 3b\n\t"
        "4:\n\t"
        "adds %[n], %[n], #2\n\t"
        "beq 5f\n\t"
        "ldr %[xt], [%[xp]], #4\n\t"
        "ldrh %[xt], [%[xt], %[j]]\n\t"
        "sxtab %[x0], %[off], %[xt]\n\t"
        "sxtab %[x1], %[off], %[xt], ror #8\n\t"
        "vmov s8, s9, %[x0], %[x1]\n\t"
        "vcvt.f32.s32 s8, s8\n\t"
        "vcvt.f32.s32 s9, s9\n\t"
        TQ_WROW_MLA("s8", "s9")
        "5:\n\t"
        TQ_WROW8X2_END("", "%[sc]", "6")
        : [g] "+r"(gt), [xp] "+r"(xp), [n] "+r"(npx), [x0] "=&r"(x0), [x1] "=&r"(x1), [xt] "=&r"(xt)
        : [off] "r"(off), [j] "r"(j), [rp] "r"(rp), [flags] "r"(flags), [sc] "t"(scale)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s16", "s17",
          "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30",
          "s31", "cc", "memory");
}

/* Saved channel j of the eight rows rp[0..7] (an odd n_sel's last one):
 * from 0 (flags bit 0) or the stored partial sums, add gt[8t + r] *
 * (xp[t][j] + off) for t < npx (npx >= 1), in order of t, then (flags bit
 * 1) multiply by scale. Per pixel: LDR, LDRSB, ADD, VMOV, VCVT, one VLDM
 * of the eight gradients, 8 VMLA.F32. */
static void tq_wrow_8x1(const float *gt, const int8_t *const *xp, int32_t npx, int32_t j,
                        int32_t off, float *const *rp, int flags, float scale)
{
    int32_t xt;
    __asm__ volatile(
        TQ_WROW8X1_START
        "ldr %[xt], [%[xp]], #4\n\t"
        "ldrsb %[xt], [%[xt], %[j]]\n\t"
        "add %[xt], %[xt], %[off]\n\t"
        "vmov s8, %[xt]\n\t"
        "vcvt.f32.s32 s8, s8\n\t"
        "vldmia %[g]!, {s0-s7}\n\t"
        TQ_WROW_MLA1
        "subs %[n], %[n], #1\n\t"
        "bne 2b\n\t"
        TQ_WROW8X1_END
        : [g] "+r"(gt), [xp] "+r"(xp), [n] "+r"(npx), [xt] "=&r"(xt)
        : [off] "r"(off), [j] "r"(j), [rp] "r"(rp), [flags] "r"(flags), [sc] "t"(scale)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s16", "s17", "s18", "s19",
          "s20", "s21", "s22", "s23", "cc", "memory");
}

/* tq_wrow_8x2 on inputs already in fp32: x[2t + i] is pixel t's channel
 * j + i plus the offset (a pair group of tq_pw_convert_inputs). Four pixels
 * per iteration are one VLDM of their eight inputs, four VLDM of eight
 * gradients and 64 VMLA.F32: 71 instructions per 64 terms, where
 * converting the int8 inputs took 49 per 32. The scale is read from *scp
 * (s8-s15 hold the inputs, so no S register is left for an operand). */
static void tq_wrow_8x2f(const float *gt, const float *x, int32_t npx, int32_t j, float *const *rp,
                         int flags, const float *scp)
{
    int32_t xt;
    __asm__ volatile(
        TQ_WROW8X2_START
        "subs %[n], %[n], #4\n\t"
        "blt 4f\n\t"
        "3:\n\t"
        "vldmia %[x]!, {s8-s15}\n\t"
        TQ_WROW_MLA("s8", "s9")
        TQ_WROW_MLA("s10", "s11")
        TQ_WROW_MLA("s12", "s13")
        TQ_WROW_MLA("s14", "s15")
        "subs %[n], %[n], #4\n\t"
        "bge 3b\n\t"
        "4:\n\t" /* n = left - 4: its bits 1 and 0 are those of left */
        "tst %[n], #2\n\t"
        "beq 5f\n\t"
        "vldmia %[x]!, {s8-s11}\n\t"
        TQ_WROW_MLA("s8", "s9")
        TQ_WROW_MLA("s10", "s11")
        "5:\n\t"
        "tst %[n], #1\n\t"
        "beq 6f\n\t"
        "vldmia %[x]!, {s8-s9}\n\t"
        TQ_WROW_MLA("s8", "s9")
        "6:\n\t"
        TQ_WROW8X2_END("vldr s8, [%[scp]]\n\t", "s8", "7")
        : [g] "+r"(gt), [x] "+r"(x), [n] "+r"(npx), [xt] "=&r"(xt)
        : [j] "r"(j), [rp] "r"(rp), [flags] "r"(flags), [scp] "r"(scp)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13",
          "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26",
          "s27", "s28", "s29", "s30", "s31", "cc", "memory");
}

/* tq_wrow_8x1 on inputs already in fp32, x[t] (an odd n_sel's last
 * channel, a group of one): per pixel one VLDM of the input, one of the
 * eight gradients and 8 VMLA.F32. */
static void tq_wrow_8x1f(const float *gt, const float *x, int32_t npx, int32_t j, float *const *rp,
                         int flags, float scale)
{
    int32_t xt;
    __asm__ volatile(
        TQ_WROW8X1_START
        "vldmia %[x]!, {s8}\n\t"
        "vldmia %[g]!, {s0-s7}\n\t"
        TQ_WROW_MLA1
        "subs %[n], %[n], #1\n\t"
        "bne 2b\n\t"
        TQ_WROW8X1_END
        : [g] "+r"(gt), [x] "+r"(x), [n] "+r"(npx), [xt] "=&r"(xt)
        : [j] "r"(j), [rp] "r"(rp), [flags] "r"(flags), [sc] "t"(scale)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s16", "s17", "s18", "s19",
          "s20", "s21", "s22", "s23", "cc", "memory");
}
#else
#define TQ_WROW_SCALES 0
#endif

#if !defined(TQ_WROW_ASM) || TQ_USE_MVE_F32
/* Saved channels [j, j + 4) of rows r0..r3, whose gradients are gt[8t + k]
 * (k < 4): from 0 (first) or their stored partial sums, add
 * gt[8t + k] * (xp[t][j + i] + off) for t < npx. */
static void tq_wrow_4x4(const float *gt, const int8_t *const *xp, int32_t npx, int32_t j,
                        int32_t off, float *r0, float *r1, float *r2, float *r3, int first)
{
    TQ_BLOCK4X4_DECLARE;
    int32_t t;
    TQ_BLOCK4X4_START(r0, r1, r2, r3, first);
    for (t = 0; t < npx; t++, gt += TQ_PW_ROWS) {
        const int8_t *x = xp[t] + j;
        const float x0 = (float)(x[0] + off), x1 = (float)(x[1] + off);
        const float x2 = (float)(x[2] + off), x3 = (float)(x[3] + off);
        TQ_BLOCK4X4_STEP(gt, x0, x1, x2, x3);
    }
    TQ_BLOCK4X4_STORE(r0, r1, r2, r3);
}
#endif

#if TQ_USE_MVE_F32
/* The 4 x 4 Helium row blocks' start: a low-overhead loop of n pixels,
 * sums from +0.0f (flags bit 0) or the rows rp[0..3] at channel j in
 * q4-q7; the loop body at label 3. */
#define TQ_WROW_H4_START                                                               \
    "dls lr, %[n]\n\t"                                                                  \
    "tst %[fl], #1\n\t"                                                                 \
    "beq 2f\n\t"                                                                        \
    "vmov.i32 q4, #0\n\t"                                                               \
    "vmov.i32 q5, #0\n\t"                                                               \
    "vmov.i32 q6, #0\n\t"                                                               \
    "vmov.i32 q7, #0\n\t"                                                               \
    "b 3f\n\t"                                                                          \
    "2:\n\t"                                                                            \
    TQ_MVEF_ROWS4("vldrw.32", "rp", "%[j], lsl #2")                                    \
    "3:\n\t"
/* One pixel's 16 terms: its four inputs q0 times the rows' gradients g0..g3
 * (a VMUL.F32 and a VADD.F32 per row). */
#define TQ_WROW_H4_TERMS                                                               \
    "vmul.f32 q1, q0, %[g0]\n\t"                                                        \
    "vadd.f32 q4, q4, q1\n\t"                                                           \
    "vmul.f32 q3, q0, %[g1]\n\t"                                                        \
    "vadd.f32 q5, q5, q3\n\t"                                                           \
    "vmul.f32 q1, q0, %[g2]\n\t"                                                        \
    "vadd.f32 q6, q6, q1\n\t"                                                           \
    "vmul.f32 q3, q0, %[g3]\n\t"                                                        \
    "vadd.f32 q7, q7, q3\n\t"
/* The end: loop back, times the scale sc (flags bit 1), the flush check
 * and (no flush) the stores; label 9 after them. */
#define TQ_WROW_H4_END                                                                 \
    "le lr, 3b\n\t"                                                                     \
    "tst %[fl], #2\n\t"                                                                 \
    "beq 4f\n\t"                                                                        \
    "ldr %[g0], %[sc]\n\t"                                                              \
    "vmul.f32 q4, q4, %[g0]\n\t"                                                        \
    "vmul.f32 q5, q5, %[g0]\n\t"                                                        \
    "vmul.f32 q6, q6, %[g0]\n\t"                                                        \
    "vmul.f32 q7, q7, %[g0]\n\t"                                                        \
    "4:\n\t"                                                                            \
    TQ_MVEF_CHECK("%[fl]")                                                             \
    TQ_MVEF_ROWS4("vstrw.32", "rp", "%[j], lsl #2")                                    \
    "9:"
/* tq_wrow_4x4 with Helium floating point (tq_f32.h): rows rp[0..3], saved
 * channels [j, j + 4); row k's four sums in q(4 + k). Per pixel one
 * VLDRB.S32 of the four inputs, VADD of the offset and VCVT (exact), two
 * LDRD of the four gradients and a VMUL.F32 + VADD.F32 per row: the scalar
 * block's terms in its order. flags as tq_wrow_8x2's (bit 0: start from 0,
 * bit 1: multiply by scale at the end). Returns 0 with the sums stored, or
 * nonzero after a subnormal flush, with nothing stored (the caller runs
 * tq_wrow_4x4 and the scaling). */
static int tq_wrow_4x4_helium(const float *gt, const int8_t *const *xp, int32_t npx, int32_t j,
                              int32_t off, float *const *rp, int flags, float scale)
{
    int32_t flush = flags, n = npx;
    uint32_t g0 = (uint32_t)off, g1, g2, g3;
    __asm__ volatile(
        ".arch_extension mve.fp\n\t"
        "vdup.32 q2, %[g0]\n\t"
        TQ_WROW_H4_START
        "ldr %[n], [%[xp]], #4\n\t"
        "add %[n], %[n], %[j]\n\t"
        "vldrb.s32 q0, [%[n]]\n\t"
        "vadd.i32 q0, q0, q2\n\t"
        "vcvt.f32.s32 q0, q0\n\t"
        "ldrd %[g0], %[g1], [%[gt]], #8\n\t"
        "ldrd %[g2], %[g3], [%[gt]], #24\n\t"
        TQ_WROW_H4_TERMS
        TQ_WROW_H4_END
        : [gt] "+r"(gt), [xp] "+r"(xp), [n] "+l"(n) /* VLDRB.S32: a low register */, [fl] "+r"(flush),
          [g0] "+r"(g0), [g1] "=&r"(g1), [g2] "=&r"(g2), [g3] "=&r"(g3)
        : [j] "r"(j), [rp] "r"(rp), [sc] "m"(scale)
        : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "lr", "cc", "memory");
    return flush;
}

/* tq_wrow_4x4_helium on inputs already in fp32: x[4t + i] is pixel t's
 * channel j + i plus the offset (a group of four of tq_pw_convert_inputs).
 * Per pixel one VLDRW of the four inputs, two LDRD of the four gradients
 * and a VMUL.F32 + VADD.F32 per row (11 instructions, 15 from int8). Same
 * flags and return. */
static int tq_wrow_4x4f_helium(const float *gt, const float *x, int32_t npx, int32_t j,
                               float *const *rp, int flags, float scale)
{
    int32_t flush = flags, n = npx;
    uint32_t g0, g1, g2, g3;
    __asm__ volatile(
        ".arch_extension mve.fp\n\t"
        TQ_WROW_H4_START
        "vldrw.32 q0, [%[x]], #16\n\t"
        "ldrd %[g0], %[g1], [%[gt]], #8\n\t"
        "ldrd %[g2], %[g3], [%[gt]], #24\n\t"
        TQ_WROW_H4_TERMS
        TQ_WROW_H4_END
        : [gt] "+r"(gt), [x] "+r"(x), [n] "+r"(n), [fl] "+r"(flush), [g0] "=&r"(g0), [g1] "=&r"(g1),
          [g2] "=&r"(g2), [g3] "=&r"(g3)
        : [j] "r"(j), [rp] "r"(rp), [sc] "m"(scale)
        : "q0", "q1", "q3", "q4", "q5", "q6", "q7", "lr", "cc", "memory");
    return flush;
}
#endif


#ifndef TQ_WROW_ASM
/* Saved channel j of the eight rows rp[0..7] (the tail the blocks leave). */
static void tq_wrow_8x1(const float *gt, const int8_t *const *xp, int32_t npx, int32_t j,
                        int32_t off, float *const *rp, int first)
{
    float a[TQ_PW_ROWS];
    int32_t r, t;
    for (r = 0; r < TQ_PW_ROWS; r++) {
        a[r] = first ? 0.0f : rp[r][j];
    }
    for (t = 0; t < npx; t++, gt += TQ_PW_ROWS) {
        const float xv = (float)(xp[t][j] + off);
        for (r = 0; r < TQ_PW_ROWS; r++) {
            TQ_MLA_F32(a[r], gt[r], xv);
        }
    }
    for (r = 0; r < TQ_PW_ROWS; r++) {
        rp[r][j] = a[r];
    }
}
#endif

#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
#define TQ_ROWS_GATHER8_ASM 1
/* The next two mask bits of the byte shifted up in t (LSLS by sh: N <- the
 * lower bit, C <- the higher): the gradients a (lower) and b whose bit is
 * clear become +0.0f (s24). */
#define TQ_GATHER_PAIR(sh, a, b)                                                       \
    "lsls %[t], %[t], #" sh "\n\t"                                                     \
    "it pl\n\t"                                                                        \
    "vmovpl.f32 " a ", s24\n\t"                                                        \
    "it cc\n\t"                                                                        \
    "vmovcc.f32 " b ", s24\n\t"
/* The 8 sums of one pixel's gradients s16-s23 into s0-s7. */
#define TQ_GATHER_SUMS                                                                 \
    "vadd.f32 s0, s0, s16\n\t"                                                          \
    "vadd.f32 s1, s1, s17\n\t"                                                          \
    "vadd.f32 s2, s2, s18\n\t"                                                          \
    "vadd.f32 s3, s3, s19\n\t"                                                          \
    "vadd.f32 s4, s4, s20\n\t"                                                          \
    "vadd.f32 s5, s5, s21\n\t"                                                          \
    "vadd.f32 s6, s6, s22\n\t"                                                          \
    "vadd.f32 s7, s7, s23\n\t"
/* For t < n (n >= 1): gt[8t + r] = g[8 * m_step * t + r] (pixels of
 * 8 * m_step channels) where bit r of the mask byte m[t * m_step] is set,
 * else +0.0f (tq_f32_keep's value), and s[r] += gt[8t + r], in order of t;
 * without m (NULL) every bit is set and the pixels are g_step bytes apart.
 * Per pixel one LDRB, one VLDM, per pair of bits one LSLS and two
 * conditional VMOV, one VSTM and 8 VADD.F32 (35 instructions, where the C
 * loop spent about 60). */
static void tq_rows_gather8(const float *g, int32_t g_step, const uint8_t *m, int32_t m_step, int32_t n,
                            float *gt, float *s)
{
    uint32_t t = 0;
    if (m == NULL) {
        __asm__ volatile(
            "vldmia %[s], {s0-s7}\n\t"
            "1:\n\t"
            "vldmia %[g], {s16-s23}\n\t"
            "add %[g], %[g], %[gs]\n\t"
            "vstmia %[gt]!, {s16-s23}\n\t"
            TQ_GATHER_SUMS
            "subs %[n], %[n], #1\n\t"
            "bne 1b\n\t"
            "vstmia %[s], {s0-s7}"
            : [g] "+r"(g), [n] "+r"(n), [gt] "+r"(gt)
            : [gs] "r"(g_step), [s] "r"(s)
            : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s16", "s17", "s18", "s19", "s20", "s21",
              "s22", "s23", "cc", "memory");
        return;
    }
    __asm__ volatile(
        "vldmia %[s], {s0-s7}\n\t"
        "vmov s24, %[t]\n\t"
        "1:\n\t"
        "ldrb %[t], [%[m]]\n\t"
        "add %[m], %[m], %[ms]\n\t"
        "vldmia %[g], {s16-s23}\n\t"
        "add %[g], %[g], %[ms], lsl #5\n\t"
        TQ_GATHER_PAIR("25", "s22", "s23")
        TQ_GATHER_PAIR("2", "s20", "s21")
        TQ_GATHER_PAIR("2", "s18", "s19")
        TQ_GATHER_PAIR("2", "s16", "s17")
        "vstmia %[gt]!, {s16-s23}\n\t"
        TQ_GATHER_SUMS
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "vstmia %[s], {s0-s7}"
        : [g] "+r"(g), [m] "+r"(m), [n] "+r"(n), [gt] "+r"(gt), [t] "+r"(t)
        : [ms] "r"(m_step), [s] "r"(s)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s16", "s17", "s18", "s19", "s20", "s21",
          "s22", "s23", "s24", "cc", "memory");
}
#undef TQ_GATHER_SUMS
#undef TQ_GATHER_PAIR
#endif

/* Output pixels q0 .. q0 + npx - 1's gradients of the TQ_PW_ROWS rows
 * (mask ? g : +0.0f; fewer channels repeat the last) into gt[8t + r],
 * summed into gb[r] in pixel order. When the eight rows are eight channels
 * whose mask bits share a byte, each pixel is one mask byte, eight integer
 * ANDs (bit r clear turns g into +0.0f) and the sums stay in registers. */
static void tq_rows_gather(const float *grad_out, const uint8_t *mask, int32_t q0, int32_t npx,
                           int32_t out_c, int32_t oc0, int32_t n_oc, float *gt, float *gb)
{
    int32_t r, t;
    if (n_oc == TQ_PW_ROWS && out_c % 8 == 0 && oc0 % 8 == 0) {
        float s[TQ_PW_ROWS];
#ifdef TQ_ROWS_GATHER8_ASM
        if (npx > 0) {
            const int32_t o = q0 * out_c + oc0;
            tq_rows_gather8(grad_out + o, out_c * (int32_t)sizeof(float), mask != NULL ? mask + (o >> 3) : NULL,
                            out_c / 8, npx, gt, gb);
            return;
        }
#endif
        for (r = 0; r < TQ_PW_ROWS; r++) {
            s[r] = gb[r];
        }
        for (t = 0; t < npx; t++, gt += TQ_PW_ROWS) {
            const int32_t o = (q0 + t) * out_c + oc0;
            const uint32_t bits = mask != NULL ? mask[o >> 3] : 0xFFu;
            for (r = 0; r < TQ_PW_ROWS; r++) {
                gt[r] = tq_f32_keep(grad_out[o + r], (bits >> r) & 1u);
                s[r] += gt[r];
            }
        }
        for (r = 0; r < TQ_PW_ROWS; r++) {
            gb[r] = s[r];
        }
        return;
    }
    for (t = 0; t < npx; t++, gt += TQ_PW_ROWS) {
        for (r = 0; r < TQ_PW_ROWS; r++) {
            const int32_t o = (q0 + t) * out_c + oc0 + tq_min_i32(r, n_oc - 1);
            const float g = tq_mask_pass(mask, o) ? grad_out[o] : 0.0f;
            gt[r] = g;
            gb[r] += g;
        }
    }
}

/* All n_sel saved channels of the eight rows rp[0..7] over the npx pixels
 * (gradients gt, inputs xp), from 0 (first) or the stored partial sums.
 * Rows that repeat the last channel get the same sums again. On the last
 * tile (last) the assembly loops also multiply the sums by scale before
 * storing them (tq_rows_finish does it for the C loops). */
static void tq_rows_add(const float *gt, const int8_t *const *xp, int32_t npx, int32_t n_sel,
                        int32_t off, float *const *rp, int first, int last, float scale)
{
    int32_t j = 0, r;
#ifdef TQ_WROW_ASM
    const int flags = (first ? 1 : 0) | (last ? 2 : 0);
#else
    (void)last;
    (void)scale;
#endif
    if (npx == 0) { /* no pixel reaches this tap in this tile */
        for (r = 0; r < TQ_PW_ROWS; r++) {
            if (first) {
                memset(rp[r], 0, sizeof(float) * (size_t)n_sel);
            }
#ifdef TQ_WROW_ASM
            /* rows repeating the one before are the same memory: scale it once */
            for (j = 0; (flags & 2) && (r == 0 || rp[r] != rp[r - 1]) && j < n_sel; j++) {
                rp[r][j] *= scale;
            }
#endif
        }
        return;
    }
#if TQ_USE_MVE_F32
    for (; j + 4 <= n_sel; j += 4) {
        /* with at most four channels rows 4..7 repeat row 3, whose sums the
         * first block has already advanced: adding again would count twice */
        int32_t h, i, k;
        for (h = 0; h < TQ_PW_ROWS && (h == 0 || rp[h] != rp[h - 1]); h += 4) {
            if (tq_wrow_4x4_helium(gt + h, xp, npx, j, off, rp + h, flags, scale)) {
                tq_wrow_4x4(gt + h, xp, npx, j, off, rp[h] + j, rp[h + 1] + j, rp[h + 2] + j,
                            rp[h + 3] + j, first);
                for (k = 0; k < 4 && last && (k == 0 || rp[h + k] != rp[h + k - 1]); k++) {
                    for (i = 0; i < 4; i++) {
                        rp[h + k][j + i] *= scale;
                    }
                }
            }
        }
    }
#endif
#ifdef TQ_WROW_ASM
    for (; j + 2 <= n_sel; j += 2) {
        tq_wrow_8x2(gt, xp, npx, j, off, rp, flags, scale);
    }
    if (j < n_sel) {
        tq_wrow_8x1(gt, xp, npx, j, off, rp, flags, scale);
    }
#else
    for (; j + 4 <= n_sel; j += 4) {
        tq_wrow_4x4(gt, xp, npx, j, off, rp[0] + j, rp[1] + j, rp[2] + j, rp[3] + j, first);
        /* with at most four channels rows 4..7 repeat row 3, whose sums the
         * first call has already advanced: adding again would count twice */
        if (rp[4] != rp[3]) {
            tq_wrow_4x4(gt + 4, xp, npx, j, off, rp[4] + j, rp[5] + j, rp[6] + j, rp[7] + j, first);
        }
    }
    for (; j < n_sel; j++) {
        tq_wrow_8x1(gt, xp, npx, j, off, rp, first);
    }
#endif
}

/* rows *= input_scale (n_oc rows of row_len) unless the assembly loops did
 * it, grad_b <- gb. */
static void tq_rows_finish(float *rows, int32_t n_oc, int32_t row_len, float input_scale,
                           const float *gb, float *grad_b)
{
    int32_t r, i;
    for (r = 0; r < n_oc; r++) {
        for (i = 0; i < row_len && !TQ_WROW_SCALES; i++) {
            rows[(size_t)r * row_len + i] *= input_scale;
        }
        grad_b[r] = gb[r];
    }
}

/* ---- weight-gradient rows from inputs already in fp32 ------------------------ */

void tq_pw_convert_inputs(const int8_t *input, int32_t pixels, int32_t n_sel, int32_t off, float *xf)
{
    int32_t j, t, i;
    for (j = 0; j < n_sel; j += TQ_XF_GROUP) {
        const int32_t w = tq_min_i32(TQ_XF_GROUP, n_sel - j);
        float *o = xf + (size_t)j * pixels;
        for (t = 0; t < pixels; t++) {
            for (i = 0; i < w; i++) {
                *o++ = (float)(input[(size_t)t * n_sel + j + i] + off);
            }
        }
    }
}

/* Rows rp[0..nr-1] (gradients gt[8t + r]), channels [j, j + w) whose fp32
 * inputs are x[w t + i] (w <= TQ_XF_GROUP): from 0 (flags bit 0) or the
 * stored sums, add gt[8t + r] * x[w t + i] for t < npx in order, then with
 * TQ_WROW_SCALES and flags bit 1 multiply by scale. Every sum is loaded
 * before any is stored, so rows that repeat the one before (the same
 * memory) store equal values. */
static void tq_wrow_xf(const float *gt, const float *x, int32_t w, int32_t npx, int32_t j,
                       float *const *rp, int32_t nr, int flags, float scale)
{
    float a[TQ_PW_ROWS][TQ_XF_GROUP];
    int32_t r, i, t;
    for (r = 0; r < nr; r++) {
        for (i = 0; i < w; i++) {
            a[r][i] = (flags & 1) ? 0.0f : rp[r][j + i];
        }
    }
    for (t = 0; t < npx; t++, gt += TQ_PW_ROWS, x += w) {
        for (r = 0; r < nr; r++) {
            for (i = 0; i < w; i++) {
                TQ_MLA_F32(a[r][i], gt[r], x[i]);
            }
        }
    }
    for (r = 0; r < nr; r++) {
        for (i = 0; i < w; i++) {
            rp[r][j + i] = TQ_WROW_SCALES && (flags & 2) ? a[r][i] * scale : a[r][i];
        }
    }
}

/* tq_rows_add for output pixels p0 .. p0 + npx - 1 (npx >= 1) of a
 * stride-1 1x1 conv whose inputs are xf (tq_pw_convert_inputs over pixels
 * pixels). */
static void tq_rows_add_xf(const float *gt, const float *xf, int32_t pixels, int32_t p0, int32_t npx,
                           int32_t n_sel, float *const *rp, int first, int last, float scale)
{
    const int flags = (first ? 1 : 0) | (last ? 2 : 0);
    int32_t j;
    for (j = 0; j < n_sel; j += TQ_XF_GROUP) {
        const int32_t w = tq_min_i32(TQ_XF_GROUP, n_sel - j);
        const float *x = xf + (size_t)j * pixels + (size_t)p0 * w;
#if TQ_USE_MVE_F32
        if (w == 4) {
            /* with at most four channels rows 4..7 repeat row 3, whose sums
             * the first block has already advanced: adding again would
             * count twice */
            int32_t h;
            for (h = 0; h < TQ_PW_ROWS && (h == 0 || rp[h] != rp[h - 1]); h += 4) {
                if (tq_wrow_4x4f_helium(gt + h, x, npx, j, rp + h, flags, scale)) {
                    tq_wrow_xf(gt + h, x, w, npx, j, rp + h, 4, flags, scale);
                }
            }
            continue;
        }
#endif
#ifdef TQ_WROW_ASM
        if (w == 2) {
            tq_wrow_8x2f(gt, x, npx, j, rp, flags, &scale);
            continue;
        }
        if (w == 1) {
            tq_wrow_8x1f(gt, x, npx, j, rp, flags, scale);
            continue;
        }
#endif
        tq_wrow_xf(gt, x, w, npx, j, rp, TQ_PW_ROWS, flags, scale);
    }
}

void tq_pw_weight_rows(const tq_conv_params *p, float input_scale, const tq_dims *in_d,
                       const int8_t *input, const float *xf, const tq_dims *out_d,
                       const float *grad_out, const uint8_t *mask, int32_t oc0, int32_t n_oc,
                       float *rows, float *grad_b)
{
    const int32_t n_sel = in_d->c;
    const int32_t pixels = out_d->n * out_d->h * out_d->w;
    float gt[TQ_PW_PT * TQ_PW_ROWS];
    const int8_t *xp[TQ_PW_PT];
    float gb[TQ_PW_ROWS] = {0.0f};
    float *rp[TQ_PW_ROWS];
    int32_t r, t, p0;
    /* fewer than TQ_PW_ROWS channels: the last one is computed again */
    for (r = 0; r < TQ_PW_ROWS; r++) {
        rp[r] = rows + (size_t)tq_min_i32(r, n_oc - 1) * n_sel;
    }
    for (p0 = 0; p0 < pixels; p0 += TQ_PW_PT) {
        const int32_t npx = tq_min_i32(pixels - p0, TQ_PW_PT);
        tq_rows_gather(grad_out, mask, p0, npx, out_d->c, oc0, n_oc, gt, gb);
        if (xf != NULL) {
            tq_rows_add_xf(gt, xf, pixels, p0, npx, n_sel, rp, p0 == 0, p0 + npx == pixels, input_scale);
            continue;
        }
        for (t = 0; t < npx; t++) { /* stride 1: the input pixels follow one another */
            xp[t] = p->stride_h == 1 && p->stride_w == 1 && t > 0
                        ? xp[t - 1] + n_sel
                        : input + tq_pw_in_pixel(p, out_d, in_d, p0 + t) * (size_t)n_sel;
        }
        tq_rows_add(gt, xp, npx, n_sel, p->input_offset, rp, p0 == 0, p0 + npx == pixels, input_scale);
    }
    tq_rows_finish(rows, n_oc, n_sel, input_scale, gb, grad_b);
}

void tq_conv_weight_rows(const tq_conv_params *p, float input_scale, const tq_dims *in_d,
                         const int8_t *input, const tq_dims *out_d, const float *grad_out,
                         const uint8_t *mask, int32_t k_h, int32_t k_w, int32_t oc0,
                         int32_t n_oc, float *rows, float *grad_b)
{
    const int32_t n_sel = in_d->c;
    const int32_t pixels = out_d->n * out_d->h * out_d->w, per_image = out_d->h * out_d->w;
    const int32_t row_len = k_h * k_w * n_sel;
    float gt[TQ_CONV_PT * TQ_PW_ROWS], gc[TQ_CONV_PT * TQ_PW_ROWS];
    const int8_t *xp[TQ_CONV_PT];
    int32_t iy0[TQ_CONV_PT], ix0[TQ_CONV_PT], img[TQ_CONV_PT], kept[TQ_CONV_PT];
    float gb[TQ_PW_ROWS] = {0.0f};
    float *rp[TQ_PW_ROWS];
    int32_t r, t, p0, ky, kx;
    for (p0 = 0; p0 < pixels; p0 += TQ_CONV_PT) {
        const int32_t npx = tq_min_i32(pixels - p0, TQ_CONV_PT);
        /* the tile's first pixel; the others follow in row-major order */
        int32_t b = p0 / per_image, oy = (p0 - b * per_image) / out_d->w;
        int32_t ox = p0 - b * per_image - oy * out_d->w;
        for (t = 0; t < npx; t++) {
            img[t] = b;
            iy0[t] = oy * p->stride_h - p->pad_top;
            ix0[t] = ox * p->stride_w - p->pad_left;
            if (++ox == out_d->w) {
                ox = 0;
                if (++oy == out_d->h) {
                    oy = 0;
                    b++;
                }
            }
        }
        tq_rows_gather(grad_out, mask, p0, npx, out_d->c, oc0, n_oc, gt, gb);
        for (ky = 0; ky < k_h; ky++) {
            for (kx = 0; kx < k_w; kx++) {
                /* the tile's pixels whose window tap (ky, kx) is inside the input */
                const size_t tap = ((size_t)ky * k_w + kx) * n_sel;
                const float *g = gt;
                int32_t n = 0;
                for (t = 0; t < npx; t++) {
                    const int32_t iy = iy0[t] + ky * p->dilation_h, ix = ix0[t] + kx * p->dilation_w;
                    if (iy >= 0 && iy < in_d->h && ix >= 0 && ix < in_d->w) {
                        kept[n] = t;
                        xp[n++] = input + (((size_t)img[t] * in_d->h + iy) * in_d->w + ix) * n_sel;
                    }
                }
                if (n < npx) { /* some windows miss this tap: their gradients, compacted */
                    for (t = 0; t < n; t++) {
                        memcpy(gc + t * TQ_PW_ROWS, gt + kept[t] * TQ_PW_ROWS, sizeof(float) * TQ_PW_ROWS);
                    }
                    g = gc;
                }
                for (r = 0; r < TQ_PW_ROWS; r++) {
                    rp[r] = rows + (size_t)tq_min_i32(r, n_oc - 1) * row_len + tap;
                }
                tq_rows_add(g, xp, n, n_sel, p->input_offset, rp, p0 == 0, p0 + npx == pixels, input_scale);
            }
        }
    }
    tq_rows_finish(rows, n_oc, row_len, input_scale, gb, grad_b);
}

/* ---- dense input gradient ---------------------------------------------------- */

/* Channels [0, 4) of one input pixel gi: add gs[t] * w[t * w_stride + i]
 * for t < nt to the stored sums. */
static void tq_dense_gin_4(const float *gs, int32_t nt, const int8_t *w, int32_t w_stride, float *gi)
{
    float a0 = gi[0], a1 = gi[1], a2 = gi[2], a3 = gi[3];
    int32_t t;
    for (t = 0; t < nt; t++, w += w_stride) {
        const float g = gs[t];
        TQ_MLA_F32(a0, g, (float)w[0]);
        TQ_MLA_F32(a1, g, (float)w[1]);
        TQ_MLA_F32(a2, g, (float)w[2]);
        TQ_MLA_F32(a3, g, (float)w[3]);
    }
    gi[0] = a0;
    gi[1] = a1;
    gi[2] = a2;
    gi[3] = a3;
}

/* One channel (the in_c % 4 tail). */
static void tq_dense_gin_1(const float *gs, int32_t nt, const int8_t *w, int32_t w_stride, float *gi)
{
    float a = *gi;
    int32_t t;
    for (t = 0; t < nt; t++, w += w_stride) {
        TQ_MLA_F32(a, gs[t], (float)w[0]);
    }
    *gi = a;
}

/* The three-channel (RGB) input pixel gi: add gs[oc] * wt[3 oc + i] for
 * oc < out_c (a multiple of 4) to the stored sums, in order of oc. On an Arm
 * FPU one assembly loop: the sums in s16-s18, and per four output channels
 * one VLDM of their scaled gradients, one VLDM of their 12 fp32 taps and 12
 * VMLA.F32. */
static void tq_dense_gin_rgb(const float *gs, const float *wt, int32_t out_c, float *gi)
{
#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
    int32_t n = out_c / 4;
    __asm__ volatile("vldmia %[gi], {s16-s18}\n\t"
                     "1:\n\t"
                     "vldmia %[g]!, {s0-s3}\n\t"
                     "vldmia %[w]!, {s4-s15}\n\t"
                     "vmla.f32 s16, s0, s4\n\t" "vmla.f32 s17, s0, s5\n\t" "vmla.f32 s18, s0, s6\n\t"
                     "vmla.f32 s16, s1, s7\n\t" "vmla.f32 s17, s1, s8\n\t" "vmla.f32 s18, s1, s9\n\t"
                     "vmla.f32 s16, s2, s10\n\t" "vmla.f32 s17, s2, s11\n\t" "vmla.f32 s18, s2, s12\n\t"
                     "vmla.f32 s16, s3, s13\n\t" "vmla.f32 s17, s3, s14\n\t" "vmla.f32 s18, s3, s15\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     "vstmia %[gi], {s16-s18}"
                     : [g] "+r"(gs), [w] "+r"(wt), [n] "+r"(n)
                     : [gi] "r"(gi)
                     : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
                       "s12", "s13", "s14", "s15", "s16", "s17", "s18", "cc", "memory");
#else
    float a0 = gi[0], a1 = gi[1], a2 = gi[2];
    int32_t oc;
    for (oc = 0; oc < out_c; oc++, wt += 3) {
        TQ_MLA_F32(a0, gs[oc], wt[0]);
        TQ_MLA_F32(a1, gs[oc], wt[1]);
        TQ_MLA_F32(a2, gs[oc], wt[2]);
    }
    gi[0] = a0;
    gi[1] = a1;
    gi[2] = a2;
#endif
}

/* The RGB path of tq_conv_backward_input_blocked (three input channels, a
 * multiple of 4 output channels, at most TQ_PW_OCT) takes filters of up to
 * TQ_DENSE_RGB_WT taps, converted once to fp32 as
 * wt[(tap * out_c + oc) * 3 + ci]. */
#define TQ_DENSE_RGB_WT 768
static void tq_dense_rgb_taps(const int8_t *filter, int32_t taps, int32_t out_c, float *wt)
{
    int32_t t, oc, ci;
    for (t = 0; t < taps; t++) {
        for (oc = 0; oc < out_c; oc++) {
            for (ci = 0; ci < 3; ci++) {
                wt[((size_t)t * out_c + oc) * 3 + ci] = (float)filter[((size_t)oc * taps + t) * 3 + ci];
            }
        }
    }
}

void tq_conv_backward_input_blocked(const tq_conv_params *p, const float *w_scale,
                                    const tq_dims *out_d, const float *grad_out,
                                    const uint8_t *mask, const tq_dims *f_d,
                                    const int8_t *filter, const tq_dims *in_d, float *grad_in)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w, out_c = out_d->c;
    const int32_t w_stride = k_h * k_w * in_c;
    /* three input channels: each tap adds all (one block of) output channels at once */
    const int rgb = in_c == 3 && out_c % 4 == 0 && out_c <= TQ_PW_OCT &&
                    (int64_t)k_h * k_w * 3 * out_c <= TQ_DENSE_RGB_WT;
    float gs[TQ_PW_OCT], wt[TQ_DENSE_RGB_WT];
    int32_t b, oy, ox, ky, kx, oc0, t, ic;
    memset(grad_in, 0, (size_t)tq_dims_count(in_d) * sizeof(float));
    if (rgb) {
        tq_dense_rgb_taps(filter, k_h * k_w, out_c, wt);
    }
    for (b = 0; b < out_d->n; b++) {
        float *gin_b = grad_in + (size_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < out_d->h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_d->w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t o = ((b * out_d->h + oy) * out_d->w + ox) * out_c;
                for (oc0 = 0; oc0 < out_c; oc0 += TQ_PW_OCT) {
                    const int32_t nt = tq_min_i32(out_c - oc0, TQ_PW_OCT);
                    for (t = 0; t < nt; t++) {
                        gs[t] = tq_mask_pass(mask, o + oc0 + t) ? grad_out[o + oc0 + t] * w_scale[oc0 + t]
                                                                : 0.0f;
                    }
                    for (ky = 0; ky < k_h; ky++) {
                        const int32_t iy = y0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (kx = 0; kx < k_w; kx++) {
                            const int32_t ix = x0 + kx * p->dilation_w;
                            const int8_t *w =
                                filter + (size_t)oc0 * w_stride + ((size_t)ky * k_w + kx) * in_c;
                            float *gi;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            gi = gin_b + ((size_t)iy * in_w + ix) * in_c;
                            if (rgb) {
                                tq_dense_gin_rgb(gs, wt + (size_t)(ky * k_w + kx) * out_c * 3, out_c, gi);
                                continue;
                            }
                            for (ic = 0; ic + 4 <= in_c; ic += 4) {
                                tq_dense_gin_4(gs, nt, w + ic, w_stride, gi + ic);
                            }
                            for (; ic < in_c; ic++) {
                                tq_dense_gin_1(gs, nt, w + ic, w_stride, gi + ic);
                            }
                        }
                    }
                }
            }
        }
    }
}
