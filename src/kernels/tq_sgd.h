/* tinyqt: optimizer building blocks shared by optimizer.c and the fused
 * backward kernels (private header; the public API is tinyqt/backward.h). */
#ifndef TINYQT_SGD_H
#define TINYQT_SGD_H

#include <string.h>

#include "tinyqt/backward.h"

/* Checks opt / state for an update of weights (has_weights) and/or biases
 * (has_bias): options in range, the buffers the options need non-NULL. */
tq_status tq_sgd_check(const tq_sgd_params *opt, const tq_sgd_state *state, int has_weights,
                       int has_bias);

/* 1 when every scale is finite and > 0. */
int tq_scales_valid(const float *scale, int32_t count);
int tq_scale_valid(float scale);

/* Checks a selection list: n_sel in [1, channels], sel NULL or strictly
 * increasing within [0, channels). */
tq_status tq_check_selection(int32_t n_sel, const int32_t *sel, int32_t channels);

/* Updates one trained output channel (no checks). Its weights are
 * w[t * tap_stride + (sel ? sel[j] : j)] for t < n_taps, j < n_sel, with
 * gradients grad[t * n_sel + j]; momentum / master of element (t, j) at
 * index elem0 + t * n_sel + j. Then, if bias != NULL, *bias with grad_b and
 * b_momentum[bias_index]. The order is the documented PRNG order. */
void tq_sgd_channel(const tq_sgd_params *opt, const tq_sgd_state *state, float input_scale,
                    float w_scale, int8_t *w, int32_t n_taps, int32_t tap_stride,
                    int32_t n_sel, const int32_t *sel, const float *grad, int32_t elem0,
                    int32_t *bias, float grad_b, int32_t bias_index);

/* v when keep is 1, +0.0f when keep is 0: an AND on v's bits, so a masked
 * term costs no branch and is +0.0f whatever v is (the kernels' masked
 * zero). */
static inline float tq_f32_keep(float v, uint32_t keep)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= 0u - keep;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* mask bit i (1 when mask == NULL). */
static inline int tq_mask_pass(const uint8_t *mask, int32_t i)
{
    return mask == NULL || ((mask[i >> 3] >> (i & 7)) & 1u) != 0;
}

/* Mask bits o .. o + n - 1 (1 <= n <= 8) as bits 0 .. n - 1 (all ones
 * without a mask); reads the byte after o's only when the bits reach into
 * it, so never past the mask. */
static inline uint32_t tq_mask_bits(const uint8_t *mask, int32_t o, int32_t n)
{
    uint32_t m;
    if (mask == NULL) {
        return 0xFFu;
    }
    m = (uint32_t)mask[o >> 3] >> (o & 7);
    if ((o & 7) + n > 8) {
        m |= (uint32_t)mask[(o >> 3) + 1] << (8 - (o & 7));
    }
    return m & ((1u << n) - 1u);
}

#endif /* TINYQT_SGD_H */
