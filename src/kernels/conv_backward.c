/* tinyqt: backward of int8 conv2d (any kernel, stride, padding, dilation),
 * 1x1 conv and depthwise conv: fp32 input gradient, weight / bias gradient
 * for a selected subset of input channels, and the fused gradient + QAS
 * update. Reference C path; reduction orders as documented in
 * tinyqt/backward.h (a DSP path must keep them). */
#include <string.h>

#include "tinyqt/backward.h"
#include "tq_bwd_check.h"
#include "tq_check.h"
#include "tq_dw_backward.h"
#include "tq_conv_blocked.h"
#include "tq_sgd.h"
#include "tq_f32.h" /* fp32 file: the MVE-F build check */

/* ---- argument checks ---------------------------------------------------- */

tq_status tq_bwd_check_geometry(const tq_conv_params *p, const tq_dims *in_d,
                                const tq_dims *out_d, int32_t k_h, int32_t k_w)
{
    int64_t eff_h, eff_w;
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1 ||
        p->pad_top < 0 || p->pad_left < 0) {
        return TQ_ERR_PARAM;
    }
    if (in_d->n != out_d->n) {
        return TQ_ERR_SHAPE;
    }
    eff_h = (int64_t)(k_h - 1) * p->dilation_h + 1;
    eff_w = (int64_t)(k_w - 1) * p->dilation_w + 1;
    if (eff_h > INT32_MAX || eff_w > INT32_MAX || p->pad_top >= eff_h || p->pad_left >= eff_w ||
        (int64_t)(out_d->h - 1) * p->stride_h - p->pad_top >= in_d->h ||
        (int64_t)(out_d->w - 1) * p->stride_w - p->pad_left >= in_d->w) {
        return TQ_ERR_SHAPE;
    }
    return TQ_OK;
}

static int tq_pointwise_ok(const tq_conv_params *p, const tq_dims *f_d)
{
    return f_d->h == 1 && f_d->w == 1 && p->pad_top == 0 && p->pad_left == 0;
}

/* Input-gradient checks; kind selects the filter layout. */
static tq_status tq_check_bwd_input(tq_conv_kind kind, const tq_conv_params *p,
                                    const float *w_scale, const tq_dims *out_d,
                                    const float *grad_out, const tq_dims *f_d,
                                    const int8_t *filter, const tq_dims *in_d,
                                    const float *grad_in)
{
    int32_t out_c;
    tq_status st;
    if (p == NULL || w_scale == NULL || grad_out == NULL || filter == NULL ||
        grad_in == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(out_d) || !tq_dims_valid(f_d) || !tq_dims_valid(in_d)) {
        return TQ_ERR_SHAPE;
    }
    if (kind == TQ_CONV_DEPTHWISE) {
        out_c = f_d->c;
        if (f_d->n != 1 || out_c % in_d->c != 0) {
            return TQ_ERR_SHAPE;
        }
    } else {
        out_c = f_d->n;
        if (f_d->c != in_d->c || (kind == TQ_CONV_POINTWISE && !tq_pointwise_ok(p, f_d))) {
            return TQ_ERR_SHAPE;
        }
    }
    if (out_d->c != out_c) {
        return TQ_ERR_SHAPE;
    }
    st = tq_bwd_check_geometry(p, in_d, out_d, f_d->h, f_d->w);
    if (st != TQ_OK) {
        return st;
    }
    return tq_scales_valid(w_scale, out_c) ? TQ_OK : TQ_ERR_PARAM;
}

/* Weight-gradient checks shared by the gradient and the fused kernels:
 * input [N, H, W, n_sel] against output and a k_h x k_w window. */
static tq_status tq_check_bwd_weight(const tq_conv_params *p, float input_scale,
                                     const tq_dims *in_d, const int8_t *input,
                                     const tq_dims *out_d, const float *grad_out,
                                     int32_t k_h, int32_t k_w)
{
    tq_status st;
    if (input == NULL || grad_out == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(in_d) || !tq_dims_valid(out_d) || k_h < 1 || k_w < 1) {
        return TQ_ERR_SHAPE;
    }
    st = tq_bwd_check_geometry(p, in_d, out_d, k_h, k_w);
    if (st != TQ_OK) {
        return st;
    }
    if (p->input_offset < -127 || p->input_offset > 128 || !tq_scale_valid(input_scale)) {
        return TQ_ERR_PARAM;
    }
    return TQ_OK;
}

