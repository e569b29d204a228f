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

#endif /* TINYQT_DW_BACKWARD_H */
