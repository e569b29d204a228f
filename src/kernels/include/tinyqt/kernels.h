/*
 * tinyqt: int8 forward kernels (TFLite int8 semantics, bit-exact with the
 * TFLite Micro reference kernels).
 *
 * Conventions for every function here:
 *  - activations int8 NHWC, shapes passed as tq_dims;
 *  - every pointer argument is checked, every shape is checked against the
 *    others; on error a negative tq_status is returned and no output byte is
 *    written;
 *  - a kernel that needs scratch has a *_get_buffer_size query; the caller
 *    passes a buffer of at least that many bytes (aligned to 4). The query
 *    returns the same number on every compiler and code path (portable C,
 *    ARM DSP, Helium), so a plan made on the host holds on the device;
 *  - asked through params->clamp_mask, a successful call also writes the
 *    1-bit clamp mask of its output for the backward (conv, 1x1, split 1x1,
 *    depthwise, fully connected, average pool, add);
 *  - the portable C path and the ARM DSP path (__ARM_FEATURE_DSP) produce
 *    identical bytes. Defining TQ_FORCE_PORTABLE selects the portable path.
 *    On an x86-64 host with AVX2 (GCC/Clang), the 1x1 and depthwise
 *    kernels take vector paths that give the same bytes again.
 */
#ifndef TINYQT_KERNELS_H
#define TINYQT_KERNELS_H

#include "tinyqt/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Host builds: allows (on != 0) or forbids the x86-64 AVX2 paths; returns
 * 1 when they are now in use (the CPU has AVX2 and they are allowed), 0
 * otherwise and on every other target. For tests and benchmarks that
 * compare the paths; not thread-safe against kernels running meanwhile. */
int tq_host_simd_enable(int on);

/* ---- conv2d (any kernel, stride, padding, dilation) --------------------
 * input  [N, H, W, C_in] int8
 * filter [C_out, KH, KW, C_in] int8 (OHWI), symmetric per output channel
 * bias   [C_out] int32 or NULL
 * output [N, OH, OW, C_out] int8
 * acc = bias[c] + sum (x + input_offset) * w ; y = clamp(output_offset +
 * requant(acc, q.multiplier[c], q.shift[c]), act_min, act_max). */
int32_t tq_conv_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter);
tq_status tq_conv_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                     const tq_dims *input_dims, const int8_t *input,
                     const tq_dims *filter_dims, const int8_t *filter,
                     const int32_t *bias,
                     const tq_dims *output_dims, int8_t *output,
                     void *scratch, int32_t scratch_size);

/* ---- 1x1 conv (pointwise) -------------------------------------------
 * Same contract as tq_conv_s8 with KH = KW = 1, no padding, dilation 1;
 * any stride (stride > 1 subsamples the input). filter [C_out, 1, 1, C_in]. */
int32_t tq_conv_1x1_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter);
tq_status tq_conv_1x1_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                         const tq_dims *input_dims, const int8_t *input,
                         const tq_dims *filter_dims, const int8_t *filter,
                         const int32_t *bias,
                         const tq_dims *output_dims, int8_t *output,
                         void *scratch, int32_t scratch_size);

/* ---- 1x1 conv with split weights (a partially trained layer) -----------
 * As tq_conv_1x1_s8 with filter row c = trained[c, 0 .. n_sel) followed by
 * filter[c, n_sel .. C_in): the trained first n_sel input channels of each
 * row live in SRAM (trained [C_out, n_sel]), the rest stay in the Flash
 * filter [C_out, 1, 1, C_in]. Runs in chunks of 16 output channels through
 * scratch (the chunk's rows, then its output), so no full copy of the
 * filter exists; the bytes are tq_conv_1x1_s8's with the assembled filter.
 * Errors as tq_conv_s8, plus NULL (trained), SHAPE (n_sel outside
 * [1, C_in]). */
int32_t tq_conv_1x1_s8_split_get_buffer_size(const tq_dims *input, const tq_dims *output,
                                             const tq_dims *filter);
