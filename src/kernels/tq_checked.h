/* tinyqt: the conv-like kernels with their quantization checked by the
 * caller (private header).
 *
 * Each is its public kernel (same arguments, same result) except that
 * check_quant = 0 skips the per-channel multiplier/shift checks, which
 * cost a loop over the output channels on every call. tq_bottleneck_s8
 * runs each stage once per output row: it checks the stages'
 * quantization once (tq_check_quant) and calls these with 0. */
#ifndef TINYQT_CHECKED_H
#define TINYQT_CHECKED_H

#include "tinyqt/kernels.h"

tq_status tq_conv_s8_checked(const tq_conv_params *params, const tq_channel_quant *quant,
                             const tq_dims *input_dims, const int8_t *input, const tq_dims *filter_dims,
                             const int8_t *filter, const int32_t *bias, const tq_dims *output_dims,
                             int8_t *output, void *scratch, int32_t scratch_size, int check_quant);

tq_status tq_conv_1x1_s8_checked(const tq_conv_params *params, const tq_channel_quant *quant,
                                 const tq_dims *input_dims, const int8_t *input,
                                 const tq_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                                 const tq_dims *output_dims, int8_t *output, void *scratch,
                                 int32_t scratch_size, int check_quant);

tq_status tq_depthwise_conv_s8_checked(const tq_conv_params *params, const tq_channel_quant *quant,
                                       const tq_dims *input_dims, const int8_t *input,
                                       const tq_dims *filter_dims, const int8_t *filter,
                                       const int32_t *bias, const tq_dims *output_dims, int8_t *output,
                                       void *scratch, int32_t scratch_size, int check_quant);

#endif /* TINYQT_CHECKED_H */
