/* tinyqt: SGD on int8 weights and int32 biases, with Quantization-Aware
 * Scaling (paper Eq. 4), three sub-LSB rounding modes, optional momentum and
 * a caller-owned xorshift32 PRNG. Portable C, plus assembly for the update
 * the training plans run (round to nearest, no momentum) on Arm FPUs:
 * Helium four weights at a time, the scalar FPU four weights a loop. */
#include <string.h>

#include "tinyqt/backward.h"
#include "tq_mathf.h"
#include "tq_sgd.h"
#include "tq_f32.h" /* fp32 file: the MVE-F build check */

uint32_t tq_xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

float tq_xorshift32_uniform(uint32_t *state)
{
    /* 24 random bits scaled by 2^-24: exact, in [0, 1). */
    return (float)(tq_xorshift32(state) >> 8) * 5.9604644775390625e-08f;
}

int tq_scale_valid(float scale)
{
    /* rejects NaN, <= 0 and +inf */
    return scale > 0.0f && scale <= 3.4028234663852886e+38f;
}

int tq_scales_valid(const float *scale, int32_t count)
{
    int32_t i;
    for (i = 0; i < count; i++) {
        if (!tq_scale_valid(scale[i])) {
            return 0;
        }
    }
    return 1;
}

static int tq_finite(float v)
{
    return v - v == 0.0f;
}

tq_status tq_sgd_check(const tq_sgd_params *opt, const tq_sgd_state *state, int has_weights,
                       int has_bias)
{
    if (opt == NULL || state == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_finite(opt->lr) || !(opt->momentum >= 0.0f && opt->momentum < 1.0f) ||
        (opt->qas != 0 && opt->qas != 1) || opt->rounding < TQ_ROUND_NEAREST ||
        opt->rounding > TQ_ROUND_MASTER) {
        return TQ_ERR_PARAM;
    }
    if (opt->rounding == TQ_ROUND_STOCHASTIC) {
        if (state->rng == NULL) {
            return TQ_ERR_NULL;
        }
        if (*state->rng == 0u) {
            return TQ_ERR_PARAM; /* xorshift's fixed point */
        }
    }
    if (has_weights && opt->rounding == TQ_ROUND_MASTER && state->w_master == NULL) {
        return TQ_ERR_NULL;
    }
    if (opt->momentum > 0.0f && ((has_weights && state->w_momentum == NULL) ||
                                 (has_bias && state->b_momentum == NULL))) {
        return TQ_ERR_NULL;
    }
    return TQ_OK;
}

tq_status tq_check_selection(int32_t n_sel, const int32_t *sel, int32_t channels)
{
    int32_t j;
    if (n_sel < 1 || n_sel > channels) {
        return TQ_ERR_SHAPE;
    }
    if (sel != NULL) {
        for (j = 0; j < n_sel; j++) {
            if (sel[j] < 0 || sel[j] >= channels || (j > 0 && sel[j] <= sel[j - 1])) {
                return TQ_ERR_SHAPE;
            }
        }
    }
    return TQ_OK;
}

/* Round half away from zero of v, for |v| < 2^31 (callers clamp first). */
static int32_t tq_round_away(float v)
{
    const int32_t t = (int32_t)v;     /* truncation toward zero */
    const float frac = v - (float)t;  /* exact */
    if (frac >= 0.5f) {
        return t + 1;
    }
    if (frac <= -0.5f) {
        return t - 1;
    }
    return t;
}

/* floor(v), for |v| < 2^31. */
static int32_t tq_floor(float v)
{
    const int32_t t = (int32_t)v;
    return (float)t > v ? t - 1 : t;
}

/* floor(v) saturated to [-127, 127], for any v but NaN (stochastic rounding). */
static int8_t tq_floor_s8(float v)
{
    int32_t r;
    if (v >= 128.0f) {
        return 127;
    }
    if (v <= -128.0f) {
        return -127;
    }
    r = tq_floor(v);
    return (int8_t)(r < -127 ? -127 : r);
}

