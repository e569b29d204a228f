/* tinyqt: blocked fp32 input and weight gradients of the depthwise conv
 * (contracts in tq_dw_backward.h). Channels go in blocks of four lanes,
 * whose taps are converted to fp32 once per block. Every sum adds the plain
 * loops' terms (one TQ_MLA_F32, i.e. one VMLA on Arm FPUs, each) in their
 * order, output pixels row-major, from +0.0f; leaving out a zero term
 * changes nothing, since such a sum never becomes -0.0f.
 * - Input gradient: a gather where the factors of the output rows one input
 *   row needs fit on the stack (each input pixel's lanes summed in
 *   registers), otherwise a scatter from each output pixel. At stride 1 the
 *   factor rows carry zero columns where they fit, so that every input
 *   pixel of a row takes the same loop (adding a zero term changes no sum);
 *   on an Arm FPU that loop is assembly over the whole row.
 * - Weight rows: row-wise where one factor row and the converted input rows
 *   a window spans fit on the stack (each tap's lanes summed in registers
 *   along the output row), otherwise a scatter from each output pixel. */
#include <string.h>

#include "tq_dw_backward.h"
#include "tq_dw_lanes4.h"
#include "tq_check.h"
#include "tq_f32.h"
#include "tq_mve.h"
#include "tq_sgd.h"

/* The gather path's stack: factor floats (2 KB) and column taps. It runs
 * when tq_dw_gather_rows x out_w x 4 factors, in_w columns and in_w x KW
 * taps fit, the scatter path otherwise. */
#define TQ_DW_GATHER_FLOATS 512
#define TQ_DW_GATHER_COLS 128
#define TQ_DW_GATHER_TAPS 384
/* The row-wise weight rows' stack: one factor row and the converted input
 * rows, out_w x 4 + ((KH - 1) x dilation + 1) x in_w x 4 floats (3 KB). */
#define TQ_DW_WROWS_FLOATS 768

/* gi[l] += s * w, one lane at a time (lanes of a short block alias). */
#define TQ_DW_ADD(gi, l, s, w)       \
    do {                             \
        float v_ = (gi)[l];          \
        TQ_MLA_F32(v_, s, w);        \
        (gi)[l] = v_;                \
    } while (0)

/* Lanes of a channel block: lane[i] = the channel (extra lanes repeat the
 * last valid one), ws[i] its w_scale, wf[t * 4 + i] its tap t in fp32. */
static int32_t tq_dw_block_setup(int32_t c0, int32_t ch, int32_t taps, const float *w_scale,
                                 const int8_t *filter, int32_t *lane, float *ws, float *wf)
{
    const int32_t valid = ch - c0 < TQ_DW_LANES ? ch - c0 : TQ_DW_LANES;
    int32_t i, t;
    for (i = 0; i < TQ_DW_LANES; i++) {
        lane[i] = c0 + (i < valid ? i : valid - 1);
        ws[i] = w_scale[lane[i]];
    }
    if (valid == TQ_DW_LANES) {
        tq_f32_from_s8x4(filter + c0, ch, taps, wf);
        return valid;
    }
    for (t = 0; t < taps; t++) {
        for (i = 0; i < TQ_DW_LANES; i++) {
            wf[t * TQ_DW_LANES + i] = (float)filter[(size_t)t * ch + lane[i]];
        }
    }
    return valid;
}

/* Scatter path (any size): each output pixel adds its four lanes' terms to
 * the input pixels its window covers, in the plain loops' order; an output
 * pixel whose four factors are all zero is skipped. */
static void tq_dw_bwd_scatter(const tq_conv_params *p, const float *w_scale,
                              const tq_dims *out_d, const float *grad_out,
                              const uint8_t *mask, const tq_dims *f_d,
                              const int8_t *filter, const tq_dims *in_d, float *grad_in)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, ch = in_d->c;
    const int32_t oh = out_d->h, ow = out_d->w, kh = f_d->h, kw = f_d->w;
    float wf[TQ_DW_BWD_MAX_TAPS * TQ_DW_LANES];
    int32_t c0, b, oy, ox, ky, kx, i;
    memset(grad_in, 0, (size_t)tq_dims_count(in_d) * sizeof(float));
    for (c0 = 0; c0 < ch; c0 += TQ_DW_LANES) {
        int32_t lane[TQ_DW_LANES];
        float ws[TQ_DW_LANES];
        const int32_t valid = tq_dw_block_setup(c0, ch, kh * kw, w_scale, filter, lane, ws, wf);
        for (b = 0; b < out_d->n; b++) {
            float *gin_b = grad_in + (size_t)b * in_h * in_w * ch;
            for (oy = 0; oy < oh; oy++) {
                const int32_t y0 = oy * p->stride_h - p->pad_top;
                for (ox = 0; ox < ow; ox++) {
                    const int32_t x0 = ox * p->stride_w - p->pad_left;
                    const int32_t o = ((b * oh + oy) * ow + ox) * ch;
                    float s[TQ_DW_LANES];
                    for (i = 0; i < TQ_DW_LANES; i++) {
                        s[i] = i < valid && tq_mask_pass(mask, o + lane[i]) ? grad_out[o + lane[i]] * ws[i]
                                                                            : 0.0f;
                    }
                    if (s[0] == 0.0f && s[1] == 0.0f && s[2] == 0.0f && s[3] == 0.0f) {
                        continue;
                    }
                    for (ky = 0; ky < kh; ky++) {
                        const int32_t iy = y0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (kx = 0; kx < kw; kx++) {
                            const int32_t ix = x0 + kx * p->dilation_w;
                            const float *wt = wf + (size_t)(ky * kw + kx) * TQ_DW_LANES;
                            float *gi;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            gi = gin_b + ((size_t)iy * in_w + ix) * ch;
                            TQ_DW_ADD(gi, lane[0], s[0], wt[0]);
                            TQ_DW_ADD(gi, lane[1], s[1], wt[1]);
                            TQ_DW_ADD(gi, lane[2], s[2], wt[2]);
                            TQ_DW_ADD(gi, lane[3], s[3], wt[3]);
                        }
                    }
                }
            }
        }
    }
}

/* One output row's term factors f[ox * 4 + i] = mask ? g * w_scale : 0
 * (0 for lanes past the valid ones); o = the row's first element. */
static void tq_dw_factor_row(const float *grad_out, const uint8_t *mask, int32_t o, int32_t ow,
                             int32_t ch, const int32_t *lane, const float *ws, int32_t valid,
                             float *f)
{
    int32_t ox, i;
    for (ox = 0; ox < ow; ox++, o += ch, f += TQ_DW_LANES) {
        for (i = 0; i < TQ_DW_LANES; i++) {
            f[i] = i < valid && tq_mask_pass(mask, o + lane[i]) ? grad_out[o + lane[i]] * ws[i] : 0.0f;
        }
    }
}

#if TQ_USE_MVE_F32
/* tq_dw_factor_row for four valid lanes (channels lane[0] .. lane[0] + 3)
 * with Helium floating point: per output pixel one VLDRW of the gradients,
 * a VMUL.F32 by the four w_scale, the lanes whose mask bit is clear set to
 * +0.0f under a VPT predicate, one VSTRW. The caller checks the flags. */
