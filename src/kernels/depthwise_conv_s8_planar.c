/* tinyqt: a streamed block's 3x3 depthwise rows on the ARM DSP extension
 * from planar int16 rows (tq_dw_planar.h).
 *
 * The NHWC runs (depthwise_conv_s8.c) spend 8 instructions on each tap of
 * 4 channels: the input word split by two SXTAB16, the tap's weights loaded
 * again, four 16x16 multiplies. Here each expanded row is copied once, 4
 * channels at a time, into one int16 row per channel with the input offset
 * added (about 1.75 instructions per value). Two neighbouring outputs of a
 * channel then share words of its rows: with P0 = (x0, x1), P1 = (x2, x3)
 *   out0 = SMLAD(P0, (w0, w1)) + SMLABT(P1, (w1, w2))
 *   out1 = SMLATB(P0, (w0, w1)) + SMLAD(P1, (w1, w2))
 * which is 5 instructions (one LDRD) per filter row and pair of outputs at
 * stride 1, every weight in a register; stride 2 reads a third word (out1
 * starts at x2). The sums go to a row of int32 and are requantized per
 * channel (tq_rq2_s8) by a second loop. Integer sums in any order give
 * the same bits, and the zero columns add nothing, as the reference's
 * clipped window. */
#include <stddef.h>
#include <string.h>

#include "tq_dw_planar.h"

/* The ring rows' widths (int16 columns) the assembly has row strides for. */
static const int32_t tq_dwp_widths[] = {6, 10, 18, 34, 66};
#define TQ_DWP_N_WIDTHS 5
#define TQ_DWP_MAX_WIDTH 66

tq_dw_planar_geom tq_dw_planar_geometry(const tq_conv_params *p, const tq_dims *f, int32_t band_w,
                                        int32_t out_w, int32_t mid)
{
    tq_dw_planar_geom g = {0, 0, 0};
    const int32_t pairs = (out_w + 1) / 2;
    int32_t i;
    if (p == NULL || f == NULL || f->h != 3 || f->w != 3 || p->dilation_h != 1 || p->dilation_w != 1 ||
        (p->stride_w != 1 && p->stride_w != 2) || p->pad_left != 0 || mid < 4 || mid % 4 != 0 ||
        out_w < 1 || out_w > TQ_DWP_MAX_WIDTH || band_w < 1 || mid > (1 << 16)) {
        return g;
    }
    g.cols = p->stride_w == 1 ? 2 * pairs + 2 : 4 * pairs + 2;
    for (i = 0; i < TQ_DWP_N_WIDTHS && g.width == 0; i++) {
        if (tq_dwp_widths[i] >= g.cols) {
            g.width = tq_dwp_widths[i];
        }
    }
    if (g.width == 0) {
        g.cols = 0;
        return g;
    }
    /* rows, then per channel 6 weight pairs and 3 requantization words */
    g.bytes = mid * (3 * g.width * 2 + 6 * 4 + 3 * 4);
    return g;
}

#if TQ_DW_PLANAR

/* The ring's parts: channel j's row for input row r at rows + (3j + r % 3)
 * * width int16; then per channel the weight pairs (w0, w1), (w1, w2) of
 * filter rows 0..2, then per channel multiplier, chi, rsh. */
static int16_t *tq_dwp_rows(void *ring)
{
    return (int16_t *)ring;
}

static int32_t *tq_dwp_pairs(void *ring, const tq_dw_planar_geom *g, int32_t mid)
{
    return (int32_t *)((char *)ring + (size_t)mid * 3 * g->width * 2);
}

static int32_t *tq_dwp_rq(void *ring, const tq_dw_planar_geom *g, int32_t mid)
{
    return tq_dwp_pairs(ring, g, mid) + (size_t)mid * 6;
}

/* (lo of a, lo of b) and (hi of a, hi of b) as int16 pairs: PKHBT and
 * PKHTB, which GCC does not find in the C forms. */
