/* tinyqt: the backward of an inverted-bottleneck block (1x1 -> depthwise ->
 * 1x1) streamed over tiles of expanded channels (contract: tinyqt/backward.h,
 * "inverted-bottleneck block backward").
 *
 * The expanded gradients are the largest tensors of a training step's
 * backward: fp32, C_mid = 6 x the block's width, at the block's input
 * resolution. Every term that makes them up is per expanded channel, so a
 * tile of channels can go all the way down (pw2's input gradient, the
 * depthwise backward, pw1's update) and into the block's input gradient
 * before the next tile starts; only tile-sized buffers exist. Each stage is
 * the checked per-layer kernel run on the tile's slice (weights and mask
 * bits gathered into scratch), so the arithmetic is theirs; pw1's saved
 * inputs may be converted to fp32 once for all tiles (pw1_x_f32). */
#include <string.h>

#include "tinyqt/backward.h"
#include "tq_bwd_check.h"
#include "tq_check.h"
#include "tq_conv_blocked.h"
#include "tq_copy.h"
#include "tq_dw_backward.h"
#include "tq_sgd.h"
#include "tq_f32.h" /* fp32 file: the MVE-F build check */

/* Byte offsets of the scratch regions (each 4-byte aligned) and the total. */
typedef struct {
    int32_t g_dw, g_mid, mask_dw, mask_pw1, w_pw2, w_dw, w_pw1, grad_b, update, x_f32, total;
} tq_bb_layout;

static int32_t tq_bb_tile(const tq_bottleneck_backward_params *p)
{
    return p->tile < p->mid_dims.c ? p->tile : p->mid_dims.c;
}

/* 1 when pw1's weight gradient reads its saved inputs converted to fp32 */
static int tq_bb_x_f32(const tq_bottleneck_backward_params *p)
{
    return p->pw1_weights != NULL && p->pw1_x_f32 != 0;
}

static int tq_bb_split(const tq_bottleneck_backward_params *p)
{
    return p->pw1_weights != NULL && p->pw1_n_sel < p->input_dims.c;
}

/* Lays the regions out; 0 when a size overflows int32. */
static int tq_bb_layout_of(const tq_bottleneck_backward_params *p, tq_bb_layout *l)
{
    const int64_t t = tq_bb_tile(p);
    const int64_t out_px = (int64_t)p->output_dims.h * p->output_dims.w;
    const int64_t mid_px = (int64_t)p->mid_dims.h * p->mid_dims.w;
    int64_t sizes[10], pos = 0;
    int32_t *fields[10];
    int i;
    sizes[0] = out_px * t * 4;
    sizes[1] = mid_px * t * 4;
    sizes[2] = (out_px * t + 7) / 8;
    sizes[3] = (mid_px * t + 7) / 8;
    sizes[4] = (int64_t)p->pw2.filter_dims.n * t;
    sizes[5] = (int64_t)p->dw.filter_dims.h * p->dw.filter_dims.w * t;
    sizes[6] = tq_bb_split(p) ? t * p->input_dims.c : 0;
    sizes[7] = t * 4;
    sizes[8] = 0;
    /* pw1's saved inputs in fp32 (tq_pw_convert_inputs), once for all tiles */
    sizes[9] = tq_bb_x_f32(p) ? mid_px * p->pw1_n_sel * 4 : 0;
    if (p->pw1_weights != NULL) {
        const tq_dims rows = {(int32_t)t, 1, 1, p->pw1_n_sel};
        sizes[8] = tq_conv_1x1_backward_weight_update_get_buffer_size(&rows, p->pw1_n_sel);
        if (sizes[8] == 0) {
            return 0;
        }
    }
    fields[0] = &l->g_dw;
    fields[1] = &l->g_mid;
    fields[2] = &l->mask_dw;
    fields[3] = &l->mask_pw1;
    fields[4] = &l->w_pw2;
    fields[5] = &l->w_dw;
    fields[6] = &l->w_pw1;
    fields[7] = &l->grad_b;
    fields[8] = &l->update;
    fields[9] = &l->x_f32;
    for (i = 0; i < 10; i++) {
        *fields[i] = (int32_t)pos;
        pos += (sizes[i] + 3) / 4 * 4;
        if (pos > INT32_MAX) {
            return 0;
        }
    }
    l->total = (int32_t)pos;
    return 1;
}