static void tq_dw_factor_row_helium(const float *grad_out, const uint8_t *mask, int32_t o, int32_t ow,
                                    int32_t ch, const int32_t *lane, const float *ws, float *f)
{
    static const uint8_t all_pass = 0xFFu;
    const uint32_t bits[4] = {1u, 2u, 4u, 8u};
    const int32x4_t scale = vldrwq_s32((const int32_t *)(const void *)ws);
    const int32x4_t lane_bits = vldrwq_s32((const int32_t *)bits), zero = vdupq_n_s32(0);
    int32_t ox;
    o += lane[0];
    if (ch % 8 == 0 && o % 4 == 0 && ow > 0) {
        /* every pixel's four bits are the same nibble of a byte ch / 8 bytes
         * after the last one's: the whole row in one loop, 12 instructions a
         * pixel (LDRB, LSR, VLDRW, ADD, VMUL, the predicated zeroing, VSTRW) */
        const uint8_t *m = mask != NULL ? mask + (o >> 3) : &all_pass;
        const int32_t m_step = mask != NULL ? ch >> 3 : 0, sh = mask != NULL ? o & 7 : 0;
        const float *g = grad_out + o;
        uint32_t t;
        __asm__ volatile(".arch_extension mve.fp\n\t"
                         "dls lr, %[n]\n\t"
                         "1:\n\t"
                         "ldrb %[t], [%[m]]\n\t"
                         "add %[m], %[m], %[ms]\n\t"
                         "lsr %[t], %[t], %[sh]\n\t"
                         "vldrw.32 q0, [%[g]]\n\t"
                         "add %[g], %[g], %[gs]\n\t"
                         "vmul.f32 q0, q0, %q[sc]\n\t"
                         TQ_MVEF_KEEP4("q0", "%[t]", "q1", "%q[lb]", "%q[z]")
                         "vstrw.32 q0, [%[f]], #16\n\t"
                         "le lr, 1b"
                         : [m] "+r"(m), [g] "+r"(g), [f] "+r"(f), [t] "=&r"(t)
                         : [n] "r"(ow), [ms] "r"(m_step), [sh] "r"(sh), [gs] "r"(ch * (int32_t)sizeof(float)),
                           [sc] "w"(scale), [lb] "w"(lane_bits), [z] "w"(zero)
                         : "q0", "q1", "p0", "lr", "memory");
        return;
    }
    for (ox = 0; ox < ow; ox++, o += ch, f += TQ_DW_LANES) {
        __asm__ volatile(".arch_extension mve.fp\n\t"
                         "vldrw.32 q0, [%[g]]\n\t"
                         "vmul.f32 q0, q0, %q[sc]\n\t"
                         TQ_MVEF_KEEP4("q0", "%[m]", "q1", "%q[lb]", "%q[z]")
                         "vstrw.32 q0, [%[f]]"
                         :
                         : [g] "r"(grad_out + o), [m] "r"(tq_mask_bits(mask, o, 4)), [f] "r"(f),
                           [sc] "w"(scale), [lb] "w"(lane_bits), [z] "w"(zero)
                         : "q0", "q1", "p0", "memory");
    }
}
#endif

/* Output rows of factors the gather path keeps: every output row whose
 * windows reach one input row. */
static int32_t tq_dw_gather_rows(const tq_conv_params *p, const tq_dims *f_d)
{
    return (f_d->h - 1) * p->dilation_h / p->stride_h + 1;
}

/* gi[i] = a_i for the valid lanes i. */
static void tq_dw_store_lanes(float *gi, int32_t valid, float a0, float a1, float a2, float a3)
{
    gi[0] = a0;
    if (valid > 1) {
        gi[1] = a1;
    }
    if (valid > 2) {
        gi[2] = a2;
    }
    if (valid > 3) {
        gi[3] = a3;
    }
}

/* One input pixel of the gather, any stride and dilation: its nx column
 * taps (factor offsets xo, filter offsets xk, in increasing output column)
 * in each of the nrow output rows frow (filter rows kyl). */
__attribute__((noinline))
static void tq_dw_gather_pixel(const float *const *frow, const int32_t *kyl, int32_t nrow,
                               const float *wf, int32_t kw, const int16_t *xo, const int16_t *xk,
                               int32_t nx, float *gi, int32_t valid)
{
    int32_t r, k;
    TQ_DW_ACC4(0.0f, 0.0f, 0.0f, 0.0f);
    for (r = 0; r < nrow; r++) {
        const float *wrow = wf + (size_t)kyl[r] * kw * TQ_DW_LANES;
        for (k = 0; k < nx; k++) {
            const float *fk = frow[r] + xo[k], *wt = wrow + xk[k];
            TQ_DW_TAP4(fk, wt);
        }
    }
    tq_dw_store_lanes(gi, valid, a0, a1, a2, a3);
}

#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
#define TQ_DWG_ASM 1
/* One output row r of a run pixel, taps from the packed weights in
 * registers: m = 1 (weights w0-w3) or m = 2 (two neighbouring factor
 * columns, weights w0-w3 then w4-w7); the row's factor pointer advances by
 * one output column. */
#define TQ_DWG_ROW_M1(f, w0, w1, w2, w3)                                            \
    "vldmia %[" f "]!, {s0-s3}\n\t"                                                  \
    "vmla.f32 s8, s0, " w0 "\n\t" "vmla.f32 s9, s1, " w1 "\n\t"                       \
    "vmla.f32 s10, s2, " w2 "\n\t" "vmla.f32 s11, s3, " w3 "\n\t"
#define TQ_DWG_ROW_M2(f, w0, w1, w2, w3, w4, w5, w6, w7)                            \
    "vldmia %[" f "], {s0-s7}\n\t"                                                   \
    "add %[" f "], %[" f "], #16\n\t"                                                \
    "vmla.f32 s8, s0, " w0 "\n\t" "vmla.f32 s9, s1, " w1 "\n\t"                       \
    "vmla.f32 s10, s2, " w2 "\n\t" "vmla.f32 s11, s3, " w3 "\n\t"                     \
    "vmla.f32 s8, s4, " w4 "\n\t" "vmla.f32 s9, s5, " w5 "\n\t"                       \
    "vmla.f32 s10, s6, " w6 "\n\t" "vmla.f32 s11, s7, " w7 "\n\t"
/* The run loop around BODY: the packed taps in s16-s31, each pixel's four
 * sums from +0.0f in s8-s11, stored with one VSTM. */
