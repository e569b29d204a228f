/* tinyqt: int8 conv2d, any kernel size, stride, padding and dilation.
 * Reference C path; the ARM DSP path (__ARM_FEATURE_DSP), the Helium path
 * (__ARM_FEATURE_MVE) and the x86-64 AVX2 host path live beside it and give
 * identical bytes. */
#include <string.h>

#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_checked.h"
#include "tq_mask.h"
#include "tq_mve.h"
#include "tq_simd.h"
#include "tq_x86.h"

int32_t tq_conv_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter)
{
    /* One tile of 4-pixel int16 im2col blocks of KH*KW*C_in values,
     * rounded up to whole groups of 4 (the DSP path's layout, tq_simd.h);
     * the same on every path. */
    if (input == NULL || filter == NULL || !tq_dims_valid(filter)) {
        return 0;
    }
    return tq_tile_bytes(filter->h * filter->w * filter->c);
}

#if !TQ_USE_DSP
/* Portable reference: direct convolution, one output pixel at a time; the
 * kernel window is clipped to the input so padding contributes 0. */
static void tq_conv_s8_portable(const tq_conv_params *p, const tq_channel_quant *q,
                                const tq_dims *in_d, const int8_t *input,
                                const tq_dims *f_d, const int8_t *filter,
                                const int32_t *bias, const tq_dims *out_d, int8_t *output)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w, out_c = out_d->c;
    int32_t b, oy, ox, oc, ky, kx, ic;
    for (b = 0; b < out_d->n; b++) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < out_d->h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_d->w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                for (oc = 0; oc < out_c; oc++) {
                    const int8_t *w_oc = filter + (size_t)oc * k_h * k_w * in_c;
                    int32_t acc = bias != NULL ? bias[oc] : 0;
                    for (ky = 0; ky < k_h; ky++) {
                        const int32_t iy = y0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (kx = 0; kx < k_w; kx++) {
                            const int32_t ix = x0 + kx * p->dilation_w;
                            const int8_t *x, *w;
                            int32_t sum = 0, wsum = 0;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            x = in_b + ((size_t)iy * in_w + ix) * in_c;
                            w = w_oc + ((size_t)ky * k_w + kx) * in_c;
                            for (ic = 0; ic < in_c; ic++) {
                                sum += x[ic] * w[ic];
                                wsum += w[ic];
                            }
                            acc = tq_add_wrap(acc, sum + p->input_offset * wsum);
                        }
                    }
                    *output++ = tq_requantize_s8(acc, q->multiplier[oc], q->shift[oc],
                                                 p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}
#endif

#if TQ_USE_DSP && !TQ_USE_MVE
/* d[0 .. n) <- s[0 .. n), a word at a time. */
static inline void tq_bytes_copy(int8_t *d, const int8_t *s, int32_t n)
{
    int32_t j;
    for (j = 0; j + 4 <= n; j += 4) {
        memcpy(d + j, s + j, 4);
    }
    for (; j < n; j++) {
        d[j] = s[j];
    }
}

/* d[0 .. n) <- the byte in every byte of v4, a word at a time. */
static inline void tq_bytes_fill(int8_t *d, uint32_t v4, int32_t n)
{
    int32_t j;
    for (j = 0; j + 4 <= n; j += 4) {
        memcpy(d + j, &v4, 4);
    }
    for (; j < n; j++) {
        d[j] = (int8_t)v4;
    }
}

/* Column slot `slot` of a 4-pixel block <- the K window bytes staged in
 * stage[0 .. K) (followed by 4 bytes of padding), offset added. */
static inline void tq_conv_s8_emit(uint32_t *block, int32_t slot, const int8_t *stage,
                                   int32_t groups, int32_t off2)
{
    uint32_t *dst = block + 2 * slot;
    int32_t g;
    for (g = 0; g < groups; g++, dst += 8) {
        const int32_t v = tq_read_s8x4(stage + 4 * g);
        TQ_STRD(tq_sxtab16(off2, v), tq_sxtab16_ror8(off2, v), dst);
    }
}

/* Column slot dst (the slot's first word in its 4-pixel block) <- an RGB
 * 3x3 window lying inside the input (rows src, src + row_bytes, src + 2 *
 * row_bytes, 9 bytes each), offset added: the 7 groups of 4 that
 * tq_conv_s8_emit makes of the staged window (the 28th byte pad_hi >> 24,
 * the pad), read straight from the rows. Reads only the window's bytes. */
static inline void tq_conv_s8_emit_rgb3x3(uint32_t *dst, const int8_t *src, int32_t row_bytes,
                                          uint32_t pad_hi, int32_t off2)
{
    const int8_t *r1 = src + row_bytes, *r2 = r1 + row_bytes;
    uint16_t r1_78;
    uint32_t g[7];
    int32_t i;
    memcpy(&r1_78, r1 + 7, 2);
    g[0] = (uint32_t)tq_read_s8x4(src);
    g[1] = (uint32_t)tq_read_s8x4(src + 4);
    g[2] = (uint32_t)(uint8_t)src[8] | ((uint32_t)tq_read_s8x4(r1) << 8);
    g[3] = (uint32_t)tq_read_s8x4(r1 + 3);
    g[4] = (uint32_t)r1_78 | ((uint32_t)tq_read_s8x4(r2) << 16);
    g[5] = (uint32_t)tq_read_s8x4(r2 + 2);
    g[6] = ((uint32_t)tq_read_s8x4(r2 + 5) >> 8) | pad_hi;
    for (i = 0; i < 7; i++, dst += 8) {
        TQ_STRD(tq_sxtab16(off2, (int32_t)g[i]), tq_sxtab16_ror8(off2, (int32_t)g[i]), dst);
    }
}

/* stage[0 .. K + 4) <- one output pixel's input window (filter order ky,
 * kx, c; outside pixels and the 4 bytes after the window as pad4's
 * byte, which the input offset turns into 0), for windows that cross the
 * input's edges or are dilated. */
static __attribute__((noinline)) void
tq_conv_s8_stage_window(int8_t *stage, uint32_t pad4, const tq_conv_params *p,
                        const tq_dims *in_d, const int8_t *in_b, const tq_dims *f_d,
                        int32_t y0, int32_t x0)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w, dw = p->dilation_w;
    const int32_t row_inside = dw == 1 && x0 >= 0 && x0 + k_w <= in_w;
    const int32_t run = k_w * in_c;
    int8_t *d = stage;
    int32_t ky, kx;
    for (ky = 0; ky < k_h; ky++, d += run) {
        const int32_t iy = y0 + ky * p->dilation_h;
        const int8_t *row;
        if (iy < 0 || iy >= in_h) {
            tq_bytes_fill(d, pad4, run);
            continue;
        }
        row = in_b + (size_t)iy * in_w * in_c;
        if (row_inside) {
            tq_bytes_copy(d, row + (size_t)x0 * in_c, run);
        } else {
            for (kx = 0; kx < k_w; kx++) {
                const int32_t ix = x0 + kx * dw;
                if (ix < 0 || ix >= in_w) {
                    tq_bytes_fill(d + kx * in_c, pad4, in_c);
                } else {
                    tq_bytes_copy(d + kx * in_c, row + (size_t)ix * in_c, in_c);
                }
            }
        }
    }
    memcpy(d, &pad4, 4);
}