tq_status tq_conv_1x1_s8_split(const tq_conv_params *params, const tq_channel_quant *quant,
                               const tq_dims *input_dims, const int8_t *input,
                               const tq_dims *filter_dims, const int8_t *filter,
                               const int8_t *trained, int32_t n_sel, const int32_t *bias,
                               const tq_dims *output_dims, int8_t *output,
                               void *scratch, int32_t scratch_size);

/* ---- depthwise conv ---------------------------------------------------
 * input  [N, H, W, C_in] int8
 * filter [1, KH, KW, C_out] int8, C_out = C_in * depth_multiplier
 * output channel c reads input channel c / depth_multiplier. */
int32_t tq_depthwise_conv_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter);
tq_status tq_depthwise_conv_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                               const tq_dims *input_dims, const int8_t *input,
                               const tq_dims *filter_dims, const int8_t *filter,
                               const int32_t *bias,
                               const tq_dims *output_dims, int8_t *output,
                               void *scratch, int32_t scratch_size);

/* ---- fully connected --------------------------------------------------
 * input  [batches, in_features] int8, weights [out_features, in_features]
 * int8, bias [out_features] int32 or NULL, output [batches, out_features].
 * quant holds one multiplier/shift per output feature (per-tensor weights
 * pass the same value out_features times). Stride/pad/dilation fields of
 * params are ignored. */
tq_status tq_fully_connected_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                                int32_t batches, int32_t in_features, int32_t out_features,
                                const int8_t *input, const int8_t *weights,
                                const int32_t *bias, int8_t *output);

/* ---- average pool 2D (TFLite AVERAGE_POOL_2D int8) ---------------------
 * Window filter_h x filter_w; the average counts only in-bounds pixels and
 * rounds half away from zero; no requantization (input and output share
 * scale and zero point). params: stride, pad_top/left, act_min/max used. */
tq_status tq_avgpool_s8(const tq_conv_params *params, int32_t filter_h, int32_t filter_w,
                        const tq_dims *input_dims, const int8_t *input,
                        const tq_dims *output_dims, int8_t *output);

/* ---- mean over H and W (TFLite MEAN int8, axis {1,2}) -------------------
 * input [N, H, W, C] -> output [N, 1, 1, C]; H*W <= 2^23.
 * y = clamp(out_zp + requant(sum - in_zp*H*W, m', s')) where the 1/(H*W)
 * factor is folded into the multiplier as TFLite's QuantizedMeanOrSum does
 * (TFLite Micro takes this path for every int8 MEAN, equal quantization
 * included); multiplier/shift quantize s_in / s_out. */
typedef struct {
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier;
    int32_t shift;
} tq_mean_params;
tq_status tq_mean_s8(const tq_mean_params *params,
                     const tq_dims *input_dims, const int8_t *input, int8_t *output);

/* ---- elementwise add (TFLite ADD int8, same shapes) ---------------------
 * Fields as TFLite's ArithmeticParams: offsets are -zero_point for the
 * inputs and +zero_point for the output, left_shift is 20. */
typedef struct {
    int32_t input1_offset, input2_offset, output_offset;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t left_shift;
    int32_t act_min, act_max;
    uint8_t *clamp_mask; /* NULL, or the output's clamp mask (as tq_conv_params.clamp_mask) */
} tq_add_params;
tq_status tq_add_s8(const tq_add_params *params, int32_t size,
                    const int8_t *input1, const int8_t *input2, int8_t *output);

/* ---- softmax (TFLite SOFTMAX int8 -> int8, output scale 1/256, zp -128) --
 * input_multiplier / input_left_shift / diff_min as TFLite's
 * PreprocessSoftmaxScaling with beta and kScaledDiffIntegerBits = 5.
 * Applied along the last dimension of [rows, depth]. */
typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} tq_softmax_params;
tq_status tq_softmax_s8(const tq_softmax_params *params, int32_t rows, int32_t depth,
                        const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TINYQT_KERNELS_H */