/* ---- input gradient ----------------------------------------------------- */

tq_status tq_conv_backward_input_f32(const tq_conv_params *params, const float *w_scale,
                                     const tq_dims *output_dims, const float *grad_out,
                                     const uint8_t *mask,
                                     const tq_dims *filter_dims, const int8_t *filter,
                                     const tq_dims *input_dims, float *grad_in)
{
    tq_status st = tq_check_bwd_input(TQ_CONV_DENSE, params, w_scale, output_dims, grad_out,
                                      filter_dims, filter, input_dims, grad_in);
    if (st != TQ_OK) {
        return st;
    }
    tq_conv_backward_input_blocked(params, w_scale, output_dims, grad_out, mask, filter_dims,
                                   filter, input_dims, grad_in);
    return TQ_OK;
}

tq_status tq_conv_1x1_backward_input_f32(const tq_conv_params *params, const float *w_scale,
                                         const tq_dims *output_dims, const float *grad_out,
                                         const uint8_t *mask,
                                         const tq_dims *filter_dims, const int8_t *filter,
                                         const tq_dims *input_dims, float *grad_in)
{
    tq_status st = tq_check_bwd_input(TQ_CONV_POINTWISE, params, w_scale, output_dims,
                                      grad_out, filter_dims, filter, input_dims, grad_in);
    if (st != TQ_OK) {
        return st;
    }
    tq_pw_backward_input_blocked(params, w_scale, output_dims, grad_out, mask, filter,
                                 input_dims, grad_in, 0);
    return TQ_OK;
}

static void tq_dw_bwd_input_portable(const tq_conv_params *p, const float *w_scale,
                                     const tq_dims *out_d, const float *grad_out,
                                     const uint8_t *mask, const tq_dims *f_d,
                                     const int8_t *filter, const tq_dims *in_d, float *grad_in)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, in_c = in_d->c;
    const int32_t k_h = f_d->h, k_w = f_d->w, out_c = out_d->c;
    const int32_t mult = out_c / in_c;
    int32_t b, oy, ox, ky, kx, c;
    memset(grad_in, 0, (size_t)tq_dims_count(in_d) * sizeof(float));
    for (b = 0; b < out_d->n; b++) {
        float *gin_b = grad_in + (size_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < out_d->h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_d->w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t o0 = ((b * out_d->h + oy) * out_d->w + ox) * out_c;
                const float *go = grad_out + o0;
                for (ky = 0; ky < k_h; ky++) {
                    const int32_t iy = y0 + ky * p->dilation_h;
                    if (iy < 0 || iy >= in_h) {
                        continue;
                    }
                    for (kx = 0; kx < k_w; kx++) {
                        const int32_t ix = x0 + kx * p->dilation_w;
                        const int8_t *w;
                        float *gi;
                        if (ix < 0 || ix >= in_w) {
                            continue;
                        }
                        gi = gin_b + ((size_t)iy * in_w + ix) * in_c;
                        w = filter + ((size_t)ky * k_w + kx) * out_c;
                        for (c = 0; c < out_c; c++) {
                            if (tq_mask_pass(mask, o0 + c)) {
                                gi[c / mult] += (go[c] * w_scale[c]) * (float)w[c];
                            }
                        }
                    }
                }
            }
        }
    }
}

tq_status tq_depthwise_conv_backward_input_f32(const tq_conv_params *params,
                                               const float *w_scale,
                                               const tq_dims *output_dims,
                                               const float *grad_out, const uint8_t *mask,
                                               const tq_dims *filter_dims,
                                               const int8_t *filter,
                                               const tq_dims *input_dims, float *grad_in)
{
    tq_status st = tq_check_bwd_input(TQ_CONV_DEPTHWISE, params, w_scale, output_dims,
                                      grad_out, filter_dims, filter, input_dims, grad_in);
    if (st != TQ_OK) {
        return st;
    }
    tq_dw_backward_input_run(params, w_scale, output_dims, grad_out, mask, filter_dims, filter, input_dims,
                             grad_in);
    return TQ_OK;
}

