/* tinyqt: int8 softmax, bit-exact with TFLite's reference int8 Softmax
 * (gemmlowp fixed point: exp_on_negative_values on Q5.26 input differences,
 * a Q12.19 sum of exponentials, and a Newton-Raphson reciprocal).
 * Output scale 1/256, zero point -128. Integer arithmetic only. */
#include "tinyqt/kernels.h"
#include "tinyqt/requant.h"

#define TQ_SCALED_DIFF_INTEGER_BITS 5
#define TQ_ACCUM_INTEGER_BITS 12

/* gemmlowp SaturatingRoundingDoublingHighMul. */
static int32_t tq_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return tq_doubling_high_mul(a, b);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent> for exponent > 0. */
static int32_t tq_sat_shift_left(int32_t x, int32_t exponent)
{
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* exp(x) for x in [-1/4, 0), x and result in Q0.31. */
static int32_t tq_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;    /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;  /* 1/3 */
    const int32_t x = a + (1 << 28);              /* a + 1/8 */
    const int32_t x2 = tq_srdhm(x, x);
    const int32_t x3 = tq_srdhm(x2, x);
    const int32_t x4 = tq_srdhm(x2, x2);
    const int32_t x4_over_4 = tq_rounding_divide_by_pot(x4, 2);
    const int32_t poly = tq_rounding_divide_by_pot(
        tq_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + tq_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0; a in Q5.26, result in Q0.31. */
static int32_t tq_exp_on_negative_values(int32_t a)
{
    static const int32_t multipliers[7] = {
        1672461947, /* exp(-1/4) */
        1302514674, /* exp(-1/2) */
        790015084,  /* exp(-1) */
        290630308,  /* exp(-2) */
        39332535,   /* exp(-4) */
        720401,     /* exp(-8) */
        242         /* exp(-16) */
    };
    const int32_t frac_bits = 31 - TQ_SCALED_DIFF_INTEGER_BITS;
    const int32_t one_quarter = 1 << (frac_bits - 2);
    const int32_t a_mod_quarter_minus_quarter = (a & (one_quarter - 1)) - one_quarter;
    const int32_t remainder = a_mod_quarter_minus_quarter - a;
    int32_t result = tq_exp_quarter(tq_sat_shift_left(a_mod_quarter_minus_quarter,
                                                      TQ_SCALED_DIFF_INTEGER_BITS));
    int32_t i;
    for (i = 0; i < 7; i++) {
        if (remainder & (1 << (frac_bits - 2 + i))) {
            result = tq_srdhm(result, multipliers[i]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1); x in Q0.31, result in Q0.31. */
static int32_t tq_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t constant_48_over_17 = 1515870810;    /* Q2.29 */
    const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
    int32_t x = constant_48_over_17 + tq_srdhm(half_denominator, constant_neg_32_over_17);
    int32_t i;
    for (i = 0; i < 3; i++) {
        const int32_t half_denominator_times_x = tq_srdhm(half_denominator, x);
        const int32_t one_minus = (1 << 29) - half_denominator_times_x;
        x = x + tq_sat_shift_left(tq_srdhm(x, one_minus), 2);
    }
    return tq_sat_shift_left(x, 1);
}

static int32_t tq_count_leading_zeros(uint32_t x)
{
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        n++;
    }
    return n;
}

tq_status tq_softmax_s8(const tq_softmax_params *params, int32_t rows, int32_t depth,
                        const int8_t *input, int8_t *output)
{
    int32_t r, c;
    if (params == NULL || input == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (rows < 1 || depth < 1 || (int64_t)rows * depth > INT32_MAX || depth > (1 << 20)) {
        return TQ_ERR_SHAPE;
    }
    if (params->input_multiplier < 0 || params->input_left_shift < 0 ||
        params->input_left_shift > 31 || params->diff_min > 0) {
        return TQ_ERR_PARAM;
    }
    for (r = 0; r < rows; r++) {
        const int8_t *x = input + (size_t)r * depth;
        int8_t *y = output + (size_t)r * depth;
        int32_t max_in_row = -128, sum_of_exps = 0, headroom, num_bits_over_unit, shifted_scale;
        for (c = 0; c < depth; c++) {
            max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
        }
        for (c = 0; c < depth; c++) {
            const int32_t diff = x[c] - max_in_row;
            if (diff >= params->diff_min) {
                const int32_t rescaled = tq_srdhm(
                    (int32_t)((uint32_t)diff << params->input_left_shift), params->input_multiplier);
                sum_of_exps += tq_rounding_divide_by_pot(tq_exp_on_negative_values(rescaled),
                                                         TQ_ACCUM_INTEGER_BITS);
            }
        }
        headroom = tq_count_leading_zeros((uint32_t)sum_of_exps);
        num_bits_over_unit = TQ_ACCUM_INTEGER_BITS - headroom;
        shifted_scale = tq_one_over_one_plus_x(
            (int32_t)(((uint32_t)sum_of_exps << headroom) - (1u << 31)));
        for (c = 0; c < depth; c++) {
            const int32_t diff = x[c] - max_in_row;
            if (diff >= params->diff_min) {
                const int32_t rescaled = tq_srdhm(
                    (int32_t)((uint32_t)diff << params->input_left_shift), params->input_multiplier);
                const int32_t e = tq_exp_on_negative_values(rescaled);
                const int32_t unsat = tq_rounding_divide_by_pot(tq_srdhm(shifted_scale, e),
                                                                num_bits_over_unit + 31 - 8);
                y[c] = (int8_t)tq_clamp_i32(unsat - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
    return TQ_OK;
}
