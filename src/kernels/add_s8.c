/* tinyqt: int8 elementwise add with requantization (TFLite ADD int8).
 * Reference C path; the ARM DSP path (__ARM_FEATURE_DSP) and the Helium
 * path (Cortex-M55) beside it give identical bytes. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"
#include "tq_check.h"
#include "tq_mask.h"
#include "tq_mve.h"
#include "tq_simd.h"

#if TQ_USE_MVE
/* Helium path: four elements a step (the last one predicated), each of the
 * three requantizations lane by lane as tq_requantize (tq_rq4_raw), the
 * output's with its offset and clamp. */
static void tq_add_s8_mve(const tq_add_params *p, int32_t size, const int8_t *input1,
                          const int8_t *input2, int8_t *output)
{
    const int32_t left = p->left_shift, off1 = p->input1_offset, off2 = p->input2_offset;
    tq_rq4 r1, r2, ro;
    int32_t i;
    tq_rq4_dup(&r1, p->input1_multiplier, p->input1_shift);
    tq_rq4_dup(&r2, p->input2_multiplier, p->input2_shift);
    tq_rq4_dup(&ro, p->output_multiplier, p->output_shift);
    for (i = 0; i < size; i += 4) {
        const mve_pred16_t pr = vctp32q((uint32_t)(size - i));
        const int32x4_t a = vshlq_r_s32(vaddq_n_s32(vldrbq_z_s32(input1 + i, pr), off1), left);
        const int32x4_t b = vshlq_r_s32(vaddq_n_s32(vldrbq_z_s32(input2 + i, pr), off2), left);
        const int32x4_t sum = vaddq_s32(tq_rq4_raw(&r1, a), tq_rq4_raw(&r2, b));
        vstrbq_p_s32(output + i, tq_rq4_apply(&ro, sum, p->output_offset, p->act_min, p->act_max), pr);
    }
}
#endif

#if TQ_USE_DSP && !TQ_USE_MVE
/* Whether input k's requantization is exactly a halving: multiplier 2^30
 * (1/2) with shift 0, the larger input scale's in TFLite's add, on a value
 * shifted left by at least 1, hence even, where rounding never acts. */
static int tq_add_is_half(const tq_add_params *p, int k)
{
    return p->left_shift >= 1 && (k == 1 ? p->input1_multiplier : p->input2_multiplier) == (1 << 30) &&
           (k == 1 ? p->input1_shift : p->input2_shift) == 0;
}

/* DSP path: the same three requantizations, each one SMLAL with its
 * constants set up once. The residual adds' usual case (one input's term
 * a halving, the other's a right shift, the output's a right shift in
 * [1, 23] with the whole int8 range) has a loop of its own on doubled
 * values (tq_rq2_s8): the other input's term is ADD, SMMLAR, ASR (its
 * value doubled by the shift that scales it), the halving a shift, and
 * the output ADD, SMMLAR, ASR, SSAT. |2 * sum| stays below 2^30 since the
 * left shift is at most 20. */
static void tq_add_s8_dsp(const tq_add_params *p, int32_t size, const int8_t *input1,
                          const int8_t *input2, int8_t *output)
{
    const int32_t scale = 1 << p->left_shift, off1 = p->input1_offset, off2 = p->input2_offset;
    const int32_t out_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int half1 = tq_add_is_half(p, 1), half2 = !half1 && tq_add_is_half(p, 2);
    const int32_t ro = -p->output_shift, r_in = -(half1 ? p->input2_shift : p->input1_shift);
    tq_rq r1q, r2q, roq;
    int32_t i;
    if ((half1 || half2) && r_in >= 1 && ro >= 1 && ro <= 23 && act_min == -128 && act_max == 127) {
        const int8_t *h = half1 ? input1 : input2, *o = half1 ? input2 : input1;
        const int32_t off_h = half1 ? off1 : off2, off_o = half1 ? off2 : off1;
        const int32_t lsh = p->left_shift;
        tq_rq2 q_in, q_out;
        tq_rq2_set(&q_in, half1 ? p->input2_multiplier : p->input1_multiplier, r_in, 0);
        tq_rq2_set(&q_out, p->output_multiplier, ro, out_offset);
        for (i = 0; i < size; i++) {
            /* 2 x for the other input's x = (o + off) 2^left, and its term */
            const int32_t x2 = (int32_t)((uint32_t)(o[i] + off_o) << (lsh + 1));
            const int32_t sb = tq_rq2_raw(x2, &q_in);
            /* 2 * ((h + off_h) 2^(left - 1) + sb) */
            const int32_t s2 = (int32_t)((uint32_t)(h[i] + off_h) << lsh) + (int32_t)((uint32_t)sb << 1);
            output[i] = (int8_t)tq_rq2_s8(s2, &q_out);
        }
        return;
    }
    tq_rq_init(&r1q, p->input1_multiplier, p->input1_shift);
    tq_rq_init(&r2q, p->input2_multiplier, p->input2_shift);
    tq_rq_init(&roq, p->output_multiplier, p->output_shift);
    for (i = 0; i < size; i++) {
        const int32_t sa = tq_rq_raw(&r1q, (input1[i] + off1) * scale);
        const int32_t sb = tq_rq_raw(&r2q, (input2[i] + off2) * scale);
        output[i] = (int8_t)tq_rq_apply(&roq, sa + sb, out_offset, act_min, act_max, 0);
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
#if TQ_USE_MVE
    tq_add_s8_mve(params, size, input1, input2, output);
#elif TQ_USE_DSP
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