/* bias + rounded delta with int32 saturation. */
static int32_t tq_bias_add(int32_t bias, float d, int floor_mode)
{
    int64_t r;
    if (d >= 4294967296.0f) {
        r = (int64_t)4294967296LL;
    } else if (d <= -4294967296.0f) {
        r = -(int64_t)4294967296LL;
    } else {
        /* |d| < 2^32: split so every conversion stays within int32 */
        const float hi = (float)(int32_t)(d * 0.5f) * 2.0f; /* even, exact, |hi| <= |d| */
        const float lo = d - hi;                             /* exact, |lo| < 2 */
        const int32_t rlo = floor_mode ? tq_floor(lo) : tq_round_away(lo);
        r = (int64_t)(int32_t)(hi * 0.5f) * 2 + rlo;
    }
    r += bias;
    if (r > INT32_MAX) {
        return INT32_MAX;
    }
    if (r < INT32_MIN) {
        return INT32_MIN;
    }
    return (int32_t)r;
}

/* The update delta on the integer grid for real gradient g, learning rate
 * lr and the channel's grid step `step` (s_w or s_x*s_w). */
static float tq_delta(float lr, int qas, float g, float step)
{
    const float lg = lr * g;
    return qas ? -lg / step : -lg * step;
}

/* The bits of 127.5f, doubled (the sign shifted out): a float's doubled
 * bits are below this exactly when |v| < 127.5, where tq_nearest_s8 and
 * the assembly update need no saturation. */
#define TQ_S8_HALF_RANGE_X2 (0x42FF0000u << 1)

/* round_half_away(v) saturated to [-127, 127]; if_nan when v is NaN. One
 * integer test on v's bits finds |v| < 127.5, where no saturation is
 * needed: adding the float just below 0.5 with v's sign (built from the
 * sign bit) and truncating rounds half away from zero exactly there
 * (checked over every float with |v| < 127.5; plain 0.5f would round
 * 0.5 - 2^-25 up). Larger magnitudes (and NaN) take the other branch. */
static int8_t tq_nearest_s8(float v, int8_t if_nan)
{
    uint32_t u, hb;
    float h;
    memcpy(&u, &v, sizeof u);
    if (__builtin_expect((u << 1) < TQ_S8_HALF_RANGE_X2, 1)) { /* the common case falls through */
        hb = (u & 0x80000000u) | 0x3EFFFFFFu;
        memcpy(&h, &hb, sizeof h);
        return (int8_t)(int32_t)(v + h);
    }
    if (v != v) {
        return if_nan;
    }
    return v > 0.0f ? 127 : -127;
}

#if TQ_USE_MVE_F32
/* tq_sgd_nearest of n4 groups of 4 consecutive weights w with Helium
 * floating point (tq_f32.h): the deltas -(lr * g) / step (QAS: four scalar
 * VDIV.F32 on the vector's lanes, Helium has no vector divide) or
 * -(lr * g) * step, the sums with the converted weights, VCVTA (round half
 * away from zero, what tq_nearest_s8 does), the clamp to [-127, 127], and
 * the old weight kept where the sum is NaN. Each group reads FPSCR.IDC/UFC
 * before it stores; returns the groups stored (n4, or the flushed one's
 * index: the caller updates the rest with the scalar code). */
