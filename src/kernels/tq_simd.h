/*
 * tinyqt: ARM DSP (v7E-M / v8-M DSP extension) helpers shared by the conv,
 * 1x1 conv, depthwise and fully connected kernels (private header).
 *
 * Everything but the scratch tile sizes (which every path's buffer-size
 * query uses) is compiled only when TQ_USE_DSP is 1, i.e. when the
 * target has the DSP extension (__ARM_FEATURE_DSP) and TQ_FORCE_PORTABLE is
 * not defined. Only GCC/Clang's <arm_acle.h> intrinsics are used, plus two
 * one-instruction inline asm forms (SXTB16/SXTAB16 with ROR #8) that the
 * intrinsics cannot express.
 *
 * Packed int8 loads go through memcpy: strict-aliasing safe and unaligned
 * safe (Cortex-M4/M7/M33/M55 LDR accepts unaligned addresses; the compiler
 * turns the 4-byte memcpy into one LDR).
 *
 * Arithmetic: SMLAD / SMLABB / SMLATT add into the accumulator modulo 2^32
 * (they only set the sticky Q flag on overflow), exactly as the portable
 * path's int32 additions wrap, so both paths give the same accumulators in
 * every case, and the requantization is the shared tq_requantize_s8.
 *
 * Packed int16 operand layout ("even/odd"): four int8 values b0..b3 of one
 * word become two int16x2 words, (b0, b2) = SXTB16(w) and
 * (b1, b3) = SXTB16(w ROR 8). With the same split on both operands,
 * SMLAD(even_x, even_w) + SMLAD(odd_x, odd_w) is the dot product of the
 * four pairs. SXTAB16 adds the input offset to both lanes for free; an int8
 * value plus an offset in [-127, 128] always fits an int16 lane.
 */
#ifndef TINYQT_SIMD_H
#define TINYQT_SIMD_H

#include <stdint.h>
#include <string.h>

#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"

#if defined(__ARM_FEATURE_DSP) && !defined(TQ_FORCE_PORTABLE)
#define TQ_USE_DSP 1
#else
#define TQ_USE_DSP 0
#endif

#define TQ_COLS_GROUPS(k) (((k) + 3) / 4)
#define TQ_COLS_WORDS(k) (8 * TQ_COLS_GROUPS(k))

/* ---- column tiles -------------------------------------------------------
 * A tile is up to tq_tile_blocks(k) 4-pixel column blocks (TQ_COLS_WORDS(k)
 * words each) back to back: the conv and 1x1 kernels' scratch. The filter
 * rows are the outer loop, so each channel's bias and requantization are
 * set up once per tile and stay in registers over its pixels. */
#define TQ_TILE_BYTES 4096
#define TQ_TILE_MAX_BLOCKS 8

/* 4-pixel blocks per tile for K = k: as many as fit TQ_TILE_BYTES, 1..8. */
static inline int32_t tq_tile_blocks(int32_t k)
{
    const int32_t n = k > TQ_TILE_BYTES ? 1 : TQ_TILE_BYTES / (32 * TQ_COLS_GROUPS(k));
    return n < 1 ? 1 : (n > TQ_TILE_MAX_BLOCKS ? TQ_TILE_MAX_BLOCKS : n);
}

/* Scratch bytes of one tile for K = k and one expanded filter row (the
 * conv and 1x1 kernels' buffer size on every path); 0 when it overflows
 * int32. */
static inline int32_t tq_tile_bytes(int32_t k)
{
    const int64_t n = (int64_t)8 * TQ_COLS_GROUPS((int64_t)k) * (4 * tq_tile_blocks(k) + 1);
    return n > INT32_MAX ? 0 : (int32_t)n;
}

#if TQ_USE_DSP

#include <arm_acle.h>

/* Four int8 values as one word (unaligned-safe). */
static inline int32_t tq_read_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* (b0, b2) sign-extended to two int16 lanes. */
static inline int32_t tq_sxtb16(int32_t v)
{
    return __sxtb16(v);
}

/* (b1, b3) sign-extended to two int16 lanes. */
static inline int32_t tq_sxtb16_ror8(int32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* a + (b0, b2) lane-wise. */
static inline int32_t tq_sxtab16(int32_t a, int32_t v)
{
    return __sxtab16(a, v);
}

/* a + (b1, b3) lane-wise. */
static inline int32_t tq_sxtab16_ror8(int32_t a, int32_t v)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
}

/* acc + lo(a)*lo(b) + hi(a)*hi(b), modulo 2^32. */
static inline int32_t tq_smlad(int32_t a, int32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}

/* acc + lo(a)*lo(b). */
static inline int32_t tq_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return __smlabb(a, b, acc);
}

/* acc + hi(a)*hi(b). */
static inline int32_t tq_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return __smlatt(a, b, acc);
}

/* Two consecutive words of a column buffer (LDRD, 4-byte aligned address);
 * the "m" operand tells the compiler which memory the load reads. */
typedef struct {
    uint32_t w[2];
} tq_u32x2;

#define TQ_LDRD(lo, hi, p, words)                                                    \
    __asm__("ldrd %0, %1, [%2, #%c3]"                                                \
            : "=r"(lo), "=r"(hi)                                                     \
            : "r"(p), "n"(4 * (words)), "m"(*(const tq_u32x2 *)((p) + (words))))

