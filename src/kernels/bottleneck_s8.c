/* tinyqt: an inverted-bottleneck block (expand -> depthwise -> 1x1
 * project -> optional residual add) streamed row by row, so the expanded
 * tensor never exists whole. The expand stage is a 1x1 conv or any dense
 * conv (a network's stem). Each output element is computed by the same
 * kernels as the unfused ops (tq_conv_1x1_s8 or tq_conv_s8,
 * tq_depthwise_conv_s8, tq_add_s8), on row bands, so the bytes are
 * identical on every path; with planar_rows on Cortex-M4/M7 the 3x3
 * depthwise rows come from the planar ring (tq_dw_planar.h), the same
 * integer sums in another order. */
#include <string.h>

#include "tinyqt/fused.h"
#include "tq_check.h"
#include "tq_checked.h"
#include "tq_dw_planar.h"
#include "tq_mve.h"

/* memmove(dst, src, n) for dst below src, the band's shift down to its
 * newest rows. With Helium, 64 bytes a loop step (four VLDRW, then four
 * VSTRW: the regions are 64 or more bytes apart, so no store reaches bytes
 * not yet loaded), about 7 bytes an instruction where newlib's memmove
 * moves about 3; on Cortex-M4/M7 32 bytes a step in two LDM / STM pairs
 * (about 5); the rest, and other cores, memmove. */
static void tq_band_shift(int8_t *dst, const int8_t *src, size_t n)
{
#if TQ_USE_MVE
    if ((((uintptr_t)dst | (uintptr_t)src) & 3u) == 0 && src - dst >= 64 && n >= 64) {
        const size_t steps = n / 64;
        __asm__ volatile("dls lr, %[k]\n\t"
                         "1:\n\t"
                         "vldrw.u32 q0, [%[s]], #64\n\t"
                         "vldrw.u32 q1, [%[s], #-48]\n\t"
                         "vldrw.u32 q2, [%[s], #-32]\n\t"
                         "vldrw.u32 q3, [%[s], #-16]\n\t"
                         "vstrw.32 q0, [%[d]], #64\n\t"
                         "vstrw.32 q1, [%[d], #-48]\n\t"
                         "vstrw.32 q2, [%[d], #-32]\n\t"
                         "vstrw.32 q3, [%[d], #-16]\n\t"
                         "le lr, 1b"
                         : [s] "+r"(src), [d] "+r"(dst)
                         : [k] "r"(steps)
                         : "q0", "q1", "q2", "q3", "lr", "memory");
        n -= steps * 64;
    }
#elif defined(__ARM_ARCH_7EM__) && !defined(TQ_FORCE_PORTABLE)
    if ((((uintptr_t)dst | (uintptr_t)src) & 3u) == 0 && src - dst >= 32 && n >= 32) {
        size_t steps = n / 32;
        n -= steps * 32;
        __asm__ volatile("1:\n\t"
                         "ldmia %[s]!, {r4, r5, r6, r8}\n\t"
                         "stmia %[d]!, {r4, r5, r6, r8}\n\t"
                         "ldmia %[s]!, {r4, r5, r6, r8}\n\t"
                         "stmia %[d]!, {r4, r5, r6, r8}\n\t"
                         "subs %[k], %[k], #1\n\t"
                         "bne 1b"
                         : [s] "+r"(src), [d] "+r"(dst), [k] "+r"(steps)
                         :
                         : "r4", "r5", "r6", "r8", "cc", "memory");
    }
#endif
    memmove(dst, src, n);
}

static int32_t tq_round4(int32_t n)
{
    return (n + 3) & ~3;
}

/* A 1x1, stride-1, unpadded expand runs tq_conv_1x1_s8 on whole rows;
 * anything else is a dense conv (tq_conv_s8) on a band of input rows. */
static int tq_expand_is_pointwise(const tq_bottleneck_params *p)
{
    const tq_conv_params *c = &p->pw1_params;
    return p->pw1_filter_dims.h == 1 && p->pw1_filter_dims.w == 1 && c->stride_h == 1 &&
           c->stride_w == 1 && c->pad_top == 0 && c->pad_left == 0;
}

/* Height and width of the expanded tensor (the depthwise input). */
static void tq_mid_hw(const tq_bottleneck_params *p, const tq_dims *input_dims, int32_t *h, int32_t *w)
{
    *h = p->mid_h > 0 ? p->mid_h : input_dims->h;
    *w = p->mid_w > 0 ? p->mid_w : input_dims->w;
}

/* Input rows [*r0, *r1) a dense expand reads for expanded row r; the
 * window's rows outside the input are its padding. */
