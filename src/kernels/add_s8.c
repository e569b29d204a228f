/* tinyqt: int8 elementwise add with requantization (TFLite ADD int8).
 * Reference C path. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_mask.h"

tq_status tq_add_s8(const tq_add_params *params, int32_t size,
                    const int8_t *input1, const int8_t *input2, int8_t *output)
{
    int32_t i;
    if (params == NULL || input1 == NULL || input2 == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (size < 0) {
        return TQ_ERR_SHAPE;
    }
    if (params->left_shift < 0 || params->left_shift > 20 ||
        params->input1_offset < -127 || params->input1_offset > 128 ||
        params->input2_offset < -127 || params->input2_offset > 128 ||
        params->output_offset < -128 || params->output_offset > 127 ||
        params->act_min < -128 || params->act_max > 127 || params->act_min > params->act_max ||
        tq_check_multiplier(params->input1_multiplier, params->input1_shift) != TQ_OK ||
        tq_check_multiplier(params->input2_multiplier, params->input2_shift) != TQ_OK ||
        tq_check_multiplier(params->output_multiplier, params->output_shift) != TQ_OK) {
        return TQ_ERR_PARAM;
    }
    for (i = 0; i < size; i++) {
        const int32_t a = (input1[i] + params->input1_offset) * (1 << params->left_shift);
        const int32_t b = (input2[i] + params->input2_offset) * (1 << params->left_shift);
        const int32_t sa = tq_requantize(a, params->input1_multiplier, params->input1_shift);
        const int32_t sb = tq_requantize(b, params->input2_multiplier, params->input2_shift);
        output[i] = tq_requantize_s8(sa + sb, params->output_multiplier, params->output_shift,
                                     params->output_offset, params->act_min, params->act_max);
    }
    if (params->clamp_mask != NULL && size > 0) {
        tq_clamp_mask_pack(output, size, params->act_min, params->act_max, params->clamp_mask);
    }
    return TQ_OK;
}