void tq_dw_backward_input_run(const tq_conv_params *params, const float *w_scale,
                              const tq_dims *output_dims, const float *grad_out, const uint8_t *mask,
                              const tq_dims *filter_dims, const int8_t *filter, const tq_dims *input_dims,
                              float *grad_in)
{
    if (filter_dims->c == input_dims->c && filter_dims->h * filter_dims->w <= TQ_DW_BWD_MAX_TAPS) {
        tq_dw_backward_input_blocked(params, w_scale, output_dims, grad_out, mask, filter_dims, filter,
                                     input_dims, grad_in);
        return;
    }
    tq_dw_bwd_input_portable(params, w_scale, output_dims, grad_out, mask, filter_dims, filter,
                             input_dims, grad_in);
}

/* ---- weight gradient: one output channel at a time ------------------------ */

static tq_status tq_conv_bwd_weight_impl(int pointwise, const tq_conv_params *params,
                                         float input_scale, const tq_dims *input_dims,
                                         const int8_t *input, const tq_dims *output_dims,
                                         const float *grad_out, const uint8_t *mask,
                                         const tq_dims *grad_w_dims, float *grad_w,
                                         float *grad_b)
{
    int32_t oc, row;
    tq_status st;
    if (params == NULL || grad_w == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(grad_w_dims)) {
        return TQ_ERR_SHAPE;
    }
    st = tq_check_bwd_weight(params, input_scale, input_dims, input, output_dims, grad_out,
                             grad_w_dims->h, grad_w_dims->w);
    if (st != TQ_OK) {
        return st;
    }
    if (grad_w_dims->n != output_dims->c || grad_w_dims->c != input_dims->c ||
        (pointwise && !tq_pointwise_ok(params, grad_w_dims))) {
        return TQ_ERR_SHAPE;
    }
    row = grad_w_dims->h * grad_w_dims->w * grad_w_dims->c;
    for (oc = 0; oc < output_dims->c; oc += TQ_PW_ROWS) {
        const int32_t n_oc = output_dims->c - oc < TQ_PW_ROWS ? output_dims->c - oc : TQ_PW_ROWS;
        float gb[TQ_PW_ROWS];
        int32_t r;
        if (pointwise) {
            tq_pw_weight_rows(params, input_scale, input_dims, input, NULL, output_dims, grad_out,
                              mask, oc, n_oc, grad_w + (size_t)oc * row, gb);
        } else {
            tq_conv_weight_rows(params, input_scale, input_dims, input, output_dims, grad_out, mask,
                                grad_w_dims->h, grad_w_dims->w, oc, n_oc, grad_w + (size_t)oc * row, gb);
        }
        for (r = 0; r < n_oc && grad_b != NULL; r++) {
            grad_b[oc + r] = gb[r];
        }
    }
    return TQ_OK;
}

tq_status tq_conv_backward_weight_f32(const tq_conv_params *params, float input_scale,
                                      const tq_dims *input_dims, const int8_t *input,
                                      const tq_dims *output_dims, const float *grad_out,
                                      const uint8_t *mask,
                                      const tq_dims *grad_w_dims, float *grad_w,
                                      float *grad_b)
{
    return tq_conv_bwd_weight_impl(0, params, input_scale, input_dims, input, output_dims,
                                   grad_out, mask, grad_w_dims, grad_w, grad_b);
}

tq_status tq_conv_1x1_backward_weight_f32(const tq_conv_params *params, float input_scale,
                                          const tq_dims *input_dims, const int8_t *input,
                                          const tq_dims *output_dims, const float *grad_out,
                                          const uint8_t *mask,
                                          const tq_dims *grad_w_dims, float *grad_w,
                                          float *grad_b)
{
    return tq_conv_bwd_weight_impl(1, params, input_scale, input_dims, input, output_dims,
                                   grad_out, mask, grad_w_dims, grad_w, grad_b);
}

/* Lanes of the trained depthwise channels t0 .. t0 + n - 1 (n <= TQ_DW_ROWS,
 * fewer at the end of total): saved input channel j = t / mult and output
 * channel c = (sel ? sel[j] : j) * mult + t % mult. Returns n. */