static int32_t tq_sgd_nearest4_helium(float neg_lr, int qas, float step, int8_t *w, const float *g,
                                      int32_t n4)
{
    int32_t done = 0;
    __asm__ volatile(
        ".arch_extension mve.fp\n\t"
        "vmov.i32 q5, #0\n\t"
        "vmov.i32 q6, #127\n\t"
        "vsub.i32 q5, q5, q6\n\t"
        "vmov s28, %[st]\n\t"
        "1:\n\t"
        "vldrw.32 q0, [%[g]], #16\n\t"
        "vmul.f32 q0, q0, %[nlr]\n\t"
        "cmp %[qas], #0\n\t"
        "beq 2f\n\t"
        "vdiv.f32 s0, s0, s28\n\t"
        "vdiv.f32 s1, s1, s28\n\t"
        "vdiv.f32 s2, s2, s28\n\t"
        "vdiv.f32 s3, s3, s28\n\t"
        "b 3f\n\t"
        "2:\n\t"
        "vmul.f32 q0, q0, %[st]\n\t"
        "3:\n\t"
        "vldrb.s32 q4, [%[w]]\n\t"
        "vcvt.f32.s32 q1, q4\n\t"
        "vadd.f32 q1, q1, q0\n\t"
        "vcvta.s32.f32 q3, q1\n\t"
        "vmax.s32 q3, q3, q5\n\t"
        "vmin.s32 q3, q3, q6\n\t"
        "vpt.f32 ne, q1, q1\n\t"
        "vorrt q3, q4, q4\n\t"
        "vmrs r12, fpscr\n\t"
        "tst r12, " TQ_FPSCR_FLUSH_BITS "\n\t"
        "bne 9f\n\t"
        "vstrb.32 q3, [%[w]]\n\t"
        "adds %[w], %[w], #4\n\t"
        "adds %[done], %[done], #1\n\t"
        "cmp %[done], %[n]\n\t"
        "bne 1b\n\t"
        "9:"
        : [w] "+l"(w), [g] "+r"(g), [done] "+r"(done)
        : [nlr] "r"(neg_lr), [st] "r"(step), [qas] "r"(qas), [n] "r"(n4)
        : "q0", "q1", "q3", "q4", "q5", "q6", "q7", "r12", "p0", "cc", "memory");
    return done;
}
#endif

#if defined(__ARM_FP) && (__ARM_FP & 4) && (defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8_1M_MAIN__)) && \
    !defined(TQ_FORCE_PORTABLE)
#define TQ_SGD_FPU_ASM 1
/* v (in the s register of the macro's argument, its bits in %[t]) rounded
 * half away from zero to an int32 in the same register, for |v| < 127.5.
 * A double-precision FPU on these cores is FPv5 (Cortex-M7, M55), whose
 * VCVTA does exactly that; FPv4 (Cortex-M4) adds tq_nearest_s8's signed
 * float just below 0.5 and truncates. */
#if __ARM_FP & 8
#define TQ_SGD_ROUND(s) "vcvta.s32.f32 " s ", " s "\n\t"
#else
#define TQ_SGD_ROUND(s)                                                              \
    "and %[h], %[t], #0x80000000\n\t"                                                \
    "orn %[h], %[h], #0xC1000000\n\t"                                                \
    "vmov s4, %[h]\n\t"                                                              \
    "vadd.f32 " s ", " s ", s4\n\t"                                                  \
    "vcvt.s32.f32 " s ", " s "\n\t"
#endif
/* One weight: s (its gradient) <- -(lr * g) OP step, v = w + s; when |v|
 * >= 127.5 or v is NaN (v's bits, doubled, not below lim) it goes to label
 * SAT (TQ_SGD_SAT), else the rounded v is stored; RES follows. */
#define TQ_SGD_WEIGHT(OP, s, SAT, RES)                                               \
    "ldrsb %[t], [%[w]]\n\t"                                                         \
    "vnmul.f32 " s ", " s ", %[lr]\n\t"                                              \
    "vmov s4, %[t]\n\t"                                                              \
    "vcvt.f32.s32 s4, s4\n\t"                                                        \
    OP " " s ", " s ", %[st]\n\t"                                                    \
    "vadd.f32 " s ", s4, " s "\n\t"                                                  \
    "vmov %[t], " s "\n\t"                                                           \
    "cmp %[lim], %[t], lsl #1\n\t"                                                   \
    "bls " SAT "f\n\t"                                                               \
    TQ_SGD_ROUND(s)                                                                  \
    "vmov %[t], " s "\n\t"                                                           \
    "strb %[t], [%[w]], #1\n\t"                                                      \
    RES ":\n\t"
/* Out of the loop: a NaN v leaves through label 9 with the weight
 * unchanged; a saturating one stores 127 with v's sign and resumes at
 * RES. */
