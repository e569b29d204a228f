/*
 * tinyqt: shared types and status codes of the kernel library.
 *
 * Layouts: activations are int8 NHWC; conv filters are int8 OHWI
 * ([C_out, KH, KW, C_in]); depthwise filters are int8 [1, KH, KW, C_out]
 * (TFLite layout, C_out = C_in * depth_multiplier); biases are int32 with
 * scale s_x * s_w[c]. Every kernel validates its arguments and returns a
 * tq_status; on any error it writes nothing to its outputs.
 */
#ifndef TINYQT_TYPES_H
#define TINYQT_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One status enum shared by every kernel and the arena. */
typedef enum {
    TQ_OK = 0,
    TQ_ERR_NULL = -1,         /* a required pointer is NULL */
    TQ_ERR_SHAPE = -2,        /* shapes are inconsistent or out of range */
    TQ_ERR_PARAM = -3,        /* a parameter (stride, offset, clamp...) is out of range */
    TQ_ERR_SCRATCH = -4,      /* scratch buffer smaller than the size query says */
    TQ_ERR_NO_MEMORY = -5,    /* arena exhausted */
    TQ_ERR_UNSUPPORTED = -6   /* valid request this build cannot serve */
} tq_status;

/* A 4-D extent. Activations: N, H, W, C. Filters: O, KH, KW, I. */
typedef struct {
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} tq_dims;

/* Parameters of conv2d, depthwise conv and 1x1 conv.
 * Padding is explicit: pad_top / pad_left are the rows / columns of zero
 * points virtually added before the input; the bottom / right padding follows
 * from the output size. Input pixels outside the input count as the input
 * zero point (i.e. contribute 0 after the input offset). */
typedef struct {
    int32_t stride_h, stride_w;     /* >= 1 */
    int32_t pad_top, pad_left;      /* >= 0 */
    int32_t dilation_h, dilation_w; /* >= 1 */
    int32_t input_offset;           /* -x_zero_point, in [-127, 128] */
    int32_t output_offset;          /* y_zero_point, in [-128, 127] */
    int32_t act_min, act_max;       /* int8 clamp, -128 <= min <= max <= 127 */
    /* Forward kernels only (backward kernels ignore it): NULL, or
     * TQ_MASK_BYTES(output elements) bytes that a successful call fills with
     * the packed clamp mask of its output, bit i = (act_min < y[i] <
     * act_max) (the layout of backward.h). Zero-initializing the struct
     * (`= {0}`, designated initializers) leaves it NULL. */
    uint8_t *clamp_mask;
} tq_conv_params;

/* Bytes of a packed clamp mask for count elements. */
#define TQ_MASK_BYTES(count) (((count) + 7) / 8)

/* Per-output-channel requantization: y = clamp(offset + requant(acc)).
 * multiplier is a Q31 value in [2^30, 2^31) (or 0), shift in [-31, 30]
 * (positive = left), as TFLite's QuantizeMultiplier produces them. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
} tq_channel_quant;

#ifdef __cplusplus
}
#endif

#endif /* TINYQT_TYPES_H */
