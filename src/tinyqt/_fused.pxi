# Cython bindings of tinyqt/fused.h (included by _ckernels.pyx; thin, no logic).
from libc.string cimport memset

cdef extern from "tinyqt/fused.h":
    ctypedef struct tq_bottleneck_params:
        int32_t has_expand
        tq_conv_params pw1_params
        tq_channel_quant pw1_quant
        tq_dims pw1_filter_dims
        const int8_t *pw1_filter
        const int32_t *pw1_bias
        tq_conv_params dw_params
        tq_channel_quant dw_quant
        tq_dims dw_filter_dims
        const int8_t *dw_filter
        const int32_t *dw_bias
        tq_conv_params pw2_params
        tq_channel_quant pw2_quant
        tq_dims pw2_filter_dims
        const int8_t *pw2_filter
        const int32_t *pw2_bias
        int32_t out_w
        int32_t mid_h
        int32_t mid_w
        int32_t has_residual
        int32_t residual_first
        tq_add_params add_params
        int32_t planar_rows
    int32_t tq_bottleneck_s8_get_buffer_size(const tq_bottleneck_params *params, const tq_dims *input_dims)
    tq_status tq_bottleneck_s8(const tq_bottleneck_params *params, const tq_dims *input_dims,
                               const int8_t *input, const tq_dims *output_dims, int8_t *output,
                               void *scratch, int32_t scratch_size) nogil


cdef void _set_conv_params(tq_conv_params *c, tuple p):
    memset(c, 0, sizeof(tq_conv_params))
    (c.stride_h, c.stride_w, c.pad_top, c.pad_left, c.dilation_h, c.dilation_w,
     c.input_offset, c.output_offset, c.act_min, c.act_max) = p


cdef class BottleneckSpec:
    """The tq_bottleneck_params of one block; keeps its arrays alive.
    stages: (params tuple, multiplier, shift, filter dims, filter, bias or
    None) for the expand stage (or None), dw, pw2; add: tq_add_params tuple
    or None; mid_h, mid_w: the depthwise input's height and width;
    planar_rows: ask for the planar depthwise ring (tinyqt/fused.h)."""
    cdef tq_bottleneck_params p
    cdef object keep

    def __init__(self, pw1, dw, pw2, add, int residual_first, int out_w, int mid_h, int mid_w,
                 bint planar_rows=False):
        memset(&self.p, 0, sizeof(tq_bottleneck_params))
        self.keep = [pw1, dw, pw2]
        self.p.planar_rows = planar_rows
        self.p.out_w = out_w
        self.p.mid_h = mid_h
        self.p.mid_w = mid_w
        if pw1 is not None:
            self.p.has_expand = 1
            self._stage(&self.p.pw1_params, &self.p.pw1_quant, &self.p.pw1_filter_dims, &self.p.pw1_filter,
                        &self.p.pw1_bias, pw1)
        self._stage(&self.p.dw_params, &self.p.dw_quant, &self.p.dw_filter_dims, &self.p.dw_filter,
                    &self.p.dw_bias, dw)
        self._stage(&self.p.pw2_params, &self.p.pw2_quant, &self.p.pw2_filter_dims, &self.p.pw2_filter,
                    &self.p.pw2_bias, pw2)
        if add is not None:
            self.p.has_residual = 1
            self.p.residual_first = residual_first
            (self.p.add_params.input1_offset, self.p.add_params.input2_offset, self.p.add_params.output_offset,
             self.p.add_params.input1_multiplier, self.p.add_params.input1_shift,
             self.p.add_params.input2_multiplier, self.p.add_params.input2_shift,
             self.p.add_params.output_multiplier, self.p.add_params.output_shift,
             self.p.add_params.left_shift, self.p.add_params.act_min, self.p.add_params.act_max) = add

    cdef void _stage(self, tq_conv_params *params, tq_channel_quant *quant, tq_dims *fdims,
                     const int8_t **filt, const int32_t **bias, tuple stage):
        cdef const int32_t[::1] m = stage[1]
        cdef const int32_t[::1] s = stage[2]
        cdef const int8_t[::1] w = stage[4]
        cdef const int32_t[::1] b
        _set_conv_params(params, stage[0])
        quant.multiplier = &m[0]
        quant.shift = &s[0]
        fdims[0] = _dims(stage[3])
        filt[0] = &w[0]
        if stage[5] is not None:
            b = stage[5]
            bias[0] = &b[0]
        else:
            bias[0] = NULL

    def buffer_size(self, tuple input_dims):
        cdef tq_dims d = _dims(input_dims)
        return tq_bottleneck_s8_get_buffer_size(&self.p, &d)

    def run(self, tuple input_dims, const int8_t[::1] x, tuple output_dims, int8_t[::1] y, uint8_t[::1] scratch):
        cdef tq_dims di = _dims(input_dims), do = _dims(output_dims)
        cdef tq_status st
        cdef void *s = _opt_buf(scratch)
        cdef int32_t ns = scratch.shape[0] if scratch is not None else 0
        with nogil:
            st = tq_bottleneck_s8(&self.p, &di, &x[0], &do, &y[0], s, ns)
        return st
