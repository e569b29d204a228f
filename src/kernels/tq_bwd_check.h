/* tinyqt: argument checks shared by the backward kernels (private header). */
#ifndef TINYQT_BWD_CHECK_H
#define TINYQT_BWD_CHECK_H

#include "tinyqt/types.h"

/* Stride / dilation / padding of p and the forward's output-extent rule for
 * a k_h x k_w window from in_d to out_d: the first and the last window of
 * each axis overlap the input. TQ_ERR_PARAM or TQ_ERR_SHAPE otherwise. */
tq_status tq_bwd_check_geometry(const tq_conv_params *p, const tq_dims *in_d,
                                const tq_dims *out_d, int32_t k_h, int32_t k_w);

#endif /* TINYQT_BWD_CHECK_H */