static int32_t tq_dw_lanes(int32_t t0, int32_t total, int32_t mult, const int32_t *sel, int32_t *j,
                           int32_t *c)
{
    const int32_t n = total - t0 < TQ_DW_ROWS ? total - t0 : TQ_DW_ROWS;
    int32_t r;
    for (r = 0; r < n; r++) {
        const int32_t t = t0 + r;
        j[r] = t / mult;
        c[r] = (sel != NULL ? sel[j[r]] : j[r]) * mult + t % mult;
    }
    return n;
}

/* Depthwise: trained output channel c = ic * mult + m reads saved channel j. */
static tq_status tq_check_dw_weight(const tq_conv_params *params, float input_scale,
                                    const tq_dims *input_dims, const int8_t *input,
                                    int32_t in_channels, const int32_t *sel,
                                    const tq_dims *output_dims, const float *grad_out,
                                    const tq_dims *filter_dims)
{
    tq_status st;
    if (params == NULL || filter_dims == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(filter_dims)) {
        return TQ_ERR_SHAPE;
    }
    st = tq_check_bwd_weight(params, input_scale, input_dims, input, output_dims, grad_out,
                             filter_dims->h, filter_dims->w);
    if (st != TQ_OK) {
        return st;
    }
    if (filter_dims->n != 1 || in_channels < 1 || filter_dims->c % in_channels != 0 ||
        output_dims->c != filter_dims->c) {
        return TQ_ERR_SHAPE;
    }
    return tq_check_selection(input_dims->c, sel, in_channels);
}

tq_status tq_depthwise_conv_backward_weight_f32(const tq_conv_params *params,
                                                float input_scale,
                                                const tq_dims *input_dims,
                                                const int8_t *input,
                                                int32_t in_channels, const int32_t *sel,
                                                const tq_dims *output_dims,
                                                const float *grad_out, const uint8_t *mask,
                                                const tq_dims *filter_dims,
                                                float *grad_w, float *grad_b)
{
    int32_t t0, mult, taps, jl[TQ_DW_ROWS], cl[TQ_DW_ROWS];
    tq_status st;
    if (grad_w == NULL) {
        return TQ_ERR_NULL;
    }
    st = tq_check_dw_weight(params, input_scale, input_dims, input, in_channels, sel,
                            output_dims, grad_out, filter_dims);
    if (st != TQ_OK) {
        return st;
    }
    mult = filter_dims->c / in_channels;
    taps = filter_dims->h * filter_dims->w;
    for (t0 = 0; t0 < input_dims->c * mult; t0 += TQ_DW_ROWS) {
        const int32_t n = tq_dw_lanes(t0, input_dims->c * mult, mult, sel, jl, cl);
        float gb[TQ_DW_ROWS];
        int32_t r;
        tq_dw_weight_rows(params, input_scale, input_dims, input, jl, cl, n, output_dims, grad_out, mask,
                          filter_dims->h, filter_dims->w, grad_w + (size_t)t0 * taps, gb);
        for (r = 0; r < n && grad_b != NULL; r++) {
            grad_b[t0 + r] = gb[r];
        }
    }
    return TQ_OK;
}

/* ---- fused weight gradient + update ---------------------------------------- */

/* Bytes of one gradient row, KH*KW*n_sel fp32; 0 for invalid arguments or
 * when the size overflows int32. */
static int32_t tq_row_bytes(const tq_dims *filter_dims, int32_t n_sel)
{
    if (filter_dims == NULL || filter_dims->h < 1 || filter_dims->w < 1 || n_sel < 1 ||
        (int64_t)filter_dims->h * filter_dims->w * n_sel * 4 > INT32_MAX) {
        return 0;
    }
    return filter_dims->h * filter_dims->w * n_sel * (int32_t)sizeof(float);
}

/* Scratch of a fused kernel that computes min(channels, rows) gradient rows
 * of one_row bytes at once; 0 when one_row is (invalid arguments) or when
 * the size overflows int32. */
static int32_t tq_rows_buffer_size(int32_t one_row, int32_t channels, int32_t rows)
{
    if (one_row == 0 || channels < 1 || (int64_t)one_row * rows > INT32_MAX) {
        return 0;
    }
    return one_row * (channels < rows ? channels : rows);
}

