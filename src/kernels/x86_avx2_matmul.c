/* tinyqt: the AVX2 int8 conv of the host build (contract in tq_x86.h), for
 * tq_conv_s8 and tq_conv_1x1_s8. Each output pixel's window becomes an int16
 * column of K = KH*KW*C_in values (input + offset, 0 where the window leaves
 * the input); the filter [C_out][K] is packed once per call as int16 pairs
 * of 8 output channels. One VPMADDWD adds two columns' terms to the int32
 * sums of 8 output channels; 4 output pixels share each packed filter word;
 * the requantization is lane by lane and exact (tq_rq8_store). Output
 * channels past the last multiple of 8 use the scalar arithmetic. */
#include <string.h>

#include "tq_x86.h"

#if TQ_USE_X86

#include "tinyqt/requant.h"

#define TQ_AVX2_MAX_K 1024
#define TQ_AVX2_MAX_PACKED (16 * 1024)

/* Four pixels' columns, each padded with one 0 to an even length. */
typedef int16_t tq_avx2_cols[4][TQ_AVX2_MAX_K + 2];

/* 1 when a K x out_c filter fits the packed buffer and the columns. */
static int tq_avx2_fits(int32_t k, int32_t out_c)
{
    const int64_t pairs = ((int64_t)k + 1) / 2;
    return k >= 1 && k <= TQ_AVX2_MAX_K && pairs * (out_c / 8) * 8 <= TQ_AVX2_MAX_PACKED;
}

/* packed <- the first out_c - out_c % 8 rows of filter [out_c][k]. */
static void tq_avx2_pack_filter(const int8_t *filter, int32_t k, int32_t out_c, int32_t *packed)
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

/* col[0..n) <- x[i] + offset as int16. */
static TQ_AVX2 void tq_avx2_col_s8(const int8_t *x, int32_t n, int32_t offset, int16_t *col)
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

/* Output pixels l < n (n <= 4) from their columns: out[l * out_c + oc] =
 * requantized bias[oc] + sum_i cols[l][i] * filter[oc][i]. */
static TQ_AVX2 void tq_avx2_cols_mat_mult(tq_avx2_cols cols, int32_t n, int32_t k,
                                          const int32_t *packed, const int8_t *filter,
                                          const int32_t *bias, const tq_channel_quant *q,
                                          const tq_conv_params *p, int32_t out_c, int8_t *out)
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

int tq_avx2_conv_s8(const tq_conv_params *p, const tq_channel_quant *q, const tq_dims *in_d,
                    const int8_t *input, const tq_dims *f_d, const int8_t *filter,
                    const int32_t *bias, const tq_dims *out_d, int8_t *output)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c, out_c = out_d->c;
    const int32_t k = f_d->h * f_d->w * in_c;
    const int32_t total = out_d->n * out_d->h * out_d->w;
    int32_t packed[TQ_AVX2_MAX_PACKED];
    tq_avx2_cols cols;
    int32_t pix, l, n, ky, kx, b = 0, oy = 0, ox = 0;
    if (!tq_avx2_fits(k, out_c) || !tq_x86_avx2()) {
        return 0;
    }
    tq_avx2_pack_filter(filter, k, out_c, packed);
    for (pix = 0; pix < total; pix += 4) {
        n = total - pix < 4 ? total - pix : 4;
        for (l = 0; l < n; l++) {
            const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
            int16_t *col = cols[l];
            for (ky = 0; ky < f_d->h; ky++) {
                const int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dilation_h;
                for (kx = 0; kx < f_d->w; kx++, col += in_c) {
                    const int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dilation_w;
                    if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                        memset(col, 0, (size_t)in_c * sizeof(int16_t));
                    } else {
                        tq_avx2_col_s8(in_b + ((size_t)iy * in_w + ix) * in_c, in_c, p->input_offset, col);
                    }
                }
            }
            cols[l][k] = 0;
            if (++ox == out_d->w) {
                ox = 0;
                if (++oy == out_d->h) {
                    oy = 0;
                    b++;
                }
            }
        }
        tq_avx2_cols_mat_mult(cols, n, k, packed, filter, bias, q, p, out_c, output + (size_t)pix * out_c);
    }
    return 1;
}

#endif /* TQ_USE_X86 */