/* Stores two words at a 4-byte aligned address (STRD). */
#define TQ_STRD(lo, hi, p) \
    __asm__("strd %1, %2, [%3]" : "=m"(*(tq_u32x2 *)(p)) : "r"(lo), "r"(hi), "r"(p))

/* (hi:lo) += a * b, signed 64-bit (SMLAL). */
#define TQ_SMLAL(lo, hi, a, b) __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(a), "r"(b))

/* ---- requantization ---------------------------------------------------
 * The same function as tq_requantize (requant.h), in fewer instructions:
 *  - shift >= 0: v = (x << shift) * m + 2^30 >> 31 with one SMLAL;
 *  - shift = -r < 0: the doubling high multiply and the rounding divide by
 *    2^r merge into one rounding, since floor((floor(A / 2^31) + c) / 2^r)
 *    = floor((A + c 2^31) / 2^(31 + r)) for integer c. With A = x*m + 2^30
 *    and c = 2^(r-1) - [v < 0] the result is the high word of
 *    x*m + 2^30 + 2^(30+r) - [x < 0] 2^31, shifted right by r - 1. (Using
 *    x < 0 for v < 0 is exact: they differ only when -2^30 <= x*m < 0 or
 *    m = 0, where both choices give 0.) The constant is precomputed per
 *    channel; x's sign selects it with an EOR and an ADD. */
typedef struct {
    int32_t mult;
    int32_t left;   /* shift >= 0: left shift; else -1 */
    int32_t rsh;    /* shift < 0: r - 1 */
    uint32_t clo;   /* low word of 2^30 + 2^(30+r) */
    uint32_t chi;   /* high word of it */
    uint32_t hmask; /* borrow of subtracting 2^31 from it: all ones when r >= 2 */
} tq_rq;

static inline void tq_rq_init(tq_rq *rq, int32_t mult, int32_t shift)
{
    rq->mult = mult;
    if (shift >= 0) {
        rq->left = shift;
        rq->rsh = 0;
        rq->clo = 1u << 30;
        rq->chi = 0;
        rq->hmask = 0;
    } else {
        const int32_t r = -shift;
        rq->left = -1;
        rq->rsh = r - 1;
        rq->clo = r == 1 ? 0xC0000000u : 0x40000000u;
        rq->chi = r >= 2 ? 1u << (r - 2) : 0u;
        rq->hmask = r >= 2 ? 0xFFFFFFFFu : 0u;
    }
}

/* tq_requantize(acc, mult, shift) for a right shift (rq->left < 0). */
static inline int32_t tq_rq_raw_neg(const tq_rq *rq, int32_t acc)
{
    uint32_t lo = rq->clo ^ ((uint32_t)acc & 0x80000000u);
    uint32_t hi = rq->chi + ((uint32_t)(acc >> 31) & rq->hmask);
    TQ_SMLAL(lo, hi, acc, rq->mult);
    return (int32_t)hi >> rq->rsh;
}

/* tq_requantize(acc, mult, shift). */
static inline int32_t tq_rq_raw(const tq_rq *rq, int32_t acc)
{
    uint32_t lo, hi;
    if (rq->left >= 0) {
        const int32_t x = (int32_t)((uint32_t)acc << rq->left);
        lo = 1u << 30;
        hi = 0;
        TQ_SMLAL(lo, hi, x, rq->mult);
        return (int32_t)((lo >> 31) | (hi << 1));
    }
    return tq_rq_raw_neg(rq, acc);
}

/* tq_requantize(acc, mult, shift) + output_offset, clamped to
 * [act_min, act_max]; full_range != 0 promises [-128, 127] (one SSAT). */
static inline int32_t tq_rq_apply(const tq_rq *rq, int32_t acc, int32_t out_offset,
                                  int32_t act_min, int32_t act_max, int full_range)
{
    int32_t v = tq_rq_raw(rq, acc) + out_offset;
    if (full_range) {
        return __ssat(v, 8);
    }
    v = v < act_min ? act_min : v;
    return v > act_max ? act_max : v;
}

/* The input offset in both int16 lanes. */
static inline int32_t tq_offset_x2(int32_t offset)
{
    return (int32_t)(((uint32_t)offset & 0xFFFFu) * 0x10001u);
}

/* The last n (1..3) int8 values of a row as one word, zeros above, without
 * reading past the row. */
static inline int32_t tq_read_s8_tail(const int8_t *p, int32_t n)
{
    uint32_t v = (uint8_t)p[0];
    if (n > 1) {
        v |= (uint32_t)(uint8_t)p[1] << 8;
    }
    if (n > 2) {
        v |= (uint32_t)(uint8_t)p[2] << 16;
    }
    return (int32_t)v;
}

/* ---- 4-pixel column buffer -------------------------------------------
 * The conv and 1x1 kernels gather up to 4 output pixels' input windows
 * (K = KH*KW*C_in values each, in filter order) into a buffer of
 * TQ_COLS_WORDS(K) words: for each group g of four k values and each pixel
 * p, two words: (x[4g]+off, x[4g+2]+off) and (x[4g+1]+off, x[4g+3]+off),
 * i.e. word index 8g + 2p (+1). Padding and the k >= K tail hold 0. The
 * unused pixel slots of a tile's last, partial block keep whatever they
 * held: their sums are computed and never stored. */

