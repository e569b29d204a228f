/* tinyqt: backward of the int8 fully connected layer: fp32 input gradient,
 * weight / bias gradient for a subset of input features, and the fused
 * gradient + QAS update. Reference C path; orders in tinyqt/backward.h. */
#include <string.h>

#include "tinyqt/backward.h"
#include "tq_check.h"
#include "tq_sgd.h"
#include "tq_f32.h" /* fp32 file: the MVE-F build check */

static int tq_fc_shape_ok(int32_t batches, int32_t in_features, int32_t out_features)
{
    return batches >= 1 && in_features >= 1 && out_features >= 1 &&
           (int64_t)batches * in_features <= INT32_MAX &&
           (int64_t)batches * out_features <= INT32_MAX &&
           (int64_t)in_features * out_features <= INT32_MAX;
}

tq_status tq_fc_backward_input_f32(int32_t batches, int32_t in_features, int32_t out_features,
                                   const float *w_scale, const float *grad_out,
                                   const uint8_t *mask, const int8_t *weights, float *grad_in)
{
    int32_t b, o, i;
    if (w_scale == NULL || grad_out == NULL || weights == NULL || grad_in == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_fc_shape_ok(batches, in_features, out_features)) {
        return TQ_ERR_SHAPE;
    }
    if (!tq_scales_valid(w_scale, out_features)) {
        return TQ_ERR_PARAM;
    }
    memset(grad_in, 0, (size_t)batches * in_features * sizeof(float));
    for (b = 0; b < batches; b++) {
        float *gi = grad_in + (size_t)b * in_features;
        for (o = 0; o < out_features; o++) {
            const int32_t idx = b * out_features + o;
            const int8_t *w = weights + (size_t)o * in_features;
            float gs;
            if (!tq_mask_pass(mask, idx)) {
                continue;
            }
            gs = grad_out[idx] * w_scale[o];
            for (i = 0; i < in_features; i++) {
                gi[i] += gs * (float)w[i];
            }
        }
    }
    return TQ_OK;
}

/* row[n_sel] <- s_x * sum_b g[b,o] * (x[b,j] - z_x); *grad_b <- sum_b g[b,o]. */
static void tq_fc_weight_row(int32_t input_offset, float input_scale, int32_t batches,
                             int32_t n_sel, int32_t out_features, const int8_t *input,
                             const float *grad_out, const uint8_t *mask, int32_t o, float *row,
                             float *grad_b)
{
    float gb = 0.0f;
    int32_t b, j;
    for (j = 0; j < n_sel; j++) {
        row[j] = 0.0f;
    }
    for (b = 0; b < batches; b++) {
        const int32_t idx = b * out_features + o;
        const int8_t *x = input + (size_t)b * n_sel;
        float g;
        if (!tq_mask_pass(mask, idx)) {
            continue;
        }
        g = grad_out[idx];
        gb += g;
        for (j = 0; j < n_sel; j++) {
            row[j] += g * (float)(x[j] + input_offset);
        }
    }
    for (j = 0; j < n_sel; j++) {
        row[j] *= input_scale;
    }
    *grad_b = gb;
}

static tq_status tq_fc_check_weight(int32_t input_offset, float input_scale, int32_t batches,
                                    int32_t n_sel, int32_t out_features, const int8_t *input,
                                    const float *grad_out)
{
    if (input == NULL || grad_out == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_fc_shape_ok(batches, n_sel, out_features)) {
        return TQ_ERR_SHAPE;
    }
    if (input_offset < -127 || input_offset > 128 || !tq_scale_valid(input_scale)) {
        return TQ_ERR_PARAM;
    }
    return TQ_OK;
}

tq_status tq_fc_backward_weight_f32(int32_t input_offset, float input_scale, int32_t batches,
                                    int32_t n_sel, int32_t out_features,
                                    const int8_t *input, const float *grad_out,
                                    const uint8_t *mask, float *grad_w, float *grad_b)
{
    int32_t o;
    tq_status st;
    if (grad_w == NULL) {
        return TQ_ERR_NULL;
    }
    st = tq_fc_check_weight(input_offset, input_scale, batches, n_sel, out_features, input,
                            grad_out);
    if (st != TQ_OK) {
        return st;
    }
    for (o = 0; o < out_features; o++) {
        float gb;
        tq_fc_weight_row(input_offset, input_scale, batches, n_sel, out_features, input,
                         grad_out, mask, o, grad_w + (size_t)o * n_sel, &gb);
        if (grad_b != NULL) {
            grad_b[o] = gb;
        }
    }
    return TQ_OK;
}

int32_t tq_fc_backward_weight_update_get_buffer_size(int32_t n_sel)
{
    return n_sel < 1 || n_sel > INT32_MAX / 4 ? 0 : n_sel * (int32_t)sizeof(float);
}

tq_status tq_fc_backward_weight_update(int32_t input_offset, float input_scale,
                                       const float *w_scale, int32_t batches,
                                       int32_t in_features, int32_t out_features,
                                       int32_t n_sel, const int32_t *sel,
                                       const int8_t *input, const float *grad_out,
                                       const uint8_t *mask, int8_t *weights, int32_t *bias,
                                       const tq_sgd_params *opt, const tq_sgd_state *state,
                                       void *scratch, int32_t scratch_size)
{
    int32_t o;
    tq_status st;
    if (w_scale == NULL || weights == NULL) {
        return TQ_ERR_NULL;
    }
    st = tq_fc_check_weight(input_offset, input_scale, batches, n_sel, out_features, input,
                            grad_out);
    if (st == TQ_OK && !tq_fc_shape_ok(batches, in_features, out_features)) {
        st = TQ_ERR_SHAPE;
    }
    if (st == TQ_OK) {
        st = tq_check_selection(n_sel, sel, in_features);
    }
    if (st == TQ_OK) {
        st = tq_sgd_check(opt, state, 1, bias != NULL);
    }
    if (st == TQ_OK) {
        st = tq_check_scratch(scratch, scratch_size,
                              tq_fc_backward_weight_update_get_buffer_size(n_sel));
    }
    if (st != TQ_OK) {
        return st;
    }
    if (!tq_scales_valid(w_scale, out_features)) {
        return TQ_ERR_PARAM;
    }
    for (o = 0; o < out_features; o++) {
        float gb;
        tq_fc_weight_row(input_offset, input_scale, batches, n_sel, out_features, input,
                         grad_out, mask, o, (float *)scratch, &gb);
        tq_sgd_channel(opt, state, input_scale, w_scale[o], weights + (size_t)o * in_features,
                       1, 0, n_sel, sel, (const float *)scratch, o * n_sel,
                       bias != NULL ? bias + o : NULL, gb, o);
    }
    return TQ_OK;
}