int32_t tq_conv_backward_weight_update_get_buffer_size(const tq_dims *filter_dims,
                                                       int32_t n_sel)
{
    return tq_rows_buffer_size(tq_row_bytes(filter_dims, n_sel),
                               filter_dims != NULL ? filter_dims->n : 0, TQ_PW_ROWS);
}

int32_t tq_conv_1x1_backward_weight_update_get_buffer_size(const tq_dims *filter_dims,
                                                           int32_t n_sel)
{
    return tq_conv_backward_weight_update_get_buffer_size(filter_dims, n_sel);
}

int32_t tq_depthwise_conv_backward_weight_update_get_buffer_size(const tq_dims *filter_dims)
{
    return tq_rows_buffer_size(tq_row_bytes(filter_dims, 1),
                               filter_dims != NULL ? filter_dims->c : 0, TQ_DW_ROWS);
}

/* The fused weight gradient + update; xf (1x1 only, or NULL): the inputs
 * already in fp32 (tq_pw_convert_inputs), read instead of input. */
static tq_status tq_conv_bwd_update_impl(int pointwise, const tq_conv_params *params,
                                         float input_scale, const float *w_scale,
                                         const tq_dims *input_dims, const int8_t *input,
                                         const float *xf, const int32_t *sel, const tq_dims *output_dims,
                                         const float *grad_out, const uint8_t *mask,
                                         const tq_dims *filter_dims, int8_t *filter,
                                         int32_t *bias, const tq_sgd_params *opt,
                                         const tq_sgd_state *state, void *scratch,
                                         int32_t scratch_size)
{
    int32_t oc, taps, row, n_sel;
    tq_status st;
    if (params == NULL || w_scale == NULL || filter_dims == NULL || filter == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(filter_dims)) {
        return TQ_ERR_SHAPE;
    }
    st = tq_check_bwd_weight(params, input_scale, input_dims, input, output_dims, grad_out,
                             filter_dims->h, filter_dims->w);
    if (st != TQ_OK) {
        return st;
    }
    if (output_dims->c != filter_dims->n || (pointwise && !tq_pointwise_ok(params, filter_dims))) {
        return TQ_ERR_SHAPE;
    }
    n_sel = input_dims->c;
    st = tq_check_selection(n_sel, sel, filter_dims->c);
    if (st == TQ_OK) {
        st = tq_sgd_check(opt, state, 1, bias != NULL);
    }
    if (st == TQ_OK) {
        st = tq_check_scratch(scratch, scratch_size,
                              tq_conv_backward_weight_update_get_buffer_size(filter_dims, n_sel));
    }
    if (st != TQ_OK) {
        return st;
    }
    if (!tq_scales_valid(w_scale, filter_dims->n)) {
        return TQ_ERR_PARAM;
    }
    taps = filter_dims->h * filter_dims->w;
    row = taps * n_sel;
    /* TQ_PW_ROWS channels' gradients at a time, each applied as soon as they exist */
    for (oc = 0; oc < filter_dims->n; oc += TQ_PW_ROWS) {
        const int32_t n_oc = filter_dims->n - oc < TQ_PW_ROWS ? filter_dims->n - oc : TQ_PW_ROWS;
        float gb[TQ_PW_ROWS];
        int32_t r;
        if (pointwise) {
            tq_pw_weight_rows(params, input_scale, input_dims, input, xf, output_dims, grad_out, mask,
                              oc, n_oc, (float *)scratch, gb);
        } else {
            tq_conv_weight_rows(params, input_scale, input_dims, input, output_dims, grad_out, mask,
                                filter_dims->h, filter_dims->w, oc, n_oc, (float *)scratch, gb);
        }
        for (r = 0; r < n_oc; r++) {
            tq_sgd_channel(opt, state, input_scale, w_scale[oc + r],
                           filter + (size_t)(oc + r) * taps * filter_dims->c, taps, filter_dims->c,
                           n_sel, sel, (const float *)scratch + (size_t)r * row, (oc + r) * row,
                           bias != NULL ? bias + oc + r : NULL, gb[r], oc + r);
        }
    }
    return TQ_OK;
}

