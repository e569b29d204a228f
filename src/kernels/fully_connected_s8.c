/* tinyqt: int8 fully connected (TFLite FULLY_CONNECTED int8, per-channel
 * or per-tensor weights). Reference C path. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_mask.h"
#include "tq_simd.h"

#if TQ_USE_DSP
/* Dot product of one input row (offset added) with one or two weight rows,
 * 4 features per step: SXTAB16 splits x into (x0, x2) and (x1, x3) with the
 * offset added, SXTB16 splits the weights likewise, SMLAD accumulates. */
static void tq_fc_dot2(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n,
                       int32_t off, int32_t *acc0, int32_t *acc1)
{
    const int32_t off2 = tq_offset_x2(off);
    int32_t a0 = *acc0, a1 = *acc1, i;
    for (i = 0; i + 4 <= n; i += 4) {
        const int32_t xv = tq_read_s8x4(x + i);
        const int32_t xe = tq_sxtab16(off2, xv), xo = tq_sxtab16_ror8(off2, xv);
        int32_t wv = tq_read_s8x4(w0 + i);
        a0 = tq_smlad(xe, tq_sxtb16(wv), a0);
        a0 = tq_smlad(xo, tq_sxtb16_ror8(wv), a0);
        wv = tq_read_s8x4(w1 + i);
        a1 = tq_smlad(xe, tq_sxtb16(wv), a1);
        a1 = tq_smlad(xo, tq_sxtb16_ror8(wv), a1);
    }
    for (; i < n; i++) {
        a0 = tq_smlabb(x[i] + off, w0[i], a0);
        a1 = tq_smlabb(x[i] + off, w1[i], a1);
    }
    *acc0 = a0;
    *acc1 = a1;
}
#endif

tq_status tq_fully_connected_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                                int32_t batches, int32_t in_features, int32_t out_features,
                                const int8_t *input, const int8_t *weights,
                                const int32_t *bias, int8_t *output)
{
    int32_t b, o, i;
    int8_t *const y = output;
    tq_status st;
    if (params == NULL || quant == NULL || quant->multiplier == NULL || quant->shift == NULL ||
        input == NULL || weights == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (batches < 1 || in_features < 1 || out_features < 1 ||
        (int64_t)batches * in_features > INT32_MAX || (int64_t)batches * out_features > INT32_MAX ||
        (int64_t)in_features * out_features > INT32_MAX) {
        return TQ_ERR_SHAPE;
    }
    st = tq_check_activation(params);
    for (o = 0; st == TQ_OK && o < out_features; o++) {
        st = tq_check_multiplier(quant->multiplier[o], quant->shift[o]);
    }
    if (st != TQ_OK) {
        return st;
    }
#if TQ_USE_DSP
    for (b = 0; b < batches; b++) {
        const int8_t *x = input + (size_t)b * in_features;
        const int8_t *w = weights;
        (void)i;
        for (o = 0; o < out_features; o += 2) {
            /* an odd last row pairs with itself */
            const int32_t o1 = o + 1 < out_features ? o + 1 : o;
            int32_t a0 = bias != NULL ? bias[o] : 0, a1 = bias != NULL ? bias[o1] : 0;
            tq_fc_dot2(x, w, w + (size_t)(o1 - o) * in_features, in_features,
                       params->input_offset, &a0, &a1);
            w += (size_t)(o1 - o + 1) * in_features;
            *output++ = tq_requantize_s8(a0, quant->multiplier[o], quant->shift[o],
                                         params->output_offset, params->act_min, params->act_max);
            if (o1 != o) {
                *output++ = tq_requantize_s8(a1, quant->multiplier[o1], quant->shift[o1],
                                             params->output_offset, params->act_min,
                                             params->act_max);
            }
        }
    }
#else
    for (b = 0; b < batches; b++) {
        const int8_t *x = input + (size_t)b * in_features;
        const int8_t *w = weights;
        for (o = 0; o < out_features; o++) {
            int32_t sum = 0, wsum = 0;
            for (i = 0; i < in_features; i++) {
                sum += x[i] * w[i];
                wsum += w[i];
            }
            w += in_features;
            sum = tq_add_wrap(sum + params->input_offset * wsum, bias != NULL ? bias[o] : 0);
            *output++ = tq_requantize_s8(sum, quant->multiplier[o], quant->shift[o],
                                         params->output_offset, params->act_min, params->act_max);
        }
    }
#endif
    tq_forward_mask(params, y, batches * out_features);
    return TQ_OK;
}
