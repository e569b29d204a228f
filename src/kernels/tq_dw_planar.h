/* tinyqt: a streamed block's 3x3 depthwise rows on the ARM DSP extension
 * from planar int16 rows (depthwise_conv_s8_planar.c).
 *
 * The block keeps a ring of its last 3 expanded rows with, for each
 * channel, the row as int16 with the input offset added (tq_dw_planar_fill,
 * once per expanded row), and computes each depthwise output row from it
 * (tq_dw_planar_row). The ring's size is the same on every target, so a
 * plan sized on the host fits the device; only M4/M7-class cores (DSP
 * without Helium) read it. */
#ifndef TINYQT_DW_PLANAR_H
#define TINYQT_DW_PLANAR_H

#include "tinyqt/kernels.h"
#include "tq_simd.h"
#include "tq_mve.h"

/* 1 on the cores that run the planar rows. */
#if TQ_USE_DSP && !TQ_USE_MVE
#define TQ_DW_PLANAR 1
#else
#define TQ_DW_PLANAR 0
#endif

/* The ring's geometry for one depthwise stage: width int16 columns per
 * row (one of the assembly's fixed row strides), 0 when the planar rows do
 * not take the stage. */
typedef struct {
    int32_t width;  /* int16 columns of each ring row */
    int32_t cols;   /* columns the outputs read (<= width) */
    int32_t bytes;  /* the whole ring with its per-channel tables */
} tq_dw_planar_geom;

/* Geometry for a depthwise stage (params p, filter f: 3x3, dilation 1,
 * horizontal stride 1 or 2, no horizontal padding: the band carries it)
 * over band rows of band_w pixels of mid channels (a multiple of 4) and
 * out_w outputs; .bytes = 0 for any other stage. */
tq_dw_planar_geom tq_dw_planar_geometry(const tq_conv_params *p, const tq_dims *f, int32_t band_w,
                                        int32_t out_w, int32_t mid);

#if TQ_DW_PLANAR
/* Sets up the ring's per-channel tables (weight pairs, doubled, and
 * requantization) from the stage's filter [1, 3, 3, mid], bias (or NULL)
 * and quantization; 0 when a channel's requantization is outside
 * tq_rq2_s8's range (the block then runs the NHWC kernel). */
int tq_dw_planar_init(void *ring, const tq_dw_planar_geom *g, const tq_conv_params *p,
                      const tq_channel_quant *q, const int8_t *filter, const int32_t *bias,
                      int32_t mid);

/* Ring row of input row r (>= 0) from the band row src (band_w pixels of
 * mid int8 channels). */
void tq_dw_planar_fill(void *ring, const tq_dw_planar_geom *g, int32_t r, const int8_t *src,
                       int32_t band_w, int32_t mid, int32_t input_offset);

/* One output row [out_w, mid] into out from the ring's input rows top ..
 * top + 2 (rows outside [0, in_h) are padding), with bias (or NULL: the
 * one given to tq_dw_planar_init). */
void tq_dw_planar_row(const void *ring, const tq_dw_planar_geom *g, int32_t top, int32_t in_h,
                      int32_t stride_w, const int32_t *bias, int32_t mid, int32_t out_w, int8_t *out);
#endif

#endif /* TINYQT_DW_PLANAR_H */
