/*
 * tinyqt: channel-blocked fp32 input gradient of the depthwise conv
 * (private header; the checked entry point is in conv_backward.c).
 */
#ifndef TINYQT_DW_BACKWARD_H
#define TINYQT_DW_BACKWARD_H

#include "tinyqt/backward.h"

/* Most taps the blocked kernel takes (its converted filter block lives on
 * the stack); larger kernels use the plain loops. */
#define TQ_DW_BWD_MAX_TAPS 49

/* Trained channels whose weight-gradient rows one call computes together. */
#define TQ_DW_ROWS 4

/* grad_in [N, H, W, C] of a depthwise conv with multiplier 1 (any stride,
 * padding, dilation; at most TQ_DW_BWD_MAX_TAPS taps) from grad_out,
 * the clamp mask (NULL = all pass), filter [1, KH, KW, C] and w_scale [C]:
 * every element is the sum, from +0.0f, of (g * w_scale[c]) * w over the
 * output pixels whose window covers it, in row-major output order; a masked
 * term adds a zero. Bit-identical to the plain loops of conv_backward.c.
 * Arguments are checked by the caller. */
void tq_dw_backward_input_blocked(const tq_conv_params *p, const float *w_scale,
                                  const tq_dims *out_d, const float *grad_out,
                                  const uint8_t *mask, const tq_dims *f_d,
                                  const int8_t *filter, const tq_dims *in_d, float *grad_in);

/* tq_depthwise_conv_backward_input_f32 after its checks: the blocked
 * kernel where it takes the shape, the plain loops otherwise. For callers
 * that checked the arguments already (the block backward, per tile). */
void tq_dw_backward_input_run(const tq_conv_params *params, const float *w_scale,
                              const tq_dims *output_dims, const float *grad_out, const uint8_t *mask,
                              const tq_dims *filter_dims, const int8_t *filter, const tq_dims *input_dims,
                              float *grad_in);

/* Weight-gradient rows of the depthwise conv for up to four trained channels
 * at once (n <= TQ_DW_ROWS lanes): lane i reads saved input channel j[i] of input
 * [N, H, W, n_saved] and output channel c[i] of grad_out; its row
 * rows[i * KH*KW + t] = input_scale * sum over output pixels p, row-major,
 * of g[p, c[i]] * (x[q(p, t), j[i]] + input_offset), and grad_b[i] = sum of
 * the masked g[p, c[i]]. Sums as the plain loops of conv_backward.c (from
 * +0.0f; a masked term adds a zero). Arguments are checked by the caller. */
void tq_dw_weight_rows(const tq_conv_params *p, float input_scale, const tq_dims *in_d,
                       const int8_t *input, const int32_t *j, const int32_t *c, int32_t n,
                       const tq_dims *out_d, const float *grad_out, const uint8_t *mask,
                       int32_t kh, int32_t kw, float *rows, float *grad_b);

#endif /* TINYQT_DW_BACKWARD_H */
