/* tinyqt: register-blocked fp32 backward of the 1x1 conv (input gradient
 * and weight-gradient rows), called by the checked entry points of
 * conv_backward.c. Contracts and the summation order: tq_pw_backward.h.
 *
 * Each micro-kernel keeps a 4 x 4 block of sums in FPU registers: 4 pixels
 * x 4 input channels for the input gradient, 4 output channels x 4 saved
 * channels for the weight gradient. Every int8 converted to fp32 is used
 * four times and every product is one TQ_MLA_F32 (one VMLA on an Arm FPU),
 * where the plain loops spend a load, a store and a conversion per term.
 * The factors of a tile (pre-scaled, masked gradients; pixel addresses)
 * are gathered once into small stack buffers; partial sums of a block go
 * back to memory between tiles, which keeps every sum's order. */
#include <string.h>

#include "tq_check.h"
#include "tq_f32.h"
#include "tq_pw_backward.h"
#include "tq_sgd.h"

#define TQ_PW_PIX 4   /* pixels of an input-gradient block */
#define TQ_PW_OCT 32  /* output channels of a tile of scaled gradients */
#define TQ_PW_PT 32   /* output pixels of a weight-gradient tile */

/* The 4 x 4 register block a<row><col> of both micro-kernels: declared,
 * started from 0 (first) or from the partial sums at p0..p3, advanced by one
 * outer product u[0..3] x v0..v3 (term u[row] * v<col>), stored to p0..p3.
 * A short last block has duplicated rows holding equal sums: the order of
 * their stores is moot. */
#define TQ_BLOCK4X4_DECLARE                                                            \
    float a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33
#define TQ_BLOCK4X4_ROW_START(r, p, first)                                             \
    a##r##0 = (first) ? 0.0f : (p)[0]; a##r##1 = (first) ? 0.0f : (p)[1];             \
    a##r##2 = (first) ? 0.0f : (p)[2]; a##r##3 = (first) ? 0.0f : (p)[3]
#define TQ_BLOCK4X4_START(p0, p1, p2, p3, first)                                       \
    TQ_BLOCK4X4_ROW_START(0, p0, first); TQ_BLOCK4X4_ROW_START(1, p1, first);          \
    TQ_BLOCK4X4_ROW_START(2, p2, first); TQ_BLOCK4X4_ROW_START(3, p3, first)