#define TQ_DWG_RUN(BODY)                                                             \
    __asm__ volatile("vldmia %[w], {s16-s31}\n\t"                                    \
                     "1:\n\t"                                                        \
                     "vmov s8, s9, %[zr], %[zr]\n\t"                                 \
                     "vmov s10, s11, %[zr], %[zr]\n\t"                               \
                     BODY                                                            \
                     "vstmia %[gi], {s8-s11}\n\t"                                    \
                     "add %[gi], %[gi], %[step]\n\t"                                 \
                     "subs %[n], %[n], #1\n\t"                                       \
                     "bne 1b"                                                        \
                     : [f0] "+r"(f0), [f1] "+r"(f1), [gi] "+r"(gi), [n] "+r"(count)  \
                     : [w] "r"(wpk), [zr] "r"(0), [step] "r"(step)                   \
                     : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9",   \
                       "s10", "s11", "s16", "s17", "s18", "s19", "s20", "s21", "s22", \
                       "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31", \
                       "cc", "memory")
/* One tap of the row loops below: the four lanes' factors f0-f3 times
 * their taps w0-w3 added to the sums in s0-s3 (VMLA, tap order). */
#define TQ_DWR_TAP(f0, f1, f2, f3, w0, w1, w2, w3)                                   \
    "vmla.f32 s0, " f0 ", " w0 "\n\t" "vmla.f32 s1, " f1 ", " w1 "\n\t"             \
    "vmla.f32 s2, " f2 ", " w2 "\n\t" "vmla.f32 s3, " f3 ", " w3 "\n\t"

/* tq_dw_factor_row for four valid lanes on the scalar FPU, where the
 * lanes' four mask bits never straddle a byte (o % 4 == 0 on every pixel:
 * o and ch multiples of 4) or mask is NULL. The arguments in memory, loaded
 * into r4 (gradients), r5 (their step, bytes), r6 (mask), r8 (bit index),
 * r9 (its step), r10 (f), r11 (pixels); per pixel one VLDM of the four
 * gradients, four VMUL.F32 by w_scale (s4-s7), the four mask bits into the
 * flags two at a time (LSLS #31, #29) and each clear lane set to +0.0f by IT
 * + VMOV, one VSTM. */
#if !TQ_USE_MVE_F32
typedef struct {
    const float *g;
    int32_t g_step;
    const uint8_t *mask;
    int32_t bit, bit_step;
    float *f;
    int32_t count;
} tq_dw_factor_args;
static void tq_dw_factor_row_fpu(const float *grad_out, const uint8_t *mask, int32_t o, int32_t ow,
                                 int32_t ch, const float *ws, float *f)
{
    static const uint8_t all_pass = 0xFFu;
    tq_dw_factor_args args;
    const tq_dw_factor_args *a = &args;
    args.g = grad_out + o;
    args.g_step = ch * (int32_t)sizeof(float);
    args.mask = mask != NULL ? mask : &all_pass;
    args.bit = mask != NULL ? o : 0;
    args.bit_step = mask != NULL ? ch : 0;
    args.f = f;
    args.count = ow;
    __asm__ volatile("ldm %[a], {r4, r5, r6, r8, r9, r10, r11}\n\t"
                     "vldmia %[ws], {s4-s7}\n\t"
                     "movs r12, #0\n\t"
                     "vmov s8, r12\n\t"
                     "1:\n\t"
                     "lsrs r12, r8, #3\n\t"
                     "ldrb r12, [r6, r12]\n\t"
                     "and lr, r8, #7\n\t"
                     "lsr r12, r12, lr\n\t"
                     "vldmia r4, {s0-s3}\n\t"
                     "add r4, r4, r5\n\t"
                     "vmul.f32 s0, s0, s4\n\t"
                     "vmul.f32 s1, s1, s5\n\t"
                     "vmul.f32 s2, s2, s6\n\t"
                     "vmul.f32 s3, s3, s7\n\t"
                     "lsls lr, r12, #31\n\t"
                     "it pl\n\t"
                     "vmovpl.f32 s0, s8\n\t"
                     "it cc\n\t"
                     "vmovcc.f32 s1, s8\n\t"
                     "lsls lr, r12, #29\n\t"
                     "it pl\n\t"
                     "vmovpl.f32 s2, s8\n\t"
                     "it cc\n\t"
                     "vmovcc.f32 s3, s8\n\t"
                     "vstmia r10!, {s0-s3}\n\t"
                     "add r8, r8, r9\n\t"
                     "subs r11, r11, #1\n\t"
                     "bne 1b"
                     :
                     : [a] "r"(a), [ws] "r"(ws)
                     : "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "lr", "s0", "s1", "s2", "s3",
                       "s4", "s5", "s6", "s7", "s8", "cc", "memory");
}
#endif

/* A 3x3 filter's whole input row in one loop (tq_dw_gather_row3): the
 * arguments in memory, loaded into r4-r6 (factor pointers of up to three
 * output rows), r8 (the end of the first filter row), r9 (gi), r10 (step
 * bytes), r11 (count); per pixel the sums from +0.0f in s0-s3, and per
 * output row one VLDM of its three factor columns, one VLDMDB of the
 * filter row's 3 x 4 taps (walking down to the next row), 12 VMLA in tap
 * order; r8 is put back after the last row. */
typedef struct {
    const float *f[3];
    const float *w_end;
    float *gi;
    int32_t step, count;
} tq_dw_row3_args;
#define TQ_DWR3_ROW(f)                                                                 \
    "vldmia " f ", {s4-s15}\n\t"                                                       \
    "add " f ", " f ", #16\n\t"                                                        \
    "vldmdb r8!, {s16-s27}\n\t"                                                       \
    TQ_DWR_TAP("s4", "s5", "s6", "s7", "s24", "s25", "s26", "s27")                      \
    TQ_DWR_TAP("s8", "s9", "s10", "s11", "s20", "s21", "s22", "s23")                    \
    TQ_DWR_TAP("s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19")
#define TQ_DWR3_RUN(ROWS, WBACK)                                                       \
    __asm__ volatile("ldm %[a], {r4, r5, r6, r8, r9, r10, r11}\n\t"                    \
                     "movs r12, #0\n\t"                                                \
                     "1:\n\t"                                                          \
                     "vmov s0, s1, r12, r12\n\t"                                       \
                     "vmov s2, s3, r12, r12\n\t"                                       \
                     ROWS                                                              \
                     "add r8, r8, #" WBACK "\n\t"                                      \
                     "vstmia r9, {s0-s3}\n\t"                                          \
                     "add r9, r9, r10\n\t"                                             \
                     "subs r11, r11, #1\n\t"                                           \
                     "bne 1b"                                                          \
                     :                                                                 \
                     : [a] "r"(a)                                                      \
                     : "r4", "r5", "r6", "r8", "r9", "r10", "r11", "r12", "s0", "s1",  \
                       "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",   \
                       "s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19", "s20",  \
                       "s21", "s22", "s23", "s24", "s25", "s26", "s27", "cc", "memory")

/* count (>= 1) pixels of an input row under a 3x3 window, stride and
 * dilation 1: pixel k (gi + k * step floats) sums, from +0.0f, the nrow
 * (1..3) output rows' factor columns frow[r] + 4 (x0 + k) .. + 3 x 4
 * times the filter rows kyl[0], kyl[0] - 1, ... read backwards (the
 * consecutive rows over one input row at stride 1). */
static void tq_dw_gather_row3(const float *const *frow, int32_t nrow, const float *w_end,
                              int32_t x0, float *gi, int32_t step, int32_t count)
{
    tq_dw_row3_args args;
    const tq_dw_row3_args *a = &args;
    int32_t r;
    for (r = 0; r < 3; r++) {
        args.f[r] = frow[r < nrow ? r : 0] + (ptrdiff_t)x0 * TQ_DW_LANES;
    }
    args.w_end = w_end;
    args.gi = gi;
    args.step = step * (int32_t)sizeof(float);
    args.count = count;
    if (nrow == 3) {
        TQ_DWR3_RUN(TQ_DWR3_ROW("r4") TQ_DWR3_ROW("r5") TQ_DWR3_ROW("r6"), "144");
    } else if (nrow == 2) {
        TQ_DWR3_RUN(TQ_DWR3_ROW("r4") TQ_DWR3_ROW("r5"), "96");
    } else {
        TQ_DWR3_RUN(TQ_DWR3_ROW("r4"), "48");
    }
}

/* Output rows of m taps (m <= 7) over a whole input row in one loop
 * (tq_dw_gather_rowk): r0 points at the arguments, loaded into r1 (the
 * output rows' factor pointers at the first pixel), r2 (their count), r3
 * (the end of the taps), r4 (gi), r5 (step bytes), r6 (count); r8 is the
 * pixel's byte offset into the factor rows. Per pixel the sums from +0.0f
 * in s0-s3; per output row its pointer (LDR + ADD) and its taps in chunks
 * of at most 3 (TQ_DWK_CHUNK: one VLDM of the factor columns, one VLDMDB
 * of the taps, walking down to the next row's, 4 VMLA a tap in tap
 * order); r9 walks the taps and starts again at r3 for each pixel. */
typedef struct {
    const float *const *rows;
    int32_t nrow;
    const float *w_end;
    float *gi;
    int32_t step, count;
} tq_dw_rowk_args;
/* A chunk of c taps: the factor columns into s4.., the taps into s16..
 * (the last tap first: VLDMDB), FWB "!" to step the factor pointer past
 * the chunk for the next one, "" for the row's last chunk. */
#define TQ_DWK_CHUNK3(FWB)                                                              \
    "vldmia lr" FWB ", {s4-s15}\n\t" "vldmdb r9!, {s16-s27}\n\t"                       \
    TQ_DWR_TAP("s4", "s5", "s6", "s7", "s24", "s25", "s26", "s27")                      \
    TQ_DWR_TAP("s8", "s9", "s10", "s11", "s20", "s21", "s22", "s23")                    \
    TQ_DWR_TAP("s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19")
#define TQ_DWK_CHUNK2                                                                   \
    "vldmia lr, {s4-s11}\n\t" "vldmdb r9!, {s16-s23}\n\t"                               \
    TQ_DWR_TAP("s4", "s5", "s6", "s7", "s20", "s21", "s22", "s23")                      \
    TQ_DWR_TAP("s8", "s9", "s10", "s11", "s16", "s17", "s18", "s19")
#define TQ_DWK_CHUNK1                                                                   \
    "vldmia lr, {s4-s7}\n\t" "vldmdb r9!, {s16-s19}\n\t"                                \
    TQ_DWR_TAP("s4", "s5", "s6", "s7", "s16", "s17", "s18", "s19")
#define TQ_DWK_RUN(ROW)                                                                 \
    __asm__ volatile("ldm r0, {r1, r2, r3, r4, r5, r6}\n\t"                              \
                     "movs r8, #0\n\t"                                                   \
                     "movs r12, #0\n\t"                                                  \
                     "1:\n\t"                                                            \
                     "vmov s0, s1, r12, r12\n\t"                                         \
                     "vmov s2, s3, r12, r12\n\t"                                         \
                     "mov r9, r3\n\t"                                                    \
                     "mov r10, r1\n\t"                                                   \
                     "mov r11, r2\n\t"                                                   \
                     "2:\n\t"                                                            \
                     "ldr lr, [r10], #4\n\t"                                             \
                     "add lr, lr, r8\n\t"                                                \
                     ROW                                                                 \
                     "subs r11, r11, #1\n\t"                                             \
                     "bne 2b\n\t"                                                        \
                     "vstmia r4, {s0-s3}\n\t"                                            \
                     "add r4, r4, r5\n\t"                                                \
                     "add r8, r8, #16\n\t"                                               \
                     "subs r6, r6, #1\n\t"                                               \
                     "bne 1b"                                                            \
                     : "+r"(a)                                                           \
                     :                                                                   \
                     : "r1", "r2", "r3", "r4", "r5", "r6", "r8", "r9", "r10", "r11",     \
                       "r12", "lr", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", \
                       "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17",     \
                       "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26",    \
                       "s27", "cc", "memory")

/* Output rows tq_dw_gather_rowk takes at most. */
#define TQ_DWK_MAX_ROWS 7

/* count (>= 1) pixels of an input row, pixel k at gi + k * step floats,
 * each the sum, from +0.0f, over the nrow (1 .. TQ_DWK_MAX_ROWS) output
 * rows r of the m (1 .. 7) factor columns frow[r] + 4 (x0 + k) .. times m
 * taps: tap j of row r is the 4 floats at w_end - 4 (r m + j + 1) (the
 * filter rows kyl[0], kyl[0] - 1, ... read backwards at stride 1, or taps
 * packed that way). */
static void tq_dw_gather_rowk(const float *const *frow, int32_t nrow, int32_t m, const float *w_end,
                              int32_t x0, float *gi, int32_t step, int32_t count)
{
    const float *rows[TQ_DWK_MAX_ROWS];
    tq_dw_rowk_args args;
    register const tq_dw_rowk_args *a __asm__("r0") = &args;
    int32_t r;
    for (r = 0; r < nrow; r++) {
        rows[r] = frow[r] + (ptrdiff_t)x0 * TQ_DW_LANES;
    }
    args.rows = rows;
    args.nrow = nrow;
    args.w_end = w_end;
    args.gi = gi;
    args.step = step * (int32_t)sizeof(float);
    args.count = count;
    switch (m) {
    case 1:
        TQ_DWK_RUN(TQ_DWK_CHUNK1);
        break;
    case 2:
        TQ_DWK_RUN(TQ_DWK_CHUNK2);
        break;
    case 3:
        TQ_DWK_RUN(TQ_DWK_CHUNK3(""));
        break;
    case 4:
        TQ_DWK_RUN(TQ_DWK_CHUNK3("!") TQ_DWK_CHUNK1);
        break;
    case 5:
        TQ_DWK_RUN(TQ_DWK_CHUNK3("!") TQ_DWK_CHUNK2);
        break;
    case 6:
        TQ_DWK_RUN(TQ_DWK_CHUNK3("!") TQ_DWK_CHUNK3(""));
        break;
    default:
        TQ_DWK_RUN(TQ_DWK_CHUNK3("!") TQ_DWK_CHUNK3("!") TQ_DWK_CHUNK1);
        break;
    }
}

/* The input columns [ix_lo, ix_hi) of one input row (stride and dilation 1,
 * four valid lanes, every pixel's kw taps on output columns or on the
 * factor rows' zero columns; gin_row is the row's first pixel) in one
 * assembly loop: tq_dw_gather_row3 for a 3-wide window,
 * tq_dw_gather_rowk for the others up to 7 wide (with up to
 * TQ_DWK_MAX_ROWS output rows). Returns 0, having written nothing, for the
 * shapes it does not take. */
static int tq_dw_gather_row_fpu(const float *const *frow, const int32_t *kyl, int32_t nrow,
                                const float *wf, int32_t kw, int32_t pl, int32_t ix_lo, int32_t ix_hi,
                                int32_t ch, float *gin_row)
{
    const float *w_end = wf + ((size_t)kyl[0] + 1) * kw * TQ_DW_LANES;
    if (nrow < 1 || kyl[nrow - 1] != kyl[0] - nrow + 1) {
        return 0;
    }
    if (kw == 3 && nrow <= 3) {
        tq_dw_gather_row3(frow, nrow, w_end, ix_lo + pl - 2, gin_row + (size_t)ix_lo * ch, ch,
                          ix_hi - ix_lo);
        return 1;
    }
    if (kw <= 7 && nrow <= TQ_DWK_MAX_ROWS) {
        tq_dw_gather_rowk(frow, nrow, kw, w_end, ix_lo + pl - kw + 1, gin_row + (size_t)ix_lo * ch, ch,
                          ix_hi - ix_lo);
        return 1;
    }
    return 0;
}
#endif

/* Packed taps of one column class (four lanes each) at most: a 7x7 stride-2
 * window's classes have up to 4 taps in up to 4 output rows. */
#define TQ_DWK_CLASS_TAPS 16

/* count (>= 1) members of a column class in a row, all of whose m taps are
 * inside the output: member k is gi + k * step floats and reads factor
 * columns ox0 + k .. ox0 + k + m - 1 of each row frow[r] (r < nrow), with
 * the packed taps wpk[(r * m + t) * 4 + i]; 1 <= nrow, m <= 2. On an Arm
 * FPU the taps stay in registers: a member is two VMOV (zero sums), one
 * VLDM and 4m VMLA per row, one VSTM. */
static void tq_dw_gather_run(const float *const *frow, int32_t nrow, int32_t m, int32_t ox0,
                             const float *wpk, float *gi, int32_t step, int32_t count)
{
#ifdef TQ_DWG_ASM
    const float *f0 = frow[0] + (size_t)ox0 * TQ_DW_LANES;
    const float *f1 = frow[nrow - 1] + (size_t)ox0 * TQ_DW_LANES;
    step *= (int32_t)sizeof(float);
    if (nrow == 1 && m == 1) {
        TQ_DWG_RUN(TQ_DWG_ROW_M1("f0", "s16", "s17", "s18", "s19"));
    } else if (nrow == 1) {
        TQ_DWG_RUN(TQ_DWG_ROW_M2("f0", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23"));
    } else if (m == 1) {
        TQ_DWG_RUN(TQ_DWG_ROW_M1("f0", "s16", "s17", "s18", "s19")
                   TQ_DWG_ROW_M1("f1", "s20", "s21", "s22", "s23"));
    } else {
        TQ_DWG_RUN(TQ_DWG_ROW_M2("f0", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23")
                   TQ_DWG_ROW_M2("f1", "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31"));
    }
#else
    int32_t k, r;
    for (k = 0; k < count; k++, gi += step) {
        TQ_DW_ACC4(0.0f, 0.0f, 0.0f, 0.0f);
        for (r = 0; r < nrow; r++) {
            TQ_DW_STRIDED4(frow[r] + (size_t)(ox0 + k) * TQ_DW_LANES, wpk + (size_t)r * m * TQ_DW_LANES,
                           TQ_DW_LANES, m);
        }
        gi[0] = a0;
        gi[1] = a1;
        gi[2] = a2;
        gi[3] = a3;
    }
#endif
}

/* The taps of column class cls of a strided (sw > 1), dilation-1 window:
 * kx = kx0 - t * sw for t < m (returned; 0 for none), kx0 the largest. */
static int32_t tq_dw_class_taps(int32_t kw, int32_t sw, int32_t pl, int32_t cls, int32_t *kx0)
{
    *kx0 = kw - 1 - ((kw - 1 - (cls + pl) % sw) % sw + sw) % sw;
    return *kx0 < 0 ? 0 : *kx0 / sw + 1;
}

/* Zero columns the factor rows need before (*padl) and after (*padr) the
 * output columns so that every member of every column class reads its m
 * columns inside them (strided, dilation-1 windows; tq_dw_gather_row_classes
 * with padded). */
#ifdef TQ_DWG_ASM
static void tq_dw_class_pads(int32_t kw, int32_t sw, int32_t pl, int32_t in_w, int32_t ow, int32_t *padl,
                             int32_t *padr)
{
    int32_t cls, kx0, m;
    *padl = 0;
    *padr = 0;
    for (cls = 0; cls < sw && cls < in_w; cls++) {
        m = tq_dw_class_taps(kw, sw, pl, cls, &kx0);
        if (m > 0) {
            /* the first member reads from column first, the last up to last */
            const int32_t first = (cls + pl - kx0) / sw;
            const int32_t last = first + (in_w - 1 - cls) / sw + m - 1;
            *padl = -first > *padl ? -first : *padl;
            *padr = last - (ow - 1) > *padr ? last - (ow - 1) : *padr;
        }
    }
}
#endif

/* One input row of a strided (sw > 1), dilation-1 gather with four valid
 * lanes, by column class: the input columns ix = cls, cls + sw, ... share
 * their taps kx0, kx0 - sw, ... (m of them), which read m neighbouring
 * output columns from ox0 on, and ox0 grows by one per member. When the
 * row has at most two output rows and the class at most two taps (every
 * class of a 3x3 or 4x4 stride-2 window), its filter taps are packed in that
 * order (rows, then taps) once and the members whose m columns are all
 * inside the output run as tq_dw_gather_run; the others take
 * tq_dw_gather_pixel. The terms and their order are the per-pixel path's.
 * With padded (the factor rows carry tq_dw_class_pads' zero columns), on an
 * Arm FPU, a larger class of at most TQ_DWK_CLASS_TAPS taps over its rows
 * (those of 5x5 and 7x7 stride-2 windows) runs all its members in
 * tq_dw_gather_rowk, the taps packed as that loop reads them. */
__attribute__((noinline))
static void tq_dw_gather_row_classes(const tq_conv_params *p, int32_t ow, int32_t in_w, int32_t ch,
                                     int32_t kw, const float *const *frow, const int32_t *kyl,
                                     int32_t nrow, const float *wf, float *gin_row,
                                     const int16_t *col_off, const int16_t *col_tap,
                                     const uint8_t *col_n, int padded)
{
    const int32_t sw = p->stride_w, pl = p->pad_left;
    float wpk[TQ_DWK_CLASS_TAPS * TQ_DW_LANES];
    int32_t cls, ix, r, t, i, kx0;
    (void)padded;
    for (cls = 0; cls < sw && cls < in_w; cls++) {
        const int32_t m = tq_dw_class_taps(kw, sw, pl, cls, &kx0);
        const int run = nrow >= 1 && nrow <= 2 && m <= 2; /* nrow * m <= TQ_DWK_CLASS_TAPS */
#ifdef TQ_DWG_ASM
        /* (the classes tq_dw_gather_run takes are faster there) */
        if (padded && !run && m > 0 && nrow > 0 && nrow <= TQ_DWK_MAX_ROWS && m <= 7 &&
            nrow * m <= TQ_DWK_CLASS_TAPS) {
            /* tap t of row r at wpk_end - 4 (r m + t + 1) */
            for (r = 0; r < nrow; r++) {
                for (t = 0; t < m; t++) {
                    memcpy(wpk + (size_t)(nrow * m - 1 - (r * m + t)) * TQ_DW_LANES,
                           wf + ((size_t)kyl[r] * kw + kx0 - t * sw) * TQ_DW_LANES, TQ_DW_LANES * sizeof(float));
                }
            }
            tq_dw_gather_rowk(frow, nrow, m, wpk + (size_t)nrow * m * TQ_DW_LANES, (cls + pl - kx0) / sw,
                              gin_row + (size_t)cls * ch, sw * ch, (in_w - 1 - cls) / sw + 1);
            continue;
        }
#endif
        /* members from ix_a on read output columns >= 0, before ix_b end inside */
        const int32_t ix_a = kx0 - pl > cls ? cls + (kx0 - pl - cls + sw - 1) / sw * sw : cls;
        const int32_t ix_b = (ow - m) * sw + kx0 - pl + 1;
        for (r = 0; r < nrow && run; r++) {
            for (t = 0; t < m; t++) {
                for (i = 0; i < TQ_DW_LANES; i++) {
                    wpk[(r * m + t) * TQ_DW_LANES + i] =
                        wf[((size_t)kyl[r] * kw + kx0 - t * sw) * TQ_DW_LANES + i];
                }
            }
        }
        for (ix = cls; ix < in_w; ix += sw) {
            if (run && m > 0 && ix >= ix_a && ix < ix_b) {
                const int32_t end = ix_b < in_w ? ix_b : in_w, count = (end - ix + sw - 1) / sw;
                tq_dw_gather_run(frow, nrow, m, (ix + pl - kx0) / sw, wpk, gin_row + (size_t)ix * ch,
                                 sw * ch, count);
                ix += (count - 1) * sw;
                continue;
            }
            tq_dw_gather_pixel(frow, kyl, nrow, wf, kw, col_off + (size_t)ix * kw,
                               col_tap + (size_t)ix * kw, col_n[ix], gin_row + (size_t)ix * ch,
                               TQ_DW_LANES);
        }
    }
}

/* One input row of the gather path (stride 1 or not): the input columns in
 * [ix_lo, ix_hi) have all kw taps on output columns or on the factor rows'
 * zero columns (stride and dilation 1; pass ix_lo = ix_hi for none) and
 * take a filter row per output row (on an Arm FPU with four valid lanes,
 * the whole range in the assembly loops of tq_dw_gather_row_fpu); the
 * others tq_dw_gather_pixel. gin_row is the row's first input pixel (lane
 * 0). */
static void tq_dw_gather_row(const float *const *frow, const int32_t *kyl, int32_t nrow, const float *wf,
                             int32_t kw, int32_t pl, int32_t ix_lo, int32_t ix_hi, int32_t in_w,
                             int32_t ch, const int16_t *col_off, const int16_t *col_tap, const uint8_t *col_n,
                             float *gin_row, int32_t valid)
{
    int inner_done = 0;
    int32_t ix, r;
#ifdef TQ_DWG_ASM
    if (valid == TQ_DW_LANES && ix_lo < ix_hi) {
        inner_done = tq_dw_gather_row_fpu(frow, kyl, nrow, wf, kw, pl, ix_lo, ix_hi, ch, gin_row);
    }
#endif
    for (ix = 0; ix < in_w; ix++) {
        float *gi = gin_row + (size_t)ix * ch;
        if (ix < ix_lo || ix >= ix_hi) {
            tq_dw_gather_pixel(frow, kyl, nrow, wf, kw, col_off + (size_t)ix * kw, col_tap + (size_t)ix * kw,
                               col_n[ix], gi, valid);
            continue;
        }
        if (inner_done) {
            ix = ix_hi - 1;
            continue;
        }
        {
            TQ_DW_ACC4(0.0f, 0.0f, 0.0f, 0.0f);
            for (r = 0; r < nrow; r++) {
                /* kw neighbouring output columns, filter row backwards */
                TQ_DW_ROW4(frow[r] + (ptrdiff_t)(ix + pl - kw + 1) * TQ_DW_LANES,
                           wf + (size_t)(kyl[r] + 1) * kw * TQ_DW_LANES, kw);
            }
            tq_dw_store_lanes(gi, valid, a0, a1, a2, a3);
        }
    }
}

/* tq_dw_factor_row by the fastest loop the core and the block take (the
 * row's first element o, lanes from lane[0]). */
static void tq_dw_factor_row_any(const float *grad_out, const uint8_t *mask, int32_t o, int32_t ow,
                                 int32_t ch, const int32_t *lane, const float *ws, int32_t valid, float *f)
{
#if TQ_USE_MVE_F32
    /* a flush (tq_f32.h) redoes the row in C */
    if (valid == TQ_DW_LANES) {
        tq_dw_factor_row_helium(grad_out, mask, o, ow, ch, lane, ws, f);
        if (!tq_fpscr_flushed()) {
            return;
        }
    }
#elif defined(TQ_DWG_ASM)
    if (valid == TQ_DW_LANES && ch % TQ_DW_LANES == 0 && ow > 0) {
        tq_dw_factor_row_fpu(grad_out, mask, o + lane[0], ow, ch, ws, f);
        return;
    }
#endif
    tq_dw_factor_row(grad_out, mask, o, ow, ch, lane, ws, valid, f);
}

/* Plane path (stride and dilation 1, where it fits): a channel block's
 * factors of every output row, with the zero columns that every input
 * pixel's window reaches on either side, fill one plane on the stack; then
 * each input row is one tq_dw_gather_row call over all its pixels, with the
 * output rows its window covers. The zero factors add zero terms, which
 * change no sum, so the sums are the gather path's; the ring's per-row
 * bookkeeping (about as many instructions as an 8-pixel row's terms) is
 * gone. Returns 0, having written nothing, where the plane does not fit. */
__attribute__((noinline))
static int tq_dw_bwd_plane(const tq_conv_params *p, const float *w_scale, const tq_dims *out_d,
                           const float *grad_out, const uint8_t *mask, const tq_dims *f_d,
                           const int8_t *filter, const tq_dims *in_d, float *grad_in)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, ch = in_d->c;
    const int32_t oh = out_d->h, ow = out_d->w, kh = f_d->h, kw = f_d->w;
    const int32_t pt = p->pad_top, pl = p->pad_left;
    /* input pixel (iy, ix) reads output columns ix + pl - kw + 1 .. ix + pl */
    const int32_t padl = kw - 1 - pl > 0 ? kw - 1 - pl : 0, padr = in_w + pl - ow > 0 ? in_w + pl - ow : 0;
    const int32_t fstride = (padl + ow + padr) * TQ_DW_LANES;
    float wf[TQ_DW_BWD_MAX_TAPS * TQ_DW_LANES];
    float plane[TQ_DW_GATHER_FLOATS];
    const float *frow[TQ_DW_BWD_MAX_TAPS];
    int32_t kyl[TQ_DW_BWD_MAX_TAPS];
    int32_t c0, b, oy, iy, nrow;
    if (p->stride_h != 1 || p->stride_w != 1 || p->dilation_h != 1 || p->dilation_w != 1 ||
        (int64_t)oh * fstride > TQ_DW_GATHER_FLOATS) {
        return 0;
    }
    if (padl > 0 || padr > 0) {
        memset(plane, 0, (size_t)oh * fstride * sizeof(float));
    }
    for (c0 = 0; c0 < ch; c0 += TQ_DW_LANES) {
        int32_t lane[TQ_DW_LANES];
        float ws[TQ_DW_LANES];
        const int32_t valid = tq_dw_block_setup(c0, ch, kh * kw, w_scale, filter, lane, ws, wf);
        for (b = 0; b < out_d->n; b++) {
            float *gin = grad_in + (size_t)b * in_h * in_w * ch + c0;
            for (oy = 0; oy < oh; oy++) {
                tq_dw_factor_row_any(grad_out, mask, ((b * oh + oy) * ow) * ch, ow, ch, lane, ws, valid,
                                     plane + (size_t)oy * fstride + padl * TQ_DW_LANES);
            }
            for (iy = 0; iy < in_h; iy++, gin += (size_t)in_w * ch) {
                /* output rows iy + pt - kh + 1 .. iy + pt inside the output, filter
                 * rows kh - 1 .. 0 */
                const int32_t oy_hi = iy + pt < oh - 1 ? iy + pt : oh - 1;
                oy = iy + pt - kh + 1 > 0 ? iy + pt - kh + 1 : 0;
                for (nrow = 0; oy <= oy_hi; oy++, nrow++) {
                    frow[nrow] = plane + (size_t)oy * fstride + padl * TQ_DW_LANES;
                    kyl[nrow] = iy + pt - oy;
                }
                tq_dw_gather_row(frow, kyl, nrow, wf, kw, pl, 0, in_w, in_w, ch, NULL, NULL, NULL, gin, valid);
            }
        }
    }
    return 1;
}

/* Gather path: each input pixel's four lanes are summed in registers over
 * the output pixels whose windows cover it, visited in row-major output
 * order (taps in decreasing ky, then decreasing kx), so every sum adds the
 * scatter's terms in the scatter's order. The factors of the last
 * tq_dw_gather_rows output rows are kept in a ring on the stack. */
static void tq_dw_bwd_gather(const tq_conv_params *p, const float *w_scale,
                             const tq_dims *out_d, const float *grad_out,
                             const uint8_t *mask, const tq_dims *f_d,
                             const int8_t *filter, const tq_dims *in_d, float *grad_in)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, ch = in_d->c;
    const int32_t oh = out_d->h, ow = out_d->w, kh = f_d->h, kw = f_d->w;
    const int32_t sh = p->stride_h, sw = p->stride_w, dh = p->dilation_h, dw = p->dilation_w;
    const int32_t pt = p->pad_top, pl = p->pad_left;
    const int32_t ring = tq_dw_gather_rows(p, f_d);
    /* input columns whose kw taps all land on output columns (stride and
     * dilation 1; none otherwise: ix_hi is 0) */
    const int32_t ix_in = kw - 1 - pl > 0 ? kw - 1 - pl : 0;
    const int32_t ix_out = sw == 1 && dw == 1 ? (ow - pl < in_w ? ow - pl : in_w) : 0;
    /* dilation 1: where the ring has room, the factor rows get zero columns,
     * padl before and padr after, so that every input column is an inner one
     * (stride 1: ix_in and in_w - ix_out) or every member of a column class
     * reads inside them (larger strides on an Arm FPU); a zero factor adds a
     * zero term, which changes no sum */
    int32_t padl = 0, padr = 0;
    int pad;
    int32_t ix_lo, ix_hi, fstride, f0;
    float wf[TQ_DW_BWD_MAX_TAPS * TQ_DW_LANES];
    float fbuf[TQ_DW_GATHER_FLOATS];
    /* per input column ix: its col_n[ix] taps, in increasing output column,
     * as factor offsets (output column x 4) and filter offsets (kx x 4) */
    int16_t col_off[TQ_DW_GATHER_TAPS], col_tap[TQ_DW_GATHER_TAPS];
    uint8_t col_n[TQ_DW_GATHER_COLS];
    int32_t c0, b, iy, ix, ky, kx;
    for (ix = 0; ix < in_w; ix++) {
        int32_t n = 0;
        for (kx = kw - 1; kx >= 0; kx--) {
            const int32_t u = ix + pl - kx * dw;
            if (u >= 0 && u % sw == 0 && u / sw < ow) {
                col_off[ix * kw + n] = (int16_t)(u / sw * TQ_DW_LANES);
                col_tap[ix * kw + n++] = (int16_t)(kx * TQ_DW_LANES);
            }
        }
        col_n[ix] = (uint8_t)n;
    }
    if (sw == 1 && dw == 1) {
        padl = ix_in;
        padr = in_w - ix_out;
    }
#ifdef TQ_DWG_ASM
    else if (dw == 1) {
        tq_dw_class_pads(kw, sw, pl, in_w, ow, &padl, &padr);
    }
#endif
    pad = (padl > 0 || padr > 0) && (int64_t)ring * (padl + ow + padr) * TQ_DW_LANES <= TQ_DW_GATHER_FLOATS;
    ix_lo = pad && sw == 1 ? 0 : ix_in;
    ix_hi = pad && sw == 1 ? in_w : ix_out;
    fstride = (pad ? padl + ow + padr : ow) * TQ_DW_LANES;
    f0 = pad ? padl * TQ_DW_LANES : 0;
    if (pad) {
        memset(fbuf, 0, (size_t)ring * fstride * sizeof(float));
    }
    for (c0 = 0; c0 < ch; c0 += TQ_DW_LANES) {
        int32_t lane[TQ_DW_LANES];
        float ws[TQ_DW_LANES];
        const int32_t valid = tq_dw_block_setup(c0, ch, kh * kw, w_scale, filter, lane, ws, wf);
        for (b = 0; b < out_d->n; b++) {
            float *gin = grad_in + (size_t)b * in_h * in_w * ch + c0;
            int32_t next_oy = 0;
            for (iy = 0; iy < in_h; iy++) {
                const float *frow[TQ_DW_BWD_MAX_TAPS];
                int32_t kyl[TQ_DW_BWD_MAX_TAPS], nrow = 0;
                for (ky = kh - 1; ky >= 0; ky--) {
                    const int32_t t = iy + pt - ky * dh;
                    int32_t oy;
                    if (t < 0 || t % sh != 0 || (oy = t / sh) >= oh) {
                        continue;
                    }
                    while (next_oy <= oy) {
                        const int32_t o = ((b * oh + next_oy) * ow) * ch;
                        tq_dw_factor_row_any(grad_out, mask, o, ow, ch, lane, ws, valid,
                                             fbuf + (size_t)(next_oy % ring) * fstride + f0);
                        next_oy++;
                    }
                    frow[nrow] = fbuf + (size_t)(oy % ring) * fstride + f0;
                    kyl[nrow++] = ky;
                }
                if (sw > 1 && dw == 1 && valid == TQ_DW_LANES) {
                    tq_dw_gather_row_classes(p, ow, in_w, ch, kw, frow, kyl, nrow, wf,
                                             gin + (size_t)iy * in_w * ch, col_off, col_tap, col_n, pad);
                    continue;
                }
                /* the rows run on the scalar FPU on M55 too: its whole-row loops
                 * take fewer instructions than per-pixel Helium rows did */
                tq_dw_gather_row(frow, kyl, nrow, wf, kw, pl, ix_lo, ix_hi, in_w, ch, col_off, col_tap,
                                 col_n, gin + (size_t)iy * in_w * ch, valid);
            }
        }
    }
}

void tq_dw_backward_input_blocked(const tq_conv_params *p, const float *w_scale,
                                  const tq_dims *out_d, const float *grad_out,
                                  const uint8_t *mask, const tq_dims *f_d,
                                  const int8_t *filter, const tq_dims *in_d, float *grad_in)
{
    if ((int64_t)tq_dw_gather_rows(p, f_d) * out_d->w * TQ_DW_LANES <= TQ_DW_GATHER_FLOATS &&
        in_d->w <= TQ_DW_GATHER_COLS && in_d->w * f_d->w <= TQ_DW_GATHER_TAPS) {
        if (!tq_dw_bwd_plane(p, w_scale, out_d, grad_out, mask, f_d, filter, in_d, grad_in)) {
            tq_dw_bwd_gather(p, w_scale, out_d, grad_out, mask, f_d, filter, in_d, grad_in);
        }
    } else {
        tq_dw_bwd_scatter(p, w_scale, out_d, grad_out, mask, f_d, filter, in_d, grad_in);
    }
}

/* The lanes of a weight-row call: saved channel jl[i] and output channel
 * cl[i] (lanes past n repeat the last one, with factor 0). */
typedef struct {
    int32_t jl[TQ_DW_LANES], cl[TQ_DW_LANES], n;
} tq_dw_lanes_t;

/* Scatter weight rows: per output pixel the four lanes' factors (mask ? g :
 * 0) are formed once; each tap inside the input adds factor * (x + offset)
 * to its lane's row entry, in row-major output order like the plain loops
 * (rows start at +0.0f; gb gets the factors' sums). */
static void tq_dw_wrows_scatter(const tq_conv_params *p, const tq_dims *in_d, const int8_t *input,
                                const tq_dw_lanes_t *ln, const tq_dims *out_d, const float *grad_out,
                                const uint8_t *mask, int32_t kh, int32_t kw, float *rows, float *gb)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, n_saved = in_d->c, out_c = out_d->c;
    const int32_t taps = kh * kw, off = p->input_offset;
    int32_t i, b, oy, ox, ky, kx;
    float *row[TQ_DW_LANES];
    for (i = 0; i < TQ_DW_LANES; i++) {
        row[i] = rows + (size_t)(i < ln->n ? i : ln->n - 1) * taps;
    }
    for (b = 0; b < out_d->n; b++) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * n_saved;
        for (oy = 0; oy < out_d->h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_d->w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t o = ((b * out_d->h + oy) * out_d->w + ox) * out_c;
                float s[TQ_DW_LANES];
                for (i = 0; i < TQ_DW_LANES; i++) {
                    s[i] = i < ln->n && tq_mask_pass(mask, o + ln->cl[i]) ? grad_out[o + ln->cl[i]] : 0.0f;
                    gb[i] += s[i];
                }
                if (s[0] == 0.0f && s[1] == 0.0f && s[2] == 0.0f && s[3] == 0.0f) {
                    continue;
                }
                for (ky = 0; ky < kh; ky++) {
                    const int32_t iy = y0 + ky * p->dilation_h;
                    if (iy < 0 || iy >= in_h) {
                        continue;
                    }
                    for (kx = 0; kx < kw; kx++) {
                        const int32_t ix = x0 + kx * p->dilation_w;
                        const int8_t *x;
                        const int32_t tap = ky * kw + kx;
                        if (ix < 0 || ix >= in_w) {
                            continue;
                        }
                        x = in_b + ((size_t)iy * in_w + ix) * n_saved;
                        TQ_DW_ADD(row[0], tap, s[0], (float)(x[ln->jl[0]] + off));
                        TQ_DW_ADD(row[1], tap, s[1], (float)(x[ln->jl[1]] + off));
                        TQ_DW_ADD(row[2], tap, s[2], (float)(x[ln->jl[2]] + off));
                        TQ_DW_ADD(row[3], tap, s[3], (float)(x[ln->jl[3]] + off));
                    }
                }
            }
        }
    }
}

