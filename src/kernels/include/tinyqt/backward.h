/*
 * tinyqt: backward kernels, loss / classifier head and the QAS optimizer.
 *
 * ---------------------------------------------------------------------------
 * Real-valued semantics (DESIGN.md, "Numerics contract / Backward")
 * ---------------------------------------------------------------------------
 * The int8 forward of a conv / depthwise / FC layer stands for the real layer
 *     x_r = s_x (x - z_x),  W_r[c] = s_w[c] W_int[c],  b_r[c] = s_x s_w[c] b_int[c],
 *     y_r = s_y (y - z_y) ~= sum x_r W_r + b_r        (then the fused clamp).
 * Every gradient here is fp32 and taken w.r.t. these REAL values:
 * grad_out = dL/dy_r, grad_in = dL/dx_r, grad_w = dL/dW_r, grad_b = dL/db_r.
 * Input pixels in the padding are the zero point, i.e. x_r = 0: they neither
 * receive nor contribute gradient.
 *
 * Clamp mask (straight-through estimator). The forward clamp passes the
 * gradient only where the int8 output is STRICTLY inside (act_min, act_max):
 * y == act_min or y == act_max counts as clamped, including act_min = -128 /
 * act_max = 127 (int8 saturation is a clamp too). The mask is packed 1 bit per
 * element of the forward output in its flat NHWC order: element i is bit
 * (i & 7) of byte mask[i >> 3]; 1 = gradient passes. Unused bits of the last
 * byte are written 0. Every backward kernel takes an optional mask (NULL = all
 * pass); a masked-out element contributes NOTHING (it is skipped, not added as
 * zero), which fixes the sign of zero results too.
 *
 * Layouts (as the forward, types.h): activations and their gradients NHWC;
 * conv filters OHWI [C_out, KH, KW, C_in]; depthwise filters [1, KH, KW, C_out]
 * with C_out = C_in * mult (output channel c reads input channel c / mult);
 * FC weights [out, in]. w_scale is the fp32 per-output-channel weight scale
 * s_w[c] (a per-tensor FC passes the same value out times).
 *
 * Sparse update: a weight gradient is computed for a subset of input channels.
 * The caller saves only those channels of the forward input, compacted:
 * input [N, H, W, n_sel] int8 with the forward input's scale / zero point;
 * sel[j] is the full-tensor index of compact channel j. sel must be strictly
 * increasing and < C_in; sel == NULL means sel[j] = j (the paper's "first
 * ceil(ratio * C_in) channels"). Dense / 1x1 / FC weight gradients are
 * compact [C_out, KH, KW, n_sel]. Depthwise selects INPUT channels: the trained
 * output channels are sel[j] * mult + m (j ascending, then m), and its weight
 * gradient is channel-major [n_sel * mult, KH, KW] (one contiguous row of KH*KW
 * taps per trained output channel), its bias gradient [n_sel * mult].
 *
 * ---------------------------------------------------------------------------
 * Determinism (host == Cortex-M, bit for bit)
 * ---------------------------------------------------------------------------
 * Plain fp32 (+ - * /, int<->float conversions), no double, no libm (tq_expf /
 * tq_logf are our own), compiled with -ffp-contract=off and no fast-math. Each
 * reduction has one documented order that every code path keeps:
 *  - grad_in (conv, 1x1): element (n, iy, ix, ic) starts at +0.0f and adds
 *    (grad_out[n,oy,ox,oc] * s_w[oc]) * (float)W[oc,ky,kx,ic] over the windows
 *    covering it, in lexicographic order of (oy, ox, oc, ky, kx).
 *  - grad_in (depthwise): (grad_out[..,c] * s_w[c]) * (float)W[ky,kx,c] added in
 *    order (oy, ox, ky, kx, m) with c = ic * mult + m.
 *  - grad_in (FC): row b, feature i: sum over o ascending of
 *    (grad_out[b,o] * s_w[o]) * (float)W[o,i], starting at +0.0f.
 *  - grad_w: acc starts at +0.0f and adds grad_out[n,oy,ox,oc] *
 *    (float)(x[n,iy,ix,j] - z_x) in order (n, oy, ox); then grad_w = acc * s_x.
 *  - grad_b: +0.0f plus grad_out[n,oy,ox,c] in order (n, oy, ox).
 *  - avgpool: grad_out / (float)count added in order (oy, ox); mean: one
 *    division grad_out / (float)(H*W); add: a masked copy.
 *
 * ---------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------
 * Every function validates all arguments first and returns a negative
 * tq_status without writing any output (or touching weights, optimizer state
 * or the PRNG) on error: TQ_ERR_NULL (required pointer NULL), TQ_ERR_SHAPE
 * (inconsistent extents, bad selection list), TQ_ERR_PARAM (stride, padding,
 * offsets, scales <= 0 or not finite, optimizer options), TQ_ERR_SCRATCH
 * (scratch smaller than its query or not 4-byte aligned). Outputs must not
 * alias inputs unless stated. No function allocates memory.
 */