tq_status tq_conv_backward_weight_update(const tq_conv_params *params, float input_scale,
                                         const float *w_scale,
                                         const tq_dims *input_dims, const int8_t *input,
                                         const int32_t *sel,
                                         const tq_dims *output_dims, const float *grad_out,
                                         const uint8_t *mask,
                                         const tq_dims *filter_dims, int8_t *filter,
                                         int32_t *bias,
                                         const tq_sgd_params *opt, const tq_sgd_state *state,
                                         void *scratch, int32_t scratch_size)
{
    return tq_conv_bwd_update_impl(0, params, input_scale, w_scale, input_dims, input, NULL, sel,
                                   output_dims, grad_out, mask, filter_dims, filter, bias, opt,
                                   state, scratch, scratch_size);
}

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
                                             void *scratch, int32_t scratch_size)
{
    return tq_conv_bwd_update_impl(1, params, input_scale, w_scale, input_dims, input, NULL, sel,
                                   output_dims, grad_out, mask, filter_dims, filter, bias, opt,
                                   state, scratch, scratch_size);
}

tq_status tq_pw_weight_update_xf(const tq_conv_params *params, float input_scale,
                                 const float *w_scale, const tq_dims *input_dims,
                                 const int8_t *input, const float *xf, const tq_dims *output_dims,
                                 const float *grad_out, const uint8_t *mask,
                                 const tq_dims *filter_dims, int8_t *filter, int32_t *bias,
                                 const tq_sgd_params *opt, const tq_sgd_state *state,
                                 void *scratch, int32_t scratch_size)
{
    if (xf != NULL && params != NULL && (params->stride_h != 1 || params->stride_w != 1)) {
        return TQ_ERR_PARAM;
    }
    return tq_conv_bwd_update_impl(1, params, input_scale, w_scale, input_dims, input, xf, NULL,
                                   output_dims, grad_out, mask, filter_dims, filter, bias, opt,
                                   state, scratch, scratch_size);
}

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
                                                   void *scratch, int32_t scratch_size)
{
    int32_t t0, mult, taps, out_c, jl[TQ_DW_ROWS], cl[TQ_DW_ROWS];
    tq_status st;
    if (w_scale == NULL || filter == NULL) {
        return TQ_ERR_NULL;
    }
    st = tq_check_dw_weight(params, input_scale, input_dims, input, in_channels, sel,
                            output_dims, grad_out, filter_dims);
    if (st == TQ_OK) {
        st = tq_sgd_check(opt, state, 1, bias != NULL);
    }
    if (st == TQ_OK) {
        st = tq_check_scratch(scratch, scratch_size,
                              tq_depthwise_conv_backward_weight_update_get_buffer_size(filter_dims));
    }
    if (st != TQ_OK) {
        return st;
    }
    out_c = filter_dims->c;
    if (!tq_scales_valid(w_scale, out_c)) {
        return TQ_ERR_PARAM;
    }
    mult = out_c / in_channels;
    taps = filter_dims->h * filter_dims->w;
    /* four trained channels' rows at a time, each applied in channel order */
    for (t0 = 0; t0 < input_dims->c * mult; t0 += TQ_DW_ROWS) {
        const int32_t n = tq_dw_lanes(t0, input_dims->c * mult, mult, sel, jl, cl);
        float gb[TQ_DW_ROWS];
        int32_t r;
        tq_dw_weight_rows(params, input_scale, input_dims, input, jl, cl, n, output_dims, grad_out, mask,
                          filter_dims->h, filter_dims->w, (float *)scratch, gb);
        for (r = 0; r < n; r++) {
            const int32_t c = cl[r], t = t0 + r;
            tq_sgd_channel(opt, state, input_scale, w_scale[c], filter + c, taps, out_c, 1, NULL,
                           (const float *)scratch + (size_t)r * taps, t * taps,
                           bias != NULL ? bias + c : NULL, gb[r], t);
        }
    }
    return TQ_OK;
}

/* ---- bias gradient alone ------------------------------------------------- */

#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TQ_FORCE_PORTABLE)
#define TQ_BIAS_SUMS8_ASM 1
/* Two mask bits of the byte in t (N <- bit 2k, C <- bit 2k + 1 by LSLS
 * #(31 - 2k)) and the two gradients' conditional additions. */
