/*
 * tinyqt: register-blocked fp32 backward of the 1x1 and the dense conv
 * (private header; the public entry points are in tinyqt/backward.h, their
 * argument checks in conv_backward.c).
 *
 * Every kernel computes each output element as the same sum, in the same
 * order, as documented in tinyqt/backward.h (terms added one by one from
 * +0.0f), so the 1x1 and the dense kernels agree bit for bit. A masked term
 * is a zero product: a sum that starts at +0.0f never becomes -0.0f, so
 * adding a zero leaves it unchanged, and leaving it out does too (the 1x1
 * input gradient drops the output channels masked at all four pixels of a
 * block).
 */
#ifndef TINYQT_CONV_BLOCKED_H
#define TINYQT_CONV_BLOCKED_H

#include "tinyqt/backward.h"
#include "tq_f32.h"

/* Output channels whose weight-gradient rows one call computes together. */
#define TQ_PW_ROWS 8

/* grad_in [N, H, W, in_c] <- gradient of a 1x1 conv (no padding, any
 * stride) w.r.t. its input, from grad_out [N, OH, OW, out_c], the clamp
 * mask (NULL = all pass), filter [out_c, 1, 1, in_c] and w_scale [out_c]:
 * grad_in[q, ic] = sum over oc of (grad_out[p, oc] * w_scale[oc]) * w[oc, ic]
 * for the output pixel p that reads input pixel q; 0 for pixels no output
 * reads. accumulate != 0: the sums start from the values in grad_in
 * instead of +0.0f (continuing a sum this function began over earlier
 * output channels, in order, so never -0.0f; nothing is cleared). Arguments
 * are checked by the caller. */
void tq_pw_backward_input_blocked(const tq_conv_params *p, const float *w_scale,
                                  const tq_dims *out_d, const float *grad_out,
                                  const uint8_t *mask, const int8_t *filter,
                                  const tq_dims *in_d, float *grad_in, int accumulate);

/* Channels per group of tq_pw_convert_inputs' layout: the width of the
 * weight-row loops that read it (Helium: 4 lanes; scalar FPU: 2 channels). */
#if TQ_USE_MVE_F32
#define TQ_XF_GROUP 4
#else
#define TQ_XF_GROUP 2
#endif

/* xf <- (float)(input[t, j] + off) for the pixels x n_sel int8 values of
 * input [pixels, n_sel], channel-group major: with w = min(TQ_XF_GROUP,
 * n_sel - j0) for the group starting at channel j0, pixel t's channel
 * j0 + i is at xf[j0 * pixels + t * w + i] (pixels * n_sel floats in all).
 * Exact: every value is an integer below 2^8. */
void tq_pw_convert_inputs(const int8_t *input, int32_t pixels, int32_t n_sel, int32_t off, float *xf);

/* Weight-gradient rows of output channels oc0 .. oc0 + n_oc - 1
 * (1 <= n_oc <= TQ_PW_ROWS) of a 1x1 conv (no padding, any stride):
 * rows[r * n_sel + j] = input_scale * sum over output pixels p of
 * g[p, oc0 + r] * (x[q(p), j] + input_offset), and grad_b[r] = sum of the
 * masked g[p, oc0 + r], where input is [N, H, W, n_sel] (the saved
 * channels, in_d->c = n_sel). The general tq_conv_weight_rows computes the
 * same bits; this one skips its per-tap bookkeeping (about 10% fewer
 * instructions on the 1x1 layers that dominate training). Arguments are
 * checked by the caller. xf: NULL, or (stride 1 only) the inputs already
 * in fp32 (tq_pw_convert_inputs of input, in_d's pixels), read instead of
 * input: the same bits in fewer instructions where many rows share them. */
void tq_pw_weight_rows(const tq_conv_params *p, float input_scale, const tq_dims *in_d,
                       const int8_t *input, const float *xf, const tq_dims *out_d,
                       const float *grad_out, const uint8_t *mask, int32_t oc0, int32_t n_oc,
                       float *rows, float *grad_b);

/* tq_conv_1x1_backward_weight_update with all input channels selected
 * that reads xf, tq_pw_convert_inputs of input (stride 1 only), for its
 * sums, or (xf NULL) input itself; input is checked either way.
 * TQ_ERR_PARAM for xf with another stride, else the public function's
 * status. */
tq_status tq_pw_weight_update_xf(const tq_conv_params *params, float input_scale,
                                 const float *w_scale, const tq_dims *input_dims,
                                 const int8_t *input, const float *xf, const tq_dims *output_dims,
                                 const float *grad_out, const uint8_t *mask,
                                 const tq_dims *filter_dims, int8_t *filter, int32_t *bias,
                                 const tq_sgd_params *opt, const tq_sgd_state *state,
                                 void *scratch, int32_t scratch_size);

/* Weight-gradient rows of output channels oc0 .. oc0 + n_oc - 1
 * (1 <= n_oc <= TQ_PW_ROWS) of a conv with a k_h x k_w window (stride,
 * padding, dilation from p; a 1x1 conv is k_h = k_w = 1):
 * rows[r * k_h*k_w*n_sel + (ky*k_w + kx)*n_sel + j] = input_scale * sum over
 * output pixels p (in order) of g[p, oc0 + r] * (x[q(p, ky, kx), j] +
 * input_offset) over the windows whose tap (ky, kx) is inside the input, and
 * grad_b[r] = sum of the masked g[p, oc0 + r], where input is [N, H, W,
 * n_sel] (the saved channels, in_d->c = n_sel). Arguments are checked by
 * the caller. */
void tq_conv_weight_rows(const tq_conv_params *p, float input_scale, const tq_dims *in_d,
                         const int8_t *input, const tq_dims *out_d, const float *grad_out,
                         const uint8_t *mask, int32_t k_h, int32_t k_w, int32_t oc0,
                         int32_t n_oc, float *rows, float *grad_b);

/* grad_in [N, H, W, C_in] <- input gradient of a dense conv (any window,
 * stride, padding, dilation): the documented order, (oy, ox, oc, ky, kx)
 * per element. Arguments are checked by the caller. */
void tq_conv_backward_input_blocked(const tq_conv_params *p, const float *w_scale,
                                    const tq_dims *out_d, const float *grad_out,
                                    const uint8_t *mask, const tq_dims *f_d,
                                    const int8_t *filter, const tq_dims *in_d, float *grad_in);

#endif /* TINYQT_PW_BACKWARD_H */