typedef struct {
    uint32_t *dst;  /* next group's even word of this pixel */
    uint32_t word;  /* raw int8 values of the group being assembled */
    int32_t nb;     /* bytes in word */
    int32_t off2;   /* input offset in both lanes */
    int32_t pad;    /* the int8 value that becomes 0 with the offset added */
} tq_col_packer;

static inline void tq_col_begin(tq_col_packer *pk, uint32_t *cols, int32_t pixel,
                                int32_t input_offset)
{
    pk->dst = cols + 2 * pixel;
    pk->word = 0;
    pk->nb = 0;
    pk->off2 = tq_offset_x2(input_offset);
    pk->pad = (int32_t)(uint8_t)(int8_t)(-input_offset);
}

static inline void tq_col_emit(tq_col_packer *pk, int32_t raw)
{
    TQ_STRD(tq_sxtab16(pk->off2, raw), tq_sxtab16_ror8(pk->off2, raw), pk->dst);
    pk->dst += 8;
}

/* Appends n input values. */
static inline void tq_col_push(tq_col_packer *pk, const int8_t *src, int32_t n)
{
    while (pk->nb != 0 && n > 0) {
        pk->word |= (uint32_t)(uint8_t)*src++ << (8 * pk->nb);
        n--;
        if (++pk->nb == 4) {
            tq_col_emit(pk, (int32_t)pk->word);
            pk->word = 0;
            pk->nb = 0;
        }
    }
    for (; n >= 8; n -= 8, src += 8) {
        tq_col_emit(pk, tq_read_s8x4(src));
        tq_col_emit(pk, tq_read_s8x4(src + 4));
    }
    if (n >= 4) {
        tq_col_emit(pk, tq_read_s8x4(src));
        n -= 4;
        src += 4;
    }
    for (; n > 0; n--) {
        pk->word |= (uint32_t)(uint8_t)*src++ << (8 * pk->nb);
        pk->nb++;
    }
}

/* Appends n padding values (0 once the offset is added). */
static inline void tq_col_push_pad(tq_col_packer *pk, int32_t n)
{
    const uint32_t pad4 = (uint32_t)pk->pad * 0x01010101u;
    while (pk->nb != 0 && n > 0) {
        pk->word |= (uint32_t)pk->pad << (8 * pk->nb);
        n--;
        if (++pk->nb == 4) {
            tq_col_emit(pk, (int32_t)pk->word);
            pk->word = 0;
            pk->nb = 0;
        }
    }
    for (; n >= 4; n -= 4) {
        tq_col_emit(pk, (int32_t)pad4);
    }
    for (; n > 0; n--) {
        pk->word |= (uint32_t)pk->pad << (8 * pk->nb);
        pk->nb++;
    }
}

/* Completes the last group with padding. */
static inline void tq_col_end(tq_col_packer *pk)
{
    if (pk->nb != 0) {
        tq_col_push_pad(pk, 4 - pk->nb);
    }
}

/* The filter row w (k int8 values) in the columns' even/odd int16 layout:
 * for each group of 4, (w[4g], w[4g+2]) and (w[4g+1], w[4g+3]); the k >= K
 * tail is 0. TQ_COLS_GROUPS(k) * 2 words. With dbl each value is doubled
 * (SADD16; 2 * w fits an int16 lane), for tq_rq2_s8's doubled sums. */
static inline void tq_row_expand(const int8_t *w, int32_t k, uint32_t *wx, int dbl)
{
    const int32_t groups = k >> 2, rem = k & 3;
    int32_t g, e, o;
#define TQ_ROW_PUT(g, v)                                                                 do {                                                                                     e = tq_sxtb16(v);                                                                    o = tq_sxtb16_ror8(v);                                                               wx[2 * (g)] = (uint32_t)(dbl ? __sadd16(e, e) : e);                                  wx[2 * (g) + 1] = (uint32_t)(dbl ? __sadd16(o, o) : o);                          } while (0)
    for (g = 0; g < groups; g++) {
        TQ_ROW_PUT(g, tq_read_s8x4(w + 4 * g));
    }
    if (rem > 0) {
        TQ_ROW_PUT(groups, tq_read_s8_tail(w + 4 * groups, rem));
    }
#undef TQ_ROW_PUT
}

/* One group of four k values of the 4 pixels (expanded weights we, wo):
 * 8 SMLAD. */
#define TQ_COLS_GROUP(x, words, we, wo)                                              \
    do {                                                                             \
        const int32_t we_ = (we), wo_ = (wo);                                        \
        int32_t e_, o_;                                                              \
        TQ_LDRD(e_, o_, x, (words));                                                 \
        a0 = tq_smlad(e_, we_, a0);                                                  \
        a0 = tq_smlad(o_, wo_, a0);                                                  \
        TQ_LDRD(e_, o_, x, (words) + 2);                                             \
        a1 = tq_smlad(e_, we_, a1);                                                  \
        a1 = tq_smlad(o_, wo_, a1);                                                  \
        TQ_LDRD(e_, o_, x, (words) + 4);                                             \
        a2 = tq_smlad(e_, we_, a2);                                                  \
        a2 = tq_smlad(o_, wo_, a2);                                                  \
        TQ_LDRD(e_, o_, x, (words) + 6);                                             \
        a3 = tq_smlad(e_, we_, a3);                                                  \
        a3 = tq_smlad(o_, wo_, a3);                                                  \
    } while (0)