static inline uint32_t tq_dwp_lo2(int32_t a, int32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline uint32_t tq_dwp_hi2(int32_t a, int32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

int tq_dw_planar_init(void *ring, const tq_dw_planar_geom *g, const tq_conv_params *p,
                      const tq_channel_quant *q, const int8_t *filter, const int32_t *bias,
                      int32_t mid)
{
    int32_t *pairs = tq_dwp_pairs(ring, g, mid), *rq = tq_dwp_rq(ring, g, mid);
    int32_t j, ky;
    tq_rq2 q2;
    for (j = 0; j < mid; j++) {
        for (ky = 0; ky < 3; ky++) {
            const int8_t *f = filter + (size_t)ky * 3 * mid + j;
            pairs[6 * j + 2 * ky] = (int32_t)tq_dwp_lo2(2 * f[0], 2 * f[mid]);
            pairs[6 * j + 2 * ky + 1] = (int32_t)tq_dwp_lo2(2 * f[mid], 2 * f[2 * mid]);
        }
        if (!tq_rq2_init(&q2, q->multiplier[j], q->shift[j], bias != NULL ? bias[j] : 0, 9, p)) {
            return 0;
        }
        rq[3 * j] = q2.mult;
        rq[3 * j + 1] = (int32_t)q2.chi2;
        rq[3 * j + 2] = q2.r;
    }
    return 1;
}

/* The plane words at column xp (even) of 4 channels' rows (row: the
 * first's, words; the others step words apart) from the two pixels' words
 * split by SXTAB16: e = (c0, c2), o = (c1, c3). */
static inline void tq_dwp_put(uint32_t *row, int32_t step, int32_t e0, int32_t o0, int32_t e1, int32_t o1)
{
    row[0] = tq_dwp_lo2(e0, e1);
    row[step] = tq_dwp_lo2(o0, o1);
    row[2 * step] = tq_dwp_hi2(e0, e1);
    row[3 * step] = tq_dwp_hi2(o0, o1);
}

void tq_dw_planar_fill(void *ring, const tq_dw_planar_geom *g, int32_t r, const int8_t *src,
                       int32_t band_w, int32_t mid, int32_t input_offset)
{
    const int32_t off2 = tq_offset_x2(input_offset);
    const int32_t step = 3 * g->width / 2; /* words from one channel's row to the next's */
    /* pairs whose two pixels are both in the band row */
    const int32_t inner = band_w - 1 < g->cols ? band_w - 1 : g->cols;
    uint32_t *base = (uint32_t *)(tq_dwp_rows(ring) + (size_t)(r % 3) * g->width);
    int32_t c, xp;
    for (c = 0; c < mid; c += 4, base += 4 * step) {
        const int8_t *s = src + c;
        uint32_t *w = base;
        for (xp = 0; xp < inner; xp += 2, s += 2 * mid, w++) {
            const int32_t v0 = tq_read_s8x4(s), v1 = tq_read_s8x4(s + mid);
            tq_dwp_put(w, step, tq_sxtab16(off2, v0), tq_sxtab16_ror8(off2, v0), tq_sxtab16(off2, v1),
                       tq_sxtab16_ror8(off2, v1));
        }
        for (; xp < g->cols; xp += 2, s += 2 * mid, w++) {
            /* past the band row: zeros (and its last pixel beside one) */
            int32_t e0 = 0, o0 = 0;
            if (xp < band_w) {
                const int32_t v0 = tq_read_s8x4(s);
                e0 = tq_sxtab16(off2, v0);
                o0 = tq_sxtab16_ror8(off2, v0);
            }
            tq_dwp_put(w, step, e0, o0, 0, 0);
        }
    }
}

/* One channel's row of outputs for the assembly runs, at the byte offsets
 * they use (checked below). */
typedef struct {
    int32_t w[6];      /* 0: per ring row, (w0, w1) and (w1, w2) of its filter row */
    int32_t bias[2];   /* 24: the channel's bias, twice */
    const int16_t *x;  /* 32: the channel's first ring row, column 0 */
    int32_t *acc;      /* 36: the sums, one int32 per output (2 * n of them) */
    int32_t n;         /* 40: pairs of outputs (>= 1); counted down */
} tq_dwp_job;

#define TQ_DWP_JOB_CHECK(field, off) \
    typedef char tq_dwp_job_at_##field[(offsetof(tq_dwp_job, field) == (off)) ? 1 : -1]
TQ_DWP_JOB_CHECK(bias, 24);
TQ_DWP_JOB_CHECK(x, 32);
TQ_DWP_JOB_CHECK(acc, 36);
TQ_DWP_JOB_CHECK(n, 40);

/* One filter row at stride 1: P0, P1 in r10, r11 (loaded by LOAD), the
 * row's weight pairs in WA = (w0, w1) and WB = (w1, w2). */
#define TQ_DWP_S1_ROW(load, wa, wb)                \
    load "\n\t"                                    \
    "smlad r0, r10, " wa ", r0\n\t"                \
    "smlabt r0, r11, " wb ", r0\n\t"               \
    "smlatb r1, r10, " wa ", r1\n\t"               \
    "smlad r1, r11, " wb ", r1\n\t"

/* One filter row at stride 2: (x0, x1), (x2, x3), (x4, x5) in r10, r11,
 * r12 (loaded by LOAD); out0 = x0..x2, out1 = x2..x4. */
#define TQ_DWP_S2_ROW(load, wa, wb)                \
    load "\n\t"                                    \
    "smlad r0, r10, " wa ", r0\n\t"                \
    "smlabt r0, r11, " wb ", r0\n\t"               \
    "smlad r1, r11, " wa ", r1\n\t"                \
    "smlabt r1, r12, " wb ", r1\n\t"

/* A run: a naked function on one job whose assembly BODY follows the
 * prologue (weights in r2-r7, x in r8, the sums' pointer in r9, the job in
 * lr) and ends before the epilogue. */
#define TQ_DWP_RUN_FN(name, body)                                                        \
    __attribute__((naked, noinline)) static void name(tq_dwp_job *job __attribute__((unused))) \
    {                                                                                    \
        __asm__ volatile(                                                                \
            "push {r4-r11, lr}\n\t"                                                      \
            "mov lr, r0\n\t"                                                             \
            "ldm lr, {r2-r7}\n\t"                                                        \
            "ldrd r8, r9, [lr, #32]\n\t"                                                 \
            body                                                                         \
            "pop {r4-r11, pc}\n\t");                                                     \
    }

/* Stride 1, ring rows ROW1 and ROW2 bytes after the first: job->n pairs
 * of outputs, the pair i at columns 2i .. 2i + 3. */
#define TQ_DWP_S1_FN(name, row1, row2)                                                   \
    TQ_DWP_RUN_FN(name,                                                                  \
        "ldr r12, [lr, #40]\n\t"                                                         \
        "1:\n\t"                                                                         \
        "ldrd r0, r1, [lr, #24]\n\t"                                                     \
        TQ_DWP_S1_ROW("ldrd r10, r11, [r8, #" row1 "]", "r4", "r5")                      \
        TQ_DWP_S1_ROW("ldrd r10, r11, [r8, #" row2 "]", "r6", "r7")                      \
        TQ_DWP_S1_ROW("ldrd r10, r11, [r8], #4", "r2", "r3")                             \
        "strd r0, r1, [r9], #8\n\t"                                                      \
        "subs r12, r12, #1\n\t"                                                          \
        "bne 1b\n\t")

/* Stride 2: job->n pairs of outputs, the pair i at columns 4i .. 4i + 4;
 * ROW1W and ROW2W are ROW1 + 8 and ROW2 + 8 (the third word). */
#define TQ_DWP_S2_FN(name, row1, row1w, row2, row2w)                                     \
    TQ_DWP_RUN_FN(name,                                                                  \
        "1:\n\t"                                                                         \
        "ldrd r0, r1, [lr, #24]\n\t"                                                     \
        TQ_DWP_S2_ROW("ldrd r10, r11, [r8, #" row1 "]\n\tldr r12, [r8, #" row1w "]", "r4", "r5") \
        TQ_DWP_S2_ROW("ldrd r10, r11, [r8, #" row2 "]\n\tldr r12, [r8, #" row2w "]", "r6", "r7") \
        TQ_DWP_S2_ROW("ldr r12, [r8, #8]\n\tldrd r10, r11, [r8], #8", "r2", "r3")        \
        "strd r0, r1, [r9], #8\n\t"                                                      \
        "ldr r10, [lr, #40]\n\t"                                                         \
        "subs r10, r10, #1\n\t"                                                          \
        "str r10, [lr, #40]\n\t"                                                         \
        "bne 1b\n\t")

/* One pair of functions per ring width: rows 2 * width bytes apart. */
TQ_DWP_S1_FN(tq_dwp_s1_w6, "12", "24")
TQ_DWP_S1_FN(tq_dwp_s1_w10, "20", "40")
TQ_DWP_S1_FN(tq_dwp_s1_w18, "36", "72")
TQ_DWP_S1_FN(tq_dwp_s1_w34, "68", "136")
TQ_DWP_S1_FN(tq_dwp_s1_w66, "132", "264")
TQ_DWP_S2_FN(tq_dwp_s2_w6, "12", "20", "24", "32")
TQ_DWP_S2_FN(tq_dwp_s2_w10, "20", "28", "40", "48")
TQ_DWP_S2_FN(tq_dwp_s2_w18, "36", "44", "72", "80")
TQ_DWP_S2_FN(tq_dwp_s2_w34, "68", "76", "136", "144")
TQ_DWP_S2_FN(tq_dwp_s2_w66, "132", "140", "264", "272")

typedef void (*tq_dwp_run_fn)(tq_dwp_job *);
static const tq_dwp_run_fn tq_dwp_runs[2][TQ_DWP_N_WIDTHS] = {
    {tq_dwp_s1_w6, tq_dwp_s1_w10, tq_dwp_s1_w18, tq_dwp_s1_w34, tq_dwp_s1_w66},
    {tq_dwp_s2_w6, tq_dwp_s2_w10, tq_dwp_s2_w18, tq_dwp_s2_w34, tq_dwp_s2_w66}};

/* The requantization loop's arguments (ldm order). */
typedef struct {
    const int32_t *acc;  /* the sums */
    int32_t n;           /* pairs of outputs (>= 1) */
    int32_t mult, chi2, r;
    int8_t *out;         /* first output */
    int32_t step;        /* bytes from one output to the next */
} tq_dwp_rq_job;

/* out[i * step] <- tq_rq2_s8(acc[i], mult, chi2, r), for i < 2 * n. */
__attribute__((naked, noinline)) static void tq_dwp_rq_asm(const tq_dwp_rq_job *job __attribute__((unused)))
{
    __asm__ volatile(
        "push {r4-r11, lr}\n\t"
        "ldm r0, {r1-r7}\n\t"
        "1:\n\t"
        "ldrd r8, r9, [r1], #8\n\t"
        TQ_RQ2_ASM("r10", "r8", "r3", "r4", "r5")
        "strb r10, [r6]\n\t"
        TQ_RQ2_ASM("r11", "r9", "r3", "r4", "r5")
        "strb r11, [r6, r7]\n\t"
        "add r6, r6, r7, lsl #1\n\t"
        "subs r2, r2, #1\n\t"
        "bne 1b\n\t"
        "pop {r4-r11, pc}\n\t");
}

void tq_dw_planar_row(const void *ring, const tq_dw_planar_geom *g, int32_t top, int32_t in_h,
                      int32_t stride_w, const int32_t *bias, int32_t mid, int32_t out_w, int8_t *out)
{
    void *const rg = (void *)(uintptr_t)ring;
    const int16_t *rows = tq_dwp_rows(rg);
    const int32_t *pairs = tq_dwp_pairs(rg, g, mid), *rq = tq_dwp_rq(rg, g, mid);
    int32_t acc[TQ_DWP_MAX_WIDTH];
    int32_t ky_of[3] = {-1, -1, -1}; /* the filter row each ring row meets, or -1 */
    tq_dwp_run_fn run = NULL;
    tq_dwp_job job;
    tq_dwp_rq_job rj;
    tq_rq2 q2;
    int32_t i, j, ky, s;
    for (i = 0; i < TQ_DWP_N_WIDTHS; i++) {
        if (tq_dwp_widths[i] == g->width) {
            run = tq_dwp_runs[stride_w == 2][i];
        }
    }
    for (ky = 0; ky < 3; ky++) {
        if (top + ky >= 0 && top + ky < in_h) {
            ky_of[(top + ky) % 3] = ky;
        }
    }
    job.acc = acc;
    rj.acc = acc;
    rj.n = out_w / 2;
    rj.step = mid;
    for (j = 0; j < mid; j++, pairs += 6, rq += 3) {
        for (s = 0; s < 3; s++) {
            job.w[2 * s] = ky_of[s] >= 0 ? pairs[2 * ky_of[s]] : 0;
            job.w[2 * s + 1] = ky_of[s] >= 0 ? pairs[2 * ky_of[s] + 1] : 0;
        }
        job.bias[0] = job.bias[1] = bias != NULL ? tq_dbl(bias[j]) : 0; /* the pairs are doubled */
        job.x = rows + (size_t)j * 3 * g->width;
        job.n = (out_w + 1) / 2;
        run(&job);
        rj.mult = rq[0];
        rj.chi2 = rq[1];
        rj.r = rq[2];
        q2.mult = rq[0];
        q2.chi2 = (uint32_t)rq[1];
        q2.r = rq[2];
        rj.out = out + j;
        if (rj.n > 0) {
            tq_dwp_rq_asm(&rj);
        }
        if (out_w & 1) {
            out[(size_t)(out_w - 1) * mid + j] = (int8_t)tq_rq2_s8(acc[out_w - 1], &q2);
        }
    }
}

#endif /* TQ_DW_PLANAR */
