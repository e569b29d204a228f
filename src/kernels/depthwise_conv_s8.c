/* tinyqt: int8 depthwise convolution, any kernel size, stride, padding,
 * dilation and depth multiplier. Reference C path; the ARM DSP path
 * (__ARM_FEATURE_DSP), the Helium path and the x86-64 AVX2 host path live
 * beside it and give identical bytes. */
#include <stddef.h>
#include <string.h>

#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_checked.h"
#include "tq_mask.h"
#include "tq_mve.h"
#include "tq_simd.h"
#include "tq_x86.h"

int32_t tq_depthwise_conv_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter)
{
    (void)input;
    (void)filter;
    return 0;
}

/* Channels are processed in blocks of TQ_DW_BLOCK so the accumulators live
 * on the stack and the inner loop runs over contiguous channels. */
#define TQ_DW_BLOCK 64

static void tq_depthwise_conv_s8_portable(const tq_conv_params *p, const tq_channel_quant *q,
                                          const tq_dims *in_d, const int8_t *input,
                                          const tq_dims *f_d, const int8_t *filter,
                                          const int32_t *bias, const tq_dims *out_d,
                                          int8_t *output)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w, out_c = out_d->c;
    const int32_t mult = out_c / in_c;
    int32_t acc[TQ_DW_BLOCK];
    int32_t b, oy, ox, c0, c, ky, kx;
    for (b = 0; b < out_d->n; b++) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < out_d->h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_d->w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                for (c0 = 0; c0 < out_c; c0 += TQ_DW_BLOCK) {
                    const int32_t n = out_c - c0 < TQ_DW_BLOCK ? out_c - c0 : TQ_DW_BLOCK;
                    for (c = 0; c < n; c++) {
                        acc[c] = bias != NULL ? bias[c0 + c] : 0;
                    }
                    for (ky = 0; ky < k_h; ky++) {
                        const int32_t iy = y0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (kx = 0; kx < k_w; kx++) {
                            const int32_t ix = x0 + kx * p->dilation_w;
                            const int8_t *x, *w;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            x = in_b + ((size_t)iy * in_w + ix) * in_c;
                            w = filter + ((size_t)ky * k_w + kx) * out_c + c0;
                            if (mult == 1) {
                                for (c = 0; c < n; c++) {
                                    acc[c] = tq_add_wrap(acc[c], (x[c0 + c] + p->input_offset) * w[c]);
                                }
                            } else {
                                for (c = 0; c < n; c++) {
                                    acc[c] = tq_add_wrap(acc[c], (x[(c0 + c) / mult] + p->input_offset) * w[c]);
                                }
                            }
                        }
                    }
                    for (c = 0; c < n; c++) {
                        *output++ = tq_requantize_s8(acc[c], q->multiplier[c0 + c],
                                                     q->shift[c0 + c], p->output_offset,
                                                     p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

#if TQ_USE_DSP || TQ_USE_MVE
/* Padded rows or columns a K-tap window axis needs (dilation 1). */
static int32_t tq_dw_pad_extent(int32_t out, int32_t stride, int32_t k)
{
    return (out - 1) * stride + k;
}

/* buf[(y * pw + x) * words ..] (y < ph, x < pw) <- the 4 * words channels
 * (words 1 or 2) of one image's input (in_b at the first of them, pixels
 * in_d->c bytes apart) at pixel (y - pad_top, x - pad_left), and bytes of
 * -input_offset (the zero point) where that pixel is outside the input: a
 * dense copy over which every window of the layer is whole (ph, pw:
 * tq_dw_pad_extent). */
__attribute__((always_inline)) static inline void tq_dw_pad_copy(uint32_t *buf, const tq_conv_params *p,
                                                             const tq_dims *in_d, const int8_t *in_b,
                                                             int32_t ph, int32_t pw, int32_t words)
{
    const int32_t ch = in_d->c;
    const uint32_t pad = (uint8_t)(int8_t)(-p->input_offset) * 0x01010101u;
    /* the input rows [y_lo, y_hi) and columns [x_lo, x_hi) of the copy */
    const int32_t y_lo = p->pad_top < ph ? p->pad_top : ph;
    const int32_t y_hi = p->pad_top + in_d->h < ph ? p->pad_top + in_d->h : ph;
    const int32_t x_lo = p->pad_left < pw ? p->pad_left : pw;
    const int32_t x_hi = p->pad_left + in_d->w < pw ? p->pad_left + in_d->w : pw;
    int32_t y, x;
    for (y = 0; y < ph * pw * words; y++) {
        buf[y] = pad;
    }
    for (y = y_lo; y < y_hi; y++) {
        const int8_t *src = in_b + ((size_t)(y - p->pad_top) * in_d->w + (x_lo - p->pad_left)) * ch;
        for (x = x_lo; x < x_hi; x++, src += ch) {
            memcpy(buf + ((size_t)y * pw + x) * words, src, 4 * (size_t)words);
        }
    }
}
#endif

#if TQ_USE_DSP
/* Largest kernel (KH*KW taps) the DSP path handles; its expanded weights of
 * 4 channels live on the stack (2 words per tap). */
#define TQ_DW_DSP_MAX_TAPS 49

/* One tap of 4 channels: x word (offset added by SXTAB16) times the
 * expanded weights, SMLABB / SMLATT per channel. */
#define TQ_DW_TAP(xv, we, wo)                                                        \
    do {                                                                             \
        const int32_t xe_ = tq_sxtab16(off2, (xv)), xo_ = tq_sxtab16_ror8(off2, (xv)); \
        a0 = tq_smlabb(xe_, (we), a0);                                               \
        a2 = tq_smlatt(xe_, (we), a2);                                               \
        a1 = tq_smlabb(xo_, (wo), a1);                                               \
        a3 = tq_smlatt(xo_, (wo), a3);                                               \
    } while (0)

/* Requantizes and stores 4 channels of one output pixel. */
#define TQ_DW_STORE4(out, full_range)                                                     \
    do {                                                                                  \
        (out)[0] = (int8_t)tq_rq_apply(&rq[0], a0, out_offset, act_min, act_max, full_range); \
        (out)[1] = (int8_t)tq_rq_apply(&rq[1], a1, out_offset, act_min, act_max, full_range); \
        (out)[2] = (int8_t)tq_rq_apply(&rq[2], a2, out_offset, act_min, act_max, full_range); \
        (out)[3] = (int8_t)tq_rq_apply(&rq[3], a3, out_offset, act_min, act_max, full_range); \
    } while (0)

/* n consecutive output pixels of a 3x3, dilation 1 window lying entirely
 * inside the input: xp is the window's top-left input (channel c), the next
 * pixel's is x_stride bytes further; outputs are ch bytes apart. */
__attribute__((always_inline)) static inline void
tq_dw3x3_run(const int8_t *xp, int32_t n, int32_t x_stride, int32_t ch, int32_t row_step,
             const int32_t *wexp, const int32_t *b4, const tq_rq *rq, const tq_conv_params *p,
             int32_t off2, int8_t *out, int full_range)
{
    const int32_t out_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    for (; n > 0; n--) {
        const int8_t *r = xp;
        int32_t a0 = b4[0], a1 = b4[1], a2 = b4[2], a3 = b4[3];
        TQ_DW_TAP(tq_read_s8x4(r), wexp[0], wexp[1]);
        TQ_DW_TAP(tq_read_s8x4(r + ch), wexp[2], wexp[3]);
        TQ_DW_TAP(tq_read_s8x4(r + 2 * ch), wexp[4], wexp[5]);
        r += row_step;
        TQ_DW_TAP(tq_read_s8x4(r), wexp[6], wexp[7]);
        TQ_DW_TAP(tq_read_s8x4(r + ch), wexp[8], wexp[9]);
        TQ_DW_TAP(tq_read_s8x4(r + 2 * ch), wexp[10], wexp[11]);
        r += row_step;
        TQ_DW_TAP(tq_read_s8x4(r), wexp[12], wexp[13]);
        TQ_DW_TAP(tq_read_s8x4(r + ch), wexp[14], wexp[15]);
        TQ_DW_TAP(tq_read_s8x4(r + 2 * ch), wexp[16], wexp[17]);
        TQ_DW_STORE4(out, full_range);
        xp += x_stride;
        out += ch;
    }
}

/* One 4-channel group's work for the assembly runs (tq_dw3x3_run_asm,
 * tq_dw_run_asm), at the byte offsets their assembly uses (checked below).
 * The fields up to off2 serve both runs; the rest only tq_dw_run_asm. The
 * taps and the bias are doubled and rq holds, per channel, tq_rq2_s8's
 * multiplier, chi2 and r (tq_dw_job_rq). The runs count n (and px) down. */
typedef struct {
    int32_t w[18];       /* 0: 3x3 run: per tap, (w0, w2) and (w1, w3) sign-extended */
    int32_t bias[4];     /* 72 */
    int32_t rq[12];      /* 88: mult, chi2, r for channels 0..3 */
    const int8_t *x;     /* 136: first window's top-left input (its first tap), channel 0 */
    int8_t *out;         /* 140: first output, channel 0 */
    int32_t n;           /* 144: 3x3 run: windows (>= 1); the other run's row counter */
    int32_t x_stride;    /* 148: bytes from one window to the next */
    int32_t ch;          /* 152: bytes between horizontal taps (and, in the 3x3 run, outputs) */
    int32_t row_step;    /* 156: 3x3 run: bytes between rows */
    int32_t off2;        /* 160: input offset in both int16 lanes */
    const int32_t *wp;   /* 164: first tap's expanded weights */
    int32_t cols;        /* 168: taps per row (>= 1) */
    int32_t rows;        /* 172: rows (>= 1) */
    int32_t row_adv;     /* 176: bytes from past a row's last tap to the next row's first */
    int32_t w_skip;      /* 180: weight bytes skipped between rows */
    int32_t out_step;    /* 184: bytes from one output to the next */
    int32_t px;          /* 188: windows (>= 1) */
} tq_dw_job;

#define TQ_DW_JOB_CHECK(field, off) \
    typedef char tq_dw_job_at_##field[(offsetof(tq_dw_job, field) == (off)) ? 1 : -1]
TQ_DW_JOB_CHECK(bias, 72);
TQ_DW_JOB_CHECK(rq, 88);
TQ_DW_JOB_CHECK(x, 136);
TQ_DW_JOB_CHECK(out, 140);
TQ_DW_JOB_CHECK(n, 144);
TQ_DW_JOB_CHECK(x_stride, 148);
TQ_DW_JOB_CHECK(ch, 152);
TQ_DW_JOB_CHECK(row_step, 156);
TQ_DW_JOB_CHECK(off2, 160);
TQ_DW_JOB_CHECK(wp, 164);
TQ_DW_JOB_CHECK(cols, 168);
TQ_DW_JOB_CHECK(rows, 172);
TQ_DW_JOB_CHECK(row_adv, 176);
TQ_DW_JOB_CHECK(w_skip, 180);
TQ_DW_JOB_CHECK(out_step, 184);
TQ_DW_JOB_CHECK(px, 188);

/* Fills job->rq for the 4 channels from c (tq_rq2_init, sums of taps
 * terms); 0 when one of them is outside what the assembly run handles. */
static int tq_dw_job_rq(tq_dw_job *job, const tq_channel_quant *q, const int32_t *bias, int32_t c,
                        int32_t taps, const tq_conv_params *p)
{
    int32_t i;
    tq_rq2 q2;
    for (i = 0; i < 4; i++) {
        if (!tq_rq2_init(&q2, q->multiplier[c + i], q->shift[c + i], bias != NULL ? bias[c + i] : 0, taps,
                         p)) {
            return 0;
        }
        job->rq[3 * i] = q2.mult;
        job->rq[3 * i + 1] = (int32_t)q2.chi2;
        job->rq[3 * i + 2] = q2.r;
    }
    return 1;
}

/* One tap: the input word at ADDR (4 channels), offset added by SXTAB16,
 * times the tap's expanded weights, which WLOAD puts in r6, r7. */
#define TQ_DW_ASM_TAP_W(addr, wload)               \
    "ldr r4, " addr "\n\t"                         \
    wload "\n\t"                                   \
    "sxtab16 r5, r10, r4\n\t"                      \
    "sxtab16 r4, r10, r4, ror #8\n\t"              \
    "smlabb r0, r5, r6, r0\n\t"                    \
    "smlatt r2, r5, r6, r2\n\t"                    \
    "smlabb r1, r4, r7, r1\n\t"                    \
    "smlatt r3, r4, r7, r3\n\t"
/* The 3x3 run's tap: weights at job + WOFF. */
#define TQ_DW_ASM_TAP(addr, woff) TQ_DW_ASM_TAP_W(addr, "ldrd r6, r7, [lr, #" #woff "]")

/* Requantizes the doubled sum ACC (tq_rq2_s8)
 * with the constants at job + ROFF and stores it at out + J. */
#define TQ_DW_ASM_RQ(acc, roff, j)                 \
    "ldrd r6, r7, [lr, #" #roff "]\n\t"            \
    "ldr r4, [lr, #(" #roff " + 8)]\n\t"             \
    TQ_RQ2_ASM("r5", acc, "r6", "r7", "r4")          \
    "strb r5, [r9, #" #j "]\n\t"

/* The 3x3 windows of one 4-channel group along an output row, all inside
 * the input (tq_dw3x3_run's sums and requantization, in assembly: the
 * accumulators, the input offset, the strides and the pointers stay in
 * registers; the taps and constants are read from the job). */
__attribute__((naked, noinline)) static void tq_dw3x3_run_asm(tq_dw_job *job __attribute__((unused)))
{
    __asm__ volatile(
        "push {r4-r11, lr}\n\t"
        "mov lr, r0\n\t"
        "ldrd r8, r9, [lr, #136]\n\t"
        "ldr r10, [lr, #160]\n\t"
        "ldrd r11, r12, [lr, #152]\n\t"
        "1:\n\t"
        "ldrd r0, r1, [lr, #72]\n\t"
        "ldrd r2, r3, [lr, #80]\n\t"
        TQ_DW_ASM_TAP("[r8]", 0)
        TQ_DW_ASM_TAP("[r8, r11]", 8)
        TQ_DW_ASM_TAP("[r8, r11, lsl #1]", 16)
        "add r8, r8, r12\n\t"
        TQ_DW_ASM_TAP("[r8]", 24)
        TQ_DW_ASM_TAP("[r8, r11]", 32)
        TQ_DW_ASM_TAP("[r8, r11, lsl #1]", 40)
        "add r8, r8, r12\n\t"
        TQ_DW_ASM_TAP("[r8]", 48)
        TQ_DW_ASM_TAP("[r8, r11]", 56)
        TQ_DW_ASM_TAP("[r8, r11, lsl #1]", 64)
        "sub r8, r8, r12, lsl #1\n\t"
        "ldr r4, [lr, #148]\n\t"
        "add r8, r8, r4\n\t"
        TQ_DW_ASM_RQ("r0", 88, 0)
        TQ_DW_ASM_RQ("r1", 100, 1)
        TQ_DW_ASM_RQ("r2", 112, 2)
        TQ_DW_ASM_RQ("r3", 124, 3)
        "add r9, r9, r11\n\t"
        "ldr r4, [lr, #144]\n\t"
        "subs r4, r4, #1\n\t"
        "str r4, [lr, #144]\n\t"
        "bne 1b\n\t"
        "pop {r4-r11, pc}\n\t");
}

/* Bytes of the padded copy of 4 channels that tq_dw3x3_padded builds on
 * the stack, and the widest output row it takes. */
#define TQ_DW_PADDED_BYTES 1024
#define TQ_DW_PADDED_MAX_W 86

/* Every output of one image's 4-channel group (in_b, out_b at its first
 * channel) of a 3x3, dilation 1 layer, through a copy of the group's input
 * whose padding is the input's zero point (which the offset turns into 0,
 * as the reference's clipped window): tq_dw3x3_run_asm then takes every
 * window, with no edge runs, and writes 4-channel rows that are copied out.
 * job holds the group's weights, bias and requantization; its strides are
 * restored. Returns 0, having written nothing, when the copy does not fit
 * TQ_DW_PADDED_BYTES or the offset has no int8 zero point. */
static __attribute__((noinline)) int tq_dw3x3_padded(tq_dw_job *job, const tq_conv_params *p,
                                                      const tq_dims *in_d, const int8_t *in_b,
                                                      const tq_dims *out_d, int8_t *out_b)
{
    const int32_t ch = in_d->c, out_w = out_d->w;
    const int32_t ph = tq_dw_pad_extent(out_d->h, p->stride_h, 3), pw = tq_dw_pad_extent(out_w, p->stride_w, 3);
    const tq_dw_job saved = *job;
    uint32_t buf[TQ_DW_PADDED_BYTES / 4], row[TQ_DW_PADDED_MAX_W];
    int32_t x, oy;
    /* the zero point pads: it must be an int8 value */
    if (p->input_offset < -127 || p->input_offset > 128 || (int64_t)ph * pw * 4 > TQ_DW_PADDED_BYTES ||
        out_w > TQ_DW_PADDED_MAX_W) {
        return 0;
    }
    tq_dw_pad_copy(buf, p, in_d, in_b, ph, pw, 1);
    job->x_stride = 4 * p->stride_w;
    job->ch = 4;
    job->row_step = 4 * pw;
    for (oy = 0; oy < out_d->h; oy++) {
        int8_t *o = out_b + (size_t)oy * out_w * ch;
        job->x = (const int8_t *)(buf + (size_t)oy * p->stride_h * pw);
        job->out = (int8_t *)row;
        job->n = out_w;
        tq_dw3x3_run_asm(job);
        for (x = 0; x < out_w; x++, o += ch) {
            memcpy(o, &row[x], 4);
        }
    }
    job->x_stride = saved.x_stride;
    job->ch = saved.ch;
    job->row_step = saved.row_step;
    return 1;
}

/* One tap of tq_dw_run_asm at ADDR: weights from r9 (post-incremented). */
#define TQ_DW_RUN_TAP(addr) TQ_DW_ASM_TAP_W(addr, "ldrd r6, r7, [r9], #8")
/* Two taps, then r8 two taps on. */
#define TQ_DW_RUN_TAP2                             \
    TQ_DW_RUN_TAP("[r8]") TQ_DW_RUN_TAP("[r8, r11]") "add r8, r8, r11, lsl #1\n\t"
/* One tap, then r8 one tap on. */
#define TQ_DW_RUN_TAP1 TQ_DW_RUN_TAP("[r8]") "add r8, r8, r11\n\t"
/* Row bodies: r8 ends job->cols taps on. */
#define TQ_DW_ROW_2 TQ_DW_RUN_TAP2
#define TQ_DW_ROW_3 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP1
#define TQ_DW_ROW_4 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP2
#define TQ_DW_ROW_5 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP1
#define TQ_DW_ROW_6 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP2
#define TQ_DW_ROW_7 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP2 TQ_DW_RUN_TAP1
#define TQ_DW_ROW_N                                \
    "ldr r12, [lr, #168]\n\t"                      \
    "3:\n\t"                                       \
    TQ_DW_RUN_TAP1                                 \
    "subs r12, r12, #1\n\t"                        \
    "bne 3b\n\t"
/* The run over job->px windows with the row body ROW (label L: a number
 * unique to the body). */
#define TQ_DW_RUN(L, ROW)                          \
    #L ":\n\t"                                     \
    "ldr r8, [lr, #136]\n\t"                       \
    "ldr r9, [lr, #164]\n\t"                       \
    "ldrd r0, r1, [lr, #72]\n\t"                   \
    "ldrd r2, r3, [lr, #80]\n\t"                   \
    "ldr r4, [lr, #172]\n\t"                       \
    "str r4, [lr, #144]\n\t"                       \
    "2:\n\t"                                       \
    ROW                                            \
    "ldr r4, [lr, #176]\n\t"                       \
    "add r8, r8, r4\n\t"                           \
    "ldr r4, [lr, #180]\n\t"                       \
    "add r9, r9, r4\n\t"                           \
    "ldr r4, [lr, #144]\n\t"                       \
    "subs r4, r4, #1\n\t"                          \
    "str r4, [lr, #144]\n\t"                       \
    "bne 2b\n\t"                                   \
    "ldr r9, [lr, #140]\n\t"                       \
    TQ_DW_ASM_RQ("r0", 88, 0)                      \
    TQ_DW_ASM_RQ("r1", 100, 1)                     \
    TQ_DW_ASM_RQ("r2", 112, 2)                     \
    TQ_DW_ASM_RQ("r3", 124, 3)                     \
    "ldr r4, [lr, #188]\n\t"                       \
    "subs r4, r4, #1\n\t"                          \
    "beq 9f\n\t"                                   \
    "str r4, [lr, #188]\n\t"                       \
    "ldr r4, [lr, #184]\n\t"                       \
    "add r9, r9, r4\n\t"                           \
    "str r9, [lr, #140]\n\t"                       \
    "ldr r8, [lr, #136]\n\t"                       \
    "ldr r4, [lr, #148]\n\t"                       \
    "add r8, r8, r4\n\t"                           \
    "str r8, [lr, #136]\n\t"                       \
    "b " #L "b\n\t"

/* job->px consecutive output pixels of a 4-channel group whose windows,
 * clipped to the input the same way, have job->rows rows of job->cols
 * taps (any kernel size and dilation): from job->x, taps job->ch bytes
 * apart, weights from job->wp, the next window job->x_stride bytes on; the
 * sums, the requantization (tq_rq2_s8) and the stores at job->out
 * (job->out_step apart) as in tq_dw3x3_run_asm. Rows of 2 to 7 taps are
 * unrolled. Uses job->n as its row counter; advances x, out and px. */
__attribute__((naked, noinline)) static void tq_dw_run_asm(tq_dw_job *job __attribute__((unused)))
{
    __asm__ volatile(
        "push {r4-r11, lr}\n\t"
        "mov lr, r0\n\t"
        "ldr r10, [lr, #160]\n\t"
        "ldr r11, [lr, #152]\n\t"
        "ldr r12, [lr, #168]\n\t"
        "cmp r12, #3\n\t"
        "beq 30f\n\t"
        "cmp r12, #5\n\t"
        "beq 50f\n\t"
        "cmp r12, #7\n\t"
        "beq 70f\n\t"
        "cmp r12, #2\n\t"
        "beq 20f\n\t"
        "cmp r12, #4\n\t"
        "beq 40f\n\t"
        "cmp r12, #6\n\t"
        "beq 60f\n\t"
        TQ_DW_RUN(90, TQ_DW_ROW_N)
        TQ_DW_RUN(20, TQ_DW_ROW_2)
        TQ_DW_RUN(30, TQ_DW_ROW_3)
        TQ_DW_RUN(40, TQ_DW_ROW_4)
        TQ_DW_RUN(50, TQ_DW_ROW_5)
        TQ_DW_RUN(60, TQ_DW_ROW_6)
        TQ_DW_RUN(70, TQ_DW_ROW_7)
        "9:\n\t"
        "pop {r4-r11, pc}\n\t");
}

/* wexp[2t], wexp[2t + 1] <- (w0, w2) and (w1, w3) of the 4 channels at
 * f + t * ch, for the taps t < taps (a function of its own: inlined into
 * the row loops, its registers spill). */
static __attribute__((noinline)) void tq_dw_expand_taps(const int8_t *f, int32_t ch, int32_t taps,
                                                        int32_t *wexp, int dbl)
{
    for (; taps > 0; taps--, f += ch, wexp += 2) {
        const int32_t wv = tq_read_s8x4(f), e = tq_sxtb16(wv), o = tq_sxtb16_ror8(wv);
        wexp[0] = dbl ? __sadd16(e, e) : e;
        wexp[1] = dbl ? __sadd16(o, o) : o;
    }
}

/* rq[0..3] <- the requantizations of channels c..c+3 unless *ready. */
static void tq_dw_rq_ready(tq_rq *rq, const tq_channel_quant *q, int32_t c, int *ready)
{
    int32_t i;
    for (i = 0; !*ready && i < 4; i++) {
        tq_rq_init(&rq[i], q->multiplier[c + i], q->shift[c + i]);
    }
    *ready = 1;
}

/* DSP path (depth multiplier 1, KH*KW <= TQ_DW_DSP_MAX_TAPS; anything else
 * takes the reference path). Channels outer, 4 at a time: the 4 channels'
 * filter taps are sign-extended once ((w0, w2) and (w1, w3) per tap) and
 * their requantization constants computed once; then for every output
 * pixel each tap is one word of 4 input channels split by SXTAB16 (which
 * adds the input offset) and four SMLABB / SMLATT. The window is clipped to
 * the input, so padding contributes nothing, as in the reference path.
 * With every channel in tq_rq2_s8's range (then the taps and bias are
 * doubled), the pixels run in assembly: whole 3x3 windows along a row
 * in tq_dw3x3_run_asm, every other window in tq_dw_run_asm (one call per
 * stretch of windows clipped alike); otherwise in the C loops below.
 * Channels beyond the last multiple of 4 take a scalar loop. */
static void tq_depthwise_conv_s8_dsp(const tq_conv_params *p, const tq_channel_quant *q,
                                     const tq_dims *in_d, const int8_t *input,
                                     const tq_dims *f_d, const int8_t *filter,
                                     const int32_t *bias, const tq_dims *out_d, int8_t *output)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, ch = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w, dh = p->dilation_h, dw = p->dilation_w;
    const int32_t sh = p->stride_h, sw = p->stride_w;
    const int32_t off = p->input_offset, off2 = tq_offset_x2(off);
    const int32_t out_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int full_range = act_min == -128 && act_max == 127;
    const int is_3x3 = k_h == 3 && k_w == 3 && dh == 1 && dw == 1;
    const int32_t x_step = dw * ch, row_step = dh * in_w * ch;
    const int32_t taps = k_h * k_w;
    /* output columns whose window lies inside the input (3x3 fast path) */
    const int32_t ox_lo = (p->pad_left + sw - 1) / sw;
    const int32_t ox_hi_ = in_w - 3 + p->pad_left >= 0 ? (in_w - 3 + p->pad_left) / sw + 1 : 0;
    const int32_t ox_hi = ox_hi_ < out_d->w ? ox_hi_ : out_d->w;
    /* output columns before which every window is whole across (any kernel) */
    const int32_t full_end = in_w - 1 - (k_w - 1) * dw + p->pad_left;
    const int32_t ox_full_hi = full_end < 0 ? 0 : (full_end / sw + 1 < out_d->w ? full_end / sw + 1 : out_d->w);
    int32_t wexp_big[2 * TQ_DW_DSP_MAX_TAPS];
    tq_dw_job job;
    int32_t *const wexp = is_3x3 ? job.w : wexp_big;
    int32_t *const b4 = job.bias;
    tq_rq rq[4];
    int32_t c, i, b, oy, ox, ky, kx;
    /* the assembly runs' strides, the same for every group (the 3x3 run,
     * whose windows are undilated, reads ch as both its tap and its output
     * step: x_step == ch there) */
    job.x_stride = sw * ch;
    job.ch = x_step;
    job.row_step = row_step;
    job.off2 = off2;
    job.out_step = ch;
    for (c = 0; c + 4 <= ch; c += 4) {
        const int rq_fast = tq_dw_job_rq(&job, q, bias, c, taps, p);
        const int asm_run = is_3x3 && rq_fast;
        /* the C loops' requantization, set up when first needed: with
         * rq_fast the assembly runs requantize, and only windows with no
         * tap inside the input reach the C loop */
        int rq_ready = 0;
        tq_dw_expand_taps(filter + c, ch, taps, wexp, rq_fast);
        for (i = 0; i < 4; i++) {
            b4[i] = bias != NULL ? (rq_fast ? tq_dbl(bias[c + i]) : bias[c + i]) : 0;
        }
        /* small maps: every window through a padded copy (no edge runs) */
        if (asm_run && out_d->h > 1 && tq_dw3x3_padded(&job, p, in_d, input + c, out_d, output + c)) {
            for (b = 1; b < out_d->n; b++) {
                (void)tq_dw3x3_padded(&job, p, in_d, input + (size_t)b * in_h * in_w * ch + c, out_d,
                                      output + (size_t)b * out_d->h * out_d->w * ch + c);
            }
            continue;
        }
        for (b = 0; b < out_d->n; b++) {
            const int8_t *in_b = input + (size_t)b * in_h * in_w * ch + c;
            int8_t *out = output + (size_t)b * out_d->h * out_d->w * ch + c;
            for (oy = 0; oy < out_d->h; oy++) {
                const int32_t y0 = oy * sh - p->pad_top;
                /* taps ky0 <= ky < ky1 fall inside the input */
                const int32_t ky0 = y0 < 0 ? (-y0 + dh - 1) / dh : 0;
                const int32_t ky1_ = dh == 1 ? in_h - y0 : (in_h - y0 + dh - 1) / dh;
                const int32_t ky1 = ky1_ < k_h ? ky1_ : k_h;
                const int fast_row = is_3x3 && ky0 == 0 && ky1 == 3 && ox_lo < ox_hi;
                ox = 0;
                while (ox < out_d->w) {
                    const int32_t x0 = ox * sw - p->pad_left;
                    int32_t kx0, kx1, a0, a1, a2, a3;
                    const int8_t *xrow;
                    if (fast_row && ox == ox_lo) {
                        const int8_t *xp = in_b + ((size_t)y0 * in_w + x0) * ch;
                        if (asm_run) {
                            job.x = xp;
                            job.out = out;
                            job.n = ox_hi - ox_lo;
                            tq_dw3x3_run_asm(&job);
                        } else {
                            tq_dw_rq_ready(rq, q, c, &rq_ready);
                            if (full_range) {
                                tq_dw3x3_run(xp, ox_hi - ox_lo, sw * ch, ch, row_step, wexp, b4, rq,
                                             p, off2, out, 1);
                            } else {
                                tq_dw3x3_run(xp, ox_hi - ox_lo, sw * ch, ch, row_step, wexp, b4, rq,
                                             p, off2, out, 0);
                            }
                        }
                        out += (size_t)(ox_hi - ox_lo) * ch;
                        ox = ox_hi;
                        continue;
                    }
                    kx0 = x0 < 0 ? (-x0 + dw - 1) / dw : 0;
                    kx1 = dw == 1 ? in_w - x0 : (in_w - x0 + dw - 1) / dw;
                    kx1 = kx1 < k_w ? kx1 : k_w;
                    xrow = in_b + ((size_t)(y0 + ky0 * dh) * in_w + (size_t)(x0 + kx0 * dw)) * ch;
                    if (rq_fast && ky1 > ky0 && kx1 > kx0) {
                        /* this window, and when it is whole across, the
                         * following ones that are too, in one run */
                        job.px = kx0 == 0 && kx1 == k_w && ox_full_hi > ox ? ox_full_hi - ox : 1;
                        job.x = xrow;
                        job.out = out;
                        job.wp = wexp + 2 * (ky0 * k_w + kx0);
                        job.cols = kx1 - kx0;
                        job.rows = ky1 - ky0;
                        job.row_adv = row_step - job.cols * x_step;
                        job.w_skip = 8 * (k_w - job.cols);
                        out += (size_t)job.px * ch;
                        ox += job.px;
                        tq_dw_run_asm(&job);
                        continue;
                    }
                    a0 = b4[0];
                    a1 = b4[1];
                    a2 = b4[2];
                    a3 = b4[3];
                    for (ky = ky0; ky < ky1; ky++) {
                        const int8_t *xp = xrow;
                        const int32_t *wq = wexp + 2 * (ky * k_w + kx0);
                        for (kx = kx0; kx < kx1; kx++) {
                            TQ_DW_TAP(tq_read_s8x4(xp), wq[0], wq[1]);
                            xp += x_step;
                            wq += 2;
                        }
                        xrow += row_step;
                    }
                    if (rq_fast) { /* no tap inside: the doubled bias, halved exactly */
                        a0 >>= 1;
                        a1 >>= 1;
                        a2 >>= 1;
                        a3 >>= 1;
                    }
                    tq_dw_rq_ready(rq, q, c, &rq_ready);
                    TQ_DW_STORE4(out, 0);
                    out += ch;
                    ox++;
                }
            }
        }
    }
    for (; c < ch; c++) {
        int8_t *out = output + c;
        for (b = 0; b < out_d->n; b++) {
            const int8_t *in_b = input + (size_t)b * in_h * in_w * ch + c;
            for (oy = 0; oy < out_d->h; oy++) {
                const int32_t y0 = oy * sh - p->pad_top;
                for (ox = 0; ox < out_d->w; ox++) {
                    const int32_t x0 = ox * sw - p->pad_left;
                    int32_t acc = bias != NULL ? bias[c] : 0;
                    for (ky = 0; ky < k_h; ky++) {
                        const int32_t iy = y0 + ky * dh;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (kx = 0; kx < k_w; kx++) {
                            const int32_t ix = x0 + kx * dw;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            acc = tq_smlabb(in_b[((size_t)iy * in_w + ix) * ch] + off,
                                            filter[((size_t)ky * k_w + kx) * ch + c], acc);
                        }
                    }
                    *out = tq_requantize_s8(acc, q->multiplier[c], q->shift[c], out_offset,
                                            act_min, act_max);
                    out += ch;
                }
            }
        }
    }
}
#endif

#if TQ_USE_MVE
/* One output pixel's 4 channels over a window lying inside the input
 * (dilation 1): x points at the window's top-left input (channel c), w at
 * the filter's first tap (channel c); the input offset's share is in acc. */
__attribute__((always_inline)) static inline int32x4_t
tq_dw_mve_window(int32x4_t acc, const int8_t *x, const int8_t *w, int32_t k_h, int32_t k_w, int32_t ch,
                 int32_t row_step)
{
    int32_t ky, kx;
    for (ky = 0; ky < k_h; ky++) {
        for (kx = 0; kx < k_w; kx++) {
            acc = vaddq_s32(acc, vmulq_s32(vldrbq_s32(x + (size_t)kx * ch), vldrbq_s32(w + (size_t)kx * ch)));
        }
        x += row_step;
        w += (size_t)k_w * ch;
    }
    return acc;
}

/* count consecutive output pixels of one row, 4 channels each, whose
 * windows lie inside the input (dilation 1, all 4 channels present): x is
 * the first window's top-left input, the next window's is x_step bytes
 * further; w the filter's first tap (channel c); outputs are ch bytes
 * apart. */
__attribute__((always_inline)) static inline void
tq_dw_mve_run(int32x4_t inner, const int8_t *x, const int8_t *w, int32_t k_h, int32_t k_w, int32_t ch,
              int32_t row_step, int32_t x_step, int32_t count, const tq_rq4 *rq, const tq_conv_params *p,
              int8_t *out)
{
    const int32_t out_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    for (; count > 0; count--) {
        const int32x4_t acc = tq_dw_mve_window(inner, x, w, k_h, k_w, ch, row_step);
        vstrbq_s32(out, tq_rq4_apply(rq, acc, out_offset, act_min, act_max));
        x += x_step;
        out += ch;
    }
}

/* The constants of the K x K loops (tq_dw3x3/5x5/7x7_mve_run): the 8
 * vectors before their k, which points at the K*K taps (int32, tap-major):
 * bias + offset * sum(w), multiplier, right shift, rounding fix, the clamp
 * bounds, the output offset, then the input walk's two steps
 * (tq_dwk_mve_steps). */
enum { TQ_DWK_INNER = -8, TQ_DWK_MULT, TQ_DWK_RIGHT, TQ_DWK_FIX, TQ_DWK_MIN, TQ_DWK_MAX, TQ_DWK_OFFSET,
       TQ_DWK_STEPS, TQ_DWK_HEAD = 8 };

/* The 8-channel K x K loops' constants (tq_dw3x3/5x5/7x7_mve8_run): the
 * even channels' (c, c + 2, c + 4, c + 6) in the 4-channel slots
 * TQ_DWK_INNER .. TQ_DWK_RIGHT (every lane shifts right: no fix), the odd
 * channels' in three more before them; the bounds, output offset and
 * steps as there. The K*K taps after k are 8 int16 each. */
enum { TQ_DWK8_INNER_ODD = -11, TQ_DWK8_MULT_ODD, TQ_DWK8_RIGHT_ODD, TQ_DWK8_HEAD = 11 };

/* The K x K loops' input walk for inputs tap bytes apart along a row, rows
 * row_step and windows x_step bytes apart: from a row's last tap to the
 * next row, and from the window's last tap to the next window. */
static void tq_dwk_mve_steps(int32_t kdim, int32_t tap, int32_t row_step, int32_t x_step, int32_t *k)
{
    k[4 * TQ_DWK_STEPS] = row_step - (kdim - 1) * tap;
    k[4 * TQ_DWK_STEPS + 1] = (kdim - 1) * (row_step + tap) - x_step;
}

/* The K x K loops' clamp bounds and output offset (either width). */
static void tq_dwk_mve_pack_bounds(const tq_conv_params *p, int32_t *k)
{
    vstrwq_s32(k + 4 * TQ_DWK_MIN, vdupq_n_s32(p->act_min));
    vstrwq_s32(k + 4 * TQ_DWK_MAX, vdupq_n_s32(p->act_max));
    vstrwq_s32(k + 4 * TQ_DWK_OFFSET, vdupq_n_s32(p->output_offset));
}

/* Packs the K x K loops' constants for channels fc[0..3]: the n_taps taps
 * (ch apart) at k, the 7 constants before it (TQ_DWK_INNER ..); the caller
 * sets the steps. */
static void tq_dw_mve_pack(const int8_t *fc, int32_t ch, int32_t n_taps, int32x4_t inner, const tq_rq4 *rq,
                           const tq_conv_params *p, int32_t *k)
{
    int32_t t;
    for (t = 0; t < n_taps; t++) {
        vstrwq_s32(k + 4 * t, vldrbq_s32(fc + (size_t)t * ch));
    }
    vstrwq_s32(k + 4 * TQ_DWK_INNER, inner);
    vstrwq_s32(k + 4 * TQ_DWK_MULT, rq->mult);
    vstrwq_s32(k + 4 * TQ_DWK_RIGHT, rq->right);
    vstrwq_s32(k + 4 * TQ_DWK_FIX, rq->fix);
    tq_dwk_mve_pack_bounds(p, k);
}

/* One tap of the K x K loops: the input at x, the tap vector at k (k
 * advances by 16); TQ_DWK_TAP then moves x to the next tap of the row.
 * TQ_DWK_NEXT moves x from a row's last tap to the next row. */
#define TQ_DWK_TAP_LAST                                                                \
    "vldrb.s32 q0, [%[x]]\n\t"                                                         \
    "vldrw.32 q2, [%[k]], #16\n\t"                                                     \
    "vmul.i32 q0, q0, q2\n\t"                                                          \
    "vadd.i32 q1, q1, q0\n\t"
#define TQ_DWK_TAP TQ_DWK_TAP_LAST "add %[x], %[x], %[tap]\n\t"
#define TQ_DWK_NEXT "add %[x], %[x], %[st]\n\t"
/* A K x K window of the 4- or 8-channel loops from their tap macros T
 * (then on to the row's next tap) and L (a row's last tap). */
#define TQ_DWK_ROW3(T, L) T T L
#define TQ_DWK_ROW5(T, L) T T TQ_DWK_ROW3(T, L)
#define TQ_DWK_ROW7(T, L) T T TQ_DWK_ROW5(T, L)
#define TQ_DWK_WIN3(T, L) TQ_DWK_ROW3(T, L) TQ_DWK_NEXT TQ_DWK_ROW3(T, L) TQ_DWK_NEXT TQ_DWK_ROW3(T, L)
#define TQ_DWK_WIN5(T, L)                                                              \
    TQ_DWK_ROW5(T, L) TQ_DWK_NEXT TQ_DWK_ROW5(T, L) TQ_DWK_NEXT TQ_DWK_ROW5(T, L) TQ_DWK_NEXT \
    TQ_DWK_ROW5(T, L) TQ_DWK_NEXT TQ_DWK_ROW5(T, L)
#define TQ_DWK_WIN7(T, L)                                                              \
    TQ_DWK_ROW7(T, L) TQ_DWK_NEXT TQ_DWK_ROW7(T, L) TQ_DWK_NEXT TQ_DWK_ROW7(T, L) TQ_DWK_NEXT \
    TQ_DWK_ROW7(T, L) TQ_DWK_NEXT TQ_DWK_ROW7(T, L) TQ_DWK_NEXT TQ_DWK_ROW7(T, L) TQ_DWK_NEXT \
    TQ_DWK_ROW7(T, L)
/* The K x K loops (one generator, NAME for K): count (>= 1) windows along
 * a row, x the first one's top-left input, its taps tap bytes apart, rows
 * and windows as set by tq_dwk_mve_steps in k; outputs out_step bytes
 * apart from out. PRO loads the constants kept in registers (the clamp
 * bounds in q6, q7 and the output offset in %[n] are common), INIT starts
 * a window's sums, WINDOW adds its taps (k walks them and steps back once
 * per window), FINISH requantizes and stores. */
#define TQ_DWK_LOOP(NAME, K, PRO, INIT, WINDOW, FINISH)                                \
    static void NAME(const int8_t *x, int32_t tap, int32_t count, const int32_t *k, int8_t *out, \
                     int32_t out_step)                                                 \
    {                                                                                  \
        int32_t step;                                                                  \
        __asm__ volatile(                                                              \
            PRO                                                                        \
            "vldrw.32 q6, [%[k], %[o_min]]\n\t"                                         \
            "vldrw.32 q7, [%[k], %[o_max]]\n\t"                                         \
            "dls lr, %[n]\n\t"                                                          \
            "ldr %[n], [%[k], %[o_off]]\n\t"                                            \
            "1:\n\t"                                                                    \
            INIT                                                                       \
            "ldr %[st], [%[k], %[o_steps]]\n\t"                                         \
            WINDOW                                                                     \
            "sub %[k], %[k], #" #K " * " #K " * 16\n\t"                                 \
            "ldr %[st], [%[k], %[o_back]]\n\t"                                          \
            "sub %[x], %[x], %[st]\n\t"                                                 \
            FINISH                                                                     \
            "add %[out], %[out], %[os]\n\t"                                             \
            "le lr, 1b"                                                                \
            : [x] "+l"(x), [out] "+l"(out), [n] "+r"(count), [st] "=&r"(step), [k] "+r"(k) \
            : [tap] "r"(tap), [os] "r"(out_step), [o_inner] "i"(16 * TQ_DWK_INNER),      \
              [o_mult] "i"(16 * TQ_DWK_MULT), [o_right] "i"(16 * TQ_DWK_RIGHT),          \
              [o_fix] "i"(16 * TQ_DWK_FIX), [o_inner_odd] "i"(16 * TQ_DWK8_INNER_ODD),   \
              [o_mult_odd] "i"(16 * TQ_DWK8_MULT_ODD), [o_right_odd] "i"(16 * TQ_DWK8_RIGHT_ODD), \
              [o_min] "i"(16 * TQ_DWK_MIN),                                              \
              [o_max] "i"(16 * TQ_DWK_MAX), [o_off] "i"(16 * TQ_DWK_OFFSET),             \
              [o_steps] "i"(16 * TQ_DWK_STEPS), [o_back] "i"(16 * TQ_DWK_STEPS + 4)      \
            : "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "lr", "memory");         \
    }

/* 4 channels with no left shift (tq_dw_mve_run's arithmetic, lane for
 * lane): the multiplier, shift and fix stay in q3-q5, each tap is a
 * VLDRB.S32 of the input, a VLDRW of the tap, VMUL and VADD: 62
 * instructions a 3x3 window, where the intrinsics spilled to the stack
 * (about 95). */
#define TQ_DWK_PRO4                                                                    \
    "vldrw.32 q3, [%[k], %[o_mult]]\n\t"                                                \
    "vldrw.32 q4, [%[k], %[o_right]]\n\t"                                               \
    "vldrw.32 q5, [%[k], %[o_fix]]\n\t"
#define TQ_DWK_INIT4 "vldrw.32 q1, [%[k], %[o_inner]]\n\t"
#define TQ_DWK_FINISH4                                                                 \
    TQ_MVE_RQ4_ASM("q1", "q0", "q3", "q4", "q5", "%[n]", "q6", "q7")                     \
    "vstrb.32 q1, [%[out]]\n\t"
TQ_DWK_LOOP(tq_dw3x3_mve_run, 3, TQ_DWK_PRO4, TQ_DWK_INIT4, TQ_DWK_WIN3(TQ_DWK_TAP, TQ_DWK_TAP_LAST),
            TQ_DWK_FINISH4)
TQ_DWK_LOOP(tq_dw5x5_mve_run, 5, TQ_DWK_PRO4, TQ_DWK_INIT4, TQ_DWK_WIN5(TQ_DWK_TAP, TQ_DWK_TAP_LAST),
            TQ_DWK_FINISH4)
TQ_DWK_LOOP(tq_dw7x7_mve_run, 7, TQ_DWK_PRO4, TQ_DWK_INIT4, TQ_DWK_WIN7(TQ_DWK_TAP, TQ_DWK_TAP_LAST),
            TQ_DWK_FINISH4)
#undef TQ_DWK_FINISH4
#undef TQ_DWK_INIT4
#undef TQ_DWK_PRO4
#undef TQ_DWK_TAP
#undef TQ_DWK_TAP_LAST

/* Packs the 8-channel loops' constants for n_taps taps of channels
 * fc[0..7] (mult, shift, bias: those channels' entries, no shift above 0;
 * bias may be NULL) at k; the caller sets the steps. The sums' start is bias + input_offset *
 * sum(taps), wrapping, as the 4-channel blocks have it. Vector code
 * throughout (VLD2 splits even and odd channels): a streamed block packs
 * on every row. */
static void tq_dwk_mve_pack8(const int8_t *fc, int32_t ch, int32_t n_taps, const int32_t *bias,
                             const int32_t *mult, const int32_t *shift, const tq_conv_params *p, int32_t *k)
{
    static const int8_t slot[2][3] = {{TQ_DWK_INNER, TQ_DWK_MULT, TQ_DWK_RIGHT},
                                      {TQ_DWK8_INNER_ODD, TQ_DWK8_MULT_ODD, TQ_DWK8_RIGHT_ODD}};
    const int32x4x2_t m2 = vld2q_s32(mult), s2 = vld2q_s32(shift);
    int32x4x2_t b2;
    int32x4_t wsum[2];
    int16x8_t ws = vdupq_n_s16(0); /* |49 int8 taps| <= 6272 */
    int32_t h, t;
    for (t = 0; t < n_taps; t++) {
        const int16x8_t w = vldrbq_s16(fc + (size_t)t * ch);
        vstrhq_s16((int16_t *)(k + 4 * t), w);
        ws = vaddq_s16(ws, w);
    }
    if (bias != NULL) {
        b2 = vld2q_s32(bias);
    } else {
        b2.val[0] = b2.val[1] = vdupq_n_s32(0);
    }
    wsum[0] = vmovlbq_s16(ws);
    wsum[1] = vmovltq_s16(ws);
    for (h = 0; h < 2; h++) { /* even, then odd channels */
        vstrwq_s32(k + 4 * slot[h][0], vmlaq_n_s32(b2.val[h], wsum[h], p->input_offset));
        vstrwq_s32(k + 4 * slot[h][1], m2.val[h]);
        vstrwq_s32(k + 4 * slot[h][2], vminq_s32(s2.val[h], vdupq_n_s32(0)));
    }
    tq_dwk_mve_pack_bounds(p, k);
}

/* One tap of the 8-channel loops: 8 inputs sign-extended to int16, the tap's
 * 8 int16 weights, the even lanes' products (VMULLB, int32) into q3 and
 * the odd lanes' (VMULLT) into q4. */
#define TQ_DWK8_TAP_LAST                                                               \
    "vldrb.s16 q0, [%[x]]\n\t"                                                         \
    "vldrh.u16 q2, [%[k]], #16\n\t"                                                    \
    "vmullb.s16 q1, q0, q2\n\t"                                                        \
    "vadd.i32 q3, q3, q1\n\t"                                                          \
    "vmullt.s16 q1, q0, q2\n\t"                                                        \
    "vadd.i32 q4, q4, q1\n\t"
#define TQ_DWK8_TAP TQ_DWK8_TAP_LAST "add %[x], %[x], %[tap]\n\t"
/* Requantizes the int32 lanes in register a with the constants at the slots
 * (byte offsets) mult and right, and the offset in %[n]: every lane shifts
 * right (a pair's condition), so the rounding fix needs no mask. */
#define TQ_DWK8_RQ(a, mult, right)                                                     \
    "vldrw.32 q0, [%[k], " mult "]\n\t"                                               \
    "vldrw.32 q2, [%[k], " right "]\n\t"                                              \
    TQ_MVE_RQ4_RIGHT_ASM(a, "q1", "q0", "q2", "%[n]", "q6", "q7")

/* 8 channels at once (k: tq_dwk_mve_pack8's, its steps set): the taps as
 * int16 pairs, so a tap of 8 channels is one VLDRB.S16, one VLDRH, VMULLB
 * / VMULLT and two VADD (7 instructions with the pointer step, where two
 * 4-channel blocks spend 10); each half is requantized as the 4-channel
 * loop does, and VMOVNB / VMOVNT put the channels back in order for one
 * VSTRB.16. 94 instructions a 3x3 window of 8 channels, where two
 * 4-channel runs spend 124. */
#define TQ_DWK8_INIT                                                                   \
    "vldrw.32 q3, [%[k], %[o_inner]]\n\t"                                               \
    "vldrw.32 q4, [%[k], %[o_inner_odd]]\n\t"
#define TQ_DWK8_FINISH                                                                 \
    TQ_DWK8_RQ("q3", "%[o_mult]", "%[o_right]")                                         \
    TQ_DWK8_RQ("q4", "%[o_mult_odd]", "%[o_right_odd]")                                 \
    "vmovnb.i32 q0, q3\n\t"                                                             \
    "vmovnt.i32 q0, q4\n\t"                                                             \
    "vstrb.16 q0, [%[out]]\n\t"
TQ_DWK_LOOP(tq_dw3x3_mve8_run, 3, "", TQ_DWK8_INIT, TQ_DWK_WIN3(TQ_DWK8_TAP, TQ_DWK8_TAP_LAST), TQ_DWK8_FINISH)
TQ_DWK_LOOP(tq_dw5x5_mve8_run, 5, "", TQ_DWK8_INIT, TQ_DWK_WIN5(TQ_DWK8_TAP, TQ_DWK8_TAP_LAST), TQ_DWK8_FINISH)
TQ_DWK_LOOP(tq_dw7x7_mve8_run, 7, "", TQ_DWK8_INIT, TQ_DWK_WIN7(TQ_DWK8_TAP, TQ_DWK8_TAP_LAST), TQ_DWK8_FINISH)
#undef TQ_DWK_LOOP
#undef TQ_DWK8_FINISH
#undef TQ_DWK8_INIT
#undef TQ_DWK_WIN7
#undef TQ_DWK_WIN5
#undef TQ_DWK_WIN3
#undef TQ_DWK_ROW7
#undef TQ_DWK_ROW5
#undef TQ_DWK_ROW3
#undef TQ_DWK_NEXT

/* tq_dw3x3/5x5/7x7_mve8_run for kdim 3, 5 or 7. */
static void tq_dwk_mve8_run(int32_t kdim, const int8_t *x, int32_t tap, int32_t count, const int32_t *k,
                            int8_t *out, int32_t out_step)
{
    if (kdim == 3) {
        tq_dw3x3_mve8_run(x, tap, count, k, out, out_step);
    } else if (kdim == 5) {
        tq_dw5x5_mve8_run(x, tap, count, k, out, out_step);
    } else {
        tq_dw7x7_mve8_run(x, tap, count, k, out, out_step);
    }
}
#undef TQ_DWK8_RQ
#undef TQ_DWK8_TAP
#undef TQ_DWK8_TAP_LAST

/* 1 when none of the n channels' shifts is positive (a left shift). */
static int tq_no_left_shift(const int32_t *shift, int32_t n)
{
    int32_t c;
    for (c = 0; c < n; c++) {
        if (shift[c] > 0) {
            return 0;
        }
    }
    return 1;
}

/* 1 when the layer's windows are what the K x K loops take: 3x3, 5x5 or
 * 7x7, dilation 1. */
static int tq_dwk_window(const tq_conv_params *p, const tq_dims *f_d)
{
    const int32_t k = f_d->h;
    return f_d->w == k && (k == 3 || k == 5 || k == 7) && p->dilation_h == 1 && p->dilation_w == 1;
}

/* 1 when every channel of a K x K layer (tq_dwk_window) is in an 8-channel
 * pair of tq_depthwise_conv_s8_mve's inner runs: all shift right. */
static int tq_dw_mve_pairs(const tq_conv_params *p, const tq_channel_quant *q, const tq_dims *f_d)
{
    return tq_dwk_window(p, f_d) && f_d->c % 8 == 0 && tq_all_right_shift(q->shift, f_d->c);
}

/* The padded copy of tq_dw_mve_padded: at most this many bytes (4
 * channels of 20 x 20 input positions), on the stack. */
#define TQ_DW_PAD_BYTES 1600

/* 1 when tq_dw_mve_padded takes a 3x3, 5x5 or 7x7 layer in blocks of
 * lanes (4 or 8) channels: dilation 1, the copy fits, and at least 4 x 4
 * outputs, so that each copied input serves about two windows or more
 * (the streamed blocks' one-row calls would copy each input row K times:
 * they keep the row runs). */
static int tq_dw_pad_fits(const tq_conv_params *p, const tq_dims *f_d, const tq_dims *out_d, int32_t lanes)
{
    const int32_t k = f_d->h;
    return tq_dwk_window(p, f_d) && out_d->h >= 4 && out_d->w >= 4 &&
           (int64_t)tq_dw_pad_extent(out_d->h, p->stride_h, k) * tq_dw_pad_extent(out_d->w, p->stride_w, k) *
                   lanes <= TQ_DW_PAD_BYTES;
}

/* Every window of one image and one block of lanes (4 or 8) channels (c ..
 * of in_b's ch) through the K x K assembly loop (k: tq_dw_mve_pack's, or
 * tq_dwk_mve_pack8's for 8 lanes; its steps are set here), borders
 * included: the block's input is first copied with its padding (the byte
 * -input_offset, whose terms cancel the offset's share in the constants,
 * as a skipped tap would) into a dense buffer. For small maps, where the
 * clipped windows are a third or more of all. */
__attribute__((noinline)) /* inlined, it cost the row runs' registers (+0.1M on mbv2) */
static void tq_dw_mve_padded(const tq_conv_params *p, const tq_dims *in_d, const int8_t *in_b,
                             const tq_dims *out_d, int32_t kdim, int32_t lanes, int32_t *k, int8_t *out)
{
    const int32_t ph = tq_dw_pad_extent(out_d->h, p->stride_h, kdim);
    const int32_t pw = tq_dw_pad_extent(out_d->w, p->stride_w, kdim);
    uint32_t buf[TQ_DW_PAD_BYTES / 4];
    int32_t oy;
    if (lanes == 8) {
        tq_dw_pad_copy(buf, p, in_d, in_b, ph, pw, 2);
    } else {
        tq_dw_pad_copy(buf, p, in_d, in_b, ph, pw, 1);
    }
    tq_dwk_mve_steps(kdim, lanes, pw * lanes, p->stride_w * lanes, k);
    for (oy = 0; oy < out_d->h; oy++) {
        const int8_t *xr = (const int8_t *)buf + (size_t)oy * p->stride_h * pw * lanes;
        int8_t *o = out + (size_t)oy * out_d->w * out_d->c;
        if (lanes == 8) {
            tq_dwk_mve8_run(kdim, xr, 8, out_d->w, k, o, out_d->c);
        } else if (kdim == 3) {
            tq_dw3x3_mve_run(xr, 4, out_d->w, k, o, out_d->c);
        } else if (kdim == 5) {
            tq_dw5x5_mve_run(xr, 4, out_d->w, k, o, out_d->c);
        } else {
            tq_dw7x7_mve_run(xr, 4, out_d->w, k, o, out_d->c);
        }
    }
}

/* 1 when tq_dw_mve8_clipped_row's copy of kdim rows for count windows
 * fits its buffer (the zero point is an int8 value: the API checks the
 * input offset). */
static int tq_dw_clipped_fits(const tq_conv_params *p, int32_t kdim, int32_t count)
{
    return (int64_t)kdim * ((int64_t)(count - 1) * p->stride_w + kdim) * 8 <= TQ_DW_PAD_BYTES;
}

/* count windows of one output row of a K x K layer (dilation 1) whose rows
 * reach past the input's top or bottom (from input row y0, column x0,
 * all columns inside), 8 channels (in_b at the first): the kdim input
 * rows they read are copied (8 bytes a pixel), the rows outside as the
 * zero point (whose terms cancel the offset's share in the constants),
 * and tq_dwk_mve8_run runs over the copy, with k8's steps set for it and
 * put back after. The caller checks tq_dw_clipped_fits. */
__attribute__((noinline)) /* its buffer is not live beside the padded path's */
static void tq_dw_mve8_clipped_row(const tq_conv_params *p, const tq_dims *in_d, const int8_t *in_b,
                                   int32_t kdim, int32_t y0, int32_t x0, int32_t count, int32_t *k8,
                                   int8_t *out, int32_t out_step)
{
    const int32_t bw = (count - 1) * p->stride_w + kdim, ch = in_d->c;
    const uint32_t pad = (uint8_t)(int8_t)(-p->input_offset) * 0x01010101u;
    const int32_t steps[2] = {k8[4 * TQ_DWK_STEPS], k8[4 * TQ_DWK_STEPS + 1]};
    uint32_t buf[TQ_DW_PAD_BYTES / 4];
    int32_t ky, x;
    for (ky = 0; ky < kdim; ky++) {
        const int32_t iy = y0 + ky;
        uint32_t *row = buf + (size_t)ky * bw * 2;
        if (iy < 0 || iy >= in_d->h) {
            for (x = 0; x < 2 * bw; x++) {
                row[x] = pad;
            }
        } else {
            const int8_t *src = in_b + ((size_t)iy * in_d->w + x0) * ch;
            for (x = 0; x < bw; x++, src += ch) {
                memcpy(row + 2 * x, src, 8);
            }
        }
    }
    tq_dwk_mve_steps(kdim, 8, bw * 8, p->stride_w * 8, k8);
    tq_dwk_mve8_run(kdim, (const int8_t *)buf, 8, count, k8, out, out_step);
    k8[4 * TQ_DWK_STEPS] = steps[0];
    k8[4 * TQ_DWK_STEPS + 1] = steps[1];
}

/* Helium path (depth multiplier 1): 4 channels per vector, int32 lanes.
 * For each block of 4 channels the requantization and the input offset's
 * share (offset * sum of the filter taps) are set up once; windows inside
 * the input take unpredicated loads and no bounds checks, border windows
 * add their valid taps with the offset. Each pixel stores 4 bytes
 * (VSTRB.32); a last block of fewer than 4 channels is predicated. Two
 * blocks that make an 8-channel pair with no left shift run the inner
 * windows of their 3x3, 5x5 or 7x7 rows together (tq_dwK_mve8_run, int16
 * taps, VMULLB / VMULLT). */
static void tq_depthwise_conv_s8_mve(const tq_conv_params *p, const tq_channel_quant *q,
                                     const tq_dims *in_d, const int8_t *input,
                                     const tq_dims *f_d, const int8_t *filter,
                                     const int32_t *bias, const tq_dims *out_d, int8_t *output)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, ch = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w;
    const int32_t eff_h = (k_h - 1) * p->dilation_h + 1, eff_w = (k_w - 1) * p->dilation_w + 1;
    const int32_t dil1 = p->dilation_h == 1 && p->dilation_w == 1;
    const int32_t out_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t row_step = in_w * ch;
    /* output columns whose window lies inside the input (dilation 1) */
    const int32_t ox_lo = dil1 ? (p->pad_left + p->stride_w - 1) / p->stride_w : 0;
    const int32_t last_x0 = in_w - eff_w + p->pad_left; /* the last inner window's x0 + pad_left */
    const int32_t ox_hi_ = dil1 && last_x0 >= 0 ? last_x0 / p->stride_w + 1 : 0;
    const int32_t ox_hi = ox_hi_ < out_d->w ? ox_hi_ : out_d->w;
    /* small maps: every window from a padded copy (tq_dw_mve_padded) */
    const int padded = tq_dw_pad_fits(p, f_d, out_d, 4), padded8 = tq_dw_pad_fits(p, f_d, out_d, 8);
    /* the K x K loops' layers, whose padded copy (if any) holds 8 channels */
    const int kxk = tq_dwk_window(p, f_d) && (!padded || padded8);
    /* every output row's windows inside the input rows */
    const int rows_all_in =
        dil1 && p->pad_top <= 0 && (out_d->h - 1) * p->stride_h - p->pad_top + eff_h <= in_h;
    int32_t c, b, oy, ox, ky, kx, t;
    for (c = 0; c < ch; c += 4) {
        const int32_t n = ch - c < 4 ? ch - c : 4, c8 = c & ~7;
        /* both blocks of an 8-channel pair: its 3x3, 5x5 or 7x7 inner runs (or
         * its padded copy) 8 channels at a time (tq_dwK_mve8_run, from the
         * pair's first block) */
        const int pair = kxk && c8 + 8 <= ch && tq_all_right_shift(q->shift + c8, 8);
        /* and rows whose windows reach past the top or bottom, from a copy */
        const int clipped = pair && !padded && ox_lo < ox_hi && tq_dw_clipped_fits(p, k_h, ox_hi - ox_lo);
        /* a pair none of whose windows is left to the per-tap code needs none
         * of this block's own constants (a streamed block asks on every row) */
        const int runs_only = pair && (padded || (ox_lo == 0 && ox_hi == out_d->w && (clipped || rows_all_in)));
        const mve_pred16_t pr = vctp32q((uint32_t)n);
        const int8_t *fc = filter + c;
        int32x4_t b4 = vdupq_n_s32(0), wsum = b4, inner = b4;
        tq_rq4 rq;
        int32_t kb[4 * (TQ_DWK8_HEAD + 49)]; /* either loop's constants and taps */
        int32_t *const k = kb + 4 * TQ_DWK_HEAD;
        int fast3 = 0, right_only = 0;
        if (runs_only) {
            tq_rq4_dup(&rq, 0, 0); /* unused */
        } else {
            b4 = bias != NULL ? vldrwq_z_s32(bias + c, pr) : b4;
            tq_rq4_init(&rq, q->multiplier + c, q->shift + c, n);
            for (t = 0; t < k_h * k_w; t++) {
                wsum = vaddq_s32(wsum, vldrbq_z_s32(fc + (size_t)t * ch, pr));
            }
            inner = vmlaq_n_s32(b4, wsum, p->input_offset); /* bias + offset * sum(w) */
            right_only = n == 4 && vmaxvq_s32(INT32_MIN, rq.left) == 0;
            fast3 = k_h == 3 && k_w == 3 && right_only;
        }
        if (pair) {
            if (c == c8) {
                int32_t *const k8 = kb + 4 * TQ_DWK8_HEAD;
                tq_dwk_mve_pack8(fc, ch, k_h * k_w, bias != NULL ? bias + c : NULL, q->multiplier + c,
                                 q->shift + c, p, k8);
                if (!padded) {
                    tq_dwk_mve_steps(k_h, ch, row_step, p->stride_w * ch, k8);
                }
            }
        } else if (fast3 || (right_only && padded)) {
            tq_dw_mve_pack(fc, ch, k_h * k_w, inner, &rq, p, k);
            if (!padded) { /* the 3x3 row runs' input walk */
                tq_dwk_mve_steps(3, ch, row_step, p->stride_w * ch, k);
            }
        }
        for (b = 0; b < out_d->n; b++) {
            const int8_t *in_b = input + (size_t)b * in_h * in_w * ch + c;
            int8_t *out = output + (size_t)b * out_d->h * out_d->w * ch + c;
            if (padded && pair) {
                if (c == c8) {
                    tq_dw_mve_padded(p, in_d, in_b, out_d, k_h, 8, kb + 4 * TQ_DWK8_HEAD, out);
                }
                continue;
            }
            if (right_only && padded) {
                tq_dw_mve_padded(p, in_d, in_b, out_d, k_h, 4, k, out);
                continue;
            }
            for (oy = 0; oy < out_d->h; oy++) {
                const int32_t y0 = oy * p->stride_h - p->pad_top;
                const int32_t rows_in = dil1 && y0 >= 0 && y0 + eff_h <= in_h;
                for (ox = 0; ox < out_d->w; ox++) {
                    const int32_t x0 = ox * p->stride_w - p->pad_left;
                    int32x4_t acc;
                    if ((rows_in || clipped) && n == 4 && ox == ox_lo && ox_lo < ox_hi) {
                        /* the row's inner windows in one run */
                        const int8_t *xw = in_b + ((size_t)(rows_in ? y0 : 0) * in_w + x0) * ch;
                        const int32_t count = ox_hi - ox_lo, x_step = p->stride_w * ch;
                        int32_t *const k8 = kb + 4 * TQ_DWK8_HEAD;
                        if (pair && c == c8 && rows_in) {
                            tq_dwk_mve8_run(k_h, xw, ch, count, k8, out, ch);
                        } else if (pair && c == c8) {
                            tq_dw_mve8_clipped_row(p, in_d, in_b, k_h, y0, x0, count, k8, out, ch);
                        } else if (pair) {
                            /* the pair's first block did these */
                        } else if (fast3) {
                            tq_dw3x3_mve_run(xw, ch, count, k, out, ch);
                        } else if (k_h == 3 && k_w == 3) {
                            tq_dw_mve_run(inner, xw, fc, 3, 3, ch, row_step, x_step, count, &rq, p, out);
                        } else {
                            tq_dw_mve_run(inner, xw, fc, k_h, k_w, ch, row_step, x_step, count, &rq, p, out);
                        }
                        out += (size_t)count * ch;
                        ox = ox_hi - 1;
                        continue;
                    } else {
                        acc = b4;
                        for (ky = 0; ky < k_h; ky++) {
                            const int32_t iy = y0 + ky * p->dilation_h;
                            if (iy < 0 || iy >= in_h) {
                                continue;
                            }
                            for (kx = 0; kx < k_w; kx++) {
                                const int32_t ix = x0 + kx * p->dilation_w;
                                int32x4_t xv;
                                if (ix < 0 || ix >= in_w) {
                                    continue;
                                }
                                xv = vaddq_n_s32(vldrbq_z_s32(in_b + ((size_t)iy * in_w + ix) * ch, pr),
                                                 p->input_offset);
                                acc = vaddq_s32(acc, vmulq_s32(xv, vldrbq_z_s32(fc + ((size_t)ky * k_w + kx) * ch,
                                                                                pr)));
                            }
                        }
                    }
                    vstrbq_p_s32(out, tq_rq4_apply(&rq, acc, out_offset, act_min, act_max), pr);
                    out += ch;
                }
            }
        }
    }
}
#endif

#if TQ_USE_X86
#define TQ_DW_AVX2_MAX_TAPS 64

/* AVX2 host path (multiplier 1, at most TQ_DW_AVX2_MAX_TAPS taps): for each
 * output pixel the taps inside the input are listed once; 8 channels per
 * vector accumulate (x + input_offset) * w in int32 lanes (wrapping, as the
 * portable sums) and are requantized lane by lane (tq_rq8_store); the last
 * ch % 8 channels take the portable arithmetic. */
static TQ_AVX2 void tq_depthwise_conv_s8_avx2(const tq_conv_params *p, const tq_channel_quant *q,
                                              const tq_dims *in_d, const int8_t *input,
                                              const tq_dims *f_d, const int8_t *filter,
                                              const int32_t *bias, const tq_dims *out_d,
                                              int8_t *output)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, ch = in_d->c;
    const __m256i off = _mm256_set1_epi32(p->input_offset);
    int32_t x_off[TQ_DW_AVX2_MAX_TAPS], w_off[TQ_DW_AVX2_MAX_TAPS];
    int32_t b, oy, ox, ky, kx, c, t;
    for (b = 0; b < out_d->n; b++) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * ch;
        for (oy = 0; oy < out_d->h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_d->w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                int32_t taps = 0;
                for (ky = 0; ky < f_d->h; ky++) {
                    const int32_t iy = y0 + ky * p->dilation_h;
                    for (kx = 0; kx < f_d->w && iy >= 0 && iy < in_h; kx++) {
                        const int32_t ix = x0 + kx * p->dilation_w;
                        if (ix >= 0 && ix < in_w) {
                            x_off[taps] = (iy * in_w + ix) * ch;
                            w_off[taps++] = (ky * f_d->w + kx) * ch;
                        }
                    }
                }
                for (c = 0; c + 8 <= ch; c += 8) {
                    const tq_rq8 r = tq_rq8_load(q->multiplier + c, q->shift + c);
                    __m256i acc = bias != NULL ? _mm256_loadu_si256((const __m256i *)(bias + c))
                                               : _mm256_setzero_si256();
                    for (t = 0; t < taps; t++) {
                        const __m256i xv = _mm256_add_epi32(
                            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(in_b + x_off[t] + c))), off);
                        const __m256i wv =
                            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(filter + w_off[t] + c)));
                        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(xv, wv));
                    }
                    tq_rq8_store(&r, acc, p, output + c);
                }
                for (; c < ch; c++) {
                    int32_t a = bias != NULL ? bias[c] : 0;
                    for (t = 0; t < taps; t++) {
                        a = tq_add_wrap(a, (in_b[x_off[t] + c] + p->input_offset) * filter[w_off[t] + c]);
                    }
                    output[c] = tq_requantize_s8(a, q->multiplier[c], q->shift[c], p->output_offset,
                                                 p->act_min, p->act_max);
                }
                output += ch;
            }
        }
    }
}
#endif