#ifndef TINYQT_BACKWARD_H
#define TINYQT_BACKWARD_H

#include "tinyqt/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===================== clamp mask ======================================== */

/* mask[TQ_MASK_BYTES(count)] <- bit i = (act_min < y[i] < act_max).
 * The forward kernels write the same bits themselves when given
 * tq_conv_params.clamp_mask (tq_add_params.clamp_mask); this is the pass
 * for an output that already exists.
 * y: forward int8 output (count >= 1 elements). -128 <= act_min <= act_max
 * <= 127. Errors: NULL, SHAPE (count < 1), PARAM (clamp range). */
tq_status tq_clamp_mask_s8(const int8_t *y, int32_t count, int32_t act_min, int32_t act_max,
                           uint8_t *mask);

/* ===================== optimizer (QAS SGD) =============================== */

/* Sub-LSB rounding of an update on the int8 grid. */
typedef enum {
    TQ_ROUND_NEAREST = 0,    /* round half away from zero of the new value */
    TQ_ROUND_STOCHASTIC = 1, /* floor(new value + u), u in [0,1) from xorshift32 */
    TQ_ROUND_MASTER = 2      /* fp32 master copy, int8 = round-nearest(master) */
} tq_rounding;

/* SGD options; plain values, no globals.
 *  lr        learning rate (finite; the step is -lr * gradient)
 *  momentum  in [0, 1); 0 = no momentum. With momentum the buffer of each
 *            trained element is buf = momentum * buf + G (G = real gradient)
 *            and buf replaces G below (PyTorch SGD, no dampening).
 *  qas       1 = Quantization-Aware Scaling (paper Eq. 4, per channel c):
 *                dW_int = -(lr*G_W) / s_w[c],  db_int = -(lr*G_b) / (s_x*s_w[c])
 *            0 = the "no QAS" baseline, raw integer-domain gradients
 *                (chain rule dL/dW_int = s_w G_W, dL/db_int = s_x s_w G_b):
 *                dW_int = -(lr*G_W) * s_w[c], db_int = -(lr*G_b) * (s_x*s_w[c])
 *            (s_x*s_w[c] is one fp32 product, evaluated first).
 *  rounding  a tq_rounding. */
typedef struct {
    float lr;
    float momentum;
    int32_t qas;
    int32_t rounding;
} tq_sgd_params;

/* Caller-owned optimizer state; any field unused by the options may be NULL.
 *  rng         xorshift32 state (!= 0); required for TQ_ROUND_STOCHASTIC.
 *  w_momentum  fp32, one per trained weight, in the weight-gradient layout
 *              (compact [C_out, KH, KW, n_sel]; depthwise [n_sel*mult, KH, KW]);
 *              required when momentum > 0 (start at 0).
 *  b_momentum  fp32, one per trained bias; required when momentum > 0 and
 *              biases are updated.
 *  w_master    fp32 master copy of the trained weights in integer-grid units
 *              (W_int as float, same layout as w_momentum); required for
 *              TQ_ROUND_MASTER; the caller initialises it to (float)W_int. */
typedef struct {
    uint32_t *rng;
    float *w_momentum;
    float *b_momentum;
    float *w_master;
} tq_sgd_state;

