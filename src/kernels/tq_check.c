/* tinyqt: argument checks shared by the kernels. */
#include "tq_check.h"

int tq_dims_valid(const tq_dims *d)
{
    int64_t count;
    if (d == NULL || d->n < 1 || d->h < 1 || d->w < 1 || d->c < 1) {
        return 0;
    }
    count = (int64_t)d->n * d->h * d->w * d->c;
    return count <= INT32_MAX;
}

int32_t tq_dims_count(const tq_dims *d)
{
    return d->n * d->h * d->w * d->c;
}

tq_status tq_check_activation(const tq_conv_params *params)
{
    if (params->act_min < -128 || params->act_max > 127 || params->act_min > params->act_max) {
        return TQ_ERR_PARAM;
    }
    if (params->input_offset < -127 || params->input_offset > 128) {
        return TQ_ERR_PARAM;
    }
    if (params->output_offset < -128 || params->output_offset > 127) {
        return TQ_ERR_PARAM;
    }
    return TQ_OK;
}

tq_status tq_check_multiplier(int32_t multiplier, int32_t shift)
{
    if (multiplier < 0 || shift < -31 || shift > 30) {
        return TQ_ERR_PARAM;
    }
    return TQ_OK;
}

/* The output extent along one axis is valid when the first and the last
 * window each overlap the input. */
static int tq_axis_valid(int32_t in, int32_t out, int32_t k, int32_t stride, int32_t dilation,
                         int32_t pad)
{
    const int64_t eff_k = (int64_t)(k - 1) * dilation + 1;
    const int64_t last_start = (int64_t)(out - 1) * stride - pad;
    return pad < eff_k && last_start < in && eff_k <= INT32_MAX;
}

tq_status tq_check_quant(const tq_channel_quant *quant, int32_t out_c)
{
    int32_t c;
    if (quant == NULL || quant->multiplier == NULL || quant->shift == NULL) {
        return TQ_ERR_NULL;
    }
    for (c = 0; c < out_c; c++) {
        const tq_status st = tq_check_multiplier(quant->multiplier[c], quant->shift[c]);
        if (st != TQ_OK) {
            return st;
        }
    }
    return TQ_OK;
}

tq_status tq_check_conv(tq_conv_kind kind, const tq_conv_params *params,
                        const tq_channel_quant *quant,
                        const tq_dims *input_dims, const void *input,
                        const tq_dims *filter_dims, const void *filter,
                        const tq_dims *output_dims, const void *output)
{
    const tq_status st = tq_check_conv_shape(kind, params, quant, input_dims, input, filter_dims,
                                             filter, output_dims, output);
    return st != TQ_OK ? st : tq_check_quant(quant, output_dims->c);
}

tq_status tq_check_conv_shape(tq_conv_kind kind, const tq_conv_params *params,
                              const tq_channel_quant *quant,
                              const tq_dims *input_dims, const void *input,
                              const tq_dims *filter_dims, const void *filter,
                              const tq_dims *output_dims, const void *output)
{
    int32_t out_c;
    tq_status st;
    if (params == NULL || quant == NULL || quant->multiplier == NULL || quant->shift == NULL ||
        input == NULL || filter == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(input_dims) || !tq_dims_valid(filter_dims) || !tq_dims_valid(output_dims)) {
        return TQ_ERR_SHAPE;
    }
    if (params->stride_h < 1 || params->stride_w < 1 || params->dilation_h < 1 ||
        params->dilation_w < 1 || params->pad_top < 0 || params->pad_left < 0) {
        return TQ_ERR_PARAM;
    }
    st = tq_check_activation(params);
    if (st != TQ_OK) {
        return st;
    }
    if (output_dims->n != input_dims->n) {
        return TQ_ERR_SHAPE;
    }
    switch (kind) {
    case TQ_CONV_DEPTHWISE:
        out_c = filter_dims->c;
        if (filter_dims->n != 1 || out_c % input_dims->c != 0) {
            return TQ_ERR_SHAPE;
        }
        break;
    case TQ_CONV_POINTWISE:
        if (filter_dims->h != 1 || filter_dims->w != 1 || params->pad_top != 0 ||
            params->pad_left != 0) {
            return TQ_ERR_SHAPE;
        }
        /* fall through */
    default:
        out_c = filter_dims->n;
        if (filter_dims->c != input_dims->c) {
            return TQ_ERR_SHAPE;
        }
        break;
    }
    if (output_dims->c != out_c) {
        return TQ_ERR_SHAPE;
    }
    if (!tq_axis_valid(input_dims->h, output_dims->h, filter_dims->h, params->stride_h,
                       params->dilation_h, params->pad_top) ||
        !tq_axis_valid(input_dims->w, output_dims->w, filter_dims->w, params->stride_w,
                       params->dilation_w, params->pad_left)) {
        return TQ_ERR_SHAPE;
    }
    return TQ_OK;
}

tq_status tq_check_scratch(const void *scratch, int32_t scratch_size, int32_t needed)
{
    if (needed == 0) {
        return TQ_OK;
    }
    if (scratch == NULL) {
        return TQ_ERR_NULL;
    }
    if (scratch_size < needed || ((uintptr_t)scratch & 3u) != 0) {
        return TQ_ERR_SCRATCH;
    }
    return TQ_OK;
}
