# Included at the end of _ckernels.pyx: thin bindings of the backward kernels,
# the loss / head and the QAS optimizer (src/kernels/include/tinyqt/backward.h).
# No logic: unpack memoryviews, release the GIL, return the tq_status. Checks
# and error messages are in tinyqt.backward.
from libc.stdint cimport uint32_t

cdef extern from "tinyqt/backward.h":
    ctypedef struct tq_sgd_params:
        float lr
        float momentum
        int32_t qas
        int32_t rounding
    ctypedef struct tq_sgd_state:
        uint32_t *rng
        float *w_momentum
        float *b_momentum
        float *w_master

    tq_status tq_clamp_mask_s8(const int8_t *y, int32_t count, int32_t act_min,
                               int32_t act_max, uint8_t *mask) nogil
    uint32_t tq_xorshift32(uint32_t *state) nogil
    float tq_xorshift32_uniform(uint32_t *state) nogil
    tq_status tq_sgd_update_conv(const tq_sgd_params *opt, const tq_sgd_state *state,
                                 float input_scale, const float *w_scale,
                                 const tq_dims *filter_dims, int8_t *filter, int32_t *bias,
                                 int32_t n_sel, const int32_t *sel,
                                 const float *grad_w, const float *grad_b) nogil
    tq_status tq_sgd_update_depthwise(const tq_sgd_params *opt, const tq_sgd_state *state,
                                      float input_scale, const float *w_scale,
                                      const tq_dims *filter_dims, int8_t *filter,
                                      int32_t *bias, int32_t in_channels, int32_t n_sel,
                                      const int32_t *sel, const float *grad_w,
                                      const float *grad_b) nogil
    tq_status tq_sgd_update_bias(const tq_sgd_params *opt, const tq_sgd_state *state,
                                 float input_scale, const float *w_scale, int32_t channels,
                                 int32_t *bias, const float *grad_b) nogil
    tq_status tq_conv_backward_input_f32(const tq_conv_params *params, const float *w_scale,
                                         const tq_dims *output_dims, const float *grad_out,
                                         const uint8_t *mask, const tq_dims *filter_dims,
                                         const int8_t *filter, const tq_dims *input_dims,
                                         float *grad_in) nogil
    tq_status tq_conv_1x1_backward_input_f32(const tq_conv_params *params,
                                             const float *w_scale,
                                             const tq_dims *output_dims,
                                             const float *grad_out, const uint8_t *mask,
                                             const tq_dims *filter_dims,
                                             const int8_t *filter,
                                             const tq_dims *input_dims,
                                             float *grad_in) nogil
    tq_status tq_depthwise_conv_backward_input_f32(const tq_conv_params *params,
                                                   const float *w_scale,
                                                   const tq_dims *output_dims,
                                                   const float *grad_out,
                                                   const uint8_t *mask,
                                                   const tq_dims *filter_dims,
                                                   const int8_t *filter,
                                                   const tq_dims *input_dims,
                                                   float *grad_in) nogil
    int32_t tq_depthwise_conv_backward_input_inplace_get_buffer_size(
        const tq_conv_params *params, const tq_dims *dims, const tq_dims *filter_dims) nogil
    tq_status tq_depthwise_conv_backward_input_inplace_f32(
        const tq_conv_params *params, const float *w_scale, const tq_dims *dims, float *grad,
        const uint8_t *mask, const tq_dims *filter_dims, const int8_t *filter, void *scratch,
        int32_t scratch_size) nogil
    tq_status tq_conv_backward_weight_f32(const tq_conv_params *params, float input_scale,
                                          const tq_dims *input_dims, const int8_t *input,
                                          const tq_dims *output_dims, const float *grad_out,
                                          const uint8_t *mask, const tq_dims *grad_w_dims,
                                          float *grad_w, float *grad_b) nogil
    tq_status tq_conv_1x1_backward_weight_f32(const tq_conv_params *params,
                                              float input_scale,
                                              const tq_dims *input_dims,
                                              const int8_t *input,
                                              const tq_dims *output_dims,
                                              const float *grad_out, const uint8_t *mask,
                                              const tq_dims *grad_w_dims, float *grad_w,
                                              float *grad_b) nogil
    tq_status tq_depthwise_conv_backward_weight_f32(const tq_conv_params *params,
                                                    float input_scale,
                                                    const tq_dims *input_dims,
                                                    const int8_t *input,
                                                    int32_t in_channels,
                                                    const int32_t *sel,
                                                    const tq_dims *output_dims,
                                                    const float *grad_out,
                                                    const uint8_t *mask,
                                                    const tq_dims *filter_dims,
                                                    float *grad_w, float *grad_b) nogil
    int32_t tq_conv_backward_weight_update_get_buffer_size(const tq_dims *filter_dims,
                                                           int32_t n_sel)
    int32_t tq_conv_1x1_backward_weight_update_get_buffer_size(const tq_dims *filter_dims,
                                                               int32_t n_sel)
    int32_t tq_depthwise_conv_backward_weight_update_get_buffer_size(
        const tq_dims *filter_dims)
    int32_t tq_fc_backward_weight_update_get_buffer_size(int32_t n_sel)
    tq_status tq_conv_backward_weight_update(const tq_conv_params *params, float input_scale,
                                             const float *w_scale, const tq_dims *input_dims,
                                             const int8_t *input, const int32_t *sel,
                                             const tq_dims *output_dims,
                                             const float *grad_out, const uint8_t *mask,
                                             const tq_dims *filter_dims, int8_t *filter,
                                             int32_t *bias, const tq_sgd_params *opt,
                                             const tq_sgd_state *state, void *scratch,
                                             int32_t scratch_size) nogil
    tq_status tq_conv_1x1_backward_weight_update(const tq_conv_params *params,
                                                 float input_scale, const float *w_scale,
                                                 const tq_dims *input_dims,
                                                 const int8_t *input, const int32_t *sel,
                                                 const tq_dims *output_dims,
                                                 const float *grad_out, const uint8_t *mask,
                                                 const tq_dims *filter_dims, int8_t *filter,
                                                 int32_t *bias, const tq_sgd_params *opt,
                                                 const tq_sgd_state *state, void *scratch,
                                                 int32_t scratch_size) nogil
    tq_status tq_depthwise_conv_backward_weight_update(const tq_conv_params *params,
                                                       float input_scale,
                                                       const float *w_scale,
                                                       const tq_dims *input_dims,
                                                       const int8_t *input,
                                                       int32_t in_channels,
                                                       const int32_t *sel,
                                                       const tq_dims *output_dims,
                                                       const float *grad_out,
                                                       const uint8_t *mask,
                                                       const tq_dims *filter_dims,
                                                       int8_t *filter, int32_t *bias,
                                                       const tq_sgd_params *opt,
                                                       const tq_sgd_state *state,
                                                       void *scratch,
                                                       int32_t scratch_size) nogil
    tq_status tq_bias_backward_f32(const tq_dims *output_dims, const float *grad_out,
                                   const uint8_t *mask, float *grad_b) nogil
    tq_status tq_fc_backward_input_f32(int32_t batches, int32_t in_features,
                                       int32_t out_features, const float *w_scale,
                                       const float *grad_out, const uint8_t *mask,
                                       const int8_t *weights, float *grad_in) nogil
    tq_status tq_fc_backward_weight_f32(int32_t input_offset, float input_scale,
                                        int32_t batches, int32_t n_sel, int32_t out_features,
                                        const int8_t *input, const float *grad_out,
                                        const uint8_t *mask, float *grad_w,
                                        float *grad_b) nogil
    tq_status tq_fc_backward_weight_update(int32_t input_offset, float input_scale,
                                           const float *w_scale, int32_t batches,
                                           int32_t in_features, int32_t out_features,
                                           int32_t n_sel, const int32_t *sel,
                                           const int8_t *input, const float *grad_out,
                                           const uint8_t *mask, int8_t *weights,
                                           int32_t *bias, const tq_sgd_params *opt,
                                           const tq_sgd_state *state, void *scratch,
                                           int32_t scratch_size) nogil
    tq_status tq_avgpool_backward_f32(const tq_conv_params *params, int32_t filter_h,
                                      int32_t filter_w, const tq_dims *output_dims,
                                      const float *grad_out, const uint8_t *mask,
                                      const tq_dims *input_dims, float *grad_in) nogil
    tq_status tq_mean_backward_f32(const tq_dims *input_dims, const float *grad_out,
                                   const uint8_t *mask, float *grad_in) nogil
    tq_status tq_add_backward_f32(int32_t size, const float *grad_out, const uint8_t *mask,
                                  float *grad_a, float *grad_b) nogil
    tq_status tq_dequantize_s8_f32(int32_t count, const int8_t *input, float scale,
                                   int32_t zero_point, float *output) nogil
    tq_status tq_linear_f32(int32_t batches, int32_t in_features, int32_t out_features,
                            const float *input, const float *weights, const float *bias,
                            float *output) nogil
    tq_status tq_softmax_xent_f32(int32_t batches, int32_t classes, const float *logits,
                                  const int32_t *labels, float *loss,
                                  float *grad_logits) nogil
    tq_status tq_softmax_xent_s8(int32_t batches, int32_t classes, const int8_t *logits,
                                 float scale, int32_t zero_point, const int32_t *labels,
                                 float *loss, float *grad_logits) nogil
    tq_status tq_linear_backward_update_f32(int32_t batches, int32_t in_features,
                                            int32_t out_features, const float *input,
                                            const float *grad_out, float *weights,
                                            float *bias, float lr, float momentum,
                                            float *w_momentum, float *b_momentum,
                                            float *grad_in) nogil
    float tq_expf(float x) nogil
    ctypedef struct tq_block_bwd_layer:
        tq_conv_params params
        tq_dims filter_dims
        const int8_t *filter
        const float *w_scale
        float input_scale
        const uint8_t *mask
        int32_t *bias
        const tq_sgd_state *state
    ctypedef struct tq_bottleneck_backward_params:
        tq_block_bwd_layer pw1
        tq_block_bwd_layer dw
        tq_block_bwd_layer pw2
        int8_t *pw1_weights
        int32_t pw1_n_sel
        const int8_t *pw1_saved
        tq_dims input_dims
        tq_dims mid_dims
        tq_dims output_dims
        int32_t tile
        int32_t pw1_x_f32
    int32_t tq_bottleneck_backward_get_buffer_size(const tq_bottleneck_backward_params *params) nogil
    tq_status tq_bottleneck_backward_f32(const tq_bottleneck_backward_params *params,
                                         const tq_sgd_params *opt, const float *grad_out,
                                         float *grad_in, void *scratch, int32_t scratch_size) nogil
    float tq_logf(float x) nogil