/* The update of one trained weight with delta d (from the formulas above):
 *  NEAREST     v = (float)W + d;  W' = sat(round_half_away(v))
 *  STOCHASTIC  v = (float)W + d;  W' = sat(floor(v + u)), u = next uniform
 *  MASTER      m = clampf(master + d, -127.0f, 127.0f); master = m;
 *              W' = round_half_away(m)
 * sat() saturates to [-127, 127]: updated weights stay symmetric int8 as the
 * TFLite spec requires (-128 is never produced; an updated -128 becomes
 * -127). A NaN delta leaves the element (and its master) unchanged.
 * Biases (int32): the delta is rounded (NEAREST and MASTER: half away from
 * zero; STOCHASTIC: floor(d + u)) and added with int32 saturation, because a
 * large int32 bias is not exact in fp32; biases have no master copy.
 *
 * PRNG order (STOCHASTIC): one draw per updated element, whether or not its
 * rounding changes anything, in this order: for each trained output channel
 * (ascending; depthwise: j ascending then m), its weights in gradient-layout
 * order (ky, kx, j), then its bias (if biases are updated). The fused kernels
 * consume exactly the same sequence, so fused == gradient + update, bit for bit.
 * u = (float)(xorshift32() >> 8) * 2^-24, exactly representable, in [0, 1). */

/* Marsaglia xorshift32 (shifts 13, 17, 5): advances *state, returns it. */
uint32_t tq_xorshift32(uint32_t *state);
/* Next uniform in [0, 1) as above. */
float tq_xorshift32_uniform(uint32_t *state);

/* Updates the trained part of a dense / 1x1 conv or FC layer in place.
 * filter_dims [C_out, KH, KW, C_in] (an FC is [out, 1, 1, in]); filter int8;
 * bias int32 [C_out] or NULL (no bias update); w_scale [C_out] (> 0);
 * input_scale s_x (> 0, only used for biases); n_sel / sel as above;
 * grad_w compact [C_out, KH, KW, n_sel]; grad_b [C_out] (required iff bias). */
tq_status tq_sgd_update_conv(const tq_sgd_params *opt, const tq_sgd_state *state,
                             float input_scale, const float *w_scale,
                             const tq_dims *filter_dims, int8_t *filter, int32_t *bias,
                             int32_t n_sel, const int32_t *sel,
                             const float *grad_w, const float *grad_b);

/* Depthwise: filter_dims [1, KH, KW, C_out], C_out = in_channels * mult;
 * sel selects input channels; grad_w [n_sel*mult, KH, KW]; bias is the full
 * [C_out] (only trained channels change) or NULL; grad_b and b_momentum cover
 * the trained output channels only ([n_sel*mult], trained order). */
tq_status tq_sgd_update_depthwise(const tq_sgd_params *opt, const tq_sgd_state *state,
                                  float input_scale, const float *w_scale,
                                  const tq_dims *filter_dims, int8_t *filter, int32_t *bias,
                                  int32_t in_channels, int32_t n_sel, const int32_t *sel,
                                  const float *grad_w, const float *grad_b);

/* Bias-only update of channels [0, channels): bias int32, grad_b, w_scale
 * [channels]; uses state->rng / b_momentum (one draw per bias, ascending). */
tq_status tq_sgd_update_bias(const tq_sgd_params *opt, const tq_sgd_state *state,
                             float input_scale, const float *w_scale, int32_t channels,
                             int32_t *bias, const float *grad_b);

/* ===================== conv / 1x1 / depthwise backward ===================
 * params: stride, pad_top/left and dilation as the forward; input_offset
 * (-z_x) is used by the weight gradients; output_offset / act_min / act_max
 * are not used (the mask carries the clamp). Shapes must be exactly those the
 * forward accepted (every window overlaps the input). */

/* Input gradient. output_dims [N, OH, OW, C_out], grad_out fp32, mask or NULL;
 * filter_dims/filter as the forward; w_scale [C_out]; input_dims
 * [N, H, W, C_in]; grad_in fp32 [N, H, W, C_in] is fully overwritten. */
tq_status tq_conv_backward_input_f32(const tq_conv_params *params, const float *w_scale,
                                     const tq_dims *output_dims, const float *grad_out,
                                     const uint8_t *mask,
                                     const tq_dims *filter_dims, const int8_t *filter,
                                     const tq_dims *input_dims, float *grad_in);
tq_status tq_conv_1x1_backward_input_f32(const tq_conv_params *params, const float *w_scale,
                                         const tq_dims *output_dims, const float *grad_out,
                                         const uint8_t *mask,
                                         const tq_dims *filter_dims, const int8_t *filter,
                                         const tq_dims *input_dims, float *grad_in);
tq_status tq_depthwise_conv_backward_input_f32(const tq_conv_params *params,
                                               const float *w_scale,
                                               const tq_dims *output_dims,
                                               const float *grad_out, const uint8_t *mask,
                                               const tq_dims *filter_dims,
                                               const int8_t *filter,
                                               const tq_dims *input_dims, float *grad_in);