/* 1 when the four lanes are four neighbouring channels (jl, cl). */
static int tq_dw_lanes_dense(const tq_dw_lanes_t *ln)
{
    return ln->n == TQ_DW_LANES && ln->jl[1] == ln->jl[0] + 1 && ln->jl[2] == ln->jl[0] + 2 &&
           ln->jl[3] == ln->jl[0] + 3 && ln->cl[1] == ln->cl[0] + 1 &&
           ln->cl[2] == ln->cl[0] + 2 && ln->cl[3] == ln->cl[0] + 3;
}

/* xr[4 ix + i] = (float)(x[ix * n_saved + jl[i]] + off) for ix < in_w: one
 * input row's four lanes in fp32. With dense lanes on an Arm FPU with the
 * DSP extension, each pixel is one (possibly unaligned) LDR of the four
 * bytes, four SXTAB adding the offset, two VMOV, four VCVT and one VSTM. */
static void tq_dw_convert_row(const int8_t *x, int32_t in_w, int32_t n_saved,
                              const tq_dw_lanes_t *ln, int dense, int32_t off, float *xr)
{
    int32_t ix, i;
#if defined(__ARM_FP) && (__ARM_FP & 4) && defined(__ARM_FEATURE_DSP) && !defined(TQ_FORCE_PORTABLE)
    if (dense && in_w > 0) {
        const int8_t *xp = x + ln->jl[0];
        int32_t n = in_w, w, t0, t1;
        __asm__ volatile("1:\n\t"
                         "ldr %[w], [%[x]]\n\t"
                         "add %[x], %[x], %[stride]\n\t"
                         "sxtab %[t0], %[off], %[w]\n\t"
                         "sxtab %[t1], %[off], %[w], ror #8\n\t"
                         "vmov s0, s1, %[t0], %[t1]\n\t"
                         "sxtab %[t0], %[off], %[w], ror #16\n\t"
                         "sxtab %[t1], %[off], %[w], ror #24\n\t"
                         "vmov s2, s3, %[t0], %[t1]\n\t"
                         "vcvt.f32.s32 s0, s0\n\t"
                         "vcvt.f32.s32 s1, s1\n\t"
                         "vcvt.f32.s32 s2, s2\n\t"
                         "vcvt.f32.s32 s3, s3\n\t"
                         "vstmia %[xr]!, {s0-s3}\n\t"
                         "subs %[n], %[n], #1\n\t"
                         "bne 1b"
                         : [x] "+r"(xp), [xr] "+r"(xr), [n] "+r"(n), [w] "=&r"(w), [t0] "=&r"(t0),
                           [t1] "=&r"(t1)
                         : [stride] "r"(n_saved), [off] "r"(off)
                         : "s0", "s1", "s2", "s3", "cc", "memory");
        return;
    }
#else
    (void)dense;
#endif
    for (ix = 0; ix < in_w; ix++, x += n_saved) {
        for (i = 0; i < TQ_DW_LANES; i++) {
            xr[ix * TQ_DW_LANES + i] = (float)(x[ln->jl[i]] + off);
        }
    }
}

