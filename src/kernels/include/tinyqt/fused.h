/*
 * tinyqt: fused blocks, computed by the unfused kernels on row bands so
 * their bytes equal the unfused ops' on every path.
 */
#ifndef TINYQT_FUSED_H
#define TINYQT_FUSED_H

#include "tinyqt/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Inverted bottleneck: [expand ->] depthwise -> 1x1 project [-> add].
 * Each stage's params/quant/filter/bias are exactly what its unfused kernel
 * takes. The expand stage is a 1x1 conv (stride 1, no padding) or any dense
 * conv (tq_conv_s8: kernel, stride, padding, dilation), e.g. a network's
 * first conv streamed into its first block. mid_h, mid_w: the expanded
 * tensor's (depthwise input's) height and width; 0 = the block input's
 * (required for a dense expand). The depthwise stage must have depth
 * multiplier 1 and dilation 1; the projection stride 1. out_w is the
 * depthwise output width. With has_residual the projection is added to the
 * block input (same shape as the output) with add_params; residual_first =
 * 1 when the block input is the add's first operand. planar_rows = 1 asks
 * for the planar int16 ring of the depthwise input (3x3 stages; used on
 * Cortex-M4/M7-class cores, fewer instructions for more scratch; the
 * scratch size is the same on every target). Batch 1. */
typedef struct {
    int32_t has_expand;
    tq_conv_params pw1_params;
    tq_channel_quant pw1_quant;
    tq_dims pw1_filter_dims;
    const int8_t *pw1_filter;
    const int32_t *pw1_bias;
    tq_conv_params dw_params;
    tq_channel_quant dw_quant;
    tq_dims dw_filter_dims;
    const int8_t *dw_filter;
    const int32_t *dw_bias;
    tq_conv_params pw2_params;
    tq_channel_quant pw2_quant;
    tq_dims pw2_filter_dims;
    const int8_t *pw2_filter;
    const int32_t *pw2_bias;
    int32_t out_w;
    int32_t mid_h;
    int32_t mid_w;
    int32_t has_residual;
    int32_t residual_first;
    tq_add_params add_params;
    int32_t planar_rows;
} tq_bottleneck_params;

/* Scratch bytes: a band of KH expanded rows, the planar ring (with
 * planar_rows, where the depthwise stage allows it), one depthwise row,
 * one projected row (residual only) and the larger of the expand and
 * projection kernels' scratch. */
int32_t tq_bottleneck_s8_get_buffer_size(const tq_bottleneck_params *params, const tq_dims *input_dims);

/* input [1, H, W, C_in] -> output [1, OH, OW, C_out]; writes nothing past
 * the output; returns the first failing stage's status. The stages'
 * clamp_mask fields must be NULL (TQ_ERR_PARAM otherwise): the expanded and
 * depthwise tensors exist one band at a time, so a block that trains runs
 * unfused. */
tq_status tq_bottleneck_s8(const tq_bottleneck_params *params, const tq_dims *input_dims,
                           const int8_t *input, const tq_dims *output_dims, int8_t *output,
                           void *scratch, int32_t scratch_size);

#ifdef __cplusplus
}
#endif

#endif /* TINYQT_FUSED_H */