/* The dot products of one 4-pixel block of columns x with an expanded
 * filter row wx (tq_row_expand; groups = TQ_COLS_GROUPS(k)) added to
 * *acc0..*acc3. */
__attribute__((always_inline)) static inline void
tq_cols_dot4(const uint32_t *x, const uint32_t *wx, int32_t groups, int32_t *acc0, int32_t *acc1,
             int32_t *acc2, int32_t *acc3)
{
    int32_t a0 = *acc0, a1 = *acc1, a2 = *acc2, a3 = *acc3;
    int32_t g, we, wo;
/* group g: the columns at x + 8g words, the expanded weights at wx + 2g */
#define TQ_COLS_XGROUP(g)                                                            \
    do {                                                                             \
        TQ_LDRD(we, wo, wx, 2 * (g));                                                \
        TQ_COLS_GROUP(x, 8 * (g), we, wo);                                           \
    } while (0)
    for (g = groups >> 2; g > 0; g--) {
        TQ_COLS_XGROUP(0);
        TQ_COLS_XGROUP(1);
        TQ_COLS_XGROUP(2);
        TQ_COLS_XGROUP(3);
        x += 32;
        wx += 8;
    }
    if (groups & 2) {
        TQ_COLS_XGROUP(0);
        TQ_COLS_XGROUP(1);
        x += 16;
        wx += 4;
    }
    if (groups & 1) {
        TQ_COLS_XGROUP(0);
    }
#undef TQ_COLS_XGROUP
    *acc0 = a0;
    *acc1 = a1;
    *acc2 = a2;
    *acc3 = a3;
}

/* tq_cols_dot4 with the filter row as int8 (w, k values): each group's
 * weights are sign-extended on the way (tq_cols_tile's choice for tiles
 * too short to repay expanding the row). */
__attribute__((always_inline)) static inline void
tq_cols_dot4_s8(const uint32_t *x, const int8_t *w, int32_t k, int32_t *acc0, int32_t *acc1,
                int32_t *acc2, int32_t *acc3)
{
    const int32_t groups = k >> 2, rem = k & 3;
    int32_t a0 = *acc0, a1 = *acc1, a2 = *acc2, a3 = *acc3;
    int32_t g, wv;
    for (g = groups >> 1; g > 0; g--) {
        wv = tq_read_s8x4(w);
        TQ_COLS_GROUP(x, 0, tq_sxtb16(wv), tq_sxtb16_ror8(wv));
        wv = tq_read_s8x4(w + 4);
        TQ_COLS_GROUP(x, 8, tq_sxtb16(wv), tq_sxtb16_ror8(wv));
        x += 16;
        w += 8;
    }
    if (groups & 1) {
        wv = tq_read_s8x4(w);
        TQ_COLS_GROUP(x, 0, tq_sxtb16(wv), tq_sxtb16_ror8(wv));
        x += 8;
        w += 4;
    }
    if (rem > 0) {
        wv = tq_read_s8_tail(w, rem);
        TQ_COLS_GROUP(x, 0, tq_sxtb16(wv), tq_sxtb16_ror8(wv));
    }
    *acc0 = a0;
    *acc1 = a1;
    *acc2 = a2;
    *acc3 = a3;
}

/* The scratch after the tile's largest size: TQ_COLS_GROUPS(k) * 8 bytes,
 * 4-byte aligned, where tq_cols_tile expands each filter row (and a
 * gather may stage a window's bytes before that). */
static inline int8_t *tq_tile_stage(uint32_t *cols, int32_t k)
{
    return (int8_t *)(cols + tq_tile_blocks(k) * TQ_COLS_WORDS(k));
}

/* tq_requantize(acc, mult, -r) + offset for r >= 2 (tq_rq_apply's
 * negative-shift form with its constants in registers): rsh = r - 1 and
 * chi = 2^(r-2) + (offset << rsh), which adds the offset inside the high
 * word. With offset 0 any r in [2, 31] is exact; with an int8 offset,
 * r <= 23 keeps the sum from overflowing (|high word| <= 2^30 + 2^21,
 * |offset << rsh| <= 2^29). */
static inline int32_t tq_rq_neg(int32_t acc, int32_t mult, uint32_t chi, int32_t rsh)
{
    uint32_t lo = ((uint32_t)acc & 0x80000000u) | 0x40000000u;
    uint32_t hi = chi + (uint32_t)(acc >> 31);
    TQ_SMLAL(lo, hi, acc, mult);
    return (int32_t)hi >> rsh;
}

/* tq_rq_neg saturated to int8. */
static inline int32_t tq_rq_neg_s8(int32_t acc, int32_t mult, uint32_t chi, int32_t rsh)
{
    return __ssat(tq_rq_neg(acc, mult, chi, rsh), 8);
}

/* chi of tq_rq_neg_s8 for shift -r and an int8 output offset, or 0 with
 * *ok = 0 when r is outside [2, 23] or [act_min, act_max] is not the whole
 * int8 range (which the SSAT stands for). */
