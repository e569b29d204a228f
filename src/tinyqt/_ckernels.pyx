# cython: language_level=3
"""Thin Cython bindings of the C kernel library (src/kernels).

No logic lives here: each function unpacks typed memoryviews, releases the
GIL, calls the C kernel and returns its tq_status (0 = OK). Argument
checking and error messages are in tinyqt.kernels.
"""
from libc.stdint cimport int8_t, int16_t, int32_t, uint8_t
from libc.stddef cimport size_t

cdef extern from "tinyqt/types.h":
    ctypedef int tq_status
    ctypedef struct tq_dims:
        int32_t n, h, w, c
    ctypedef struct tq_conv_params:
        int32_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w
        int32_t input_offset, output_offset, act_min, act_max
        uint8_t *clamp_mask
    ctypedef struct tq_channel_quant:
        const int32_t *multiplier
        const int32_t *shift

cdef extern from "tinyqt/kernels.h":
    int32_t tq_conv_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter)
    tq_status tq_conv_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                         const tq_dims *input_dims, const int8_t *input,
                         const tq_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                         const tq_dims *output_dims, int8_t *output,
                         void *scratch, int32_t scratch_size) nogil
    int tq_host_simd_enable(int on)
    int32_t tq_conv_1x1_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter)
    tq_status tq_conv_1x1_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                             const tq_dims *input_dims, const int8_t *input,
                             const tq_dims *filter_dims, const int8_t *filter, const int32_t *bias,
                             const tq_dims *output_dims, int8_t *output,
                             void *scratch, int32_t scratch_size) nogil
    int32_t tq_conv_1x1_s8_split_get_buffer_size(const tq_dims *input, const tq_dims *output,
                                                 const tq_dims *filter)
    tq_status tq_conv_1x1_s8_split(const tq_conv_params *params, const tq_channel_quant *quant,
                                   const tq_dims *input_dims, const int8_t *input,
                                   const tq_dims *filter_dims, const int8_t *filter,
                                   const int8_t *trained, int32_t n_sel, const int32_t *bias,
                                   const tq_dims *output_dims, int8_t *output,
                                   void *scratch, int32_t scratch_size) nogil
    int32_t tq_depthwise_conv_s8_get_buffer_size(const tq_dims *input, const tq_dims *filter)
    tq_status tq_depthwise_conv_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                                   const tq_dims *input_dims, const int8_t *input,
                                   const tq_dims *filter_dims, const int8_t *filter,
                                   const int32_t *bias,
                                   const tq_dims *output_dims, int8_t *output,
                                   void *scratch, int32_t scratch_size) nogil
    tq_status tq_fully_connected_s8(const tq_conv_params *params, const tq_channel_quant *quant,
                                    int32_t batches, int32_t in_features, int32_t out_features,
                                    const int8_t *input, const int8_t *weights,
                                    const int32_t *bias, int8_t *output) nogil
    tq_status tq_avgpool_s8(const tq_conv_params *params, int32_t filter_h, int32_t filter_w,
                            const tq_dims *input_dims, const int8_t *input,
                            const tq_dims *output_dims, int8_t *output) nogil
    ctypedef struct tq_mean_params:
        int32_t input_zero_point, output_zero_point, multiplier, shift
    tq_status tq_mean_s8(const tq_mean_params *params, const tq_dims *input_dims,
                         const int8_t *input, int8_t *output) nogil
    ctypedef struct tq_add_params:
        int32_t input1_offset, input2_offset, output_offset
        int32_t input1_multiplier, input1_shift, input2_multiplier, input2_shift
        int32_t output_multiplier, output_shift, left_shift, act_min, act_max
        uint8_t *clamp_mask
    tq_status tq_add_s8(const tq_add_params *params, int32_t size, const int8_t *input1,
                        const int8_t *input2, int8_t *output) nogil
    ctypedef struct tq_softmax_params:
        int32_t input_multiplier, input_left_shift, diff_min
    tq_status tq_softmax_s8(const tq_softmax_params *params, int32_t rows, int32_t depth,
                            const int8_t *input, int8_t *output) nogil

cdef extern from "tinyqt/arena.h":
    ctypedef struct tq_arena:
        uint8_t *base
        size_t size, used, high_water, last_request, last_available
    tq_status tq_arena_init(tq_arena *arena, void *buffer, size_t size)
    tq_status tq_arena_alloc(tq_arena *arena, size_t nbytes, size_t align, void **out)
    tq_status tq_arena_at(tq_arena *arena, size_t offset, size_t nbytes, void **out)
    void tq_arena_reset(tq_arena *arena)
    size_t tq_arena_remaining(const tq_arena *arena)


cdef inline tq_dims _dims(tuple t):
    cdef tq_dims d
    d.n = t[0]; d.h = t[1]; d.w = t[2]; d.c = t[3]
    return d