static int tq_is_pointwise_s1(const tq_conv_params *c)
{
    return c->stride_h == 1 && c->stride_w == 1 && c->pad_top == 0 && c->pad_left == 0 &&
           c->dilation_h == 1 && c->dilation_w == 1;
}

static int tq_dims_eq(const tq_dims *d, int32_t n, int32_t h, int32_t w, int32_t c)
{
    return d->n == n && d->h == h && d->w == w && d->c == c;
}

/* Every check of the contract; TQ_OK when the stages cannot fail. */
static tq_status tq_bb_check(const tq_bottleneck_backward_params *p, const tq_sgd_params *opt,
                             const float *grad_out)
{
    const tq_dims *in = &p->input_dims, *mid = &p->mid_dims, *out = &p->output_dims;
    tq_dims dw_out;
    tq_status st;
    if (p->pw1.filter == NULL || p->dw.filter == NULL || p->pw2.filter == NULL ||
        p->pw1.w_scale == NULL || p->dw.w_scale == NULL || p->pw2.w_scale == NULL ||
        grad_out == NULL || (p->pw1_weights != NULL && p->pw1_saved == NULL)) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(in) || !tq_dims_valid(mid) || !tq_dims_valid(out) || in->n != 1 ||
        mid->n != 1 || out->n != 1 || mid->h != in->h || mid->w != in->w ||
        !tq_dims_eq(&p->pw1.filter_dims, mid->c, 1, 1, in->c) ||
        !tq_dims_eq(&p->dw.filter_dims, 1, p->dw.filter_dims.h, p->dw.filter_dims.w, mid->c) ||
        !tq_dims_eq(&p->pw2.filter_dims, out->c, 1, 1, mid->c) || p->dw.filter_dims.h < 1 ||
        p->dw.filter_dims.w < 1 || p->tile < 1) {
        return TQ_ERR_SHAPE;
    }
    if (p->pw1_weights != NULL && (p->pw1_n_sel < 1 || p->pw1_n_sel > in->c)) {
        return TQ_ERR_SHAPE;
    }
    if (!tq_is_pointwise_s1(&p->pw1.params) || !tq_is_pointwise_s1(&p->pw2.params)) {
        return TQ_ERR_PARAM;
    }
    dw_out = *out;
    dw_out.c = mid->c;
    st = tq_bwd_check_geometry(&p->dw.params, mid, &dw_out, p->dw.filter_dims.h,
                               p->dw.filter_dims.w);
    if (st != TQ_OK) {
        return st;
    }
    if (!tq_scales_valid(p->pw1.w_scale, mid->c) || !tq_scales_valid(p->dw.w_scale, mid->c) ||
        !tq_scales_valid(p->pw2.w_scale, out->c)) {
        return TQ_ERR_PARAM;
    }
    if (p->dw.bias != NULL) {
        if (!tq_scale_valid(p->dw.input_scale)) {
            return TQ_ERR_PARAM;
        }
        st = tq_sgd_check(opt, p->dw.state, 0, 1);
        if (st != TQ_OK) {
            return st;
        }
    }
    if (p->pw1_weights != NULL || p->pw1.bias != NULL) {
        if (!tq_scale_valid(p->pw1.input_scale) ||
            (p->pw1_weights != NULL &&
             (p->pw1.params.input_offset < -127 || p->pw1.params.input_offset > 128))) {
            return TQ_ERR_PARAM;
        }
        st = tq_sgd_check(opt, p->pw1.state, p->pw1_weights != NULL, p->pw1.bias != NULL);
        if (st != TQ_OK) {
            return st;
        }
    }
    return TQ_OK;
}

int32_t tq_bottleneck_backward_get_buffer_size(const tq_bottleneck_backward_params *params)
{
    tq_bb_layout l;
    if (params == NULL || !tq_dims_valid(&params->mid_dims) ||
        !tq_dims_valid(&params->output_dims) || !tq_dims_valid(&params->input_dims) ||
        params->tile < 1 || (params->pw1_weights != NULL && params->pw1_n_sel < 1) ||
        !tq_bb_layout_of(params, &l)) {
        return 0;
    }
    return l.total;
}

/* out[(p * n + t)] bit <- mask bit (p * channels + c0 + t), for p < pixels,
 * t < n; NULL when mask is NULL. Whole bytes are copied when the channel
 * offsets are multiples of 8 (the usual widths). */
