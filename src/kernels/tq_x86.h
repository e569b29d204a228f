/*
 * tinyqt: x86-64 AVX2 helpers of the host build (private header).
 *
 * The host simulation runs the same kernels as the MCU; on an x86-64 host
 * with AVX2 the int8 forward kernels take vector paths that give the bytes
 * of the portable path (integer arithmetic, the exact TFLite
 * requantization per lane). TQ_USE_X86 is 1 for GCC/Clang on x86-64
 * unless TQ_FORCE_PORTABLE is defined; the AVX2 functions carry a target
 * attribute, so the library still builds for (and runs on) any x86-64 and
 * picks the path at run time (tq_x86_avx2()).
 */
#ifndef TINYQT_X86_H
#define TINYQT_X86_H

#include <stdint.h>

#include "tinyqt/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(TQ_FORCE_PORTABLE)
#define TQ_USE_X86 1
#else
#define TQ_USE_X86 0
#endif

#if TQ_USE_X86

#include <immintrin.h>

#define TQ_AVX2 __attribute__((target("avx2")))

/* 1 when the CPU has AVX2 and tq_host_simd_enable() has not turned the
 * vector paths off. */
int tq_x86_avx2(void);

/* Per-lane requantization parameters of 8 output channels. */
typedef struct {
    __m256i mult, left, right, rmask, rhalf;
} tq_rq8;

static inline TQ_AVX2 tq_rq8 tq_rq8_load(const int32_t *multiplier, const int32_t *shift)
{
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    const __m256i s = _mm256_loadu_si256((const __m256i *)shift);
    tq_rq8 r;
    r.mult = _mm256_loadu_si256((const __m256i *)multiplier);
    r.left = _mm256_max_epi32(s, zero);
    r.right = _mm256_max_epi32(_mm256_sub_epi32(zero, s), zero);
    r.rmask = _mm256_sub_epi32(_mm256_sllv_epi32(one, r.right), one); /* 2^right - 1 */
    r.rhalf = _mm256_srli_epi32(r.rmask, 1);
    return r;
}

/* tq_requantize(x, multiplier, shift) in each of 8 lanes, bit for bit:
 * x << left, the rounding doubling high multiply (64-bit products of even
 * and odd lanes), then the rounding divide by 2^right. */
static inline TQ_AVX2 __m256i tq_rq8_apply(const tq_rq8 *r, __m256i x)
{
    const __m256i round = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i sh = _mm256_sllv_epi32(x, r->left);
    const __m256i even = _mm256_add_epi64(_mm256_mul_epi32(sh, r->mult), round);
    const __m256i odd = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(sh, 32), _mm256_srli_epi64(r->mult, 32)), round);
    /* bits 31..62 of each product: low half of even >> 31, high half of odd << 1 */
    const __m256i hm = _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_slli_epi64(odd, 1), 0xAA);
    const __m256i rem = _mm256_and_si256(hm, r->rmask);
    const __m256i thr = _mm256_sub_epi32(r->rhalf, _mm256_cmpgt_epi32(_mm256_setzero_si256(), hm));
    return _mm256_sub_epi32(_mm256_srav_epi32(hm, r->right), _mm256_cmpgt_epi32(rem, thr));
}

/* Requantizes 8 accumulators, adds the output offset, clamps, stores 8 int8. */
static inline TQ_AVX2 void tq_rq8_store(const tq_rq8 *r, __m256i acc, const tq_conv_params *p,
                                        int8_t *out)
{
    __m256i v = _mm256_add_epi32(tq_rq8_apply(r, acc), _mm256_set1_epi32(p->output_offset));
    __m128i w16;
    v = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(p->act_min)),
                         _mm256_set1_epi32(p->act_max));
    w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)out, _mm_packs_epi16(w16, w16));
}

/* ---- the int8 conv as a matrix product (x86_avx2_matmul.c) -------------
 * The AVX2 path of tq_conv_s8 and tq_conv_1x1_s8 (a 1x1 filter is the
 * dense conv's K = C_in case): when the CPU has AVX2 and the filter fits
 * (K = KH*KW*C_in <= 1024, a packed filter of at most 64 KB), computes the
 * output with the portable path's bytes and returns 1; otherwise returns 0
 * and writes nothing. Arguments are checked by the caller. */
int tq_avx2_conv_s8(const tq_conv_params *p, const tq_channel_quant *q, const tq_dims *in_d,
                    const int8_t *input, const tq_dims *f_d, const int8_t *filter,
                    const int32_t *bias, const tq_dims *out_d, int8_t *output);

#endif /* TQ_USE_X86 */

#endif /* TINYQT_X86_H */
