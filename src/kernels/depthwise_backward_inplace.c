/* In-place input gradient of a stride-1 depthwise conv (multiplier 1, no
 * dilation, output as large as the input): the gradient w.r.t. the input
 * overwrites the gradient w.r.t. the output in the same buffer, so the
 * training plan needs one fp32 map instead of two.
 *
 * Two passes. The first replaces every output gradient g by its term factor
 * (mask ? g * w_scale[c] : 0). The second runs over blocks of four channels;
 * for each it walks the rows, saving a row's four-channel slice into a ring
 * of (KH - pad_top) rows before overwriting it (the ring is the only
 * scratch), and sums each input pixel's terms in four FPU registers with
 * the block's filter taps converted to fp32 once (at most TQ_DW_INPLACE_MAX_TAPS).
 *
 * Bits: every input-gradient element is the same sum, in the same order, as
 * tq_depthwise_conv_backward_input_f32 computes it (terms
 * (g * w_scale[c]) * w over output pixels in row-major order, from +0.0f;
 * a masked term adds a zero, which leaves a sum that started at +0.0f
 * unchanged), so the two kernels agree bit for bit. */
#include <string.h>

#include "tinyqt/backward.h"
#include "tq_check.h"
#include "tq_dw_lanes4.h"
#include "tq_f32.h"
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
        params->pad_top >= filter_dims->h || dims->w < 1) {
        return 0;
    }
    return tq_dw_inplace_ring_rows(params, filter_dims) * dims->w * TQ_DW_LANES *
           (int32_t)sizeof(float);
}

/* g[k] <- bit k of bits ? g[k] * ws[k] : +0.0f for k < n (the product is
 * computed for each, then kept or not). */
static void tq_dw_scale_mask8(float *g, const float *ws, uint32_t bits, int32_t n)
{
    int32_t k;
    for (k = 0; k < n; k++) {
        g[k] = tq_f32_keep(g[k] * ws[k], (bits >> k) & 1u);
    }
}

/* Pass 1: g[o] <- mask bit o ? g[o] * w_scale[o % ch] : +0.0f. With a
 * multiple of 8 channels every pixel's mask starts on a byte, and each byte
 * covers eight channels; otherwise one element at a time. */
static void tq_dw_scale_mask(float *g, int32_t count, int32_t ch, const float *w_scale,
                             const uint8_t *mask)
{
    int32_t o, c;
    if (ch % 8 == 0) {
        for (o = 0; o < count; o += ch) {
            for (c = 0; c < ch; c += 8) {
                tq_dw_scale_mask8(g + o + c, w_scale + c, mask != NULL ? mask[(o + c) >> 3] : 0xFFu, 8);
            }
        }
        return;
    }
    for (o = 0, c = 0; o < count; o++) {
        tq_dw_scale_mask8(g + o, w_scale + c, mask != NULL ? (uint32_t)mask[o >> 3] >> (o & 7) : 1u, 1);
        if (++c == ch) {
            c = 0;
        }
    }
}

/* Pass 2 for the channels lane[0..3] of one image (h x w x ch at g): each
 * input pixel's sum over the output pixels whose window covers it. wf holds
 * the block's taps, wf[(ky * kw + kx) * 4 + i]. Rows not yet overwritten
 * are read in place when the lanes are four neighbouring channels (one
 * strided VLDM per tap on an Arm FPU), otherwise through the lane table. */