static tq_status tq_depthwise_conv_s8_run(const tq_conv_params *params,
                                          const tq_channel_quant *quant, const tq_dims *input_dims,
                                          const int8_t *input, const tq_dims *filter_dims,
                                          const int8_t *filter, const int32_t *bias,
                                          const tq_dims *output_dims, int8_t *output, void *scratch,
                                          int32_t scratch_size, int check_quant)
{
    tq_status st = (check_quant ? tq_check_conv : tq_check_conv_shape)(
        TQ_CONV_DEPTHWISE, params, quant, input_dims, input, filter_dims, filter, output_dims, output);
    if (st != TQ_OK) {
        return st;
    }
    st = tq_check_scratch(scratch, scratch_size,
                          tq_depthwise_conv_s8_get_buffer_size(input_dims, filter_dims));
    if (st != TQ_OK) {
        return st;
    }
#if TQ_USE_MVE
    /* Helium takes 3x3 windows along rows of 16 or more outputs, layers
     * whose channels all go in 8-channel pairs (tq_dw_mve_pairs), and small
     * 3x3, 5x5 and 7x7 maps whose padded copy fits its stack buffer when no
     * channel shifts left (tq_dw_mve_padded); the DSP path's assembly runs
     * are faster on every other shape whose channels come in fours
     * (measured in QEMU, bench/mcu_bench.py). */
    if (filter_dims->c == input_dims->c &&
        ((filter_dims->h == 3 && filter_dims->w == 3 && output_dims->w >= 16) ||
         tq_dw_mve_pairs(params, quant, filter_dims) ||
         (tq_dw_pad_fits(params, filter_dims, output_dims, 4) &&
          tq_no_left_shift(quant->shift, output_dims->c)) ||
         input_dims->c % 4 != 0 || filter_dims->h * filter_dims->w > TQ_DW_DSP_MAX_TAPS)) {
        tq_depthwise_conv_s8_mve(params, quant, input_dims, input, filter_dims, filter, bias,
                                 output_dims, output);
        return TQ_OK;
    }
#endif
#if TQ_USE_DSP
    if (filter_dims->c == input_dims->c && filter_dims->h * filter_dims->w <= TQ_DW_DSP_MAX_TAPS) {
        tq_depthwise_conv_s8_dsp(params, quant, input_dims, input, filter_dims, filter, bias,
                                 output_dims, output);
        return TQ_OK;
    }
#endif
#if TQ_USE_X86
    if (filter_dims->c == input_dims->c && filter_dims->h * filter_dims->w <= TQ_DW_AVX2_MAX_TAPS &&
        tq_x86_avx2()) {
        tq_depthwise_conv_s8_avx2(params, quant, input_dims, input, filter_dims, filter, bias,
                                  output_dims, output);
        return TQ_OK;
    }
#endif
    tq_depthwise_conv_s8_portable(params, quant, input_dims, input, filter_dims, filter, bias,
                                  output_dims, output);
    return TQ_OK;
}

tq_status tq_depthwise_conv_s8_checked(const tq_conv_params *params, const tq_channel_quant *quant,
                                       const tq_dims *input_dims, const int8_t *input,
                                       const tq_dims *filter_dims, const int8_t *filter,
                                       const int32_t *bias, const tq_dims *output_dims, int8_t *output,
                                       void *scratch, int32_t scratch_size, int check_quant)
{
    const tq_status st = tq_depthwise_conv_s8_run(params, quant, input_dims, input, filter_dims,
                                                  filter, bias, output_dims, output, scratch,
                                                  scratch_size, check_quant);
    if (st == TQ_OK) {
        tq_forward_mask(params, output, tq_dims_count(output_dims));
    }
    return st;
}

tq_status tq_depthwise_conv_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                               const tq_dims *input_dims, const int8_t *input,
                               const tq_dims *filter_dims, const int8_t *filter,
                               const int32_t *bias,
                               const tq_dims *output_dims, int8_t *output,
                               void *scratch, int32_t scratch_size)
{
    return tq_depthwise_conv_s8_checked(params, quant, input_dims, input, filter_dims, filter, bias,
                                        output_dims, output, scratch, scratch_size, 1);
}