#define TQ_SGD_SAT(s, SAT, RES)                                                      \
    SAT ":\n\t"                                                                      \
    "vcmp.f32 " s ", " s "\n\t"                                                      \
    "vmrs APSR_nzcv, fpscr\n\t"                                                      \
    "bvs 9f\n\t"                                                                     \
    "movs %[h], #127\n\t"                                                            \
    "cmp %[t], #0\n\t"                                                               \
    "it lt\n\t"                                                                      \
    "rsblt %[h], %[h], #0\n\t"                                                       \
    "strb %[h], [%[w]], #1\n\t"                                                      \
    "b " RES "b\n\t"
/* Four groups' loop of tq_sgd_nearest4_fpu, OP the QAS divide or the
 * plain multiply. */
#define TQ_SGD_LOOP4(OP)                                                             \
    __asm__ volatile("1:\n\t"                                                        \
                     "vldmia %[g]!, {s0-s3}\n\t"                                     \
                     TQ_SGD_WEIGHT(OP, "s0", "20", "30")                             \
                     TQ_SGD_WEIGHT(OP, "s1", "21", "31")                             \
                     TQ_SGD_WEIGHT(OP, "s2", "22", "32")                             \
                     TQ_SGD_WEIGHT(OP, "s3", "23", "33")                             \
                     "subs %[n], %[n], #1\n\t"                                       \
                     "bne 1b\n\t"                                                    \
                     "b 9f\n\t"                                                      \
                     TQ_SGD_SAT("s0", "20", "30")                                    \
                     TQ_SGD_SAT("s1", "21", "31")                                    \
                     TQ_SGD_SAT("s2", "22", "32")                                    \
                     TQ_SGD_SAT("s3", "23", "33")                                    \
                     "9:"                                                            \
                     : [w] "+r"(w), [g] "+r"(g), [n] "+r"(n4), [t] "=&r"(t), [h] "=&r"(h) \
                     : [lr] "t"(lr), [st] "t"(step), [lim] "r"(TQ_S8_HALF_RANGE_X2)     \
                     : "s0", "s1", "s2", "s3", "s4", "cc", "memory")

/* tq_sgd_nearest's arithmetic on n4 groups of 4 consecutive weights w
 * (gradients g) with the scalar FPU: 12 or 16 instructions a weight, where
 * compiled C spends 20; a saturating weight takes 9 more. Stops at the
 * first weight whose sum is NaN (that weight stays); returns the weights
 * stored before it. */
static int32_t tq_sgd_nearest4_fpu(float lr, int qas, float step, int8_t *w, const float *g,
                                   int32_t n4)
{
    int8_t *const w0 = w;
    uint32_t t, h = 0u;
    if (qas) {
        TQ_SGD_LOOP4("vdiv.f32");
    } else {
        TQ_SGD_LOOP4("vmul.f32");
    }
    (void)h;
    return (int32_t)(w - w0);
}
#undef TQ_SGD_LOOP4
#undef TQ_SGD_SAT
#undef TQ_SGD_WEIGHT
#undef TQ_SGD_ROUND
#endif

/* Round-to-nearest update without momentum (what the training plans run):
 * the same arithmetic as tq_sgd_channel's general loop, with every option in
 * a local so that the int8 stores (which may alias anything) force no
 * reloads. With Helium floating point, consecutive weights (no sel) go four
 * at a time through tq_sgd_nearest4_helium first. */
static void tq_sgd_nearest(float lr, int qas, float w_scale, int8_t *w, int32_t n_taps,
                           int32_t tap_stride, int32_t n_sel, const int32_t *sel,
                           const float *grad)
{
    int32_t t, j;
    for (t = 0; t < n_taps; t++, grad += n_sel) {
        int8_t *w_t = w + (size_t)t * tap_stride;
        j = 0;
#if TQ_USE_MVE_F32
        if (sel == NULL && n_sel >= 4) {
            j = 4 * tq_sgd_nearest4_helium(-lr, qas, w_scale, w_t, grad, n_sel / 4);
            (void)tq_fpscr_flushed(); /* clears a flush's flags: the scalar loop takes over */
        }
#endif
#ifdef TQ_SGD_FPU_ASM
        while (sel == NULL && n_sel - j >= 4) {
            const int32_t n4 = (n_sel - j) >> 2;
            const int32_t done = tq_sgd_nearest4_fpu(lr, qas, w_scale, w_t + j, grad + j, n4);
            /* it stops before a NaN sum, whose weight stays */
            j += done < 4 * n4 ? done + 1 : done;
        }
#endif
        for (; j < n_sel; j++) {
            int8_t *wp = w_t + (sel != NULL ? sel[j] : j);
            /* a NaN delta (the only way to a NaN sum) leaves the weight */
            *wp = tq_nearest_s8((float)*wp + tq_delta(lr, qas, grad[j], w_scale), *wp);
        }
    }
}

