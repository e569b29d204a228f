/* tinyqt: int8 1x1 (pointwise) convolution, any stride, no padding.
 * Reference C path; the ARM DSP path (__ARM_FEATURE_DSP), the Helium path
 * (__ARM_FEATURE_MVE) and the x86-64 AVX2 host path live beside it and give
 * identical bytes. */
#include <string.h>

#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_checked.h"
#include "tq_copy.h"
#include "tq_mask.h"
#include "tq_mve.h"
#include "tq_simd.h"
#include "tq_x86.h"

int32_t tq_conv_1x1_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter)
{
    /* One tile of 4-pixel int16 column blocks of C_in values, rounded up
     * to whole groups of 4 (the DSP path's layout, tq_simd.h); the same on
     * every path. */
    if (input == NULL || filter == NULL || !tq_dims_valid(filter)) {
        return 0;
    }
    return tq_tile_bytes(filter->c);
}

#if !TQ_USE_DSP
/* Portable reference: for each output pixel, one dot product per output
 * channel over the contiguous input channels. */
static void tq_conv_1x1_s8_portable(const tq_conv_params *p, const tq_channel_quant *q,
                                    const tq_dims *in_d, const int8_t *input,
                                    const int8_t *filter, const int32_t *bias,
                                    const tq_dims *out_d, int8_t *output)
{
    const int32_t in_c = in_d->c, out_c = out_d->c;
    int32_t b, oy, ox, oc, ic;
    for (b = 0; b < out_d->n; b++) {
        for (oy = 0; oy < out_d->h; oy++) {
            for (ox = 0; ox < out_d->w; ox++) {
                const int8_t *x = input + (((size_t)b * in_d->h + (size_t)oy * p->stride_h) * in_d->w +
                                           (size_t)ox * p->stride_w) * in_c;
                const int8_t *w = filter;
                for (oc = 0; oc < out_c; oc++) {
                    int32_t sum = 0, wsum = 0;
                    for (ic = 0; ic < in_c; ic++) {
                        sum += x[ic] * w[ic];
                        wsum += w[ic];
                    }
                    w += in_c;
                    sum = tq_add_wrap(sum + p->input_offset * wsum, bias != NULL ? bias[oc] : 0);
                    *output++ = tq_requantize_s8(sum, q->multiplier[oc], q->shift[oc],
                                                 p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}
#endif

#if TQ_USE_MVE
/* One block of output channels (tq_oc4) over every pixel, in runs of up to
 * TQ_OC4_PIXELS pixels of an output row: the run's dot products with the
 * block's rows (tq_oc4_dots), then its requantization and stores
 * (tq_oc4_store_n). out points at the block's first channel of pixel 0. */
static void tq_pw_mve_block(const tq_conv_params *p, const tq_dims *in_d, const int8_t *input,
                            const tq_dims *out_d, const tq_oc4 *blk, int8_t *out)
{
    const int32_t in_c = in_d->c, out_c = out_d->c;
    const int32_t x_step = p->stride_w * in_c;
    int32_t acc[4 * TQ_OC4_PIXELS];
    int32_t b, oy, ox, n;
    for (b = 0; b < out_d->n; b++) {
        for (oy = 0; oy < out_d->h; oy++) {
            const int8_t *x = input + (((size_t)b * in_d->h + (size_t)oy * p->stride_h) * in_d->w) * in_c;
            for (ox = 0; ox < out_d->w; ox += n) {
                n = out_d->w - ox < TQ_OC4_PIXELS ? out_d->w - ox : TQ_OC4_PIXELS;
                tq_oc4_dots(blk, x, x_step, in_c, n, acc);
                tq_oc4_store_n(blk, acc, n, p->output_offset, p->act_min, p->act_max, out, out_c);
                x += (size_t)n * x_step;
                out += (size_t)n * out_c;
            }
        }
    }
}

/* Helium path: output channels outer, 4 at a time (tq_oc4: rows, row
 * sums, bias and requantization set up once), every pixel inner
 * (tq_pw_mve_block). */
static void tq_conv_1x1_s8_mve(const tq_conv_params *p, const tq_channel_quant *q,
                               const tq_dims *in_d, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const tq_dims *out_d, int8_t *output)
{
    const int32_t in_c = in_d->c, out_c = out_d->c;
    int32_t oc;
    for (oc = 0; oc < out_c; oc += 4) {
        tq_oc4 blk;
        tq_oc4_init(&blk, filter, in_c, oc, out_c, bias, q->multiplier, q->shift, p->input_offset);
        tq_pw_mve_block(p, in_d, input, out_d, &blk, output + oc);
    }
}
#endif

#if TQ_USE_DSP && !TQ_USE_MVE
/* tq_cols_tile, with the input channel counts of the expand and project
 * layers of the small networks this library targets (8 to 48) as
 * constants, so their dot products unroll fully. */
static void tq_pw_tile(uint32_t *cols, int32_t n_pix, int32_t k, const int8_t *filter,
                       const int32_t *bias, const tq_channel_quant *q, const tq_conv_params *prm,
                       int32_t out_c, int8_t *out)
{
    switch (k) {
#define TQ_PW_TILE_K(kc)                                                          \
    case kc:                                                                      \
        tq_cols_tile_n(cols, n_pix, kc, filter, bias, q, prm, out_c, out, 1);     \
        break;
        TQ_PW_TILE_K(8)
        TQ_PW_TILE_K(16)
        TQ_PW_TILE_K(24)
        TQ_PW_TILE_K(32)
        TQ_PW_TILE_K(40)
        TQ_PW_TILE_K(48)
#undef TQ_PW_TILE_K
    default:
        tq_cols_tile(cols, n_pix, k, filter, bias, q, prm, out_c, out);
    }
}
#endif

#if TQ_USE_DSP && !TQ_USE_MVE
/* DSP path: gathers a tile of output pixels' input vectors (offset added,
 * int16, tq_tile_blocks(C_in) blocks of 4) into the scratch, then one pass
 * over the filter rows computes the tile's outputs with SMLAD
 * (tq_pw_tile). */
static void tq_conv_1x1_s8_dsp(const tq_conv_params *p, const tq_channel_quant *q,
                               const tq_dims *in_d, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const tq_dims *out_d, int8_t *output, uint32_t *cols)
{
    const int32_t in_c = in_d->c, out_c = out_d->c;
    const int32_t total = out_d->n * out_d->h * out_d->w;
    const int32_t tile = 4 * tq_tile_blocks(in_c), block_words = TQ_COLS_WORDS(in_c);
    int32_t b = 0, oy = 0, ox = 0, pix, j, n;
    tq_col_packer pk;
    for (pix = 0; pix < total; pix += tile) {
        n = total - pix < tile ? total - pix : tile;
        for (j = 0; j < n; j++) {
            const int8_t *x = input + (((size_t)b * in_d->h + (size_t)oy * p->stride_h) * in_d->w +
                                       (size_t)ox * p->stride_w) * in_c;
            tq_col_begin(&pk, cols + (j >> 2) * block_words, j & 3, p->input_offset);
            tq_col_push(&pk, x, in_c);
            tq_col_end(&pk);
            if (++ox == out_d->w) {
                ox = 0;
                if (++oy == out_d->h) {
                    oy = 0;
                    b++;
                }
            }
        }
        tq_pw_tile(cols, n, in_c, filter, bias, q, p, out_c, output + (size_t)pix * out_c);
    }
}
#endif

static tq_status tq_conv_1x1_s8_run(const tq_conv_params *params, const tq_channel_quant *quant,
                                    const tq_dims *input_dims, const int8_t *input,
                                    const tq_dims *filter_dims, const int8_t *filter,
                                    const int32_t *bias, const tq_dims *output_dims,
                                    int8_t *output, void *scratch, int32_t scratch_size,
                                    int check_quant)
{
    int32_t need;
    tq_status st = (check_quant ? tq_check_conv : tq_check_conv_shape)(
        TQ_CONV_POINTWISE, params, quant, input_dims, input, filter_dims, filter, output_dims, output);
    if (st != TQ_OK) {
        return st;
    }
    need = tq_conv_1x1_s8_get_buffer_size(input_dims, filter_dims);
    if (need == 0) {
        return TQ_ERR_SHAPE; /* the scratch size overflows int32 */
    }
    st = tq_check_scratch(scratch, scratch_size, need);
    if (st != TQ_OK) {
        return st;
    }
#if TQ_USE_MVE
    (void)scratch;
    tq_conv_1x1_s8_mve(params, quant, input_dims, input, filter, bias, output_dims, output);
#elif TQ_USE_DSP
    tq_conv_1x1_s8_dsp(params, quant, input_dims, input, filter, bias, output_dims, output,
                       (uint32_t *)scratch);
#else
    (void)scratch;
#if TQ_USE_X86
    if (tq_avx2_conv_s8(params, quant, input_dims, input, filter_dims, filter, bias, output_dims,
                        output)) {
        return TQ_OK; /* the dense conv's AVX2 path: a 1x1 filter is its K = C_in case */
    }
#endif
    tq_conv_1x1_s8_portable(params, quant, input_dims, input, filter, bias, output_dims, output);
#endif
    return TQ_OK;
}

tq_status tq_conv_1x1_s8_checked(const tq_conv_params *params, const tq_channel_quant *quant,
                                 const tq_dims *input_dims, const int8_t *input,
                                 const tq_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                                 const tq_dims *output_dims, int8_t *output, void *scratch,
                                 int32_t scratch_size, int check_quant)
{
    const tq_status st = tq_conv_1x1_s8_run(params, quant, input_dims, input, filter_dims, filter,
                                            bias, output_dims, output, scratch, scratch_size, check_quant);
    if (st == TQ_OK) {
        tq_forward_mask(params, output, tq_dims_count(output_dims));
    }
    return st;
}

tq_status tq_conv_1x1_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                         const tq_dims *input_dims, const int8_t *input,
                         const tq_dims *filter_dims, const int8_t *filter,
                         const int32_t *bias,
                         const tq_dims *output_dims, int8_t *output,
                         void *scratch, int32_t scratch_size)
{
    return tq_conv_1x1_s8_checked(params, quant, input_dims, input, filter_dims, filter, bias, output_dims,
                                  output, scratch, scratch_size, 1);
}

/* ---- split weights (a partially trained layer) ------------------------------ */

/* Output channels per chunk of tq_conv_1x1_s8_split. */
#define TQ_SPLIT_ROWS 16

/* Scratch parts: the chunk's assembled rows, its output, the 1x1 kernel's
 * own scratch (each rounded up to 4 bytes); 0 when a size overflows. */
static int32_t tq_split_parts(const tq_dims *input, const tq_dims *output, const tq_dims *filter,
                              int32_t *rows_b, int32_t *out_b)
{
    const int32_t rows = filter->n < TQ_SPLIT_ROWS ? filter->n : TQ_SPLIT_ROWS;
    const tq_dims chunk = {rows, 1, 1, filter->c};
    const int64_t r = ((int64_t)rows * filter->c + 3) / 4 * 4;
    const int64_t o = ((int64_t)output->n * output->h * output->w * rows + 3) / 4 * 4;
    const int64_t total = r + o + tq_conv_1x1_s8_get_buffer_size(input, &chunk);
    if (total > INT32_MAX) {
        return 0;
    }
    *rows_b = (int32_t)r;
    *out_b = (int32_t)o;
    return (int32_t)total;
}

int32_t tq_conv_1x1_s8_split_get_buffer_size(const tq_dims *input, const tq_dims *output,
                                             const tq_dims *filter)
{
    int32_t r, o;
    if (input == NULL || output == NULL || filter == NULL || !tq_dims_valid(input) ||
        !tq_dims_valid(output) || !tq_dims_valid(filter)) {
        return 0;
    }
    return tq_split_parts(input, output, filter, &r, &o);
}

tq_status tq_conv_1x1_s8_split(const tq_conv_params *params, const tq_channel_quant *quant,
                               const tq_dims *input_dims, const int8_t *input,
                               const tq_dims *filter_dims, const int8_t *filter,
                               const int8_t *trained, int32_t n_sel, const int32_t *bias,
                               const tq_dims *output_dims, int8_t *output,
                               void *scratch, int32_t scratch_size)
{
    int32_t rows_b, out_b, need, oc0;
    tq_conv_params chunk_params; /* the caller's, without the mask: chunks are not the output */
    const int32_t in_c = filter_dims != NULL ? filter_dims->c : 0;
    const int32_t out_c = filter_dims != NULL ? filter_dims->n : 0;
    int32_t pixels;
    tq_status st = tq_check_conv(TQ_CONV_POINTWISE, params, quant, input_dims, input, filter_dims,
                                 filter, output_dims, output);
    if (st != TQ_OK) {
        return st;
    }
    if (trained == NULL) {
        return TQ_ERR_NULL;
    }
    if (n_sel < 1 || n_sel > in_c) {
        return TQ_ERR_SHAPE;
    }
    need = tq_split_parts(input_dims, output_dims, filter_dims, &rows_b, &out_b);
    st = tq_check_scratch(scratch, scratch_size, need);
    if (need == 0 || st != TQ_OK) {
        return need == 0 ? TQ_ERR_SHAPE : st;
    }
    pixels = output_dims->n * output_dims->h * output_dims->w;
    chunk_params = *params;
    chunk_params.clamp_mask = NULL;
    for (oc0 = 0; oc0 < out_c; oc0 += TQ_SPLIT_ROWS) {
        const int32_t n = out_c - oc0 < TQ_SPLIT_ROWS ? out_c - oc0 : TQ_SPLIT_ROWS;
        int8_t *rows = (int8_t *)scratch;
        int8_t *out = rows + rows_b;
        const tq_dims chunk = {n, 1, 1, in_c};
        const tq_dims chunk_out = {output_dims->n, output_dims->h, output_dims->w, n};
        const tq_channel_quant q = {quant->multiplier + oc0, quant->shift + oc0};
        tq_copy_rows(rows, (size_t)in_c, trained + (size_t)oc0 * n_sel, (size_t)n_sel, n, (size_t)n_sel);
        tq_copy_rows(rows + n_sel, (size_t)in_c, filter + (size_t)oc0 * in_c + n_sel, (size_t)in_c, n,
                     (size_t)(in_c - n_sel));
        st = tq_conv_1x1_s8_run(&chunk_params, &q, input_dims, input, &chunk, rows,
                                bias != NULL ? bias + oc0 : NULL, &chunk_out, out, out + out_b,
                                need - rows_b - out_b, 0); /* quant checked above */
        if (st != TQ_OK) {
            return st;
        }
        tq_copy_rows(output + oc0, (size_t)out_c, out, (size_t)n, pixels, (size_t)n);
    }
    tq_forward_mask(params, output, pixels * out_c);
    return TQ_OK;
}