cdef inline tq_conv_params _conv_params(tuple p):
    """p = (stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
    input_offset, output_offset, act_min, act_max)."""
    cdef tq_conv_params c
    (c.stride_h, c.stride_w, c.pad_top, c.pad_left, c.dilation_h, c.dilation_w,
     c.input_offset, c.output_offset, c.act_min, c.act_max) = p
    c.clamp_mask = NULL
    return c


cdef uint8_t *_mask_ptr(uint8_t[::1] mask, Py_ssize_t count) except? NULL:
    """The clamp-mask output buffer (NULL for None), at least (count + 7) / 8 bytes."""
    if mask is None:
        return NULL
    if mask.shape[0] < (count + 7) // 8:
        raise ValueError(f"mask: {mask.shape[0]} bytes for {count} outputs, {(count + 7) // 8} needed")
    return &mask[0]


cdef inline Py_ssize_t _count(tuple dims):
    return dims[0] * dims[1] * dims[2] * dims[3]


cdef inline const int32_t *_opt_i32(const int32_t[::1] a):
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


cdef inline void *_opt_buf(uint8_t[::1] a):
    return <void *>&a[0] if a is not None and a.shape[0] > 0 else NULL


def host_simd_enable(bint on):
    """Allows or forbids the host's x86-64 AVX2 kernel paths (they give the
    portable path's bytes); returns True when they are now in use."""
    return tq_host_simd_enable(on) != 0


def conv_buffer_size(str kind, tuple input_dims, tuple filter_dims):
    """Scratch bytes the kernel of kind 'conv' | '1x1' | 'depthwise' needs."""
    cdef tq_dims i = _dims(input_dims), f = _dims(filter_dims)
    if kind == "conv":
        return tq_conv_s8_get_buffer_size(&i, &f)
    if kind == "1x1":
        return tq_conv_1x1_s8_get_buffer_size(&i, &f)
    if kind == "depthwise":
        return tq_depthwise_conv_s8_get_buffer_size(&i, &f)
    raise ValueError(kind)


def conv_1x1_split_buffer_size(tuple input_dims, tuple output_dims, tuple filter_dims):
    """Scratch bytes of tq_conv_1x1_s8_split."""
    cdef tq_dims i = _dims(input_dims), o = _dims(output_dims), f = _dims(filter_dims)
    return tq_conv_1x1_s8_split_get_buffer_size(&i, &o, &f)


def conv_1x1_split(tuple params, const int32_t[::1] multiplier, const int32_t[::1] shift,
                   tuple input_dims, const int8_t[::1] x, tuple filter_dims, const int8_t[::1] w,
                   const int8_t[::1] trained, int32_t n_sel, const int32_t[::1] bias,
                   tuple output_dims, int8_t[::1] y, uint8_t[::1] scratch, uint8_t[::1] mask=None):
    """Runs tq_conv_1x1_s8_split on flat arrays (mask: the clamp mask out, or None)."""
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_channel_quant q
    cdef tq_dims di = _dims(input_dims), df = _dims(filter_dims), do = _dims(output_dims)
    cdef const int32_t *b = _opt_i32(bias)
    cdef void *s = _opt_buf(scratch)
    cdef int32_t ns = scratch.shape[0] if scratch is not None else 0
    cdef tq_status st
    q.multiplier = &multiplier[0]
    q.shift = &shift[0]
    p.clamp_mask = _mask_ptr(mask, _count(output_dims))
    with nogil:
        st = tq_conv_1x1_s8_split(&p, &q, &di, &x[0], &df, &w[0], &trained[0], n_sel, b, &do, &y[0], s, ns)
    return st


def conv(str kind, tuple params, const int32_t[::1] multiplier, const int32_t[::1] shift,
         tuple input_dims, const int8_t[::1] x, tuple filter_dims, const int8_t[::1] w,
         const int32_t[::1] bias, tuple output_dims, int8_t[::1] y, uint8_t[::1] scratch,
         uint8_t[::1] mask=None):
    """Runs tq_conv_s8 / tq_conv_1x1_s8 / tq_depthwise_conv_s8 on flat arrays
    (mask: the clamp mask out, or None)."""
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_channel_quant q
    cdef tq_dims di = _dims(input_dims), df = _dims(filter_dims), do = _dims(output_dims)
    cdef const int32_t *b = _opt_i32(bias)
    cdef void *s = _opt_buf(scratch)
    cdef int32_t ns = scratch.shape[0] if scratch is not None else 0
    cdef int which = 0 if kind == "conv" else (1 if kind == "1x1" else 2)
    cdef tq_status st
    q.multiplier = &multiplier[0]
    q.shift = &shift[0]
    p.clamp_mask = _mask_ptr(mask, _count(output_dims))
    with nogil:
        if which == 0:
            st = tq_conv_s8(&p, &q, &di, &x[0], &df, &w[0], b, &do, &y[0], s, ns)
        elif which == 1:
            st = tq_conv_1x1_s8(&p, &q, &di, &x[0], &df, &w[0], b, &do, &y[0], s, ns)
        else:
            st = tq_depthwise_conv_s8(&p, &q, &di, &x[0], &df, &w[0], b, &do, &y[0], s, ns)
    return st