/* DSP path: im2col of a tile of output pixels (tq_tile_blocks(K) blocks of
 * 4) into the scratch (int16, offset added, padding 0), then SMLAD over
 * the filter rows (tq_cols_tile). */
static void tq_conv_s8_dsp(const tq_conv_params *p, const tq_channel_quant *q,
                           const tq_dims *in_d, const int8_t *input,
                           const tq_dims *f_d, const int8_t *filter,
                           const int32_t *bias, const tq_dims *out_d, int8_t *output,
                           uint32_t *cols)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c, k_h = f_d->h, k_w = f_d->w;
    const int32_t k = k_h * k_w * in_c, out_c = out_d->c;
    const int32_t total = out_d->n * out_d->h * out_d->w;
    const int32_t tile = 4 * tq_tile_blocks(k), block_words = TQ_COLS_WORDS(k);
    const int32_t groups = TQ_COLS_GROUPS(k), run = k_w * in_c, row_bytes = in_w * in_c;
    const int32_t off2 = tq_offset_x2(p->input_offset);
    const uint32_t pad4 = (uint32_t)(uint8_t)(int8_t)(-p->input_offset) * 0x01010101u;
    const int dilated = p->dilation_h != 1 || p->dilation_w != 1;
    const int rgb3x3 = k_h == 3 && k_w == 3 && in_c == 3; /* the stem: no staging */
    int8_t *const stage = tq_tile_stage(cols, k);
    int32_t b = 0, oy = 0, ox = 0, pix, j, n, ky;
    for (pix = 0; pix < total; pix += tile) {
        n = total - pix < tile ? total - pix : tile;
        for (j = 0; j < n; j++) {
            const int8_t *in_b = input + (size_t)b * in_h * row_bytes;
            const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
            const int inside = !dilated && y0 >= 0 && y0 + k_h <= in_h && x0 >= 0 && x0 + k_w <= in_w;
            if (inside && rgb3x3) {
                tq_conv_s8_emit_rgb3x3(cols + (j >> 2) * block_words + 2 * (j & 3),
                                       in_b + (size_t)y0 * row_bytes + (size_t)x0 * in_c, row_bytes,
                                       pad4 & 0xFF000000u, off2);
            } else {
                if (inside) {
                    /* the window lies inside the input: k_h runs of K_W * C_in bytes */
                    const int8_t *src = in_b + (size_t)y0 * row_bytes + (size_t)x0 * in_c;
                    int8_t *d = stage;
                    for (ky = 0; ky < k_h; ky++, d += run, src += row_bytes) {
                        tq_bytes_copy(d, src, run);
                    }
                    memcpy(d, &pad4, 4);
                } else {
                    tq_conv_s8_stage_window(stage, pad4, p, in_d, in_b, f_d, y0, x0);
                }
                tq_conv_s8_emit(cols + (j >> 2) * block_words, j & 3, stage, groups, off2);
            }
            if (++ox == out_d->w) {
                ox = 0;
                if (++oy == out_d->h) {
                    oy = 0;
                    b++;
                }
            }
        }
        if (k == 27) { /* the RGB 3x3 stem: a constant K unrolls its dot product */
            tq_cols_tile_n(cols, n, 27, filter, bias, q, p, out_c, output + (size_t)pix * out_c, 1);
        } else {
            tq_cols_tile(cols, n, k, filter, bias, q, p, out_c, output + (size_t)pix * out_c);
        }
    }
}
#endif

