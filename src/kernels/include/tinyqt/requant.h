/*
 * tinyqt: fixed-point requantization, bit-exact with TFLite's reference
 * MultiplyByQuantizedMultiplier (gemmlowp SaturatingRoundingDoublingHighMul
 * followed by RoundingDivideByPOT).
 *
 * The doubling high multiply is computed as (a*b + 2^30) >> 31 with an
 * arithmetic shift. For every product except INT32_MIN*INT32_MIN this equals
 * gemmlowp's (a*b + nudge) / 2^31 with truncation (the nudge is 2^30 for
 * non-negative and 1-2^30 for negative products); that one product needs a
 * multiplier of INT32_MIN, which QuantizeMultiplier never produces and the
 * kernels reject. It compiles to one SMLAL on Cortex-M.
 */
#ifndef TINYQT_REQUANT_H
#define TINYQT_REQUANT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* round(a * b / 2^31), ties away from zero as gemmlowp does. */
static inline int32_t tq_doubling_high_mul(int32_t a, int32_t b)
{
    int64_t prod = (int64_t)a * (int64_t)b + ((int64_t)1 << 30);
    return (int32_t)(prod >> 31);
}

/* x / 2^exponent rounded to nearest, ties away from zero (0 <= exponent <= 31). */
static inline int32_t tq_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier(x, multiplier, shift). */
static inline int32_t tq_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left);
    return tq_rounding_divide_by_pot(tq_doubling_high_mul(shifted, multiplier), right);
}

/* a + b with int32 wrap-around, as TFLite's accumulators behave in practice
 * (a bias saturated at INT32_MIN plus a negative sum wraps); defined
 * behaviour in C, unlike signed overflow. */
static inline int32_t tq_add_wrap(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t tq_clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Requantizes an int32 accumulator to int8: clamp(offset + requant(acc)). */
static inline int8_t tq_requantize_s8(int32_t acc, int32_t multiplier, int32_t shift,
                                      int32_t output_offset, int32_t act_min, int32_t act_max)
{
    return (int8_t)tq_clamp_i32(tq_requantize(acc, multiplier, shift) + output_offset, act_min,
                                act_max);
}

#ifdef __cplusplus
}
#endif

#endif /* TINYQT_REQUANT_H */