#define TQ_BLOCK4X4_ROW_STEP(r, ur, v0, v1, v2, v3)                                    \
    TQ_MLA_F32(a##r##0, ur, v0); TQ_MLA_F32(a##r##1, ur, v1);                          \
    TQ_MLA_F32(a##r##2, ur, v2); TQ_MLA_F32(a##r##3, ur, v3)
#define TQ_BLOCK4X4_STEP(u, v0, v1, v2, v3)                                            \
    TQ_BLOCK4X4_ROW_STEP(0, (u)[0], v0, v1, v2, v3);                                   \
    TQ_BLOCK4X4_ROW_STEP(1, (u)[1], v0, v1, v2, v3);                                   \
    TQ_BLOCK4X4_ROW_STEP(2, (u)[2], v0, v1, v2, v3);                                   \
    TQ_BLOCK4X4_ROW_STEP(3, (u)[3], v0, v1, v2, v3)
#define TQ_BLOCK4X4_ROW_STORE(r, p)                                                    \
    (p)[0] = a##r##0; (p)[1] = a##r##1; (p)[2] = a##r##2; (p)[3] = a##r##3
#define TQ_BLOCK4X4_STORE(p0, p1, p2, p3)                                              \
    TQ_BLOCK4X4_ROW_STORE(0, p0); TQ_BLOCK4X4_ROW_STORE(1, p1);                        \
    TQ_BLOCK4X4_ROW_STORE(2, p2); TQ_BLOCK4X4_ROW_STORE(3, p3)

static int32_t tq_min_i32(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

/* Element offset / in_c of the input pixel that output pixel po reads. */
static size_t tq_pw_in_pixel(const tq_conv_params *p, const tq_dims *out_d, const tq_dims *in_d,
                             int32_t po)
{
    const int32_t per_image = out_d->h * out_d->w;
    const int32_t b = po / per_image, r = po - b * per_image;
    const int32_t oy = r / out_d->w, ox = r - oy * out_d->w;
    return ((size_t)b * in_d->h + (size_t)oy * p->stride_h) * in_d->w + (size_t)ox * p->stride_w;
}

/* ---- input gradient ----------------------------------------------------- */

/* Channels [0, 4) of the four pixel rows g0..g3: from 0 (first) or their
 * stored partial sums, add gs[4t + k] * w[t * w_stride + i] for t < nt. */
static void tq_pw_gin_4x4(const float *gs, int32_t nt, const int8_t *w, int32_t w_stride,
                          float *g0, float *g1, float *g2, float *g3, int first)
{
    TQ_BLOCK4X4_DECLARE;
    int32_t t;
    TQ_BLOCK4X4_START(g0, g1, g2, g3, first);
    for (t = 0; t < nt; t++, gs += TQ_PW_PIX, w += w_stride) {
        const float w0 = (float)w[0], w1 = (float)w[1], w2 = (float)w[2], w3 = (float)w[3];
        TQ_BLOCK4X4_STEP(gs, w0, w1, w2, w3);
    }
    TQ_BLOCK4X4_STORE(g0, g1, g2, g3);
}

/* One channel of the four pixel rows (the in_c % 4 tail). */
static void tq_pw_gin_4x1(const float *gs, int32_t nt, const int8_t *w, int32_t w_stride,
                          float *g0, float *g1, float *g2, float *g3, int first)
{
    float a0 = first ? 0.0f : *g0, a1 = first ? 0.0f : *g1;
    float a2 = first ? 0.0f : *g2, a3 = first ? 0.0f : *g3;
    int32_t t;
    for (t = 0; t < nt; t++, gs += TQ_PW_PIX, w += w_stride) {
        const float wv = (float)w[0];
        TQ_MLA_F32(a0, gs[0], wv);
        TQ_MLA_F32(a1, gs[1], wv);
        TQ_MLA_F32(a2, gs[2], wv);
        TQ_MLA_F32(a3, gs[3], wv);
    }
    *g0 = a0;
    *g1 = a1;
    *g2 = a2;
    *g3 = a3;
}

void tq_pw_backward_input_blocked(const tq_conv_params *p, const float *w_scale,
                                  const tq_dims *out_d, const float *grad_out,
                                  const uint8_t *mask, const int8_t *filter,
                                  const tq_dims *in_d, float *grad_in, int accumulate)
{
    const int32_t out_c = out_d->c, in_c = in_d->c;
    const int32_t pixels = out_d->n * out_d->h * out_d->w;
    float gs[TQ_PW_OCT * TQ_PW_PIX];
    int32_t p0;
    if (!accumulate &&
        (p->stride_h != 1 || p->stride_w != 1 || out_d->h != in_d->h || out_d->w != in_d->w)) {
        memset(grad_in, 0, (size_t)tq_dims_count(in_d) * sizeof(float));
    }
    for (p0 = 0; p0 < pixels; p0 += TQ_PW_PIX) {
        /* a short last block repeats its last pixel */
        const int32_t last = tq_min_i32(pixels - p0, TQ_PW_PIX) - 1;
        int32_t po[TQ_PW_PIX];
        float *gi[TQ_PW_PIX];
        int32_t k, oc0;
        for (k = 0; k < TQ_PW_PIX; k++) {
            po[k] = p0 + tq_min_i32(k, last);
            gi[k] = grad_in + tq_pw_in_pixel(p, out_d, in_d, po[k]) * (size_t)in_c;
        }
        for (oc0 = 0; oc0 < out_c; oc0 += TQ_PW_OCT) {
            const int32_t nt = tq_min_i32(out_c - oc0, TQ_PW_OCT);
            const int8_t *w = filter + (size_t)oc0 * in_c;
            int32_t t, ic;
            for (t = 0; t < nt; t++) {
                for (k = 0; k < TQ_PW_PIX; k++) {
                    const int32_t o = po[k] * out_c + oc0 + t;
                    gs[t * TQ_PW_PIX + k] =
                        tq_mask_pass(mask, o) ? grad_out[o] * w_scale[oc0 + t] : 0.0f;
                }
            }
            for (ic = 0; ic + 4 <= in_c; ic += 4) {
                tq_pw_gin_4x4(gs, nt, w + ic, in_c, gi[0] + ic, gi[1] + ic, gi[2] + ic,
                              gi[3] + ic, oc0 == 0 && !accumulate);
            }
            for (; ic < in_c; ic++) {
                tq_pw_gin_4x1(gs, nt, w + ic, in_c, gi[0] + ic, gi[1] + ic, gi[2] + ic,
                              gi[3] + ic, oc0 == 0 && !accumulate);
            }
        }
    }
}

/* ---- weight-gradient rows --------------------------------------------------- */

/* Saved channels [j, j + 4) of the four rows r0..r3: from 0 (first) or their
 * stored partial sums, add gt[4t + r] * (xp[t][j + i] + off) for t < npx. */
static void tq_pw_wrow_4x4(const float *gt, const int8_t *const *xp, int32_t npx, int32_t j,
                           int32_t off, float *r0, float *r1, float *r2, float *r3, int first)
{
    TQ_BLOCK4X4_DECLARE;
    int32_t t;
    TQ_BLOCK4X4_START(r0, r1, r2, r3, first);
    for (t = 0; t < npx; t++, gt += TQ_PW_ROWS) {
        const int8_t *x = xp[t] + j;
        const float x0 = (float)(x[0] + off), x1 = (float)(x[1] + off);
        const float x2 = (float)(x[2] + off), x3 = (float)(x[3] + off);
        TQ_BLOCK4X4_STEP(gt, x0, x1, x2, x3);
    }
    TQ_BLOCK4X4_STORE(r0, r1, r2, r3);
}

/* Saved channel j of the four rows (the n_sel % 4 tail). */
static void tq_pw_wrow_4x1(const float *gt, const int8_t *const *xp, int32_t npx, int32_t j,
                           int32_t off, float *r0, float *r1, float *r2, float *r3, int first)
{
    float a0 = first ? 0.0f : *r0, a1 = first ? 0.0f : *r1;
    float a2 = first ? 0.0f : *r2, a3 = first ? 0.0f : *r3;
    int32_t t;
    for (t = 0; t < npx; t++, gt += TQ_PW_ROWS) {
        const float xv = (float)(xp[t][j] + off);
        TQ_MLA_F32(a0, gt[0], xv);
        TQ_MLA_F32(a1, gt[1], xv);
        TQ_MLA_F32(a2, gt[2], xv);
        TQ_MLA_F32(a3, gt[3], xv);
    }
    *r0 = a0;
    *r1 = a1;
    *r2 = a2;
    *r3 = a3;
}

void tq_pw_weight_rows(const tq_conv_params *p, float input_scale, const tq_dims *in_d,
                       const int8_t *input, const tq_dims *out_d, const float *grad_out,
                       const uint8_t *mask, int32_t oc0, int32_t n_oc, float *rows,
                       float *grad_b)
{
    const int32_t out_c = out_d->c, n_sel = in_d->c, off = p->input_offset;
    const int32_t pixels = out_d->n * out_d->h * out_d->w;
    float gt[TQ_PW_PT * TQ_PW_ROWS];
    const int8_t *xp[TQ_PW_PT];
    float gb[TQ_PW_ROWS] = {0.0f, 0.0f, 0.0f, 0.0f};
    float *rp[TQ_PW_ROWS];
    int32_t r, t, j, p0, i;
    /* fewer than four channels: the last one is computed again */
    for (r = 0; r < TQ_PW_ROWS; r++) {
        rp[r] = rows + (size_t)tq_min_i32(r, n_oc - 1) * n_sel;
    }
    for (p0 = 0; p0 < pixels; p0 += TQ_PW_PT) {
        const int32_t npx = tq_min_i32(pixels - p0, TQ_PW_PT);
        for (t = 0; t < npx; t++) {
            xp[t] = input + tq_pw_in_pixel(p, out_d, in_d, p0 + t) * (size_t)n_sel;
            for (r = 0; r < TQ_PW_ROWS; r++) {
                const int32_t o = (p0 + t) * out_c + oc0 + tq_min_i32(r, n_oc - 1);
                const float g = tq_mask_pass(mask, o) ? grad_out[o] : 0.0f;
                gt[t * TQ_PW_ROWS + r] = g;
                gb[r] += g;
            }
        }
        for (j = 0; j + 4 <= n_sel; j += 4) {
            tq_pw_wrow_4x4(gt, xp, npx, j, off, rp[0] + j, rp[1] + j, rp[2] + j, rp[3] + j,
                           p0 == 0);
        }
        for (; j < n_sel; j++) {
            tq_pw_wrow_4x1(gt, xp, npx, j, off, rp[0] + j, rp[1] + j, rp[2] + j, rp[3] + j,
                           p0 == 0);
        }
    }
    for (r = 0; r < n_oc; r++) {
        for (i = 0; i < n_sel; i++) {
            rows[(size_t)r * n_sel + i] *= input_scale;
        }
        grad_b[r] = gb[r];
    }
}