#if TQ_USE_MVE
/* dst[0 .. n) <- src[0 .. n), or the byte v where src is NULL (predicated
 * 16-byte vector stores). */
static inline void tq_copy_mve(int8_t *dst, const int8_t *src, int8_t v, int32_t n)
{
    for (; n > 0; n -= 16, dst += 16) {
        const mve_pred16_t pr = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, src != NULL ? vldrbq_z_s8(src, pr) : vdupq_n_s8(v), pr);
        src = src != NULL ? src + 16 : NULL;
    }
}

/* col[0 .. KH*KW*C_in) <- one output pixel's input window (top-left input
 * y0, x0 of batch in_b), filter order (ky, kx, c); taps outside the input
 * hold pad = -input_offset, which adds 0 once the offset is applied. */
static void tq_conv_s8_window_mve(const tq_conv_params *p, const tq_dims *in_d, const int8_t *in_b,
                                  const tq_dims *f_d, int32_t y0, int32_t x0, int8_t pad, int8_t *col)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w, dw = p->dilation_w;
    const int32_t row_inside = dw == 1 && x0 >= 0 && x0 + k_w <= in_w;
    int32_t ky, kx;
    if (row_inside && k_w * in_c <= 16) { /* each window row one predicated copy (the RGB stem's 9 bytes) */
        const mve_pred16_t pr = vctp8q((uint32_t)(k_w * in_c));
        if (y0 >= 0 && y0 + (k_h - 1) * p->dilation_h < in_h) { /* every row inside: a pointer walk */
            const int8_t *src = in_b + ((size_t)y0 * in_w + x0) * in_c;
            const int32_t src_step = p->dilation_h * in_w * in_c;
            for (ky = 0; ky < k_h; ky++, col += k_w * in_c, src += src_step) {
                vstrbq_p_s8(col, vldrbq_z_s8(src, pr), pr);
            }
            return;
        }
        for (ky = 0; ky < k_h; ky++, col += k_w * in_c) {
            const int32_t iy = y0 + ky * p->dilation_h;
            vstrbq_p_s8(col, iy < 0 || iy >= in_h ? vdupq_n_s8(pad)
                                                 : vldrbq_z_s8(in_b + ((size_t)iy * in_w + x0) * in_c, pr), pr);
        }
        return;
    }
    for (ky = 0; ky < k_h; ky++, col += k_w * in_c) {
        const int32_t iy = y0 + ky * p->dilation_h;
        const int8_t *row;
        if (iy < 0 || iy >= in_h) {
            tq_copy_mve(col, NULL, pad, k_w * in_c);
            continue;
        }
        row = in_b + (size_t)iy * in_w * in_c;
        if (row_inside) {
            tq_copy_mve(col, row + (size_t)x0 * in_c, pad, k_w * in_c);
        } else {
            for (kx = 0; kx < k_w; kx++) {
                const int32_t ix = x0 + kx * dw;
                tq_copy_mve(col + kx * in_c, ix < 0 || ix >= in_w ? NULL : row + (size_t)ix * in_c, pad, in_c);
            }
        }
    }
}