static void tq_expand_rows(const tq_bottleneck_params *p, int32_t in_h, int32_t r, int32_t *top,
                           int32_t *r0, int32_t *r1)
{
    const tq_conv_params *c = &p->pw1_params;
    const int32_t end = r * c->stride_h - c->pad_top + (p->pw1_filter_dims.h - 1) * c->dilation_h + 1;
    *top = r * c->stride_h - c->pad_top;
    *r0 = *top > 0 ? *top : 0;
    *r1 = end < in_h ? end : in_h;
}

/* Columns of the depthwise input's zero point the band carries left (*pl)
 * and right (*pr) of each expanded row: the depthwise's horizontal padding
 * and whatever its last window reaches past the row, so that every window
 * lies inside the band and none takes the kernels' slower edge runs (a
 * zero-point value times a weight adds 0 to the sum, as the padding does).
 * 0 and 0 when the input offset has no int8 zero point or the padding is
 * wider than the window. */
static void tq_band_pads(const tq_bottleneck_params *p, int32_t mid_w, int32_t *pl, int32_t *pr)
{
    const tq_conv_params *d = &p->dw_params;
    const int64_t eff_k = (int64_t)(p->dw_filter_dims.w - 1) * d->dilation_w + 1;
    const int64_t right = (int64_t)(p->out_w - 1) * d->stride_w + eff_k - d->pad_left - mid_w;
    *pl = 0;
    *pr = 0;
    if (d->input_offset >= -127 && d->input_offset <= 128 && d->pad_left >= 0 && d->pad_left < eff_k &&
        right < eff_k) {
        *pl = d->pad_left;
        *pr = right > 0 ? (int32_t)right : 0;
    }
}

/* The depthwise stage's parameters as the block runs it over its band:
 * no horizontal padding when the band carries it (pl or pr). */
static tq_conv_params tq_band_dw_params(const tq_bottleneck_params *p, int32_t pl, int32_t pr)
{
    tq_conv_params d = p->dw_params;
    if (pl > 0 || pr > 0) {
        d.pad_left = 0; /* the band's zero-point columns stand for it */
    }
    return d;
}

/* The planar ring's geometry for the block (tq_dw_planar.h). */
static tq_dw_planar_geom tq_band_planar(const tq_bottleneck_params *p, int32_t mid_w, int32_t pl,
                                        int32_t pr)
{
    const tq_conv_params d = tq_band_dw_params(p, pl, pr);
    return tq_dw_planar_geometry(&d, &p->dw_filter_dims, pl + mid_w + pr, p->out_w, p->dw_filter_dims.c);
}

/* Scratch layout (each part 4-byte aligned): band [k, pl + mid_w + pr, mid]
 * (tq_band_pads), the planar ring (tq_dw_planar.h; on every target, so
 * that the size is the device's), depthwise row [1, OW, mid], projected
 * row [1, OW, C_out] (residual only), then the larger of the expand's and
 * the projection's own scratch. */
static int32_t tq_bottleneck_parts(const tq_bottleneck_params *p, const tq_dims *input_dims,
                                   int32_t *band, int32_t *ring, int32_t *dw_row, int32_t *pw2_row,
                                   int32_t *conv)
{
    const int32_t mid = p->dw_filter_dims.c;
    const int32_t out_w = p->out_w;
    int32_t mid_h, mid_w, pl, pr, a = 0, b;
    tq_dims row_in = {1, 1, input_dims->w, input_dims->c};
    tq_dims row_mid = {1, 1, out_w, mid};
    tq_mid_hw(p, input_dims, &mid_h, &mid_w);
    tq_band_pads(p, mid_w, &pl, &pr);
    if (p->has_expand) {
        tq_dims band_in = {1, p->pw1_filter_dims.h, input_dims->w, input_dims->c};
        a = tq_expand_is_pointwise(p) ? tq_conv_1x1_s8_get_buffer_size(&row_in, &p->pw1_filter_dims)
                                      : tq_conv_s8_get_buffer_size(&band_in, &p->pw1_filter_dims);
    }
    b = tq_conv_1x1_s8_get_buffer_size(&row_mid, &p->pw2_filter_dims);
    *band = tq_round4(p->dw_filter_dims.h * (pl + mid_w + pr) * mid);
    *ring = p->planar_rows ? tq_round4(tq_band_planar(p, mid_w, pl, pr).bytes) : 0;
    *dw_row = tq_round4(out_w * mid);
    *pw2_row = p->has_residual ? tq_round4(out_w * p->pw2_filter_dims.n) : 0;
    *conv = tq_round4(a > b ? a : b);
    return *band + *ring + *dw_row + *pw2_row + *conv;
}