static inline uint32_t tq_rq_neg_chi_s8(int32_t shift, int32_t out_offset, int32_t act_min,
                                        int32_t act_max, int *ok)
{
    const int32_t r = -shift;
    *ok = r >= 2 && r <= 23 && act_min == -128 && act_max == 127;
    return *ok ? (1u << (r - 2)) + ((uint32_t)out_offset << (r - 1)) : 0u;
}

/* tq_rq_neg_chi_s8 with a conv's output offset and range. */
static inline uint32_t tq_rq_neg_chi(int32_t shift, const tq_conv_params *prm, int *ok)
{
    return tq_rq_neg_chi_s8(shift, prm->output_offset, prm->act_min, prm->act_max, ok);
}

/* ---- requantization of a doubled sum (SMMLAR) --------------------------
 * Where a kernel expands its weights anyway it can double them (and the
 * bias) for free, and then sums s = 2x. SMMLAR's high word of
 * (a << 32) + s*m + 2^31 is floor((x*m + 2^30) / 2^31) + a: the doubling
 * high multiply (TFLite's, for both signs; see tq_rq) plus a. With
 * a = 2^(r-1) + (offset << r) - [x < 0], one ASR by r is the rounding divide
 * by 2^r plus the offset (the merge in tq_rq's comment), so tq_requantize +
 * offset + the int8 clamp is ADD, SMMLAR, ASR, SSAT: four instructions
 * where tq_rq_neg_s8 takes six. Exact for a right shift r in [1, 23],
 * mult >= 0, an int8 offset, the whole int8 range and |x| <= 2^29 (so s,
 * a and the result fit int32), which tq_rq2_init checks. */
static inline int32_t tq_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* One channel's constants for tq_rq2_s8 (tq_rq2_init). */
typedef struct {
    int32_t mult;
    uint32_t chi2; /* 2^(r-1) + (offset << r) */
    int32_t r;
} tq_rq2;

/* 2 * v, wrapping like the sums: a saturated bias only occurs in a channel
 * of tq_rq2_init's constant form, which ignores the sum's value. */
static inline int32_t tq_dbl(int32_t v)
{
    return (int32_t)((uint32_t)v << 1);
}

/* *q for multiplier mult, right shift r in [1, 23] and an int8 offset. */
static inline void tq_rq2_set(tq_rq2 *q, int32_t mult, int32_t r, int32_t off)
{
    q->mult = mult;
    q->r = r;
    q->chi2 = (1u << (r - 1)) + ((uint32_t)off << r);
}

/* tq_requantize(x) + offset for the doubled sum s = 2x, unclamped. */
static inline int32_t tq_rq2_raw(int32_t s, const tq_rq2 *q)
{
    return tq_smmlar(s, q->mult, (int32_t)(q->chi2 + (uint32_t)(s >> 31))) >> q->r;
}

/* The clamped output for the doubled sum s. */
static inline int32_t tq_rq2_s8(int32_t s, const tq_rq2 *q)
{
    return __ssat(tq_rq2_raw(s, q), 8);
}

/* Assembly: tq_rq2_s8 of the doubled sum in register s into register d
 * (mult in m, chi2 in c, r in register r; d may not be s, m or r). */
#define TQ_RQ2_ASM(d, s, m, c, r)                                                     \
    "add " d ", " c ", " s ", asr #31\n\t"                                              \
    "smmlar " d ", " s ", " m ", " d "\n\t"                                             \
    "asr " d ", " d ", " r "\n\t"                                                       \
    "ssat " d ", #8, " d "\n\t"

/* *q for a channel (mult, shift, bias) of a conv whose sums have k terms
 * (|term| <= 255 * 128); 0 when tq_rq2_s8 would not be exact for it. A
 * channel whose weights all but vanished (a shift below -23, or a bias
 * whose doubled sums overflow) is taken when its every output is the same,
 * checked at both ends of its sums' range (the requantization is monotonic):
 * multiplier 0 and r = 1 then give that output whatever the sum. */
static inline int tq_rq2_init(tq_rq2 *q, int32_t mult, int32_t shift, int32_t bias, int32_t k,
                              const tq_conv_params *prm)
{
    const int32_t r = -shift, off = prm->output_offset;
    const int64_t span = (int64_t)k * 32640;
    const int64_t bound = (bias < 0 ? -(int64_t)bias : (int64_t)bias) + span;
    if (!(mult >= 0 && off >= -128 && off <= 127 && prm->act_min == -128 && prm->act_max == 127)) {
        return 0;
    }
    if (r >= 1 && r <= 23 && bound <= ((int64_t)1 << 29)) {
        tq_rq2_set(q, mult, r, off);
        return 1;
    }
    if (bias - span >= INT32_MIN && bias + span <= INT32_MAX) { /* no sum wraps */
        const int8_t lo = tq_requantize_s8((int32_t)(bias - span), mult, shift, off, -128, 127);
        if (lo == tq_requantize_s8((int32_t)(bias + span), mult, shift, off, -128, 127)) {
            q->mult = 0;
            q->r = 1;
            q->chi2 = 1u + 2u * (uint32_t)(int32_t)lo;
            return 1;
        }
    }
    return 0;
}