/* Output pixels whose windows the Helium path gathers at once: as many
 * int8 windows of K values as the scratch (tq_conv_s8_get_buffer_size,
 * which holds at least 8) has room for, at most TQ_OC4_PIXELS. */
static int32_t tq_conv_mve_pixels(int32_t k)
{
    const int32_t n = tq_tile_bytes(k) / k;
    return n > TQ_OC4_PIXELS ? TQ_OC4_PIXELS : n;
}

/* Helium path: the windows of up to 8 output pixels go to the scratch
 * (tq_conv_s8_window_mve); then for each block of output channels (tq_oc4:
 * rows, row sums for the input offset, bias and requantization set up once)
 * the dot products of those pixels with the block's rows (tq_oc4_dots),
 * then all of them requantized and stored (tq_oc4_store_n). */
static void tq_conv_s8_mve(const tq_conv_params *p, const tq_channel_quant *q, const tq_dims *in_d,
                           const int8_t *input, const tq_dims *f_d, const int8_t *filter,
                           const int32_t *bias, const tq_dims *out_d, int8_t *output, int8_t *cols)
{
    const int32_t k = f_d->h * f_d->w * f_d->c, out_c = out_d->c;
    const int32_t total = out_d->n * out_d->h * out_d->w;
    const int8_t pad = (int8_t)(-p->input_offset);
    const int32_t tile = tq_conv_mve_pixels(k);
    int32_t b = 0, oy = 0, ox = 0, pix, j, n, oc;
    for (pix = 0; pix < total; pix += tile) {
        n = total - pix < tile ? total - pix : tile;
        for (j = 0; j < n; j++) {
            tq_conv_s8_window_mve(p, in_d, input + (size_t)b * in_d->h * in_d->w * in_d->c, f_d,
                                  oy * p->stride_h - p->pad_top, ox * p->stride_w - p->pad_left, pad,
                                  cols + (size_t)j * k);
            if (++ox == out_d->w) {
                ox = 0;
                if (++oy == out_d->h) {
                    oy = 0;
                    b++;
                }
            }
        }
        for (oc = 0; oc < out_c; oc += 4) {
            int32_t acc[4 * TQ_OC4_PIXELS];
            tq_oc4 blk;
            tq_oc4_init(&blk, filter, k, oc, out_c, bias, q->multiplier, q->shift, p->input_offset);
            tq_oc4_dots(&blk, cols, k, k, n, acc);
            tq_oc4_store_n(&blk, acc, n, p->output_offset, p->act_min, p->act_max,
                           output + (size_t)pix * out_c + oc, out_c);
        }
    }
}
#endif

