/* In-place input gradient of a stride-1 depthwise conv (multiplier 1, no
 * dilation, output as large as the input): the gradient w.r.t. the input
 * overwrites the gradient w.r.t. the output in the same buffer, so the
 * training plan needs one fp32 map instead of two. A ring of the last
 * (KH - pad_top) original rows is the only scratch.
 *
 * Bits: every input-gradient element is the same sum, in the same order, as
 * tq_depthwise_conv_backward_input_f32 computes it (terms
 * (g * w_scale[c]) * w over output pixels in row-major order, from +0.0f),
 * so the two kernels agree bit for bit. */
#include <string.h>

#include "tinyqt/backward.h"
#include "tq_check.h"
#include "tq_sgd.h"

static int32_t tq_dw_inplace_ring_rows(const tq_conv_params *p, const tq_dims *f_d)
{
    return f_d->h - p->pad_top;
}

int32_t tq_depthwise_conv_backward_input_inplace_get_buffer_size(const tq_conv_params *params,
                                                                 const tq_dims *dims,
                                                                 const tq_dims *filter_dims)
{
    if (params == NULL || dims == NULL || filter_dims == NULL || params->pad_top < 0 ||
        params->pad_top >= filter_dims->h) {
        return 0;
    }
    return tq_dw_inplace_ring_rows(params, filter_dims) * dims->w * dims->c * (int32_t)sizeof(float);
}

tq_status tq_depthwise_conv_backward_input_inplace_f32(const tq_conv_params *params,
                                                       const float *w_scale, const tq_dims *dims,
                                                       float *grad, const uint8_t *mask,
                                                       const tq_dims *filter_dims,
                                                       const int8_t *filter, void *scratch,
                                                       int32_t scratch_size)
{
    int32_t b, iy, ix, oy, ox, c, ring;
    int32_t h, w, ch, kh, kw, pt, pl;
    size_t row;
    float *saved;
    if (params == NULL || w_scale == NULL || dims == NULL || grad == NULL ||
        filter_dims == NULL || filter == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(dims) || !tq_dims_valid(filter_dims) || filter_dims->n != 1 ||
        filter_dims->c != dims->c) {
        return TQ_ERR_SHAPE;
    }
    h = dims->h;
    w = dims->w;
    ch = dims->c;
    kh = filter_dims->h;
    kw = filter_dims->w;
    pt = params->pad_top;
    pl = params->pad_left;
    /* stride 1, no dilation, and "same" extent: the output is the input's size */
    if (params->stride_h != 1 || params->stride_w != 1 || params->dilation_h != 1 ||
        params->dilation_w != 1 || pt < 0 || pl < 0 || pt >= kh || pl >= kw) {
        return TQ_ERR_PARAM;
    }
    ring = tq_dw_inplace_ring_rows(params, filter_dims);
    row = (size_t)w * (size_t)ch;
    if (scratch == NULL ||
        scratch_size < tq_depthwise_conv_backward_input_inplace_get_buffer_size(params, dims, filter_dims)) {
        return TQ_ERR_SCRATCH;
    }
    saved = (float *)scratch;
    for (b = 0; b < dims->n; b++) {
        float *g = grad + (size_t)b * (size_t)h * row;
        const int32_t m0 = b * h * w * ch;
        for (iy = 0; iy < h; iy++) {
            /* output rows iy - (kh - 1 - pt) .. iy + pt feed input row iy; the
               ones <= iy are overwritten already and live in the ring */
            const int32_t oy_lo = iy + pt - (kh - 1) < 0 ? 0 : iy + pt - (kh - 1);
            const int32_t oy_hi = iy + pt > h - 1 ? h - 1 : iy + pt;
            float *out = g + (size_t)iy * row;
            memcpy(saved + (size_t)(iy % ring) * row, out, row * sizeof(float));
            for (ix = 0; ix < w; ix++) {
                const int32_t ox_lo = ix + pl - (kw - 1) < 0 ? 0 : ix + pl - (kw - 1);
                const int32_t ox_hi = ix + pl > w - 1 ? w - 1 : ix + pl;
                float *gi = out + (size_t)ix * ch;
                for (c = 0; c < ch; c++) {
                    gi[c] = 0.0f;
                }
                for (oy = oy_lo; oy <= oy_hi; oy++) {
                    const float *src = oy <= iy ? saved + (size_t)(oy % ring) * row : g + (size_t)oy * row;
                    const int32_t ky = iy - oy + pt;
                    for (ox = ox_lo; ox <= ox_hi; ox++) {
                        const float *go = src + (size_t)ox * ch;
                        const int8_t *wk = filter + ((size_t)ky * kw + (size_t)(ix - ox + pl)) * ch;
                        const int32_t o0 = m0 + (oy * w + ox) * ch;
                        for (c = 0; c < ch; c++) {
                            if (tq_mask_pass(mask, o0 + c)) {
                                gi[c] += (go[c] * w_scale[c]) * (float)wk[c];
                            }
                        }
                    }
                }
            }
        }
    }
    return TQ_OK;
}