/* In-place variant for a stride-1 depthwise conv with multiplier 1, no
 * dilation and an output as large as the input (pad_top < KH, pad_left < KW,
 * bottom/right padding implied): grad [N, H, W, C] holds the output gradient
 * on entry and the input gradient on return, bit-identical to
 * tq_depthwise_conv_backward_input_f32. mask (over the output) or NULL.
 * At most TQ_DW_INPLACE_MAX_TAPS = KH * KW taps.
 * Scratch: (KH - pad_top) rows of W*4 fp32, from the size query (0 for
 * invalid arguments). Errors: NULL, SHAPE, PARAM (stride, dilation,
 * padding, taps, a scale <= 0 or not finite), SCRATCH. */
#define TQ_DW_INPLACE_MAX_TAPS 49
int32_t tq_depthwise_conv_backward_input_inplace_get_buffer_size(const tq_conv_params *params,
                                                                 const tq_dims *dims,
                                                                 const tq_dims *filter_dims);
tq_status tq_depthwise_conv_backward_input_inplace_f32(const tq_conv_params *params,
                                                       const float *w_scale, const tq_dims *dims,
                                                       float *grad, const uint8_t *mask,
                                                       const tq_dims *filter_dims,
                                                       const int8_t *filter, void *scratch,
                                                       int32_t scratch_size);

/* Weight (and bias) gradient of a dense / 1x1 conv for the saved channels.
 * input_dims [N, H, W, n_sel] = the forward input's spatial extent with only
 * the selected channels; input int8; input_scale s_x; grad_w_dims
 * [C_out, KH, KW, n_sel]; grad_w fp32 overwritten; grad_b [C_out] or NULL.
 * (The compact gradient does not depend on which channels were selected;
 * pass the selection to tq_sgd_update_conv.) No scratch. */
tq_status tq_conv_backward_weight_f32(const tq_conv_params *params, float input_scale,
                                      const tq_dims *input_dims, const int8_t *input,
                                      const tq_dims *output_dims, const float *grad_out,
                                      const uint8_t *mask,
                                      const tq_dims *grad_w_dims, float *grad_w,
                                      float *grad_b);
tq_status tq_conv_1x1_backward_weight_f32(const tq_conv_params *params, float input_scale,
                                          const tq_dims *input_dims, const int8_t *input,
                                          const tq_dims *output_dims, const float *grad_out,
                                          const uint8_t *mask,
                                          const tq_dims *grad_w_dims, float *grad_w,
                                          float *grad_b);

/* Depthwise weight gradient: input_dims [N, H, W, n_sel] (selected input
 * channels, compacted), in_channels = full C_in, sel as above; filter_dims the
 * full forward filter [1, KH, KW, C_out]; grad_out is the full [N, OH, OW,
 * C_out]; grad_w [n_sel*mult, KH, KW]; grad_b [n_sel*mult] or NULL. */
tq_status tq_depthwise_conv_backward_weight_f32(const tq_conv_params *params,
                                                float input_scale,
                                                const tq_dims *input_dims,
                                                const int8_t *input,
                                                int32_t in_channels, const int32_t *sel,
                                                const tq_dims *output_dims,
                                                const float *grad_out, const uint8_t *mask,
                                                const tq_dims *filter_dims,
                                                float *grad_w, float *grad_b);

/* Fused weight gradient + update (the paper's in-place update): for each
 * output channel its gradient row is computed into scratch (KH*KW*n_sel
 * fp32; up to four such rows at once) and immediately applied to filter (only the selected
 * input channels) and to bias[c] (if bias != NULL) with the optimizer; no
 * weight-gradient buffer exists. The result (weights, biases, optimizer
 * state, PRNG state) is bit-identical to the gradient kernel followed by
 * tq_sgd_update_conv / _depthwise. Call the input-gradient kernel FIRST: it
 * needs the weights before the update.
 * filter_dims/filter: the full forward filter (updated in place);
 * w_scale [C_out]; depthwise: bias [C_out] full, only trained channels change
 * (b_momentum still indexed by trained channel, as tq_sgd_update_depthwise). */
int32_t tq_conv_backward_weight_update_get_buffer_size(const tq_dims *filter_dims,
                                                       int32_t n_sel);