/* f[4 ox + i] = (mask ? g : +0.0f) of lane i at output pixel (row o, ox)
 * for ox < ow (lanes past n: +0.0f), summed into gb[i] in ox order. With
 * dense lanes whose mask bits share a nibble, each pixel is one mask byte
 * and four integer ANDs (bit clear turns g into +0.0f). */
static void tq_dw_factor_lanes(const float *grad_out, const uint8_t *mask, int32_t o, int32_t ow,
                               int32_t out_c, const tq_dw_lanes_t *ln, int dense, float *f,
                               float *gb)
{
    int32_t ox, i;
    if (dense && out_c % 4 == 0 && ln->cl[0] % 4 == 0) {
        float s0 = gb[0], s1 = gb[1], s2 = gb[2], s3 = gb[3];
        for (ox = 0; ox < ow; ox++, f += TQ_DW_LANES) {
            const int32_t e = o + ox * out_c + ln->cl[0];
            const uint32_t bits = mask != NULL ? (uint32_t)mask[e >> 3] >> (e & 7) : 0xFu;
            for (i = 0; i < TQ_DW_LANES; i++) {
                f[i] = tq_f32_keep(grad_out[e + i], (bits >> i) & 1u);
            }
            s0 += f[0];
            s1 += f[1];
            s2 += f[2];
            s3 += f[3];
        }
        gb[0] = s0;
        gb[1] = s1;
        gb[2] = s2;
        gb[3] = s3;
        return;
    }
    for (ox = 0; ox < ow; ox++) {
        for (i = 0; i < TQ_DW_LANES; i++) {
            const int32_t e = o + ox * out_c + ln->cl[i];
            const float g = i < ln->n && tq_mask_pass(mask, e) ? grad_out[e] : 0.0f;
            f[ox * TQ_DW_LANES + i] = g;
            gb[i] += g;
        }
    }
}