#define TQ_BIAS_PAIR(sh, a, ga, b, gb)                                                 \
    "lsls %[u], %[t], #" sh "\n\t"                                                     \
    "it mi\n\t"                                                                        \
    "vaddmi.f32 " a ", " a ", " ga "\n\t"                                              \
    "it cs\n\t"                                                                        \
    "vaddcs.f32 " b ", " b ", " gb "\n\t"
/* s[0..7] += g[i * g_step + j] for pixels i < n (n >= 1), in pixel order,
 * where bit j of the mask byte m[i * m_step] is set: per pixel one LDRB,
 * one VLDM of the eight gradients and per pair of bits one LSLS and two
 * conditional VADD.F32 (26 instructions, where the C loop spent about 60).
 * Skipping a masked gradient gives the bits that adding +0.0f does (see
 * tq_bias_backward_f32). Steps are in bytes. */
static void tq_bias_sums8(const float *g, int32_t g_step, const uint8_t *m, int32_t m_step, int32_t n,
                          float *s)
{
    uint32_t t, u;
    __asm__ volatile(
        "vldmia %[s], {s0-s7}\n\t"
        "1:\n\t"
        "ldrb %[t], [%[m]]\n\t"
        "add %[m], %[m], %[ms]\n\t"
        "vldmia %[g], {s16-s23}\n\t"
        "add %[g], %[g], %[gs]\n\t"
        TQ_BIAS_PAIR("31", "s0", "s16", "s1", "s17")
        TQ_BIAS_PAIR("29", "s2", "s18", "s3", "s19")
        TQ_BIAS_PAIR("27", "s4", "s20", "s5", "s21")
        TQ_BIAS_PAIR("25", "s6", "s22", "s7", "s23")
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        "vstmia %[s], {s0-s7}"
        : [g] "+r"(g), [m] "+r"(m), [n] "+r"(n), [t] "=&r"(t), [u] "=&r"(u)
        : [gs] "r"(g_step), [ms] "r"(m_step), [s] "r"(s)
        : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s16", "s17", "s18", "s19", "s20", "s21",
          "s22", "s23", "cc", "memory");
}
#undef TQ_BIAS_PAIR
#endif

tq_status tq_bias_backward_f32(const tq_dims *output_dims, const float *grad_out,
                               const uint8_t *mask, float *grad_b)
{
    int32_t c = 0, i, j, pixels, ch;
    if (grad_out == NULL || grad_b == NULL) {
        return TQ_ERR_NULL;
    }
    if (!tq_dims_valid(output_dims)) {
        return TQ_ERR_SHAPE;
    }
    ch = output_dims->c;
    pixels = output_dims->n * output_dims->h * output_dims->w;
    /* Eight channels at a time, each sum in pixel order in its own
     * variable. A masked gradient adds +0.0f (tq_f32_keep) instead of
     * being skipped: the sums start at +0.0f and so are never -0.0f, and
     * x + 0.0f == x for every other x, NaN and infinities included. */
    for (; c + 8 <= ch; c += 8) {
        float s[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
#ifdef TQ_BIAS_SUMS8_ASM
        if (ch % 8 == 0) { /* each pixel's eight bits are one mask byte */
            static const uint8_t all = 0xFFu;
            tq_bias_sums8(grad_out + c, ch * (int32_t)sizeof(float), mask != NULL ? mask + c / 8 : &all,
                          mask != NULL ? ch / 8 : 0, pixels, s);
            memcpy(grad_b + c, s, sizeof s);
            continue;
        }
#endif
        for (i = 0; i < pixels; i++) {
            const float *g = grad_out + (size_t)i * ch + c;
            const uint32_t m = tq_mask_bits(mask, i * ch + c, 8);
            if (m == 0xFFu) {
                for (j = 0; j < 8; j++) {
                    s[j] += g[j];
                }
            } else {
                for (j = 0; j < 8; j++) {
                    s[j] += tq_f32_keep(g[j], (m >> j) & 1u);
                }
            }
        }
        for (j = 0; j < 8; j++) {
            grad_b[c + j] = s[j];
        }
    }
    for (; c < ch; c++) {
        float gb = 0.0f;
        for (i = 0; i < pixels; i++) {
            const int32_t o = i * ch + c;
            if (tq_mask_pass(mask, o)) {
                gb += grad_out[o];
            }
        }
        grad_b[c] = gb;
    }
    return TQ_OK;
}