tq_status tq_conv_backward_weight_update(const tq_conv_params *params, float input_scale,
                                         const float *w_scale,
                                         const tq_dims *input_dims, const int8_t *input,
                                         const int32_t *sel,
                                         const tq_dims *output_dims, const float *grad_out,
                                         const uint8_t *mask,
                                         const tq_dims *filter_dims, int8_t *filter,
                                         int32_t *bias,
                                         const tq_sgd_params *opt, const tq_sgd_state *state,
                                         void *scratch, int32_t scratch_size);
tq_status tq_conv_1x1_backward_weight_update(const tq_conv_params *params, float input_scale,
                                             const float *w_scale,
                                             const tq_dims *input_dims, const int8_t *input,
                                             const int32_t *sel,
                                             const tq_dims *output_dims,
                                             const float *grad_out, const uint8_t *mask,
                                             const tq_dims *filter_dims, int8_t *filter,
                                             int32_t *bias,
                                             const tq_sgd_params *opt,
                                             const tq_sgd_state *state,
                                             void *scratch, int32_t scratch_size);
/* The conv and 1x1 kernels compute up to four channels' rows at once: their
 * scratch is min(C_out, 4) * KH*KW*n_sel fp32 (the 1x1 query gives the same). */
int32_t tq_conv_1x1_backward_weight_update_get_buffer_size(const tq_dims *filter_dims,
                                                           int32_t n_sel);
int32_t tq_depthwise_conv_backward_weight_update_get_buffer_size(const tq_dims *filter_dims);
tq_status tq_depthwise_conv_backward_weight_update(const tq_conv_params *params,
                                                   float input_scale, const float *w_scale,
                                                   const tq_dims *input_dims,
                                                   const int8_t *input,
                                                   int32_t in_channels, const int32_t *sel,
                                                   const tq_dims *output_dims,
                                                   const float *grad_out,
                                                   const uint8_t *mask,
                                                   const tq_dims *filter_dims,
                                                   int8_t *filter, int32_t *bias,
                                                   const tq_sgd_params *opt,
                                                   const tq_sgd_state *state,
                                                   void *scratch, int32_t scratch_size);

/* Bias gradient alone (bias-only layers): grad_b[c] = sum over (n, oy, ox) of
 * the masked grad_out; dims [N, OH, OW, C]. */
tq_status tq_bias_backward_f32(const tq_dims *output_dims, const float *grad_out,
                               const uint8_t *mask, float *grad_b);

/* ===================== inverted-bottleneck block backward ================
 * The backward of a block  pw1 (1x1, stride 1) -> depthwise (multiplier 1)
 * -> pw2 (1x1, stride 1), streamed over tiles of `tile` expanded channels so
 * that neither expanded gradient ([OH, OW, C_mid] after the depthwise,
 * [H, W, C_mid] before it) ever exists whole: for each tile, ascending,
 *   1. G_d = pw2's input gradient for the tile's channels (from grad_out,
 *      pw2's mask and weights);
 *   2. the depthwise bias update of those channels (dw.bias != NULL);
 *   3. G_e = the depthwise input gradient of those channels;
 *   4. pw1's fused weight update of those output channels (pw1_weights !=
 *      NULL; with its bias when pw1.bias != NULL), or its bias update alone;
 *   5. grad_in += pw1's input-gradient terms of those channels (grad_in !=
 *      NULL), with pw1's weights before the update.
 * Every gradient element is the same sum in the same order as the unfused
 * kernels compute it (the 1x1 input gradient's sum over output channels
 * continues from tile to tile), so the results equal the unfused sequence
 * pw2 input gradient, depthwise bias update, depthwise input gradient, pw1
 * input gradient, pw1 fused update bit for bit. The one difference is the
 * stochastic-rounding PRNG order: tile by tile, the depthwise biases of the
 * tile (ascending), then pw1's channels of the tile (each: weights, then
 * bias), as the per-layer kernels would draw if called on each tile.
 *
 * Layer fields (pw2's bias and state are not used: pw2's own update is a
 * separate call; the depthwise weights are frozen):
 *  params       stride / padding / dilation as the forward; input_offset
 *               (-z_x) of pw1 is used by its weight gradient
 *  filter_dims  filter   the forward filter (Flash): pw1 [C_mid, 1, 1, C_in],
 *               dw [1, KH, KW, C_mid], pw2 [C_out, 1, 1, C_mid]
 *  w_scale      [C_out of the layer], > 0
 *  input_scale  s_x of the layer's input (QAS / bias scale; > 0)
 *  mask         clamp mask over the layer's output, or NULL (all pass)
 *  bias         trained int32 bias [C_out of the layer], updated; NULL = frozen
 *  state        optimizer state of the layer's trained tensors (rng,
 *               momentum by output channel, master copy in the compact
 *               weight layout); NULL when nothing of the layer trains
 * Block fields:
 *  pw1_weights  pw1's trained weights, the first pw1_n_sel input channels
 *               of each row, [C_mid, 1, 1, pw1_n_sel] (the whole filter when
 *               pw1_n_sel == C_in), updated in place; NULL = pw1 frozen. The
 *               input gradient reads them for channels < pw1_n_sel and
 *               pw1.filter for the rest.
 *  pw1_saved    pw1's input, its first pw1_n_sel channels, [1, H, W, n_sel]
 *  input_dims   block input [1, H, W, C_in]; mid_dims [1, H, W, C_mid];
 *               output_dims pw2's output [1, OH, OW, C_out] (the depthwise
 *               output is [1, OH, OW, C_mid])
 *  tile         expanded channels per tile, >= 1
 *  pw1_x_f32    nonzero: pw1's weight gradient reads pw1_saved converted to
 *               fp32 once for all tiles (H x W x pw1_n_sel floats more
 *               scratch, about a quarter fewer instructions in it; the same
 *               bits); 0: each tile converts as it goes. Ignored when pw1
 *               is frozen.
 * grad_out: pw2's output gradient [1, OH, OW, C_out]; grad_in [1, H, W, C_in]
 * is overwritten, or NULL when not needed. Scratch: the size query (0 for
 * invalid arguments). Errors (all checked before anything is written):
 * NULL, SHAPE, PARAM (geometry, scales, offsets, optimizer options), SCRATCH. */
