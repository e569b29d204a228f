/* tinyqt: the backward of AVERAGE_POOL_2D, MEAN over
 * H and W, and ADD. Reference C path; orders in tinyqt/backward.h. */
#include <string.h>

#include "tinyqt/backward.h"
#include "tq_check.h"
#include "tq_sgd.h"
#include "tq_f32.h" /* fp32 file: the MVE-F build check */

tq_status tq_avgpool_backward_f32(const tq_conv_params *params, int32_t filter_h,
                                  int32_t filter_w, const tq_dims *output_dims,
                                  const float *grad_out, const uint8_t *mask,
                                  const tq_dims *input_dims, float *grad_in)
{
    int32_t b, oy, ox, c, ky, kx, o = 0;
    const int32_t ch = input_dims != NULL ? input_dims->c : 0;
    if (params == NULL || grad_out == NULL || grad_in == NULL) {
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
    memset(grad_in, 0, (size_t)tq_dims_count(input_dims) * sizeof(float));
    for (b = 0; b < output_dims->n; b++) {
        for (oy = 0; oy < output_dims->h; oy++) {
            const int32_t y0 = oy * params->stride_h - params->pad_top;
            const int32_t ky0 = y0 < 0 ? -y0 : 0;
            const int32_t ky1 = input_dims->h - y0 < filter_h ? input_dims->h - y0 : filter_h;
            for (ox = 0; ox < output_dims->w; ox++) {
                const int32_t x0 = ox * params->stride_w - params->pad_left;
                const int32_t kx0 = x0 < 0 ? -x0 : 0;
                const int32_t kx1 = input_dims->w - x0 < filter_w ? input_dims->w - x0 : filter_w;
                const float count = (float)((ky1 - ky0) * (kx1 - kx0));
                for (c = 0; c < ch; c++, o++) {
                    float g;
                    if (!tq_mask_pass(mask, o)) {
                        continue;
                    }
                    g = grad_out[o] / count;
                    for (ky = ky0; ky < ky1; ky++) {
                        float *row = grad_in + (((size_t)b * input_dims->h + y0 + ky) *
                                                input_dims->w + x0) * ch + c;
                        for (kx = kx0; kx < kx1; kx++) {
                            row[(size_t)kx * ch] += g;
                        }
                    }
                }
            }
        }
    }
    return TQ_OK;
}

tq_status tq_mean_backward_f32(const tq_dims *input_dims, const float *grad_out,
                               const uint8_t *mask, float *grad_in)
{
    int32_t b, i, c, hw, ch;
    float n;
    if (grad_out == NULL || grad_in == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(input_dims) || (int64_t)input_dims->h * input_dims->w > (1 << 23)) {
        return TQ_ERR_SHAPE;
    }
    hw = input_dims->h * input_dims->w;
    ch = input_dims->c;
    n = (float)hw;
    for (b = 0; b < input_dims->n; b++) {
        float *gi = grad_in + (size_t)b * hw * ch;
        for (c = 0; c < ch; c++) {
            const int32_t o = b * ch + c;
            const float g = tq_mask_pass(mask, o) ? grad_out[o] / n : 0.0f;
            for (i = 0; i < hw; i++) {
                gi[(size_t)i * ch + c] = g;
            }
        }
    }
    return TQ_OK;
}

tq_status tq_add_backward_f32(int32_t size, const float *grad_out, const uint8_t *mask,
                              float *grad_a, float *grad_b)
{
    int32_t i;
    if (grad_out == NULL || (grad_a == NULL && grad_b == NULL)) {
        return TQ_ERR_NULL;
    }
    if (size < 1) {
        return TQ_ERR_SHAPE;
    }
    for (i = 0; i < size; i++) {
        const float g = tq_mask_pass(mask, i) ? grad_out[i] : 0.0f;
        if (grad_a != NULL) {
            grad_a[i] = g;
        }
        if (grad_b != NULL) {
            grad_b[i] = g;
        }
    }
    return TQ_OK;
}
