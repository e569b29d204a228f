/* tinyqt: argument checks shared by the kernels (private header). */
#ifndef TINYQT_CHECK_H
#define TINYQT_CHECK_H

#include "tinyqt/types.h"

/* Which weight layout a conv-like kernel takes. */
typedef enum {
    TQ_CONV_DENSE = 0,     /* filter [C_out, KH, KW, C_in] */
    TQ_CONV_POINTWISE = 1, /* filter [C_out, 1, 1, C_in], no padding */
    TQ_CONV_DEPTHWISE = 2  /* filter [1, KH, KW, C_out], C_out = C_in * mult */
} tq_conv_kind;

/* 1 when every extent is >= 1 and the element count fits in int32. */
int tq_dims_valid(const tq_dims *d);

/* Element count of d (caller has checked tq_dims_valid). */
int32_t tq_dims_count(const tq_dims *d);

/* Checks the clamp range and the offsets of params. */
tq_status tq_check_activation(const tq_conv_params *params);

/* Checks one multiplier/shift pair (multiplier >= 0, shift in [-31, 30]). */
tq_status tq_check_multiplier(int32_t multiplier, int32_t shift);

/* Checks every argument of a conv-like kernel: pointers, shapes (output
 * windows must each overlap the input), strides, padding, quantization. */
tq_status tq_check_conv(tq_conv_kind kind, const tq_conv_params *params,
                        const tq_channel_quant *quant,
                        const tq_dims *input_dims, const void *input,
                        const tq_dims *filter_dims, const void *filter,
                        const tq_dims *output_dims, const void *output);

/* tq_check_conv less the per-channel multiplier checks (tq_check_quant):
 * for a caller that runs one layer many times on parts of its tensors
 * (tq_bottleneck_s8, row by row) and checks its quantization once. */
tq_status tq_check_conv_shape(tq_conv_kind kind, const tq_conv_params *params,
                              const tq_channel_quant *quant,
                              const tq_dims *input_dims, const void *input,
                              const tq_dims *filter_dims, const void *filter,
                              const tq_dims *output_dims, const void *output);

/* Checks quant's pointers and its out_c multiplier/shift pairs. */
tq_status tq_check_quant(const tq_channel_quant *quant, int32_t out_c);

/* Checks a caller's scratch buffer against the size the query gave. */
tq_status tq_check_scratch(const void *scratch, int32_t scratch_size, int32_t needed);

#endif /* TINYQT_CHECK_H */
