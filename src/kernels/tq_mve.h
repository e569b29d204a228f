/*
 * tinyqt: Arm Helium (M-profile Vector Extension) switch and helpers shared
 * by the kernels' MVE paths (private header).
 *
 * TQ_USE_MVE is 1 when the target has integer MVE (__ARM_FEATURE_MVE, e.g.
 * Cortex-M55) and TQ_FORCE_PORTABLE is not defined; such a target also has
 * the DSP extension, so a kernel without an MVE path keeps its DSP path.
 *
 * Bytes: the MVE paths accumulate the same int32 sums as the portable path
 * (integer additions, any order, wrapping alike) and requantize with the
 * shared scalar tq_requantize_s8, so every path gives identical outputs.
 * Tails use predicated loads (vctp8q): lanes past the end read no memory.
 */
#ifndef TINYQT_MVE_H
#define TINYQT_MVE_H

#if defined(__ARM_FEATURE_MVE) && !defined(TQ_FORCE_PORTABLE)
#define TQ_USE_MVE 1
#include <arm_mve.h>
#else
#define TQ_USE_MVE 0
#endif

#if TQ_USE_MVE
#include <stdint.h>

/* ---- requantization of 4 channels -------------------------------------
 * tq_requantize (requant.h) lane by lane, exactly:
 *  - the left shift wraps like (uint32_t)x << left (VSHL);
 *  - tq_doubling_high_mul(a, b) = (a*b + 2^30) >> 31 = (2ab + 2^31) >> 32,
 *    which is VQRDMULH (it saturates only for INT32_MIN * INT32_MIN, a
 *    multiplier the kernels reject);
 *  - the rounding divide by 2^r (ties away from zero) is VRSHL by -r
 *    (ties up) after subtracting 1 from negative values when r > 0; the
 *    product is > INT32_MIN, so the subtraction cannot wrap. */
typedef struct {
    int32x4_t mult;
    int32x4_t left;   /* max(shift, 0) */
    int32x4_t right;  /* min(shift, 0): VRSHL's count */
    int32x4_t fix;    /* -1 where shift < 0, else 0 */
} tq_rq4;

/* The requantization of channels c..c+3 (lanes past n are zeroed). */
static inline void tq_rq4_init(tq_rq4 *rq, const int32_t *mult, const int32_t *shift, int32_t n)
{
    const mve_pred16_t pr = vctp32q((uint32_t)n);
    const int32x4_t s = vldrwq_z_s32(shift, pr);
    const int32x4_t zero = vdupq_n_s32(0);
    rq->mult = vldrwq_z_s32(mult, pr);
    rq->left = vmaxq_s32(s, zero);
    rq->right = vminq_s32(s, zero);
    rq->fix = vshrq_n_s32(rq->right, 31);
}

/* clamp(tq_requantize(acc) + out_offset, act_min, act_max) per lane. */
static inline int32x4_t tq_rq4_apply(const tq_rq4 *rq, int32x4_t acc, int32_t out_offset,
                                     int32_t act_min, int32_t act_max)
{
    int32x4_t x = vqrdmulhq_s32(vshlq_s32(acc, rq->left), rq->mult);
    x = vaddq_s32(x, vandq_s32(vshrq_n_s32(x, 31), rq->fix));
    x = vaddq_n_s32(vrshlq_s32(x, rq->right), out_offset);
    return vminq_s32(vmaxq_s32(x, vdupq_n_s32(act_min)), vdupq_n_s32(act_max));
}

/* The 4 lanes (s0, s1, s2, s3) of an int32 vector. */
static inline int32x4_t tq_lanes4(int32_t s0, int32_t s1, int32_t s2, int32_t s3)
{
    int32x4_t v = vdupq_n_s32(s0);
    v = vsetq_lane_s32(s1, v, 1);
    v = vsetq_lane_s32(s2, v, 2);
    return vsetq_lane_s32(s3, v, 3);
}
#endif

#endif /* TINYQT_MVE_H */