static void tq_dw_inplace_block(float *g, int32_t h, int32_t w, int32_t ch, const int32_t *lane,
                                int32_t kh, int32_t kw, int32_t pt, int32_t pl, const float *wf,
                                float *ring, int32_t ring_rows)
{
    const size_t row = (size_t)w * (size_t)ch;
    const int dense = lane[3] == lane[0] + 3;
    int32_t iy, ix, oy, ox, i;
    for (iy = 0; iy < h; iy++) {
        /* output rows iy - (kh - 1 - pt) .. iy + pt feed input row iy; the
           ones <= iy are overwritten already and live in the ring */
        const int32_t oy_lo = iy + pt - (kh - 1) < 0 ? 0 : iy + pt - (kh - 1);
        const int32_t oy_hi = iy + pt > h - 1 ? h - 1 : iy + pt;
        float *out = g + (size_t)iy * row;
        float *saved = ring + (size_t)(iy % ring_rows) * w * TQ_DW_LANES;
        for (ix = 0; ix < w; ix++) {
            if (dense) {
                memcpy(saved + ix * TQ_DW_LANES, out + (size_t)ix * ch + lane[0],
                       sizeof(float) * TQ_DW_LANES);
                continue;
            }
            for (i = 0; i < TQ_DW_LANES; i++) {
                saved[ix * TQ_DW_LANES + i] = out[(size_t)ix * ch + lane[i]];
            }
        }
        for (ix = 0; ix < w; ix++) {
            const int32_t ox_lo = ix + pl - (kw - 1) < 0 ? 0 : ix + pl - (kw - 1);
            const int32_t ox_hi = ix + pl > w - 1 ? w - 1 : ix + pl;
            TQ_DW_ACC4(0.0f, 0.0f, 0.0f, 0.0f);
            for (oy = oy_lo; oy <= oy_hi; oy++) {
                /* filter row iy - oy + pt, read backwards from tap ix - ox_lo + pl */
                const float *w_end = wf + ((size_t)(iy - oy + pt) * kw + ix - ox_lo + pl + 1) * TQ_DW_LANES;
                if (oy <= iy) {
                    TQ_DW_ROW4(ring + ((size_t)(oy % ring_rows) * w + ox_lo) * TQ_DW_LANES, w_end,
                               ox_hi - ox_lo + 1);
                } else if (dense) {
                    TQ_DW_ROW4_STEP(g + (size_t)oy * row + (size_t)ox_lo * ch + lane[0], ch, w_end,
                                    ox_hi - ox_lo + 1);
                } else {
                    const float *src = g + (size_t)oy * row;
                    for (ox = ox_lo; ox <= ox_hi; ox++) {
                        const float *s = src + (size_t)ox * ch;
                        const float v[TQ_DW_LANES] = {s[lane[0]], s[lane[1]], s[lane[2]], s[lane[3]]};
                        w_end -= TQ_DW_LANES;
                        TQ_DW_TAP4(v, w_end);
                    }
                }
            }
            /* a short last block repeats its last channel: equal sums */
            out[(size_t)ix * ch + lane[0]] = a0;
            out[(size_t)ix * ch + lane[1]] = a1;
            out[(size_t)ix * ch + lane[2]] = a2;
            out[(size_t)ix * ch + lane[3]] = a3;
        }
    }
}

tq_status tq_depthwise_conv_backward_input_inplace_f32(const tq_conv_params *params,
                                                       const float *w_scale, const tq_dims *dims,
                                                       float *grad, const uint8_t *mask,
                                                       const tq_dims *filter_dims,
                                                       const int8_t *filter, void *scratch,
                                                       int32_t scratch_size)
{
    int32_t b, c0, i, t, h, w, ch, kh, kw, pt, pl;
    float wf[TQ_DW_INPLACE_MAX_TAPS * TQ_DW_LANES];
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
        params->dilation_w != 1 || pt < 0 || pl < 0 || pt >= kh || pl >= kw ||
        kh * kw > TQ_DW_INPLACE_MAX_TAPS) {
        return TQ_ERR_PARAM;
    }
    if (scratch == NULL ||
        scratch_size < tq_depthwise_conv_backward_input_inplace_get_buffer_size(params, dims, filter_dims)) {
        return TQ_ERR_SCRATCH;
    }
    if (!tq_scales_valid(w_scale, ch)) {
        return TQ_ERR_PARAM;
    }
    tq_dw_scale_mask(grad, tq_dims_count(dims), ch, w_scale, mask);
    for (c0 = 0; c0 < ch; c0 += TQ_DW_LANES) {
        int32_t lane[TQ_DW_LANES];
        for (i = 0; i < TQ_DW_LANES; i++) {
            lane[i] = c0 + i < ch ? c0 + i : ch - 1;
        }
        for (t = 0; t < kh * kw; t++) {
            for (i = 0; i < TQ_DW_LANES; i++) {
                wf[t * TQ_DW_LANES + i] = (float)filter[(size_t)t * ch + lane[i]];
            }
        }
        for (b = 0; b < dims->n; b++) {
            tq_dw_inplace_block(grad + (size_t)b * h * w * ch, h, w, ch, lane, kh, kw, pt, pl, wf,
                                (float *)scratch, tq_dw_inplace_ring_rows(params, filter_dims));
        }
    }
    return TQ_OK;
}
