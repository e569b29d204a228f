/* tinyqt: int8 depthwise convolution, any kernel size, stride, padding,
 * dilation and depth multiplier. Reference C path; the ARM DSP path lives
 * beside it under __ARM_FEATURE_DSP and gives identical bytes. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"

int32_t tq_depthwise_conv_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter)
{
    (void)input;
    (void)filter;
    return 0;
}

/* Channels are processed in blocks of TQ_DW_BLOCK so the accumulators live
 * on the stack and the inner loop runs over contiguous channels. */
#define TQ_DW_BLOCK 64

static void tq_depthwise_conv_s8_portable(const tq_conv_params *p, const tq_channel_quant *q,
                                          const tq_dims *in_d, const int8_t *input,
                                          const tq_dims *f_d, const int8_t *filter,
                                          const int32_t *bias, const tq_dims *out_d,
                                          int8_t *output)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w, out_c = out_d->c;
    const int32_t mult = out_c / in_c;
    int32_t acc[TQ_DW_BLOCK];
    int32_t b, oy, ox, c0, c, ky, kx;
    for (b = 0; b < out_d->n; b++) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < out_d->h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_d->w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                for (c0 = 0; c0 < out_c; c0 += TQ_DW_BLOCK) {
                    const int32_t n = out_c - c0 < TQ_DW_BLOCK ? out_c - c0 : TQ_DW_BLOCK;
                    for (c = 0; c < n; c++) {
                        acc[c] = bias != NULL ? bias[c0 + c] : 0;
                    }
                    for (ky = 0; ky < k_h; ky++) {
                        const int32_t iy = y0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (kx = 0; kx < k_w; kx++) {
                            const int32_t ix = x0 + kx * p->dilation_w;
                            const int8_t *x, *w;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            x = in_b + ((size_t)iy * in_w + ix) * in_c;
                            w = filter + ((size_t)ky * k_w + kx) * out_c + c0;
                            if (mult == 1) {
                                for (c = 0; c < n; c++) {
                                    acc[c] = tq_add_wrap(acc[c], (x[c0 + c] + p->input_offset) * w[c]);
                                }
                            } else {
                                for (c = 0; c < n; c++) {
                                    acc[c] = tq_add_wrap(acc[c], (x[(c0 + c) / mult] + p->input_offset) * w[c]);
                                }
                            }
                        }
                    }
                    for (c = 0; c < n; c++) {
                        *output++ = tq_requantize_s8(acc[c], q->multiplier[c0 + c],
                                                     q->shift[c0 + c], p->output_offset,
                                                     p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}

tq_status tq_depthwise_conv_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                               const tq_dims *input_dims, const int8_t *input,
                               const tq_dims *filter_dims, const int8_t *filter,
                               const int32_t *bias,
                               const tq_dims *output_dims, int8_t *output,
                               void *scratch, int32_t scratch_size)
{
    tq_status st = tq_check_conv(TQ_CONV_DEPTHWISE, params, quant, input_dims, input, filter_dims,
                                 filter, output_dims, output);
    if (st != TQ_OK) {
        return st;
    }
    st = tq_check_scratch(scratch, scratch_size,
                          tq_depthwise_conv_s8_get_buffer_size(input_dims, filter_dims));
    if (st != TQ_OK) {
        return st;
    }
    tq_depthwise_conv_s8_portable(params, quant, input_dims, input, filter_dims, filter, bias,
                                  output_dims, output);
    return TQ_OK;
}