void tq_sgd_channel(const tq_sgd_params *opt, const tq_sgd_state *state, float input_scale,
                    float w_scale, int8_t *w, int32_t n_taps, int32_t tap_stride,
                    int32_t n_sel, const int32_t *sel, const float *grad, int32_t elem0,
                    int32_t *bias, float grad_b, int32_t bias_index)
{
    const float mu = opt->momentum, lr = opt->lr;
    const int qas = opt->qas, rounding = opt->rounding;
    const int stochastic = rounding == TQ_ROUND_STOCHASTIC;
    float *const w_momentum = state->w_momentum, *const w_master = state->w_master;
    uint32_t *const rng = state->rng;
    int32_t t, j;
    if (mu == 0.0f && rounding == TQ_ROUND_NEAREST) {
        tq_sgd_nearest(lr, qas, w_scale, w, n_taps, tap_stride, n_sel, sel, grad);
    }
    for (t = 0; t < n_taps && (mu != 0.0f || rounding != TQ_ROUND_NEAREST); t++) {
        int8_t *w_t = w + (size_t)t * tap_stride;
        for (j = 0; j < n_sel; j++) {
            const int32_t e = elem0 + t * n_sel + j;
            int8_t *wp = w_t + (sel != NULL ? sel[j] : j);
            float g = grad[t * n_sel + j];
            float d, u = 0.0f;
            if (mu > 0.0f) {
                g = mu * w_momentum[e] + g;
                w_momentum[e] = g;
            }
            d = tq_delta(lr, qas, g, w_scale);
            if (stochastic) {
                u = tq_xorshift32_uniform(rng); /* drawn even for a NaN delta */
            }
            if (d != d) {
                continue;
            }
            if (rounding == TQ_ROUND_MASTER) {
                float m = w_master[e] + d;
                m = m > 127.0f ? 127.0f : (m < -127.0f ? -127.0f : m);
                w_master[e] = m;
                *wp = tq_nearest_s8(m, *wp);
            } else {
                const float v = (float)*wp + d;
                *wp = stochastic ? tq_floor_s8(v + u) : tq_nearest_s8(v, *wp);
            }
        }
    }
    if (bias != NULL) {
        float g = grad_b, d, u = 0.0f;
        if (mu > 0.0f) {
            g = mu * state->b_momentum[bias_index] + g;
            state->b_momentum[bias_index] = g;
        }
        d = tq_delta(lr, qas, g, input_scale * w_scale);
        if (stochastic) {
            u = tq_xorshift32_uniform(rng);
        }
        if (d == d) {
            *bias = tq_bias_add(*bias, stochastic ? d + u : d, stochastic);
        }
    }
}