/* Input rows the row-wise path keeps converted: every row one output row's
 * windows read. */
static int32_t tq_dw_wrows_ring(const tq_conv_params *p, int32_t kh)
{
    return (kh - 1) * p->dilation_h + 1;
}

/* Row-wise weight rows: per output row, its factors (mask ? g : 0, four
 * lanes per pixel) are formed once, the input rows its windows read are
 * converted to fp32 (x + offset, four lanes per pixel) once into a ring that
 * the next output rows reuse, and each tap's four lane sums run in
 * registers along the row. Every sum adds the scatter's terms in its order
 * (output pixels in row-major order; the scatter's skipped zero terms leave
 * a sum from +0.0f unchanged). */
static void tq_dw_wrows_rowwise(const tq_conv_params *p, const tq_dims *in_d, const int8_t *input,
                                const tq_dw_lanes_t *ln, const tq_dims *out_d, const float *grad_out,
                                const uint8_t *mask, int32_t kh, int32_t kw, float *rows, float *gb)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, n_saved = in_d->c, out_c = out_d->c;
    const int32_t oh = out_d->h, ow = out_d->w, sw = p->stride_w, dw = p->dilation_w;
    const int32_t taps = kh * kw, off = p->input_offset, ring = tq_dw_wrows_ring(p, kh);
    const int dense = tq_dw_lanes_dense(ln);
    float buf[TQ_DW_WROWS_FLOATS];
    float *f = buf, *xring = buf + (size_t)ow * TQ_DW_LANES;
    float zero_row[TQ_DW_BWD_MAX_TAPS];
    float *row[TQ_DW_LANES];
    int32_t tag[TQ_DW_BWD_MAX_TAPS];
    int32_t i, b, oy, ky, kx;
    for (i = 0; i < TQ_DW_LANES; i++) {
        /* lanes past n sum into zero_row, which their zero factors leave at
         * +0.0f */
        row[i] = i < ln->n ? rows + (size_t)i * taps : zero_row;
    }
    for (i = 0; i < taps; i++) {
        zero_row[i] = 0.0f;
    }
    for (b = 0; b < out_d->n; b++) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * n_saved;
        for (i = 0; i < ring; i++) {
            tag[i] = -1;
        }
        for (oy = 0; oy < oh; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            tq_dw_factor_lanes(grad_out, mask, (b * oh + oy) * ow * out_c, ow, out_c, ln, dense, f, gb);
            for (ky = 0; ky < kh; ky++) {
                const int32_t iy = y0 + ky * p->dilation_h;
                int32_t slot;
                float *xr;
                if (iy < 0 || iy >= in_h) {
                    continue;
                }
                slot = iy % ring;
                xr = xring + (size_t)slot * in_w * TQ_DW_LANES;
                if (tag[slot] != iy) {
                    tq_dw_convert_row(in_b + (size_t)iy * in_w * n_saved, in_w, n_saved, ln, dense,
                                      off, xr);
                    tag[slot] = iy;
                }
                for (kx = 0; kx < kw; kx++) {
                    /* output columns whose tap kx lands inside the input */
                    const int32_t lead = p->pad_left - kx * dw;
                    const int32_t lo = lead > 0 ? (lead + sw - 1) / sw : 0;
                    const int32_t last = in_w - 1 + lead; /* last ox * sw that fits */
                    const int32_t hi_ = last < 0 ? 0 : last / sw + 1;
                    const int32_t hi = hi_ < ow ? hi_ : ow;
                    const int32_t tap = ky * kw + kx;
                    const float *fp = f + (size_t)lo * TQ_DW_LANES;
                    const float *xp = xr + (size_t)(lo * sw - lead) * TQ_DW_LANES;
                    TQ_DW_ACC4(row[0][tap], row[1][tap], row[2][tap], row[3][tap]);
                    if (hi > lo) {
                        TQ_DW_STRIDED4(fp, xp, sw * TQ_DW_LANES, hi - lo);
                    }
                    row[0][tap] = a0;
                    row[1][tap] = a1;
                    row[2][tap] = a2;
                    row[3][tap] = a3;
                }
            }
        }
    }
}