/* One filter row of K = 8 for tq_k8_blocks_asm, in the order of its LDM. */
typedef struct {
    uint32_t we0, wo0, we1, wo1; /* the row expanded and doubled (tq_row_expand) */
    int32_t bias2, mult;         /* bias2 = 2 * bias */
    uint32_t chi2;               /* tq_rq2 */
    uint32_t count_r;            /* (blocks - 1) << 8 | r: ASR reads the low byte */
    int32_t out_c;               /* output stride */
} tq_k8_row;

/* Pixel p (0..3) of a block: its two column groups (bytes 8p and 32 + 8p of
 * the block) times the row, then tq_rq2_s8. Registers: r0 the block, r3-r6
 * the row, r7 bias2, r8 mult, r9 chi2, r10 count_r, r2/ip/lr scratch. */
#define TQ_K8_PIXEL(p8, p8g1)                                                        \
    "ldrd r2, ip, [r0, #" p8 "]\n\t"                                                 \
    "smlad lr, r2, r3, r7\n\t"                                                       \
    "smlad lr, ip, r4, lr\n\t"                                                       \
    "ldrd r2, ip, [r0, #" p8g1 "]\n\t"                                               \
    "smlad lr, r2, r5, lr\n\t"                                                       \
    "smlad lr, ip, r6, lr\n\t"                                                       \
    TQ_RQ2_ASM("ip", "lr", "r8", "r9", "r10")

/* tq_cols_tile_n's doubled-sum blocks for K = 8: (count_r >> 8) + 1 blocks
 * from x, their outputs at o, o + out_c, ... A function of its own so that
 * all 14 registers hold the loop (compiled C spills). Its arguments are
 * read by the assembly only (TQ_ASM_ARG). */
#define TQ_ASM_ARG __attribute__((unused))
__attribute__((naked, noinline, unused)) static void
tq_k8_blocks_asm(const uint32_t *x TQ_ASM_ARG, int8_t *o TQ_ASM_ARG, const tq_k8_row *row TQ_ASM_ARG)
{
    __asm__ volatile("push {r4-r11, lr}\n\t"
                     "ldm r2, {r3-r11}\n\t"
                     "1:\n\t"
                     TQ_K8_PIXEL("0", "32")
                     "strb ip, [r1]\n\t"
                     TQ_K8_PIXEL("8", "40")
                     "strb ip, [r1, r11]\n\t"
                     TQ_K8_PIXEL("16", "48")
                     "strb ip, [r1, r11, lsl #1]\n\t"
                     "add r1, r1, r11, lsl #1\n\t"
                     TQ_K8_PIXEL("24", "56")
                     "strb ip, [r1, r11]\n\t"
                     "add r1, r1, r11, lsl #1\n\t"
                     "add r0, r0, #64\n\t"
                     "subs r10, r10, #256\n\t"
                     "bcs 1b\n\t"
                     "pop {r4-r11, pc}");
}
#undef TQ_K8_PIXEL

/* One filter row for tq_kgN_blocks_asm (offsets its assembly uses). */
typedef struct {
    int32_t bias2;      /* 0: 2 * bias */
    int32_t mult;       /* 4 */
    uint32_t chi2;      /* 8: tq_rq2 */
    const uint32_t *wx; /* 12: the row expanded and doubled (tq_row_expand) */
    int32_t out_c;      /* 16: output stride */
    uint32_t count_r;   /* 20: (blocks - 1) << 8 | r: ASR reads the low byte */
} tq_kg_row;

/* Group g of a block: the row's two words (r8, r9) times the 4 pixels'
 * column words at bytes 32g + 8p, into r4-r7. */
#define TQ_KG_GROUP(g)                                                               \
    "ldrd r8, r9, [r3, #(8*" #g ")]\n\t"                                             \
    "ldrd r10, r11, [r0, #(32*" #g ")]\n\t"                                          \
    "smlad r4, r10, r8, r4\n\t"                                                      \
    "smlad r4, r11, r9, r4\n\t"                                                      \
    "ldrd r10, r11, [r0, #(32*" #g "+8)]\n\t"                                        \
    "smlad r5, r10, r8, r5\n\t"                                                      \
    "smlad r5, r11, r9, r5\n\t"                                                      \
    "ldrd r10, r11, [r0, #(32*" #g "+16)]\n\t"                                       \
    "smlad r6, r10, r8, r6\n\t"                                                      \
    "smlad r6, r11, r9, r6\n\t"                                                      \
    "ldrd r10, r11, [r0, #(32*" #g "+24)]\n\t"                                       \
    "smlad r7, r10, r8, r7\n\t"                                                      \
    "smlad r7, r11, r9, r7\n\t"
#define TQ_KG_G4(a, b, c, d) TQ_KG_GROUP(a) TQ_KG_GROUP(b) TQ_KG_GROUP(c) TQ_KG_GROUP(d)
/* tq_rq2_s8 of the sum in register acc (mult r8, chi2 r9, r in lr) into r10. */
#define TQ_KG_RQ(acc) TQ_RQ2_ASM("r10", acc, "r8", "r9", "lr")
/* tq_cols_tile_n's doubled-sum blocks for GROUPS groups of 4 values (the
 * body GROUPS_BODY): (count_r >> 8) + 1 blocks from x, their outputs at o,
 * o + out_c, ... The 14 registers hold the loop: the sums, the row's and
 * the columns' words, the pointers, the stride and the count; the
 * requantization constants are loaded once a block (compiled C spills
 * about 20 instructions a block of K = 27). */
