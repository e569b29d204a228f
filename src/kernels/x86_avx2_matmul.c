/* tinyqt: the AVX2 int8 matrix product behind the host's 1x1 and dense conv
 * paths (contracts in tq_x86.h). One VPMADDWD adds two columns' terms to
 * the int32 sums of 8 output channels; 4 output pixels share each packed
 * filter word; the requantization is lane by lane and exact (tq_rq8_store).
 * Output channels past the last multiple of 8 use the scalar arithmetic. */
#include <string.h>

#include "tq_x86.h"

#if TQ_USE_X86

#include "tinyqt/requant.h"

int tq_avx2_fits(int32_t k, int32_t out_c)
{
    const int64_t pairs = ((int64_t)k + 1) / 2;
    return k >= 1 && k <= TQ_AVX2_MAX_K && pairs * (out_c / 8) * 8 <= TQ_AVX2_MAX_PACKED;
}

void tq_avx2_pack_filter(const int8_t *filter, int32_t k, int32_t out_c, int32_t *packed)
{
    const int32_t pairs = (k + 1) / 2, blocks = out_c / 8;
    int32_t blk, j, l;
    for (blk = 0; blk < blocks; blk++) {
        for (j = 0; j < pairs; j++) {
            for (l = 0; l < 8; l++) {
                const int8_t *w = filter + (size_t)(blk * 8 + l) * k + 2 * j;
                const uint32_t hi = 2 * j + 1 < k ? (uint16_t)(int16_t)w[1] : 0u;
                packed[(blk * pairs + j) * 8 + l] = (int32_t)((uint16_t)(int16_t)w[0] | hi << 16);
            }
        }
    }
}

TQ_AVX2 void tq_avx2_col_s8(const int8_t *x, int32_t n, int32_t offset, int16_t *col)
{
    const __m256i off16 = _mm256_set1_epi16((int16_t)offset);
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_si256((__m256i *)(col + i), _mm256_add_epi16(v, off16));
    }
    for (; i < n; i++) {
        col[i] = (int16_t)(x[i] + offset);
    }
}

static int32_t tq_avx2_pair(const int16_t *col, int32_t j)
{
    int32_t v;
    memcpy(&v, col + 2 * j, sizeof v);
    return v;
}

TQ_AVX2 void tq_avx2_cols_mat_mult(tq_avx2_cols cols, int32_t n, int32_t k, const int32_t *packed,
                                   const int8_t *filter, const int32_t *bias,
                                   const tq_channel_quant *q, const tq_conv_params *p,
                                   int32_t out_c, int8_t *out)
{
    const int32_t pairs = (k + 1) / 2, blocks = out_c / 8;
    const int16_t *c0 = cols[0], *c1 = cols[n > 1 ? 1 : 0], *c2 = cols[n > 2 ? 2 : 0];
    const int16_t *c3 = cols[n > 3 ? 3 : 0]; /* missing pixels: computed, not stored */
    int32_t blk, j, oc, l, i;
    for (blk = 0; blk < blocks; blk++) {
        const tq_rq8 r = tq_rq8_load(q->multiplier + blk * 8, q->shift + blk * 8);
        const int32_t *wp = packed + (size_t)blk * pairs * 8;
        const __m256i b0 = bias != NULL ? _mm256_loadu_si256((const __m256i *)(bias + blk * 8))
                                        : _mm256_setzero_si256();
        __m256i a0 = b0, a1 = b0, a2 = b0, a3 = b0;
        int8_t *o = out + blk * 8;
        for (j = 0; j < pairs; j++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(wp + j * 8));
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_set1_epi32(tq_avx2_pair(c0, j)), wv));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_set1_epi32(tq_avx2_pair(c1, j)), wv));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_set1_epi32(tq_avx2_pair(c2, j)), wv));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_set1_epi32(tq_avx2_pair(c3, j)), wv));
        }
        tq_rq8_store(&r, a0, p, o);
        if (n > 1) {
            tq_rq8_store(&r, a1, p, o + out_c);
        }
        if (n > 2) {
            tq_rq8_store(&r, a2, p, o + 2 * out_c);
        }
        if (n > 3) {
            tq_rq8_store(&r, a3, p, o + 3 * out_c);
        }
    }
    for (oc = blocks * 8; oc < out_c; oc++) {
        const int8_t *w = filter + (size_t)oc * k;
        for (l = 0; l < n; l++) {
            int32_t sum = bias != NULL ? bias[oc] : 0;
            for (i = 0; i < k; i++) {
                sum = tq_add_wrap(sum, cols[l][i] * w[i]);
            }
            out[(size_t)l * out_c + oc] = tq_requantize_s8(sum, q->multiplier[oc], q->shift[oc],
                                                           p->output_offset, p->act_min, p->act_max);
        }
    }
}

#endif /* TQ_USE_X86 */