tq_status tq_sgd_update_conv(const tq_sgd_params *opt, const tq_sgd_state *state,
                             float input_scale, const float *w_scale,
                             const tq_dims *filter_dims, int8_t *filter, int32_t *bias,
                             int32_t n_sel, const int32_t *sel,
                             const float *grad_w, const float *grad_b)
{
    int32_t c, taps, row;
    tq_status st;
    if (w_scale == NULL || filter_dims == NULL || filter == NULL || grad_w == NULL ||
        (bias != NULL && grad_b == NULL)) {
        return TQ_ERR_NULL;
    }
    if (filter_dims->n < 1 || filter_dims->h < 1 || filter_dims->w < 1 || filter_dims->c < 1 ||
        (int64_t)filter_dims->n * filter_dims->h * filter_dims->w * filter_dims->c > INT32_MAX) {
        return TQ_ERR_SHAPE;
    }
    st = tq_check_selection(n_sel, sel, filter_dims->c);
    if (st == TQ_OK) {
        st = tq_sgd_check(opt, state, 1, bias != NULL);
    }
    if (st != TQ_OK) {
        return st;
    }
    if (!tq_scales_valid(w_scale, filter_dims->n) ||
        (bias != NULL && !tq_scale_valid(input_scale))) {
        return TQ_ERR_PARAM;
    }
    taps = filter_dims->h * filter_dims->w;
    row = taps * n_sel;
    for (c = 0; c < filter_dims->n; c++) {
        tq_sgd_channel(opt, state, input_scale, w_scale[c],
                       filter + (size_t)c * taps * filter_dims->c, taps, filter_dims->c, n_sel,
                       sel, grad_w + (size_t)c * row, c * row, bias != NULL ? bias + c : NULL,
                       bias != NULL ? grad_b[c] : 0.0f, c);
    }
    return TQ_OK;
}

tq_status tq_sgd_update_depthwise(const tq_sgd_params *opt, const tq_sgd_state *state,
                                  float input_scale, const float *w_scale,
                                  const tq_dims *filter_dims, int8_t *filter, int32_t *bias,
                                  int32_t in_channels, int32_t n_sel, const int32_t *sel,
                                  const float *grad_w, const float *grad_b)
{
    int32_t j, m, mult, taps, out_c;
    tq_status st;
    if (w_scale == NULL || filter_dims == NULL || filter == NULL || grad_w == NULL ||
        (bias != NULL && grad_b == NULL)) {
        return TQ_ERR_NULL;
    }
    if (filter_dims->n != 1 || filter_dims->h < 1 || filter_dims->w < 1 || filter_dims->c < 1 ||
        in_channels < 1 || filter_dims->c % in_channels != 0 ||
        (int64_t)filter_dims->h * filter_dims->w * filter_dims->c > INT32_MAX) {
        return TQ_ERR_SHAPE;
    }
    st = tq_check_selection(n_sel, sel, in_channels);
    if (st == TQ_OK) {
        st = tq_sgd_check(opt, state, 1, bias != NULL);
    }
    if (st != TQ_OK) {
        return st;
    }
    out_c = filter_dims->c;
    if (!tq_scales_valid(w_scale, out_c) || (bias != NULL && !tq_scale_valid(input_scale))) {
        return TQ_ERR_PARAM;
    }
    mult = out_c / in_channels;
    taps = filter_dims->h * filter_dims->w;
    for (j = 0; j < n_sel; j++) {
        const int32_t ic = sel != NULL ? sel[j] : j;
        for (m = 0; m < mult; m++) {
            const int32_t c = ic * mult + m, t = j * mult + m;
            tq_sgd_channel(opt, state, input_scale, w_scale[c], filter + c, taps, out_c, 1,
                           NULL, grad_w + (size_t)t * taps, t * taps,
                           bias != NULL ? bias + c : NULL, bias != NULL ? grad_b[t] : 0.0f, t);
        }
    }
    return TQ_OK;
}

tq_status tq_sgd_update_bias(const tq_sgd_params *opt, const tq_sgd_state *state,
                             float input_scale, const float *w_scale, int32_t channels,
                             int32_t *bias, const float *grad_b)
{
    int32_t c;
    tq_status st;
    if (w_scale == NULL || bias == NULL || grad_b == NULL) {
        return TQ_ERR_NULL;
    }
    if (channels < 1) {
        return TQ_ERR_SHAPE;
    }
    st = tq_sgd_check(opt, state, 0, 1);
    if (st != TQ_OK) {
        return st;
    }
    if (!tq_scales_valid(w_scale, channels) || !tq_scale_valid(input_scale)) {
        return TQ_ERR_PARAM;
    }
    for (c = 0; c < channels; c++) {
        tq_sgd_channel(opt, state, input_scale, w_scale[c], NULL, 0, 0, 0, NULL, NULL, 0,
                       bias + c, grad_b[c], c);
    }
    return TQ_OK;
}
