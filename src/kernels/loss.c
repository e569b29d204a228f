/* tinyqt: fp32 classifier head (linear forward, backward + SGD update),
 * softmax cross-entropy with its gradient (fp32 or int8 logits), and
 * dequantization of int8 features. tq_expf / tq_logf, never libm. */
#include "tinyqt/backward.h"
#include "tq_mathf.h"
#include "tq_f32.h" /* fp32 file: the MVE-F build check */

tq_status tq_dequantize_s8_f32(int32_t count, const int8_t *input, float scale,
                               int32_t zero_point, float *output)
{
    int32_t i;
    if (input == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (count < 1) {
        return TQ_ERR_SHAPE;
    }
    if (!(scale > 0.0f && scale <= 3.4028234663852886e+38f) || zero_point < -128 ||
        zero_point > 127) {
        return TQ_ERR_PARAM;
    }
    for (i = 0; i < count; i++) {
        output[i] = scale * (float)(input[i] - zero_point);
    }
    return TQ_OK;
}

static int tq_linear_shape_ok(int32_t batches, int32_t in_features, int32_t out_features)
{
    return batches >= 1 && in_features >= 1 && out_features >= 1 &&
           (int64_t)batches * in_features <= INT32_MAX &&
           (int64_t)batches * out_features <= INT32_MAX &&
           (int64_t)in_features * out_features <= INT32_MAX;
}

tq_status tq_linear_f32(int32_t batches, int32_t in_features, int32_t out_features,
                        const float *input, const float *weights, const float *bias,
                        float *output)
{
    int32_t b, k, d;
    if (input == NULL || weights == NULL || output == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_linear_shape_ok(batches, in_features, out_features)) {
        return TQ_ERR_SHAPE;
    }
    for (b = 0; b < batches; b++) {
        const float *x = input + (size_t)b * in_features;
        for (k = 0; k < out_features; k++) {
            const float *w = weights + (size_t)k * in_features;
            float acc = 0.0f;
            for (d = 0; d < in_features; d++) {
                acc += w[d] * x[d];
            }
            output[(size_t)b * out_features + k] = bias != NULL ? acc + bias[k] : acc;
        }
    }
    return TQ_OK;
}

/* Logit k of a row: fp32 directly, or dequantized int8. */
static float tq_logit(const float *lf, const int8_t *li, float scale, int32_t zp, int32_t k)
{
    return lf != NULL ? lf[k] : scale * (float)(li[k] - zp);
}

static tq_status tq_xent(int32_t batches, int32_t classes, const float *lf, const int8_t *li,
                         float scale, int32_t zp, const int32_t *labels, float *loss,
                         float *grad_logits)
{
    const float nb = (float)batches;
    float total = 0.0f;
    int32_t b, k;
    if (labels == NULL || (loss == NULL && grad_logits == NULL)) {
        return TQ_ERR_NULL;
    }
    if (batches < 1 || classes < 1 || (int64_t)batches * classes > INT32_MAX) {
        return TQ_ERR_SHAPE;
    }
    for (b = 0; b < batches; b++) {
        if (labels[b] < 0 || labels[b] >= classes) {
            return TQ_ERR_PARAM;
        }
    }
    for (b = 0; b < batches; b++) {
        const float *lfb = lf != NULL ? lf + (size_t)b * classes : NULL;
        const int8_t *lib = li != NULL ? li + (size_t)b * classes : NULL;
        float m = tq_logit(lfb, lib, scale, zp, 0), s = 0.0f;
        for (k = 1; k < classes; k++) {
            const float v = tq_logit(lfb, lib, scale, zp, k);
            m = v > m ? v : m;
        }
        for (k = 0; k < classes; k++) {
            s += tq_expf(tq_logit(lfb, lib, scale, zp, k) - m);
        }
        total += tq_logf(s) - (tq_logit(lfb, lib, scale, zp, labels[b]) - m);
        if (grad_logits != NULL) {
            float *g = grad_logits + (size_t)b * classes;
            for (k = 0; k < classes; k++) {
                const float p = tq_expf(tq_logit(lfb, lib, scale, zp, k) - m) / s;
                g[k] = (k == labels[b] ? p - 1.0f : p) / nb;
            }
        }
    }
    if (loss != NULL) {
        *loss = total / nb;
    }
    return TQ_OK;
}

tq_status tq_softmax_xent_f32(int32_t batches, int32_t classes, const float *logits,
                              const int32_t *labels, float *loss, float *grad_logits)
{
    if (logits == NULL) {
        return TQ_ERR_NULL;
    }
    return tq_xent(batches, classes, logits, NULL, 0.0f, 0, labels, loss, grad_logits);
}

tq_status tq_softmax_xent_s8(int32_t batches, int32_t classes, const int8_t *logits,
                             float scale, int32_t zero_point, const int32_t *labels,
                             float *loss, float *grad_logits)
{
    if (logits == NULL) {
        return TQ_ERR_NULL;
    }
    if (!(scale > 0.0f && scale <= 3.4028234663852886e+38f) || zero_point < -128 ||
        zero_point > 127) {
        return TQ_ERR_PARAM;
    }
    return tq_xent(batches, classes, NULL, logits, scale, zero_point, labels, loss,
                   grad_logits);
}

tq_status tq_linear_backward_update_f32(int32_t batches, int32_t in_features,
                                        int32_t out_features, const float *input,
                                        const float *grad_out, float *weights, float *bias,
                                        float lr, float momentum, float *w_momentum,
                                        float *b_momentum, float *grad_in)
{
    int32_t b, k, d;
    if (input == NULL || grad_out == NULL || weights == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_linear_shape_ok(batches, in_features, out_features)) {
        return TQ_ERR_SHAPE;
    }
    if (!(lr - lr == 0.0f) || !(momentum >= 0.0f && momentum < 1.0f)) {
        return TQ_ERR_PARAM;
    }
    if (momentum > 0.0f && (w_momentum == NULL || (bias != NULL && b_momentum == NULL))) {
        return TQ_ERR_NULL;
    }
    if (grad_in != NULL) {
        for (b = 0; b < batches; b++) {
            for (d = 0; d < in_features; d++) {
                float acc = 0.0f;
                for (k = 0; k < out_features; k++) {
                    acc += grad_out[(size_t)b * out_features + k] *
                           weights[(size_t)k * in_features + d];
                }
                grad_in[(size_t)b * in_features + d] = acc;
            }
        }
    }
    for (k = 0; k < out_features; k++) {
        float *w = weights + (size_t)k * in_features;
        for (d = 0; d < in_features; d++) {
            float g = 0.0f;
            for (b = 0; b < batches; b++) {
                g += grad_out[(size_t)b * out_features + k] * input[(size_t)b * in_features + d];
            }
            if (momentum > 0.0f) {
                const size_t e = (size_t)k * in_features + d;
                g = momentum * w_momentum[e] + g;
                w_momentum[e] = g;
            }
            w[d] = w[d] - lr * g;
        }
        if (bias != NULL) {
            float g = 0.0f;
            for (b = 0; b < batches; b++) {
                g += grad_out[(size_t)b * out_features + k];
            }
            if (momentum > 0.0f) {
                g = momentum * b_momentum[k] + g;
                b_momentum[k] = g;
            }
            bias[k] = bias[k] - lr * g;
        }
    }
    return TQ_OK;
}