typedef struct {
    tq_conv_params params;
    tq_dims filter_dims;
    const int8_t *filter;
    const float *w_scale;
    float input_scale;
    const uint8_t *mask;
    int32_t *bias;
    const tq_sgd_state *state;
} tq_block_bwd_layer;

typedef struct {
    tq_block_bwd_layer pw1, dw, pw2;
    int8_t *pw1_weights;
    int32_t pw1_n_sel;
    const int8_t *pw1_saved;
    tq_dims input_dims, mid_dims, output_dims;
    int32_t tile;
    int32_t pw1_x_f32;
} tq_bottleneck_backward_params;

int32_t tq_bottleneck_backward_get_buffer_size(const tq_bottleneck_backward_params *params);
tq_status tq_bottleneck_backward_f32(const tq_bottleneck_backward_params *params,
                                     const tq_sgd_params *opt, const float *grad_out,
                                     float *grad_in, void *scratch, int32_t scratch_size);

/* ===================== fully connected backward ==========================
 * Shapes: input [batches, in_features] int8, weights [out_features,
 * in_features], grad_out [batches, out_features] fp32 (+ mask over it). */
tq_status tq_fc_backward_input_f32(int32_t batches, int32_t in_features, int32_t out_features,
                                   const float *w_scale, const float *grad_out,
                                   const uint8_t *mask, const int8_t *weights, float *grad_in);
/* input [batches, n_sel] (selected features, compacted); input_offset = -z_x
 * in [-127, 128]; grad_w [out_features, n_sel]; grad_b [out_features] or NULL. */
tq_status tq_fc_backward_weight_f32(int32_t input_offset, float input_scale, int32_t batches,
                                    int32_t n_sel, int32_t out_features,
                                    const int8_t *input, const float *grad_out,
                                    const uint8_t *mask, float *grad_w, float *grad_b);
/* Fused FC gradient + update; scratch n_sel fp32. weights [out, in] in place. */
int32_t tq_fc_backward_weight_update_get_buffer_size(int32_t n_sel);
tq_status tq_fc_backward_weight_update(int32_t input_offset, float input_scale,
                                       const float *w_scale, int32_t batches,
                                       int32_t in_features, int32_t out_features,
                                       int32_t n_sel, const int32_t *sel,
                                       const int8_t *input, const float *grad_out,
                                       const uint8_t *mask, int8_t *weights, int32_t *bias,
                                       const tq_sgd_params *opt, const tq_sgd_state *state,
                                       void *scratch, int32_t scratch_size);

/* ===================== pooling / add backward ============================ */