void tq_dw_weight_rows(const tq_conv_params *p, float input_scale, const tq_dims *in_d,
                       const int8_t *input, const int32_t *j, const int32_t *c, int32_t n,
                       const tq_dims *out_d, const float *grad_out, const uint8_t *mask,
                       int32_t kh, int32_t kw, float *rows, float *grad_b)
{
    const int32_t taps = kh * kw;
    float gb[TQ_DW_LANES] = {0.0f, 0.0f, 0.0f, 0.0f};
    tq_dw_lanes_t ln;
    int32_t i, t;
    ln.n = n;
    for (i = 0; i < TQ_DW_LANES; i++) {
        const int32_t l = i < n ? i : n - 1;
        ln.jl[i] = j[l];
        ln.cl[i] = c[l];
    }
    for (t = 0; t < n * taps; t++) {
        rows[t] = 0.0f;
    }
    if (taps <= TQ_DW_BWD_MAX_TAPS && tq_dw_wrows_ring(p, kh) <= TQ_DW_BWD_MAX_TAPS &&
        ((int64_t)out_d->w + (int64_t)tq_dw_wrows_ring(p, kh) * in_d->w) * TQ_DW_LANES <=
            TQ_DW_WROWS_FLOATS) {
        tq_dw_wrows_rowwise(p, in_d, input, &ln, out_d, grad_out, mask, kh, kw, rows, gb);
    } else {
        tq_dw_wrows_scatter(p, in_d, input, &ln, out_d, grad_out, mask, kh, kw, rows, gb);
    }
    for (t = 0; t < n * taps; t++) {
        rows[t] *= input_scale;
    }
    for (i = 0; i < n; i++) {
        grad_b[i] = gb[i];
    }
}