static const uint8_t *tq_mask_tile(const uint8_t *mask, int32_t pixels, int32_t channels,
                                   int32_t c0, int32_t n, uint8_t *out)
{
    int32_t px, t, i = 0;
    if (mask == NULL) {
        return NULL;
    }
    if (((channels | c0 | n) & 7) == 0) {
        const int32_t row = n >> 3, stride = channels >> 3;
        tq_copy_rows(out, (size_t)row, mask + (c0 >> 3), (size_t)stride, pixels, (size_t)row);
        return out;
    }
    memset(out, 0, (size_t)TQ_MASK_BYTES(pixels * n));
    for (px = 0; px < pixels; px++) {
        for (t = 0; t < n; t++, i++) {
            if (tq_mask_pass(mask, px * channels + c0 + t)) {
                out[i >> 3] = (uint8_t)(out[i >> 3] | (1u << (i & 7)));
            }
        }
    }
    return out;
}

/* out[r * n + t] <- w[r * stride + c0 + t] for r < rows, t < n. */
static void tq_gather_cols(const int8_t *w, int32_t rows, int32_t stride, int32_t c0, int32_t n,
                           int8_t *out)
{
    tq_copy_rows(out, (size_t)n, w + c0, (size_t)stride, rows, (size_t)n);
}

/* The layer's optimizer state shifted to output channel c0 (weight buffers
 * by c0 rows of row_len elements). */
static tq_sgd_state tq_state_at(const tq_sgd_state *s, int32_t c0, int32_t row_len)
{
    tq_sgd_state out = *s;
    const size_t w_off = (size_t)c0 * row_len;
    out.w_momentum = s->w_momentum != NULL ? s->w_momentum + w_off : NULL;
    out.w_master = s->w_master != NULL ? s->w_master + w_off : NULL;
    out.b_momentum = s->b_momentum != NULL ? s->b_momentum + c0 : NULL;
    return out;
}

/* Bias gradient of n channels (masked sums of g) and their update. */
static tq_status tq_bb_bias(const tq_sgd_params *opt, const tq_block_bwd_layer *layer,
                            int32_t c0, const tq_dims *d, const float *g, const uint8_t *mask,
                            float *grad_b)
{
    const tq_sgd_state st = tq_state_at(layer->state, c0, 0);
    tq_status s = tq_bias_backward_f32(d, g, mask, grad_b);
    if (s != TQ_OK) {
        return s;
    }
    return tq_sgd_update_bias(opt, &st, layer->input_scale, layer->w_scale + c0, d->c,
                              layer->bias + c0, grad_b);
}

