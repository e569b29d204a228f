/* tinyqt: int8 elementwise add with requantization (TFLite ADD int8).
 * Reference C path; the ARM DSP path (__ARM_FEATURE_DSP) beside it gives
 * identical bytes. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_mask.h"
#include "tq_simd.h"

#if TQ_USE_DSP
/* DSP path: the same three requantizations, each one SMLAL with its
 * constants set up once (tq_rq). */
static void tq_add_s8_dsp(const tq_add_params *p, int32_t size, const int8_t *input1,
                          const int8_t *input2, int8_t *output)
{
    const int32_t scale = 1 << p->left_shift, off1 = p->input1_offset, off2 = p->input2_offset;
    const int32_t out_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    tq_rq r1, r2, ro;
    int32_t i;
    tq_rq_init(&r1, p->input1_multiplier, p->input1_shift);
    tq_rq_init(&r2, p->input2_multiplier, p->input2_shift);
    tq_rq_init(&ro, p->output_multiplier, p->output_shift);
    for (i = 0; i < size; i++) {
        const int32_t sa = tq_rq_raw(&r1, (input1[i] + off1) * scale);
        const int32_t sb = tq_rq_raw(&r2, (input2[i] + off2) * scale);
        output[i] = (int8_t)tq_rq_apply(&ro, sa + sb, out_offset, act_min, act_max, 0);
    }
}
#endif

tq_status tq_add_s8(const tq_add_params *params, int32_t size,
                    const int8_t *input1, const int8_t *input2, int8_t *output)
{
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
#if TQ_USE_DSP
    tq_add_s8_dsp(params, size, input1, input2, output);
#else
    int32_t i;
    for (i = 0; i < size; i++) {
        const int32_t a = (input1[i] + params->input1_offset) * (1 << params->left_shift);
        const int32_t b = (input2[i] + params->input2_offset) * (1 << params->left_shift);
        const int32_t sa = tq_requantize(a, params->input1_multiplier, params->input1_shift);
        const int32_t sb = tq_requantize(b, params->input2_multiplier, params->input2_shift);
        output[i] = tq_requantize_s8(sa + sb, params->output_multiplier, params->output_shift,
                                     params->output_offset, params->act_min, params->act_max);
    }
#endif
    if (params->clamp_mask != NULL && size > 0) {
        tq_clamp_mask_pack(output, size, params->act_min, params->act_max, params->clamp_mask);
    }
    return TQ_OK;
}