#define TQ_KG_BLOCKS_FN(name, GROUPS, GROUPS_BODY)                                   \
    __attribute__((naked, noinline, unused)) static void name(                       \
        const uint32_t *x TQ_ASM_ARG, int8_t *o TQ_ASM_ARG, const tq_kg_row *row TQ_ASM_ARG) \
    {                                                                                \
        __asm__ volatile("push {r4-r11, lr}\n\t"                                     \
                         "ldr r3, [r2, #12]\n\t"                                     \
                         "ldrd r12, lr, [r2, #16]\n\t"                               \
                         "1:\n\t"                                                    \
                         "ldr r4, [r2]\n\t"                                          \
                         "mov r5, r4\n\t"                                            \
                         "mov r6, r4\n\t"                                            \
                         "mov r7, r4\n\t"                                            \
                         GROUPS_BODY                                                 \
                         "ldrd r8, r9, [r2, #4]\n\t"                                 \
                         TQ_KG_RQ("r4")                                              \
                         "strb r10, [r1]\n\t"                                        \
                         TQ_KG_RQ("r5")                                              \
                         "strb r10, [r1, r12]\n\t"                                   \
                         TQ_KG_RQ("r6")                                              \
                         "strb r10, [r1, r12, lsl #1]\n\t"                           \
                         "add r1, r1, r12, lsl #1\n\t"                               \
                         TQ_KG_RQ("r7")                                              \
                         "strb r10, [r1, r12]\n\t"                                   \
                         "add r1, r1, r12, lsl #1\n\t"                               \
                         "add r0, r0, #(32*" #GROUPS ")\n\t"                         \
                         "subs lr, lr, #256\n\t"                                     \
                         "bcs 1b\n\t"                                                \
                         "pop {r4-r11, pc}");                                        \
    }
TQ_KG_BLOCKS_FN(tq_kg4_blocks_asm, 4, TQ_KG_G4(0, 1, 2, 3))
TQ_KG_BLOCKS_FN(tq_kg6_blocks_asm, 6, TQ_KG_G4(0, 1, 2, 3) TQ_KG_GROUP(4) TQ_KG_GROUP(5))
TQ_KG_BLOCKS_FN(tq_kg7_blocks_asm, 7, TQ_KG_G4(0, 1, 2, 3) TQ_KG_GROUP(4) TQ_KG_GROUP(5) TQ_KG_GROUP(6))
TQ_KG_BLOCKS_FN(tq_kg8_blocks_asm, 8, TQ_KG_G4(0, 1, 2, 3) TQ_KG_G4(4, 5, 6, 7))
TQ_KG_BLOCKS_FN(tq_kg10_blocks_asm, 10, TQ_KG_G4(0, 1, 2, 3) TQ_KG_G4(4, 5, 6, 7) TQ_KG_GROUP(8) TQ_KG_GROUP(9))
TQ_KG_BLOCKS_FN(tq_kg12_blocks_asm, 12, TQ_KG_G4(0, 1, 2, 3) TQ_KG_G4(4, 5, 6, 7) TQ_KG_G4(8, 9, 10, 11))
#undef TQ_KG_BLOCKS_FN
#undef TQ_KG_RQ
#undef TQ_KG_G4
#undef TQ_KG_GROUP
#undef TQ_ASM_ARG

/* The assembly blocks for groups groups of 4 values, or NULL. */
typedef void (*tq_kg_blocks_fn)(const uint32_t *, int8_t *, const tq_kg_row *);
static inline tq_kg_blocks_fn tq_kg_blocks(int32_t groups)
{
    switch (groups) {
    case 4:
        return tq_kg4_blocks_asm;
    case 6:
        return tq_kg6_blocks_asm;
    case 7:
        return tq_kg7_blocks_asm;
    case 8:
        return tq_kg8_blocks_asm;
    case 10:
        return tq_kg10_blocks_asm;
    case 12:
        return tq_kg12_blocks_asm;
    default:
        return NULL;
    }
}

/* Multiplies the tile's n_pix pixels (ceil(n_pix / 4) blocks) by every
 * filter row (row oc = filter + oc * k) and writes the requantized outputs
 * out[p * out_c + oc]. With expand (a constant), each row is expanded once
 * per tile (tq_row_expand) into the scratch after the tile's largest
 * size. */