int32_t tq_bottleneck_s8_get_buffer_size(const tq_bottleneck_params *params, const tq_dims *input_dims)
{
    int32_t band, ring, dw_row, pw2_row, conv;
    if (params == NULL || !tq_dims_valid(input_dims)) {
        return 0;
    }
    return tq_bottleneck_parts(params, input_dims, &band, &ring, &dw_row, &pw2_row, &conv);
}

tq_status tq_bottleneck_s8(const tq_bottleneck_params *p, const tq_dims *input_dims,
                           const int8_t *input, const tq_dims *output_dims, int8_t *output,
                           void *scratch, int32_t scratch_size)
{
    int32_t band_b, ring_b, dw_row_b, pw2_row_b, conv_b, need, oy, r, cached0 = 0, cached1 = 0;
    int8_t *band, *ring, *dw_row, *pw2_row;
    tq_dw_planar_geom geom;
    int planar = 0;
    void *conv_scratch;
    const int32_t k = p != NULL ? p->dw_filter_dims.h : 0;
    int32_t mid, row_bytes, h, mid_w, pl, pr;
    tq_status st;
    if (p == NULL || input == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(input_dims) || !tq_dims_valid(output_dims) || input_dims->n != 1 ||
        p->mid_h < 0 || p->mid_w < 0 ||
        (p->has_expand && !tq_expand_is_pointwise(p) && (p->mid_h == 0 || p->mid_w == 0)) ||
        ((!p->has_expand || tq_expand_is_pointwise(p)) &&
         ((p->mid_h != 0 && p->mid_h != input_dims->h) || (p->mid_w != 0 && p->mid_w != input_dims->w))) ||
        output_dims->n != 1 || output_dims->w != p->out_w ||
        (p->has_residual && (output_dims->h != input_dims->h || output_dims->w != input_dims->w ||
                             output_dims->c != input_dims->c)) ||
        p->dw_params.dilation_h != 1 || p->dw_filter_dims.c != (p->has_expand ? p->pw1_filter_dims.n : input_dims->c)) {
        return TQ_ERR_SHAPE;
    }
    if (p->pw1_params.clamp_mask != NULL || p->dw_params.clamp_mask != NULL ||
        p->pw2_params.clamp_mask != NULL || p->add_params.clamp_mask != NULL) {
        return TQ_ERR_PARAM; /* a streamed block's tensors never exist whole: no clamp masks */
    }
    /* every stage runs once per output row: their quantization is checked
     * here, once, and the row calls check the rest (tq_checked.h) */
    if ((p->has_expand && (st = tq_check_quant(&p->pw1_quant, p->pw1_filter_dims.n)) != TQ_OK) ||
        (st = tq_check_quant(&p->dw_quant, p->dw_filter_dims.c)) != TQ_OK ||
        (st = tq_check_quant(&p->pw2_quant, p->pw2_filter_dims.n)) != TQ_OK) {
        return st;
    }
    mid = p->dw_filter_dims.c;
    tq_mid_hw(p, input_dims, &h, &mid_w);
    need = tq_bottleneck_parts(p, input_dims, &band_b, &ring_b, &dw_row_b, &pw2_row_b, &conv_b);
    st = tq_check_scratch(scratch, scratch_size, need);
    if (st != TQ_OK) {
        return st;
    }
    band = (int8_t *)scratch;
    ring = band + band_b;
    dw_row = ring + ring_b;
    pw2_row = dw_row + dw_row_b;
    conv_scratch = (void *)(pw2_row + pw2_row_b);
    tq_band_pads(p, mid_w, &pl, &pr);
    row_bytes = (pl + mid_w + pr) * mid;
    geom = tq_band_planar(p, mid_w, pl, pr);
    geom.bytes = p->planar_rows ? geom.bytes : 0;
#if TQ_DW_PLANAR
    planar = geom.bytes > 0 && tq_dw_planar_init(ring, &geom, &p->dw_params, &p->dw_quant, p->dw_filter,
                                                    p->dw_bias, mid);
#else
    (void)geom;
    (void)planar;
#endif
    for (r = 0; r < k && (pl > 0 || pr > 0); r++) {
        /* the pad columns stay: the rows are written between them */
        memset(band + (size_t)r * row_bytes, -p->dw_params.input_offset, (size_t)(pl * mid));
        memset(band + (size_t)r * row_bytes + (size_t)(pl + mid_w) * mid, -p->dw_params.input_offset,
               (size_t)(pr * mid));
    }
    for (oy = 0; oy < output_dims->h; oy++) {
        const int32_t top = oy * p->dw_params.stride_h - p->dw_params.pad_top;
        const int32_t r0 = top > 0 ? top : 0;
        const int32_t r1 = top + k < h ? top + k : h;
        tq_conv_params dwp = tq_band_dw_params(p, pl, pr);
        tq_dims band_dims = {1, r1 - r0, pl + mid_w + pr, mid};
        tq_dims dw_out = {1, 1, p->out_w, mid};
        tq_dims pw2_out = {1, 1, p->out_w, p->pw2_filter_dims.n};
        int8_t *out_row = output + (size_t)oy * output_dims->w * output_dims->c;
        if (r1 <= r0) {
            return TQ_ERR_SHAPE;
        }
        /* The band holds expanded rows r0..r1-1: keep the overlap with the
         * previous band, compute the rest. */
        if (cached1 > r0 && cached0 < r1 && r0 >= cached0) {
            if (!planar) { /* the ring keeps the rows: the band holds only the newest */
                tq_band_shift(band, band + (size_t)(r0 - cached0) * row_bytes,
                              (size_t)(cached1 - r0) * row_bytes);
            }
        } else {
            cached1 = r0;
        }
        for (r = cached1; r < r1; r++) {
            int8_t *dst = band + (size_t)(planar ? 0 : r - r0) * row_bytes + (size_t)pl * mid;
            tq_dims row_out = {1, 1, mid_w, mid};
            if (!p->has_expand) {
                memcpy(dst, input + (size_t)r * input_dims->w * input_dims->c, (size_t)mid_w * mid);
                st = TQ_OK;
            } else if (tq_expand_is_pointwise(p)) {
                /* expanded row r comes from input row r alone */
                tq_dims row_in = {1, 1, input_dims->w, input_dims->c};
                st = tq_conv_1x1_s8_checked(&p->pw1_params, &p->pw1_quant, &row_in,
                                            input + (size_t)r * input_dims->w * input_dims->c,
                                            &p->pw1_filter_dims, p->pw1_filter, p->pw1_bias, &row_out, dst,
                                            conv_scratch, conv_b, 0);
            } else {
                /* one output row of the dense conv over the input rows its
                 * windows cover; rows past the input's edges are padding */
                int32_t top, e0, e1;
                tq_conv_params cp = p->pw1_params;
                tq_dims band_in = {1, 0, input_dims->w, input_dims->c};
                tq_expand_rows(p, input_dims->h, r, &top, &e0, &e1);
                if (e1 <= e0) {
                    return TQ_ERR_SHAPE;
                }
                band_in.h = e1 - e0;
                cp.pad_top = e0 - top;
                st = tq_conv_s8_checked(&cp, &p->pw1_quant, &band_in,
                                        input + (size_t)e0 * input_dims->w * input_dims->c,
                                        &p->pw1_filter_dims, p->pw1_filter, p->pw1_bias, &row_out, dst,
                                        conv_scratch, conv_b, 0);
            }
            if (st != TQ_OK) {
                return st;
            }
#if TQ_DW_PLANAR
            if (planar) {
                tq_dw_planar_fill(ring, &geom, r, dst - (size_t)pl * mid, pl + mid_w + pr, mid,
                                  p->dw_params.input_offset);
            }
#endif
        }
        cached0 = r0;
        cached1 = r1;
        /* one depthwise output row over the band: vertical stride 1, the
         * band's missing rows are the padding */
        dwp.stride_h = 1;
        dwp.pad_top = r0 - top;
#if TQ_DW_PLANAR
        if (planar) {
            tq_dw_planar_row(ring, &geom, top, h, dwp.stride_w, p->dw_bias, mid, p->out_w, dw_row);
        } else
#endif
        {
            st = tq_depthwise_conv_s8_checked(&dwp, &p->dw_quant, &band_dims, band, &p->dw_filter_dims,
                                              p->dw_filter, p->dw_bias, &dw_out, dw_row, NULL, 0, 0);
            if (st != TQ_OK) {
                return st;
            }
        }
        st = tq_conv_1x1_s8_checked(&p->pw2_params, &p->pw2_quant, &dw_out, dw_row, &p->pw2_filter_dims,
                                    p->pw2_filter, p->pw2_bias, &pw2_out,
                                    p->has_residual ? pw2_row : out_row, conv_scratch, conv_b, 0);
        if (st != TQ_OK) {
            return st;
        }
        if (p->has_residual) {
            const int8_t *shortcut = input + (size_t)oy * input_dims->w * input_dims->c;
            const int32_t n = p->out_w * output_dims->c;
            st = p->residual_first ? tq_add_s8(&p->add_params, n, shortcut, pw2_row, out_row)
                                   : tq_add_s8(&p->add_params, n, pw2_row, shortcut, out_row);
            if (st != TQ_OK) {
                return st;
            }
        }
    }
    return TQ_OK;
}