def fully_connected(tuple params, const int32_t[::1] multiplier, const int32_t[::1] shift,
                    int32_t batches, int32_t in_features, int32_t out_features,
                    const int8_t[::1] x, const int8_t[::1] w, const int32_t[::1] bias,
                    int8_t[::1] y, uint8_t[::1] mask=None):
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_channel_quant q
    cdef const int32_t *b = _opt_i32(bias)
    cdef tq_status st
    q.multiplier = &multiplier[0]
    q.shift = &shift[0]
    p.clamp_mask = _mask_ptr(mask, <Py_ssize_t>batches * out_features)
    with nogil:
        st = tq_fully_connected_s8(&p, &q, batches, in_features, out_features, &x[0], &w[0], b,
                                   &y[0])
    return st


def avgpool(tuple params, int32_t filter_h, int32_t filter_w, tuple input_dims,
            const int8_t[::1] x, tuple output_dims, int8_t[::1] y, uint8_t[::1] mask=None):
    cdef tq_conv_params p = _conv_params(params)
    cdef tq_dims di = _dims(input_dims), do = _dims(output_dims)
    cdef tq_status st
    p.clamp_mask = _mask_ptr(mask, _count(output_dims))
    with nogil:
        st = tq_avgpool_s8(&p, filter_h, filter_w, &di, &x[0], &do, &y[0])
    return st


def mean(tuple params, tuple input_dims, const int8_t[::1] x, int8_t[::1] y):
    """params = (input_zero_point, output_zero_point, multiplier, shift)."""
    cdef tq_mean_params p
    cdef tq_dims di = _dims(input_dims)
    cdef tq_status st
    p.input_zero_point, p.output_zero_point, p.multiplier, p.shift = params
    with nogil:
        st = tq_mean_s8(&p, &di, &x[0], &y[0])
    return st


def add(tuple params, const int8_t[::1] a, const int8_t[::1] b, int8_t[::1] y, uint8_t[::1] mask=None):
    """params in the field order of tq_add_params (mask: the clamp mask out, or None)."""
    cdef tq_add_params p
    cdef tq_status st
    cdef int32_t n = y.shape[0]
    (p.input1_offset, p.input2_offset, p.output_offset, p.input1_multiplier, p.input1_shift,
     p.input2_multiplier, p.input2_shift, p.output_multiplier, p.output_shift, p.left_shift,
     p.act_min, p.act_max) = params
    p.clamp_mask = _mask_ptr(mask, n)
    with nogil:
        st = tq_add_s8(&p, n, &a[0], &b[0], &y[0])
    return st


def softmax(tuple params, int32_t rows, int32_t depth, const int8_t[::1] x, int8_t[::1] y):
    """params = (input_multiplier, input_left_shift, diff_min)."""
    cdef tq_softmax_params p
    cdef tq_status st
    p.input_multiplier, p.input_left_shift, p.diff_min = params
    with nogil:
        st = tq_softmax_s8(&p, rows, depth, &x[0], &y[0])
    return st


cdef class Arena:
    """The C arena over a caller-owned bytearray/numpy buffer (for tests and
    the host runtime's bounds checks)."""
    cdef tq_arena arena
    cdef object _buffer

    def __init__(self, uint8_t[::1] buffer):
        self._buffer = buffer
        tq_arena_init(&self.arena, <void *>&buffer[0] if buffer.shape[0] else NULL,
                      buffer.shape[0])

    def alloc(self, size_t nbytes, size_t align=4):
        """Returns (status, offset or -1)."""
        cdef void *out = NULL
        cdef tq_status st = tq_arena_alloc(&self.arena, nbytes, align, &out)
        return st, (<size_t>out - <size_t>self.arena.base) if st == 0 else -1

    def at(self, size_t offset, size_t nbytes):
        """Returns the status of the planned region [offset, offset+nbytes)."""
        cdef void *out = NULL
        return tq_arena_at(&self.arena, offset, nbytes, &out)

    def reset(self):
        tq_arena_reset(&self.arena)

    @property
    def remaining(self):
        return tq_arena_remaining(&self.arena)

    @property
    def high_water(self):
        return self.arena.high_water

    @property
    def last_request(self):
        return self.arena.last_request

    @property
    def last_available(self):
        return self.arena.last_available

include "_fused.pxi"
include "_backward.pxi"
