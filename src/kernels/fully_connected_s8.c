/* tinyqt: int8 fully connected (TFLite FULLY_CONNECTED int8, per-channel
 * or per-tensor weights). Reference C path. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"

tq_status tq_fully_connected_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                                int32_t batches, int32_t in_features, int32_t out_features,
                                const int8_t *input, const int8_t *weights,
                                const int32_t *bias, int8_t *output)
{
    int32_t b, o, i;
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
    return TQ_OK;
}