/* AVERAGE_POOL_2D: each input pixel in a window gets grad_out / count, count =
 * the in-bounds pixels of that window (as the forward divides). params:
 * stride, pad_top/left (as tq_avgpool_s8). grad_in [N, H, W, C] overwritten. */
tq_status tq_avgpool_backward_f32(const tq_conv_params *params, int32_t filter_h,
                                  int32_t filter_w, const tq_dims *output_dims,
                                  const float *grad_out, const uint8_t *mask,
                                  const tq_dims *input_dims, float *grad_in);

/* MEAN over H, W: grad_out [N, 1, 1, C]; grad_in[n,h,w,c] =
 * grad_out[n,c] / (float)(H*W) (0 where masked). */
tq_status tq_mean_backward_f32(const tq_dims *input_dims, const float *grad_out,
                               const uint8_t *mask, float *grad_in);

/* ADD (y_r = a_r + b_r): grad_a = grad_b = masked grad_out (size elements).
 * Either output may be NULL (not needed); either may alias grad_out. */
tq_status tq_add_backward_f32(int32_t size, const float *grad_out, const uint8_t *mask,
                              float *grad_a, float *grad_b);

/* ===================== loss and classifier head ========================== */

/* x_r = scale * (float)(x - zero_point), count elements. */
tq_status tq_dequantize_s8_f32(int32_t count, const int8_t *input, float scale,
                               int32_t zero_point, float *output);

/* fp32 linear: output[b,k] = (sum_d W[k,d] * input[b,d], d ascending from
 * +0.0f) + bias[k]. weights [out, in], bias [out] or NULL. */
tq_status tq_linear_f32(int32_t batches, int32_t in_features, int32_t out_features,
                        const float *input, const float *weights, const float *bias,
                        float *output);

/* Softmax cross-entropy, mean over the batch. Per row: m = max logit,
 * e_k = tq_expf(l_k - m), s = sum_k e_k (k ascending), p_k = e_k / s,
 * loss_b = tq_logf(s) - (l_y - m); *loss = (sum_b loss_b) / batches;
 * grad_logits[b,k] = (p_k - [k == y]) / batches. labels in [0, classes).
 * loss or grad_logits may be NULL (not wanted); not both. */
tq_status tq_softmax_xent_f32(int32_t batches, int32_t classes, const float *logits,
                              const int32_t *labels, float *loss, float *grad_logits);

/* int8 head: dequantizes int8 logits (scale, zero_point), then as above;
 * grad_logits is w.r.t. the real logits, ready for tq_fc_backward_* with the
 * head's clamp mask. Each logit is dequantized on the fly as
 * scale * (float)(x - zero_point) (no row buffer). */
tq_status tq_softmax_xent_s8(int32_t batches, int32_t classes, const int8_t *logits,
                             float scale, int32_t zero_point, const int32_t *labels,
                             float *loss, float *grad_logits);

/* Backward + SGD update of the fp32 head (in place). First, if grad_in !=
 * NULL, grad_in[b,d] = sum_k grad_out[b,k] * W[k,d] (k ascending) with the
 * weights BEFORE the update. Then G_W[k,d] = sum_b grad_out[b,k] * input[b,d],
 * G_b[k] = sum_b grad_out[b,k] (b ascending); with momentum (in [0,1), buffers
 * w_momentum [out, in], b_momentum [out] required when > 0) buf = momentum *
 * buf + G and G := buf; W -= lr * G, b -= lr * G_b. bias may be NULL. */
tq_status tq_linear_backward_update_f32(int32_t batches, int32_t in_features,
                                        int32_t out_features, const float *input,
                                        const float *grad_out, float *weights, float *bias,
                                        float lr, float momentum, float *w_momentum,
                                        float *b_momentum, float *grad_in);

/* ===================== fp32 math without libm (tq_mathf.c) =============== */

/* e^x in fp32 from + - * / and bit manipulation (Cody-Waite reduction and a
 * rational approximation); < 1 ulp from the correctly rounded value over the
 * normal range (measured by the test suite); +inf above 88.72, 0 below
 * -103.97, NaN for NaN. */
float tq_expf(float x);
/* ln x in fp32: < 1 ulp for x > 0 (subnormals included); -inf at 0, NaN
 * below 0 or for NaN, +inf at +inf. */
float tq_logf(float x);

#ifdef __cplusplus
}
#endif

#endif /* TINYQT_BACKWARD_H */