__attribute__((always_inline)) static inline void
tq_cols_tile_n(uint32_t *cols, int32_t n_pix, int32_t k, const int8_t *filter,
               const int32_t *bias, const tq_channel_quant *q, const tq_conv_params *prm,
               int32_t out_c, int8_t *out, int expand)
{
    const int32_t out_offset = prm->output_offset, act_min = prm->act_min,
                  act_max = prm->act_max;
    const int32_t nfull = n_pix >> 2, tail = n_pix & 3;
    const int32_t block_words = TQ_COLS_WORDS(k), groups = TQ_COLS_GROUPS(k);
    uint32_t *const wx = (uint32_t *)tq_tile_stage(cols, k);
    int32_t oc, blk;
#define TQ_TILE_DOT(x)                                                               \
    do {                                                                             \
        a0 = a1 = a2 = a3 = b_init;                                                  \
        if (expand) {                                                                \
            tq_cols_dot4(x, wx, groups, &a0, &a1, &a2, &a3);                         \
        } else {                                                                     \
            tq_cols_dot4_s8(x, w, k, &a0, &a1, &a2, &a3);                            \
        }                                                                            \
    } while (0)
    for (oc = 0; oc < out_c; oc++) {
        const int8_t *const w = filter + (size_t)oc * k;
        const uint32_t *x = cols;
        const int32_t b = bias != NULL ? bias[oc] : 0;
        const int32_t mult = q->multiplier[oc], shift = q->shift[oc];
        int8_t *o = out + oc;
        int32_t a0, a1, a2, a3;
        tq_rq rq;
        int fast;
        const uint32_t chi = tq_rq_neg_chi(shift, prm, &fast);
        tq_rq2 q2 = {0, 0u, 1};
        const int fast2 = expand && tq_rq2_init(&q2, mult, shift, b, k, prm);
        /* doubled rows sum 2x (even: the tail halves it exactly) */
        const int32_t b_init = fast2 ? tq_dbl(b) : b, dbl = fast2 ? 1 : 0;
        if (expand) {
            tq_row_expand(w, k, wx, fast2);
        }
/* The blocks' four outputs, one out_c apart, requantized by RQ(acc). */
#define TQ_TILE_BLOCKS(RQ)                                                           \
    for (blk = 0; blk < nfull; blk++, x += block_words) {                            \
        TQ_TILE_DOT(x);                                                              \
        *o = (int8_t)RQ(a0);                                                         \
        o += out_c;                                                                  \
        *o = (int8_t)RQ(a1);                                                         \
        o += out_c;                                                                  \
        *o = (int8_t)RQ(a2);                                                         \
        o += out_c;                                                                  \
        *o = (int8_t)RQ(a3);                                                         \
        o += out_c;                                                                  \
    }
#define TQ_TILE_RQ_FAST(acc) tq_rq_neg_s8(acc, mult, chi, rsh)
#define TQ_TILE_RQ2(acc) tq_rq2_s8(acc, &q2)
#define TQ_TILE_RQ(acc) tq_rq_apply(&rq, (acc) >> dbl, out_offset, act_min, act_max, 0)
        /* the doubled-sum blocks in assembly where a loop exists for K (an
         * unrolled tile's K is a constant: the C loop below drops out) */
        if (fast2 && (k == 8 || tq_kg_blocks(groups) != NULL)) {
            if (nfull > 0 && k == 8) {
                const tq_k8_row row = {wx[0], wx[1], wx[2], wx[3], b_init, q2.mult, q2.chi2,
                                       (uint32_t)(nfull - 1) << 8 | (uint32_t)q2.r, out_c};
                tq_k8_blocks_asm(x, o, &row);
            } else if (nfull > 0) {
                const tq_kg_row row = {b_init, q2.mult, q2.chi2, wx, out_c,
                                       (uint32_t)(nfull - 1) << 8 | (uint32_t)q2.r};
                tq_kg_blocks(groups)(x, o, &row);
            }
            x += nfull * block_words;
            o += 4 * nfull * out_c;
        } else if (fast2) {
            TQ_TILE_BLOCKS(TQ_TILE_RQ2)
        } else if (fast && !expand) { /* expanded rows: channels outside tq_rq2 are rare */
            const int32_t rsh = -shift - 1;
            TQ_TILE_BLOCKS(TQ_TILE_RQ_FAST)
        } else {
            tq_rq_init(&rq, mult, shift);
            TQ_TILE_BLOCKS(TQ_TILE_RQ)
        }
        if (tail > 0) {
            tq_rq_init(&rq, mult, shift);
            TQ_TILE_DOT(x);
            o[0] = (int8_t)TQ_TILE_RQ(a0);
            if (tail > 1) {
                o[out_c] = (int8_t)TQ_TILE_RQ(a1);
            }
            if (tail > 2) {
                o[2 * out_c] = (int8_t)TQ_TILE_RQ(a2);
            }
        }
    }
#undef TQ_TILE_RQ
#undef TQ_TILE_RQ2
#undef TQ_TILE_RQ_FAST
#undef TQ_TILE_BLOCKS
#undef TQ_TILE_DOT
}

/* tq_cols_tile_n with rows expanded once per tile where the tile has 4 or
 * more blocks (expanding costs about two blocks' weight sign-extensions).
 * Callers that know their common K pass it as a constant instead (a fully
 * unrolled dot product: tq_pw_tile, tq_conv_tile). */
static inline void tq_cols_tile(uint32_t *cols, int32_t n_pix, int32_t k, const int8_t *filter,
                                const int32_t *bias, const tq_channel_quant *q,
                                const tq_conv_params *prm, int32_t out_c, int8_t *out)
{
    if (tq_tile_blocks(k) >= 4) {
        tq_cols_tile_n(cols, n_pix, k, filter, bias, q, prm, out_c, out, 1);
    } else {
        tq_cols_tile_n(cols, n_pix, k, filter, bias, q, prm, out_c, out, 0);
    }
}

#endif /* TQ_USE_DSP */

#endif /* TINYQT_SIMD_H */