/* One tile: expanded channels [c0, c0 + n). */
static tq_status tq_bb_tile_run(const tq_bottleneck_backward_params *p, const tq_sgd_params *opt,
                                const float *grad_out, float *grad_in, uint8_t *scr,
                                const tq_bb_layout *l, int32_t c0, int32_t n)
{
    const int32_t c_mid = p->mid_dims.c, c_in = p->input_dims.c, n_sel = p->pw1_n_sel;
    const int32_t taps = p->dw.filter_dims.h * p->dw.filter_dims.w;
    const tq_dims d_dw = {1, p->output_dims.h, p->output_dims.w, n};
    const tq_dims d_mid = {1, p->mid_dims.h, p->mid_dims.w, n};
    const tq_dims f_dw = {1, p->dw.filter_dims.h, p->dw.filter_dims.w, n};
    float *g_dw = (float *)(void *)(scr + l->g_dw);
    float *g_mid = (float *)(void *)(scr + l->g_mid);
    float *grad_b = (float *)(void *)(scr + l->grad_b);
    int8_t *w_pw2 = (int8_t *)(scr + l->w_pw2), *w_dw = (int8_t *)(scr + l->w_dw);
    const uint8_t *m_dw, *m_pw1;
    const int32_t need_mid = grad_in != NULL || p->pw1_weights != NULL || p->pw1.bias != NULL;
    tq_status st;

    /* 1. pw2's input gradient, the tile's columns */
    tq_gather_cols(p->pw2.filter, p->pw2.filter_dims.n, c_mid, c0, n, w_pw2);
    /* (the tile's layer calls skip the public entry points' checks, which
     * tq_bb_check made once for the whole block) */
    tq_pw_backward_input_blocked(&p->pw2.params, p->pw2.w_scale, &p->output_dims, grad_out, p->pw2.mask,
                                 w_pw2, &d_dw, g_dw, 0);
    m_dw = tq_mask_tile(p->dw.mask, d_dw.h * d_dw.w, c_mid, c0, n, scr + l->mask_dw);
    /* 2. depthwise bias */
    if (p->dw.bias != NULL) {
        st = tq_bb_bias(opt, &p->dw, c0, &d_dw, g_dw, m_dw, grad_b);
        if (st != TQ_OK) {
            return st;
        }
    }
    if (!need_mid) {
        return TQ_OK;
    }
    /* 3. depthwise input gradient */
    tq_gather_cols(p->dw.filter, taps, c_mid, c0, n, w_dw);
    tq_dw_backward_input_run(&p->dw.params, p->dw.w_scale + c0, &d_dw, g_dw, m_dw, &f_dw, w_dw, &d_mid, g_mid);
    m_pw1 = tq_mask_tile(p->pw1.mask, d_mid.h * d_mid.w, c_mid, c0, n, scr + l->mask_pw1);
    /* 4. the block input's gradient, with pw1's weights before the update */
    if (grad_in != NULL) {
        const int8_t *rows;
        if (tq_bb_split(p)) {
            int8_t *w = (int8_t *)(scr + l->w_pw1);
            tq_copy_rows(w, (size_t)c_in, p->pw1_weights + (size_t)c0 * n_sel, (size_t)n_sel, n,
                         (size_t)n_sel);
            tq_copy_rows(w + n_sel, (size_t)c_in, p->pw1.filter + (size_t)c0 * c_in + n_sel, (size_t)c_in, n,
                         (size_t)(c_in - n_sel));
            rows = w;
        } else {
            rows = (p->pw1_weights != NULL ? p->pw1_weights : p->pw1.filter) + (size_t)c0 * c_in;
        }
        tq_pw_backward_input_blocked(&p->pw1.params, p->pw1.w_scale + c0, &d_mid, g_mid, m_pw1,
                                     rows, &p->input_dims, grad_in, c0 > 0);
    }
    /* 5. pw1's update */
    if (p->pw1_weights != NULL) {
        const tq_dims f_rows = {n, 1, 1, n_sel};
        const tq_dims d_saved = {1, p->input_dims.h, p->input_dims.w, n_sel};
        const tq_sgd_state s1 = tq_state_at(p->pw1.state, c0, n_sel);
        return tq_pw_weight_update_xf(
            &p->pw1.params, p->pw1.input_scale, p->pw1.w_scale + c0, &d_saved, p->pw1_saved,
            tq_bb_x_f32(p) ? (const float *)(const void *)(scr + l->x_f32) : NULL, &d_mid, g_mid, m_pw1,
            &f_rows, p->pw1_weights + (size_t)c0 * n_sel,
            p->pw1.bias != NULL ? p->pw1.bias + c0 : NULL, opt, &s1, scr + l->update,
            tq_conv_1x1_backward_weight_update_get_buffer_size(&f_rows, n_sel));
    }
    if (p->pw1.bias != NULL) {
        return tq_bb_bias(opt, &p->pw1, c0, &d_mid, g_mid, m_pw1, grad_b);
    }
    return TQ_OK;
}

tq_status tq_bottleneck_backward_f32(const tq_bottleneck_backward_params *params,
                                     const tq_sgd_params *opt, const float *grad_out,
                                     float *grad_in, void *scratch, int32_t scratch_size)
{
    tq_bb_layout l;
    int32_t c0, tile;
    tq_status st;
    if (params == NULL) {
        return TQ_ERR_NULL;
    }
    st = tq_bb_check(params, opt, grad_out);
    if (st != TQ_OK) {
        return st;
    }
    if (!tq_bb_layout_of(params, &l)) {
        return TQ_ERR_SHAPE;
    }
    st = tq_check_scratch(scratch, scratch_size, l.total);
    if (st != TQ_OK) {
        return st;
    }
    tile = tq_bb_tile(params);
    if (tq_bb_x_f32(params)) {
        tq_pw_convert_inputs(params->pw1_saved, params->mid_dims.h * params->mid_dims.w,
                             params->pw1_n_sel, params->pw1.params.input_offset,
                             (float *)(void *)((uint8_t *)scratch + l.x_f32));
    }
    for (c0 = 0; c0 < params->mid_dims.c; c0 += tile) {
        const int32_t n = params->mid_dims.c - c0 < tile ? params->mid_dims.c - c0 : tile;
        st = tq_bb_tile_run(params, opt, grad_out, grad_in, (uint8_t *)scratch, &l, c0, n);
        if (st != TQ_OK) {
            return st;
        }
    }
    return TQ_OK;
}