cdef inline const float *_cf32(const float[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


cdef inline float *_f32(float[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


cdef inline const uint8_t *_cu8(const uint8_t[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


cdef inline int32_t *_i32(int32_t[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


cdef inline const int32_t *_ci32(const int32_t[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


cdef inline tq_sgd_params _sgd_params(tuple opt):
    """opt = (lr, momentum, qas, rounding)."""
    cdef tq_sgd_params p
    p.lr, p.momentum, p.qas, p.rounding = opt
    return p


cdef inline tq_sgd_state _sgd_state(uint32_t[::1] rng, float[::1] w_momentum,
                                    float[::1] b_momentum, float[::1] w_master):
    cdef tq_sgd_state s
    s.rng = &rng[0] if rng is not None and rng.shape[0] > 0 else NULL
    s.w_momentum = _f32(w_momentum)
    s.b_momentum = _f32(b_momentum)
    s.w_master = _f32(w_master)
    return s


def clamp_mask(const int8_t[::1] y, int32_t act_min, int32_t act_max, uint8_t[::1] mask):
    cdef tq_status st
    with nogil:
        st = tq_clamp_mask_s8(&y[0], <int32_t>y.shape[0], act_min, act_max, &mask[0])
    return st


def xorshift32(uint32_t[::1] state, int32_t count, uint32_t[::1] out):
    """Advances state[0] count times, writing each value to out."""
    cdef int32_t i
    for i in range(count):
        out[i] = tq_xorshift32(&state[0])


def xorshift32_uniform(uint32_t[::1] state, int32_t count, float[::1] out):
    cdef int32_t i
    for i in range(count):
        out[i] = tq_xorshift32_uniform(&state[0])


def expf(const float[::1] x, float[::1] y):
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            y[i] = tq_expf(x[i])


def logf(const float[::1] x, float[::1] y):
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            y[i] = tq_logf(x[i])


def conv_backward_input(str kind, tuple params, const float[::1] w_scale, tuple output_dims,
                        const float[::1] grad_out, const uint8_t[::1] mask,
                        tuple filter_dims, const int8_t[::1] w, tuple input_dims,
                        float[::1] grad_in):
    """kind 'conv' | '1x1' | 'depthwise'."""
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_dims do = _dims(output_dims), df = _dims(filter_dims), di = _dims(input_dims)
    cdef const uint8_t *m = _cu8(mask)
    cdef int which = 0 if kind == "conv" else (1 if kind == "1x1" else 2)
    cdef tq_status st
    with nogil:
        if which == 0:
            st = tq_conv_backward_input_f32(&p, &w_scale[0], &do, &grad_out[0], m, &df, &w[0],
                                            &di, &grad_in[0])
        elif which == 1:
            st = tq_conv_1x1_backward_input_f32(&p, &w_scale[0], &do, &grad_out[0], m, &df,
                                                &w[0], &di, &grad_in[0])
        else:
            st = tq_depthwise_conv_backward_input_f32(&p, &w_scale[0], &do, &grad_out[0], m,
                                                      &df, &w[0], &di, &grad_in[0])
    return st


def depthwise_inplace_buffer_size(tuple params, tuple dims, tuple filter_dims):
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_dims d = _dims(dims), df = _dims(filter_dims)
    return tq_depthwise_conv_backward_input_inplace_get_buffer_size(&p, &d, &df)


def depthwise_backward_input_inplace(tuple params, const float[::1] w_scale, tuple dims,
                                     float[::1] grad, const uint8_t[::1] mask, tuple filter_dims,
                                     const int8_t[::1] w, uint8_t[::1] scratch):
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_dims d = _dims(dims), df = _dims(filter_dims)
    cdef const uint8_t *m = _cu8(mask)
    cdef void *s = NULL if scratch is None else <void *>&scratch[0]
    cdef int32_t n = 0 if scratch is None else <int32_t>scratch.shape[0]
    cdef tq_status st
    with nogil:
        st = tq_depthwise_conv_backward_input_inplace_f32(&p, &w_scale[0], &d, &grad[0], m, &df,
                                                          &w[0], s, n)
    return st


def conv_backward_weight(str kind, tuple params, float input_scale, tuple input_dims,
                         const int8_t[::1] x, tuple output_dims, const float[::1] grad_out,
                         const uint8_t[::1] mask, tuple grad_w_dims, float[::1] grad_w,
                         float[::1] grad_b):
    """kind 'conv' | '1x1'."""
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_dims di = _dims(input_dims), do = _dims(output_dims), dg = _dims(grad_w_dims)
    cdef const uint8_t *m = _cu8(mask)
    cdef float *gb = _f32(grad_b)
    cdef int which = 0 if kind == "conv" else 1
    cdef tq_status st
    with nogil:
        if which == 0:
            st = tq_conv_backward_weight_f32(&p, input_scale, &di, &x[0], &do, &grad_out[0], m,
                                             &dg, &grad_w[0], gb)
        else:
            st = tq_conv_1x1_backward_weight_f32(&p, input_scale, &di, &x[0], &do,
                                                 &grad_out[0], m, &dg, &grad_w[0], gb)
    return st


def depthwise_backward_weight(tuple params, float input_scale, tuple input_dims,
                              const int8_t[::1] x, int32_t in_channels,
                              const int32_t[::1] sel, tuple output_dims,
                              const float[::1] grad_out, const uint8_t[::1] mask,
                              tuple filter_dims, float[::1] grad_w, float[::1] grad_b):
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_dims di = _dims(input_dims), do = _dims(output_dims), df = _dims(filter_dims)
    cdef const uint8_t *m = _cu8(mask)
    cdef const int32_t *s = _ci32(sel)
    cdef float *gb = _f32(grad_b)
    cdef tq_status st
    with nogil:
        st = tq_depthwise_conv_backward_weight_f32(&p, input_scale, &di, &x[0], in_channels, s,
                                                   &do, &grad_out[0], m, &df, &grad_w[0], gb)
    return st


def weight_update_buffer_size(str kind, tuple filter_dims, int32_t n_sel):
    """Scratch bytes of the fused kernel of kind 'conv' | '1x1' | 'depthwise' | 'fc'."""
    cdef tq_dims df = _dims(filter_dims)
    if kind == "depthwise":
        return tq_depthwise_conv_backward_weight_update_get_buffer_size(&df)
    if kind == "fc":
        return tq_fc_backward_weight_update_get_buffer_size(n_sel)
    if kind == "1x1":
        return tq_conv_1x1_backward_weight_update_get_buffer_size(&df, n_sel)
    return tq_conv_backward_weight_update_get_buffer_size(&df, n_sel)


def conv_backward_weight_update(str kind, tuple params, float input_scale,
                                const float[::1] w_scale, tuple input_dims,
                                const int8_t[::1] x, int32_t in_channels,
                                const int32_t[::1] sel, tuple output_dims,
                                const float[::1] grad_out, const uint8_t[::1] mask,
                                tuple filter_dims, int8_t[::1] w, int32_t[::1] bias,
                                tuple opt, uint32_t[::1] rng, float[::1] w_momentum,
                                float[::1] b_momentum, float[::1] w_master,
                                uint8_t[::1] scratch):
    """kind 'conv' | '1x1' | 'depthwise' (in_channels used by depthwise only)."""
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_dims di = _dims(input_dims), do = _dims(output_dims), df = _dims(filter_dims)
    cdef const uint8_t *m = _cu8(mask)
    cdef const int32_t *s = _ci32(sel)
    cdef int32_t *b = _i32(bias)
    cdef tq_sgd_params o = _sgd_params(opt)
    cdef tq_sgd_state state = _sgd_state(rng, w_momentum, b_momentum, w_master)
    cdef void *scr = _opt_buf(scratch)
    cdef int32_t ns = scratch.shape[0] if scratch is not None else 0
    cdef int which = 0 if kind == "conv" else (1 if kind == "1x1" else 2)
    cdef tq_status st
    with nogil:
        if which == 0:
            st = tq_conv_backward_weight_update(&p, input_scale, &w_scale[0], &di, &x[0], s, &do,
                                                &grad_out[0], m, &df, &w[0], b, &o, &state,
                                                scr, ns)
        elif which == 1:
            st = tq_conv_1x1_backward_weight_update(&p, input_scale, &w_scale[0], &di, &x[0], s,
                                                    &do, &grad_out[0], m, &df, &w[0], b, &o,
                                                    &state, scr, ns)
        else:
            st = tq_depthwise_conv_backward_weight_update(&p, input_scale, &w_scale[0], &di,
                                                          &x[0], in_channels, s, &do,
                                                          &grad_out[0], m, &df, &w[0], b, &o,
                                                          &state, scr, ns)
    return st


def bias_backward(tuple output_dims, const float[::1] grad_out, const uint8_t[::1] mask,
                  float[::1] grad_b):
    cdef tq_dims do = _dims(output_dims)
    cdef const uint8_t *m = _cu8(mask)
    cdef tq_status st
    with nogil:
        st = tq_bias_backward_f32(&do, &grad_out[0], m, &grad_b[0])
    return st


def fc_backward_input(int32_t batches, int32_t in_features, int32_t out_features,
                      const float[::1] w_scale, const float[::1] grad_out,
                      const uint8_t[::1] mask, const int8_t[::1] w, float[::1] grad_in):
    cdef const uint8_t *m = _cu8(mask)
    cdef tq_status st
    with nogil:
        st = tq_fc_backward_input_f32(batches, in_features, out_features, &w_scale[0],
                                      &grad_out[0], m, &w[0], &grad_in[0])
    return st


def fc_backward_weight(int32_t input_offset, float input_scale, int32_t batches,
                       int32_t n_sel, int32_t out_features, const int8_t[::1] x,
                       const float[::1] grad_out, const uint8_t[::1] mask,
                       float[::1] grad_w, float[::1] grad_b):
    cdef const uint8_t *m = _cu8(mask)
    cdef float *gb = _f32(grad_b)
    cdef tq_status st
    with nogil:
        st = tq_fc_backward_weight_f32(input_offset, input_scale, batches, n_sel, out_features,
                                       &x[0], &grad_out[0], m, &grad_w[0], gb)
    return st


def fc_backward_weight_update(int32_t input_offset, float input_scale,
                              const float[::1] w_scale, int32_t batches, int32_t in_features,
                              int32_t out_features, int32_t n_sel, const int32_t[::1] sel,
                              const int8_t[::1] x, const float[::1] grad_out,
                              const uint8_t[::1] mask, int8_t[::1] w, int32_t[::1] bias,
                              tuple opt, uint32_t[::1] rng, float[::1] w_momentum,
                              float[::1] b_momentum, float[::1] w_master,
                              uint8_t[::1] scratch):
    cdef const uint8_t *m = _cu8(mask)
    cdef const int32_t *s = _ci32(sel)
    cdef int32_t *b = _i32(bias)
    cdef tq_sgd_params o = _sgd_params(opt)
    cdef tq_sgd_state state = _sgd_state(rng, w_momentum, b_momentum, w_master)
    cdef void *scr = _opt_buf(scratch)
    cdef int32_t ns = scratch.shape[0] if scratch is not None else 0
    cdef tq_status st
    with nogil:
        st = tq_fc_backward_weight_update(input_offset, input_scale, &w_scale[0], batches,
                                          in_features, out_features, n_sel, s, &x[0],
                                          &grad_out[0], m, &w[0], b, &o, &state, scr, ns)
    return st


def sgd_update(str kind, tuple opt, uint32_t[::1] rng, float[::1] w_momentum,
               float[::1] b_momentum, float[::1] w_master, float input_scale,
               const float[::1] w_scale, tuple filter_dims, int8_t[::1] w, int32_t[::1] bias,
               int32_t in_channels, int32_t n_sel, const int32_t[::1] sel,
               const float[::1] grad_w, const float[::1] grad_b):
    """kind 'conv' (dense, 1x1, FC as [out,1,1,in]) | 'depthwise' | 'bias'
    (bias only: w, grad_w, filter_dims unused; in_channels = channels)."""
    cdef tq_sgd_params o = _sgd_params(opt)
    cdef tq_sgd_state state = _sgd_state(rng, w_momentum, b_momentum, w_master)
    cdef tq_dims df = _dims(filter_dims)
    cdef const int32_t *s = _ci32(sel)
    cdef int32_t *b = _i32(bias)
    cdef const float *gb = _cf32(grad_b)
    cdef int which = 0 if kind == "conv" else (1 if kind == "depthwise" else 2)
    cdef tq_status st
    with nogil:
        if which == 0:
            st = tq_sgd_update_conv(&o, &state, input_scale, &w_scale[0], &df, &w[0], b, n_sel,
                                    s, &grad_w[0], gb)
        elif which == 1:
            st = tq_sgd_update_depthwise(&o, &state, input_scale, &w_scale[0], &df, &w[0], b,
                                         in_channels, n_sel, s, &grad_w[0], gb)
        else:
            st = tq_sgd_update_bias(&o, &state, input_scale, &w_scale[0], in_channels, b, gb)
    return st


def avgpool_backward(tuple params, int32_t filter_h, int32_t filter_w, tuple output_dims,
                     const float[::1] grad_out, const uint8_t[::1] mask, tuple input_dims,
                     float[::1] grad_in):
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_dims do = _dims(output_dims), di = _dims(input_dims)
    cdef const uint8_t *m = _cu8(mask)
    cdef tq_status st
    with nogil:
        st = tq_avgpool_backward_f32(&p, filter_h, filter_w, &do, &grad_out[0], m, &di,
                                     &grad_in[0])
    return st


def mean_backward(tuple input_dims, const float[::1] grad_out, const uint8_t[::1] mask,
                  float[::1] grad_in):
    cdef tq_dims di = _dims(input_dims)
    cdef const uint8_t *m = _cu8(mask)
    cdef tq_status st
    with nogil:
        st = tq_mean_backward_f32(&di, &grad_out[0], m, &grad_in[0])
    return st


def add_backward(const float[::1] grad_out, const uint8_t[::1] mask, float[::1] grad_a,
                 float[::1] grad_b):
    cdef const uint8_t *m = _cu8(mask)
    cdef float *ga = _f32(grad_a)
    cdef float *gb = _f32(grad_b)
    cdef tq_status st
    with nogil:
        st = tq_add_backward_f32(<int32_t>grad_out.shape[0], &grad_out[0], m, ga, gb)
    return st


def dequantize(const int8_t[::1] x, float scale, int32_t zero_point, float[::1] y):
    cdef tq_status st
    with nogil:
        st = tq_dequantize_s8_f32(<int32_t>x.shape[0], &x[0], scale, zero_point, &y[0])
    return st


def linear(int32_t batches, int32_t in_features, int32_t out_features, const float[::1] x,
           const float[::1] w, const float[::1] bias, float[::1] y):
    cdef const float *b = _cf32(bias)
    cdef tq_status st
    with nogil:
        st = tq_linear_f32(batches, in_features, out_features, &x[0], &w[0], b, &y[0])
    return st


def softmax_xent(int32_t batches, int32_t classes, const float[::1] logits,
                 const int32_t[::1] labels, float[::1] loss, float[::1] grad_logits):
    cdef tq_status st
    cdef float *l = _f32(loss)
    cdef float *g = _f32(grad_logits)
    with nogil:
        st = tq_softmax_xent_f32(batches, classes, &logits[0], &labels[0], l, g)
    return st


def softmax_xent_s8(int32_t batches, int32_t classes, const int8_t[::1] logits, float scale,
                    int32_t zero_point, const int32_t[::1] labels, float[::1] loss,
                    float[::1] grad_logits):
    cdef tq_status st
    cdef float *l = _f32(loss)
    cdef float *g = _f32(grad_logits)
    with nogil:
        st = tq_softmax_xent_s8(batches, classes, &logits[0], scale, zero_point, &labels[0], l,
                                g)
    return st


def linear_backward_update(int32_t batches, int32_t in_features, int32_t out_features,
                           const float[::1] x, const float[::1] grad_out, float[::1] w,
                           float[::1] bias, float lr, float momentum, float[::1] w_momentum,
                           float[::1] b_momentum, float[::1] grad_in):
    cdef float *b = _f32(bias)
    cdef float *wm = _f32(w_momentum)
    cdef float *bm = _f32(b_momentum)
    cdef float *gi = _f32(grad_in)
    cdef tq_status st
    with nogil:
        st = tq_linear_backward_update_f32(batches, in_features, out_features, &x[0],
                                           &grad_out[0], &w[0], b, lr, momentum, wm, bm, gi)
    return st


cdef class BottleneckBackward:
    """tq_bottleneck_backward_params of one block; keeps its arrays alive.
    layers: (pw1, dw, pw2), each (params tuple, filter dims, filter int8,
    w_scale f32, input_scale, mask u8 or None, bias i32 or None, state)
    with state = (w_momentum, b_momentum, w_master), f32 arrays or None each
    (pw1's and dw's states share rng; pw2's is not used);
    pw1_weights int8 (the trained first n_sel input channels) or None;
    pw1_saved int8 or None; dims = (input, mid, output) tuples."""
    cdef tq_bottleneck_backward_params p
    cdef tq_sgd_state states[2]
    cdef object keep

    def __init__(self, tuple layers, tuple dims, int32_t tile, pw1_weights, int32_t n_sel, pw1_saved,
                 uint32_t[::1] rng, bint x_f32=False):
        memset(&self.p, 0, sizeof(tq_bottleneck_backward_params))
        self.keep = [layers, pw1_weights, pw1_saved, rng]
        self._layer(&self.p.pw1, layers[0], &self.states[0], rng)
        self._layer(&self.p.dw, layers[1], &self.states[1], rng)
        self._layer(&self.p.pw2, layers[2], NULL, rng)
        cdef int8_t[::1] w
        cdef const int8_t[::1] x
        if pw1_weights is not None:
            w = pw1_weights
            self.p.pw1_weights = &w[0]
        if pw1_saved is not None:
            x = pw1_saved
            self.p.pw1_saved = &x[0]
        self.p.pw1_n_sel = n_sel
        self.p.input_dims = _dims(dims[0])
        self.p.mid_dims = _dims(dims[1])
        self.p.output_dims = _dims(dims[2])
        self.p.tile = tile
        self.p.pw1_x_f32 = x_f32

    cdef void _layer(self, tq_block_bwd_layer *l, tuple layer, tq_sgd_state *state, uint32_t[::1] rng):
        cdef const int8_t[::1] w = layer[2]
        cdef const float[::1] ws = layer[3]
        cdef const uint8_t[::1] m
        cdef int32_t[::1] b
        _set_conv_params(&l.params, layer[0])
        l.filter_dims = _dims(layer[1])
        l.filter = &w[0]
        l.w_scale = &ws[0]
        l.input_scale = layer[4]
        if layer[5] is not None:
            m = layer[5]
            l.mask = &m[0]
        if layer[6] is not None:
            b = layer[6]
            l.bias = &b[0]
        if state != NULL:
            state[0] = _sgd_state(rng, layer[7][0], layer[7][1], layer[7][2])
            l.state = state

    def buffer_size(self):
        return tq_bottleneck_backward_get_buffer_size(&self.p)

    def run(self, tuple opt, const float[::1] grad_out, float[::1] grad_in, uint8_t[::1] scratch):
        cdef tq_sgd_params o = _sgd_params(opt)
        cdef float *gi = _f32(grad_in)
        cdef void *s = _opt_buf(scratch)
        cdef int32_t ns = scratch.shape[0] if scratch is not None else 0
        cdef tq_status st
        with nogil:
            st = tq_bottleneck_backward_f32(&self.p, &o, &grad_out[0], gi, s, ns)
        return st