static tq_status tq_conv_s8_run(const tq_conv_params *params, const tq_channel_quant *quant,
                                const tq_dims *input_dims, const int8_t *input,
                                const tq_dims *filter_dims, const int8_t *filter,
                                const int32_t *bias, const tq_dims *output_dims, int8_t *output,
                                void *scratch, int32_t scratch_size, int check_quant)
{
    int32_t need;
    tq_status st = (check_quant ? tq_check_conv : tq_check_conv_shape)(
        TQ_CONV_DENSE, params, quant, input_dims, input, filter_dims, filter, output_dims, output);
    if (st != TQ_OK) {
        return st;
    }
    need = tq_conv_s8_get_buffer_size(input_dims, filter_dims);
    if (need == 0) {
        return TQ_ERR_SHAPE; /* the scratch size overflows int32 */
    }
    st = tq_check_scratch(scratch, scratch_size, need);
    if (st != TQ_OK) {
        return st;
    }
#if TQ_USE_MVE
    tq_conv_s8_mve(params, quant, input_dims, input, filter_dims, filter, bias, output_dims, output,
                   (int8_t *)scratch);
#elif TQ_USE_DSP
    tq_conv_s8_dsp(params, quant, input_dims, input, filter_dims, filter, bias, output_dims, output,
                   (uint32_t *)scratch);
#else
    (void)scratch;
#if TQ_USE_X86
    if (tq_avx2_conv_s8(params, quant, input_dims, input, filter_dims, filter, bias, output_dims,
                        output)) {
        return TQ_OK;
    }
#endif
    tq_conv_s8_portable(params, quant, input_dims, input, filter_dims, filter, bias, output_dims,
                        output);
#endif
    return TQ_OK;
}

tq_status tq_conv_s8_checked(const tq_conv_params *params, const tq_channel_quant *quant,
                             const tq_dims *input_dims, const int8_t *input, const tq_dims *filter_dims,
                             const int8_t *filter, const int32_t *bias, const tq_dims *output_dims,
                             int8_t *output, void *scratch, int32_t scratch_size, int check_quant)
{
    const tq_status st = tq_conv_s8_run(params, quant, input_dims, input, filter_dims, filter, bias,
                                        output_dims, output, scratch, scratch_size, check_quant);
    if (st == TQ_OK) {
        tq_forward_mask(params, output, tq_dims_count(output_dims));
    }
    return st;
}

tq_status tq_conv_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                     const tq_dims *input_dims, const int8_t *input,
                     const tq_dims *filter_dims, const int8_t *filter,
                     const int32_t *bias,
                     const tq_dims *output_dims, int8_t *output,
                     void *scratch, int32_t scratch_size)
{
    return tq_conv_s8_checked(params, quant, input_dims, input, filter_dims, filter, bias, output_dims,
                              output, scratch, scratch_size, 1);
}
