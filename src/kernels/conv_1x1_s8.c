/* tinyqt: int8 1x1 (pointwise) convolution, any stride, no padding.
 * Reference C path; the ARM DSP path (__ARM_FEATURE_DSP), the Helium path
 * (__ARM_FEATURE_MVE) and the x86-64 AVX2 host path live beside it and give
 * identical bytes. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_mve.h"
#include "tq_simd.h"
#include "tq_x86.h"

int32_t tq_conv_1x1_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter)
{
    /* Four int16 input columns of C_in values, rounded up to whole groups of
     * 4 (the DSP path's layout, tq_simd.h); the same on every path. */
    if (input == NULL || filter == NULL || !tq_dims_valid(filter)) {
        return 0;
    }
    return 32 * ((filter->c + 3) / 4);
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
/* Helium path: 4 output pixels at a time; for each output channel one pass
 * over the filter row, 16 input channels per step (the tail predicated):
 * VMLADAVA gives the 4 dot products, VADDVA the filter row's sum for the
 * input offset. Requantization is the DSP path's scalar tq_rq_apply. */
__attribute__((always_inline)) static inline void
tq_conv_1x1_s8_mve_n(const tq_conv_params *p, const tq_channel_quant *q, const tq_dims *in_d,
                     const int8_t *input, const int8_t *filter, const int32_t *bias,
                     const tq_dims *out_d, int8_t *output, int full_range)
{
    const int32_t in_c = in_d->c, out_c = out_d->c;
    const int32_t out_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t total = out_d->n * out_d->h * out_d->w;
    int32_t b = 0, oy = 0, ox = 0, pix, j, n, oc, ic;
    const int8_t *x[4];
    for (pix = 0; pix < total; pix += 4) {
        n = total - pix < 4 ? total - pix : 4;
        for (j = 0; j < 4; j++) {
            if (j >= n) {
                x[j] = x[0];  /* computed, not stored */
                continue;
            }
            x[j] = input + (((size_t)b * in_d->h + (size_t)oy * p->stride_h) * in_d->w +
                            (size_t)ox * p->stride_w) * in_c;
            if (++ox == out_d->w) {
                ox = 0;
                if (++oy == out_d->h) {
                    oy = 0;
                    b++;
                }
            }
        }
        for (oc = 0; oc < out_c; oc++) {
            const int8_t *w = filter + (size_t)oc * in_c;
            int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, wsum = 0;
            for (ic = 0; ic < in_c; ic += 16) {
                const mve_pred16_t pr = vctp8q((uint32_t)(in_c - ic));
                const int8x16_t wv = vldrbq_z_s8(w + ic, pr);
                wsum = vaddvaq_s8(wsum, wv);
                s0 = vmladavaq_s8(s0, vldrbq_z_s8(x[0] + ic, pr), wv);
                s1 = vmladavaq_s8(s1, vldrbq_z_s8(x[1] + ic, pr), wv);
                s2 = vmladavaq_s8(s2, vldrbq_z_s8(x[2] + ic, pr), wv);
                s3 = vmladavaq_s8(s3, vldrbq_z_s8(x[3] + ic, pr), wv);
            }
            {
                const int32_t base = tq_add_wrap(p->input_offset * wsum, bias != NULL ? bias[oc] : 0);
                int8_t *o = output + (size_t)pix * out_c + oc;
                tq_rq rq;
                tq_rq_init(&rq, q->multiplier[oc], q->shift[oc]);
                o[0] = (int8_t)tq_rq_apply(&rq, tq_add_wrap(s0, base), out_offset, act_min, act_max, full_range);
                if (n > 1) {
                    o[out_c] = (int8_t)tq_rq_apply(&rq, tq_add_wrap(s1, base), out_offset, act_min, act_max,
                                                   full_range);
                }
                if (n > 2) {
                    o[2 * out_c] = (int8_t)tq_rq_apply(&rq, tq_add_wrap(s2, base), out_offset, act_min,
                                                       act_max, full_range);
                }
                if (n > 3) {
                    o[3 * out_c] = (int8_t)tq_rq_apply(&rq, tq_add_wrap(s3, base), out_offset, act_min,
                                                       act_max, full_range);
                }
            }
        }
    }
}

static void tq_conv_1x1_s8_mve(const tq_conv_params *p, const tq_channel_quant *q,
                               const tq_dims *in_d, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const tq_dims *out_d, int8_t *output)
{
    if (p->act_min == -128 && p->act_max == 127) {
        tq_conv_1x1_s8_mve_n(p, q, in_d, input, filter, bias, out_d, output, 1);
    } else {
        tq_conv_1x1_s8_mve_n(p, q, in_d, input, filter, bias, out_d, output, 0);
    }
}
#endif

#if TQ_USE_DSP && !TQ_USE_MVE
/* DSP path: gathers 4 output pixels' input vectors (offset added, int16)
 * into the scratch, then one pass over the filter rows computes the 4
 * pixels of each output channel with SMLAD (tq_cols_mat_mult). */
static void tq_conv_1x1_s8_dsp(const tq_conv_params *p, const tq_channel_quant *q,
                               const tq_dims *in_d, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const tq_dims *out_d, int8_t *output, uint32_t *cols)
{
    const int32_t in_c = in_d->c, out_c = out_d->c;
    const int32_t total = out_d->n * out_d->h * out_d->w;
    int32_t b = 0, oy = 0, ox = 0, pix, j, n;
    tq_col_packer pk;
    for (pix = 0; pix < total; pix += 4) {
        n = total - pix < 4 ? total - pix : 4;
        for (j = 0; j < n; j++) {
            const int8_t *x = input + (((size_t)b * in_d->h + (size_t)oy * p->stride_h) * in_d->w +
                                       (size_t)ox * p->stride_w) * in_c;
            tq_col_begin(&pk, cols, j, p->input_offset);
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
        for (; j < 4; j++) {
            tq_col_zero(cols, j, in_c);
        }
        tq_cols_mat_mult(cols, in_c, filter, bias, q, p, out_c, output + (size_t)pix * out_c, n);
    }
}
#endif

tq_status tq_conv_1x1_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                         const tq_dims *input_dims, const int8_t *input,
                         const tq_dims *filter_dims, const int8_t *filter,
                         const int32_t *bias,
                         const tq_dims *output_dims, int8_t *output,
                         void *scratch, int32_t scratch_size)
{
    tq_status st = tq_check_conv(TQ_CONV_POINTWISE, params, quant, input_dims, input, filter_dims,
                                 filter, output_dims, output);
    if (st != TQ_OK) {
        return st;
    }
    st = tq_check_scratch(scratch, scratch_size,
                          tq_conv_1x1_s8_get_buffer_size(input_dims, filter_dims));
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
