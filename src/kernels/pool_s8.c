/* tinyqt: int8 average pooling and global mean (TFLite AVERAGE_POOL_2D and
 * MEAN over H, W). Reference C path. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_mask.h"

tq_status tq_avgpool_s8(const tq_conv_params *params, int32_t filter_h, int32_t filter_w,
                        const tq_dims *input_dims, const int8_t *input,
                        const tq_dims *output_dims, int8_t *output)
{
    int32_t b, oy, ox, c, ky, kx;
    int8_t *const y = output;
    tq_status st;
    if (params == NULL || input == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(input_dims) || !tq_dims_valid(output_dims) || filter_h < 1 ||
        filter_w < 1 || output_dims->n != input_dims->n || output_dims->c != input_dims->c) {
        return TQ_ERR_SHAPE;
    }
    if (params->stride_h < 1 || params->stride_w < 1 || params->pad_top < 0 ||
        params->pad_left < 0 || params->pad_top >= filter_h || params->pad_left >= filter_w ||
        (int64_t)filter_h * filter_w > 65536) {
        return TQ_ERR_PARAM;
    }
    if ((int64_t)(output_dims->h - 1) * params->stride_h - params->pad_top >= input_dims->h ||
        (int64_t)(output_dims->w - 1) * params->stride_w - params->pad_left >= input_dims->w) {
        return TQ_ERR_SHAPE;
    }
    st = tq_check_activation(params);
    if (st != TQ_OK) {
        return st;
    }
    for (b = 0; b < output_dims->n; b++) {
        for (oy = 0; oy < output_dims->h; oy++) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            const int32_t ky0 = y0 < 0 ? -y0 : 0;
            const int32_t ky1 = input_dims->h - y0 < filter_h ? input_dims->h - y0 : filter_h;
            for (ox = 0; ox < output_dims->w; ox++) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                const int32_t kx0 = x0 < 0 ? -x0 : 0;
                const int32_t kx1 = input_dims->w - x0 < filter_w ? input_dims->w - x0 : filter_w;
                const int32_t count = (ky1 - ky0) * (kx1 - kx0);
                for (c = 0; c < input_dims->c; c++) {
                    int32_t sum = 0, avg;
                    for (ky = ky0; ky < ky1; ky++) {
                        const int8_t *row = input + (((size_t)b * input_dims->h + y0 + ky) *
                                                     input_dims->w + x0) * input_dims->c + c;
                        for (kx = kx0; kx < kx1; kx++) {
                            sum += row[(size_t)kx * input_dims->c];
                        }
                    }
                    avg = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                    *output++ = (int8_t)tq_clamp_i32(avg, params->act_min, params->act_max);
                }
            }
        }
    }
    tq_forward_mask(params, y, tq_dims_count(output_dims));
    return TQ_OK;
}

tq_status tq_mean_s8(const tq_mean_params *params,
                     const tq_dims *input_dims, const int8_t *input, int8_t *output)
{
    int32_t b, c, i, hw, multiplier, shift;
    tq_status st;
    if (params == NULL || input == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(input_dims) || (int64_t)input_dims->h * input_dims->w > (1 << 23)) {
        return TQ_ERR_SHAPE;
    }
    if (params->input_zero_point < -128 || params->input_zero_point > 127 ||
        params->output_zero_point < -128 || params->output_zero_point > 127) {
        return TQ_ERR_PARAM;
    }
    hw = input_dims->h * input_dims->w;
    multiplier = params->multiplier;
    shift = params->shift;
    st = tq_check_multiplier(multiplier, shift);
    if (st != TQ_OK) {
        return st;
    }
    {
        /* Fold 1/(H*W) into the multiplier exactly as TFLite's
         * QuantizedMeanOrSum: s = floor(log2(H*W)), capped at 32 and 31 + shift. */
        int32_t s = 0;
        while (((uint32_t)hw >> (s + 1)) != 0) {
            s++;
        }
        if (s > 31 + shift) {
            s = 31 + shift;
        }
        multiplier = (int32_t)(((int64_t)multiplier << s) / hw);
        shift -= s;
    }
    for (b = 0; b < input_dims->n; b++) {
        const int8_t *x = input + (size_t)b * hw * input_dims->c;
        for (c = 0; c < input_dims->c; c++) {
            int32_t sum = 0, y;
            for (i = 0; i < hw; i++) {
                sum += x[(size_t)i * input_dims->c + c];
            }
            y = tq_requantize(sum - params->input_zero_point * hw, multiplier, shift) +
                params->output_zero_point;
            *output++ = (int8_t)tq_clamp_i32(y, -128, 127);
        }
    }
    return TQ_OK;
}
