/* tinyqt: blocked fp32 input and weight gradients of the depthwise conv
 * (contracts in tq_dw_backward.h). Input gradient: channels go in blocks
 * of four; the block's taps are converted to fp32 once and its w_scale
 * kept in registers; each output
 * pixel forms its four term factors (mask ? g * w_scale : 0) once and adds
 * them, times the taps, to the input pixels its window covers (one
 * TQ_MLA_F32, i.e. one VMLA on Arm FPUs, per term). Output pixels go in
 * row-major order, so every sum keeps the plain loops' order; an output
 * pixel whose four factors are all zero is skipped, which changes nothing
 * (a sum that starts at +0.0f is left as it is by adding a zero). */
#include <string.h>

#include "tq_dw_backward.h"
#include "tq_check.h"
#include "tq_f32.h"
#include "tq_sgd.h"

#define TQ_DW_LANES TQ_DW_ROWS

/* gi[l] += s * w, one lane at a time (lanes of a short block alias). */
#define TQ_DW_ADD(gi, l, s, w)       \
    do {                             \
        float v_ = (gi)[l];          \
        TQ_MLA_F32(v_, s, w);        \
        (gi)[l] = v_;                \
    } while (0)

void tq_dw_backward_input_blocked(const tq_conv_params *p, const float *w_scale,
                                  const tq_dims *out_d, const float *grad_out,
                                  const uint8_t *mask, const tq_dims *f_d,
                                  const int8_t *filter, const tq_dims *in_d, float *grad_in)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, ch = in_d->c;
    const int32_t oh = out_d->h, ow = out_d->w, kh = f_d->h, kw = f_d->w;
    float wf[TQ_DW_BWD_MAX_TAPS * TQ_DW_LANES];
    int32_t c0, b, oy, ox, ky, kx, i, t;
    memset(grad_in, 0, (size_t)tq_dims_count(in_d) * sizeof(float));
    for (c0 = 0; c0 < ch; c0 += TQ_DW_LANES) {
        const int32_t valid = ch - c0 < TQ_DW_LANES ? ch - c0 : TQ_DW_LANES;
        int32_t lane[TQ_DW_LANES];
        float ws[TQ_DW_LANES];
        for (i = 0; i < TQ_DW_LANES; i++) {
            lane[i] = c0 + (i < valid ? i : valid - 1); /* extra lanes: the last channel, factor 0 */
            ws[i] = w_scale[lane[i]];
        }
        for (t = 0; t < kh * kw; t++) {
            for (i = 0; i < TQ_DW_LANES; i++) {
                wf[t * TQ_DW_LANES + i] = (float)filter[(size_t)t * ch + lane[i]];
            }
        }
        for (b = 0; b < out_d->n; b++) {
            float *gin_b = grad_in + (size_t)b * in_h * in_w * ch;
            for (oy = 0; oy < oh; oy++) {
                const int32_t y0 = oy * p->stride_h - p->pad_top;
                for (ox = 0; ox < ow; ox++) {
                    const int32_t x0 = ox * p->stride_w - p->pad_left;
                    const int32_t o = ((b * oh + oy) * ow + ox) * ch;
                    float s[TQ_DW_LANES];
                    for (i = 0; i < TQ_DW_LANES; i++) {
                        s[i] = i < valid && tq_mask_pass(mask, o + lane[i]) ? grad_out[o + lane[i]] * ws[i]
                                                                            : 0.0f;
                    }
                    if (s[0] == 0.0f && s[1] == 0.0f && s[2] == 0.0f && s[3] == 0.0f) {
                        continue;
                    }
                    for (ky = 0; ky < kh; ky++) {
                        const int32_t iy = y0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (kx = 0; kx < kw; kx++) {
                            const int32_t ix = x0 + kx * p->dilation_w;
                            const float *wt = wf + (size_t)(ky * kw + kx) * TQ_DW_LANES;
                            float *gi;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            gi = gin_b + ((size_t)iy * in_w + ix) * ch;
                            TQ_DW_ADD(gi, lane[0], s[0], wt[0]);
                            TQ_DW_ADD(gi, lane[1], s[1], wt[1]);
                            TQ_DW_ADD(gi, lane[2], s[2], wt[2]);
                            TQ_DW_ADD(gi, lane[3], s[3], wt[3]);
                        }
                    }
                }
            }
        }
    }
}

/* Weight rows: per output pixel the four lanes' factors (mask ? g : 0) are
 * formed once; each tap inside the input adds factor * (x + offset) to its
 * lane's row entry, in row-major output order like the plain loops. */
void tq_dw_weight_rows(const tq_conv_params *p, float input_scale, const tq_dims *in_d,
                       const int8_t *input, const int32_t *j, const int32_t *c, int32_t n,
                       const tq_dims *out_d, const float *grad_out, const uint8_t *mask,
                       int32_t kh, int32_t kw, float *rows, float *grad_b)
{
    const int32_t in_h = in_d->h, in_w = in_d->w, n_saved = in_d->c, out_c = out_d->c;
    const int32_t taps = kh * kw, off = p->input_offset;
    int32_t jl[TQ_DW_LANES], cl[TQ_DW_LANES], i, t, b, oy, ox, ky, kx;
    float *row[TQ_DW_LANES];
    float gb[TQ_DW_LANES] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (i = 0; i < TQ_DW_LANES; i++) {
        const int32_t l = i < n ? i : n - 1; /* extra lanes repeat the last, with factor 0 */
        jl[i] = j[l];
        cl[i] = c[l];
        row[i] = rows + (size_t)l * taps;
    }
    for (t = 0; t < n * taps; t++) {
        rows[t] = 0.0f;
    }
    for (b = 0; b < out_d->n; b++) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * n_saved;
        for (oy = 0; oy < out_d->h; oy++) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < out_d->w; ox++) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t o = ((b * out_d->h + oy) * out_d->w + ox) * out_c;
                float s[TQ_DW_LANES];
                for (i = 0; i < TQ_DW_LANES; i++) {
                    s[i] = i < n && tq_mask_pass(mask, o + cl[i]) ? grad_out[o + cl[i]] : 0.0f;
                    gb[i] += s[i];
                }
                if (s[0] == 0.0f && s[1] == 0.0f && s[2] == 0.0f && s[3] == 0.0f) {
                    continue;
                }
                for (ky = 0; ky < kh; ky++) {
                    const int32_t iy = y0 + ky * p->dilation_h;
                    if (iy < 0 || iy >= in_h) {
                        continue;
                    }
                    for (kx = 0; kx < kw; kx++) {
                        const int32_t ix = x0 + kx * p->dilation_w;
                        const int8_t *x;
                        const int32_t tap = ky * kw + kx;
                        if (ix < 0 || ix >= in_w) {
                            continue;
                        }
                        x = in_b + ((size_t)iy * in_w + ix) * n_saved;
                        TQ_DW_ADD(row[0], tap, s[0], (float)(x[jl[0]] + off));
                        TQ_DW_ADD(row[1], tap, s[1], (float)(x[jl[1]] + off));
                        TQ_DW_ADD(row[2], tap, s[2], (float)(x[jl[2]] + off));
                        TQ_DW_ADD(row[3], tap, s[3], (float)(x[jl[3]] + off));
                    }
                }
            }
        }
    }
    for (t = 0; t < n * taps; t++) {
        rows[t] *= input_scale;
    }
    for (i = 0; i < n; i++) {
        grad_b[i] = gb[i];
    }
}
