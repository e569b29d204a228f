/* tinyqt: the 1-bit packed clamp mask (straight-through estimator) of an
 * int8 output: the standalone pass and the packer the forward kernels call
 * when asked. Reference C path, an ARM DSP path (SSUB8/SEL compare four
 * bytes at once) and a Helium path (two compares of 16 bytes give their 16
 * bits as the predicate) that produce the same bytes. */
#include "tinyqt/backward.h"
#include "tq_mask.h"
#include "tq_mve.h"
#include "tq_simd.h"

/* Bits k of one mask byte for y[0 .. n), n <= 8. */
static uint32_t tq_mask_byte(const int8_t *y, int32_t n, int32_t act_min, int32_t act_max)
{
    uint32_t byte = 0;
    int32_t k;
    for (k = 0; k < n; k++) {
        byte |= (uint32_t)(y[k] > act_min && y[k] < act_max) << k;
    }
    return byte;
}

#if TQ_USE_DSP
/* 0xFF in each byte lane where lo <= v <= hi (lo, hi: the bounds in all four
 * lanes), else 0x00. */
static inline uint32_t tq_in_range_x4(uint32_t v, uint32_t lo, uint32_t hi)
{
    uint32_t ge_lo;
    (void)__ssub8(v, lo); /* GE[k] = v_k >= lo */
    ge_lo = __sel(0xFFFFFFFFu, 0u);
    (void)__ssub8(hi, v); /* GE[k] = hi >= v_k */
    return __sel(ge_lo, 0u);
}

/* Lane bytes 0xFF/0x00 of word w -> bits (shift .. shift + 3). */
static inline uint32_t tq_lanes_to_bits(uint32_t w, uint32_t pick)
{
    return ((w & pick) * 0x01010101u) >> 24; /* distinct bits: the sum has no carries */
}
#endif

void tq_clamp_mask_pack(const int8_t *y, int32_t count, int32_t act_min, int32_t act_max,
                        uint8_t *mask)
{
    int32_t i = 0;
#if TQ_USE_MVE
    /* lane k's predicate bit is bit k: act_min < y_k, and then y_k < act_max */
    for (; i + 16 <= count; i += 16) {
        const int8x16_t v = vld1q_s8(y + i);
        const uint32_t bits = vcmpltq_m_n_s8(v, (int8_t)act_max, vcmpgtq_n_s8(v, (int8_t)act_min));
        mask[i >> 3] = (uint8_t)bits;
        mask[(i >> 3) + 1] = (uint8_t)(bits >> 8);
    }
#endif
#if TQ_USE_DSP
    /* strict bounds as inclusive ones: act_min + 1 <= v <= act_max - 1, which
     * must stay int8 (else no element passes and the portable loop handles it) */
    if (act_min < 127 && act_max > -128) {
        const uint32_t lo = 0x01010101u * (uint8_t)(act_min + 1);
        const uint32_t hi = 0x01010101u * (uint8_t)(act_max - 1);
        for (; i + 8 <= count; i += 8) {
            const uint32_t a = tq_in_range_x4((uint32_t)tq_read_s8x4(y + i), lo, hi);
            const uint32_t b = tq_in_range_x4((uint32_t)tq_read_s8x4(y + i + 4), lo, hi);
            mask[i >> 3] = (uint8_t)(tq_lanes_to_bits(a, 0x08040201u) | tq_lanes_to_bits(b, 0x80402010u));
        }
    }
#endif
    for (; i + 8 <= count; i += 8) {
        mask[i >> 3] = (uint8_t)tq_mask_byte(y + i, 8, act_min, act_max);
    }
    if (i < count) {
        mask[i >> 3] = (uint8_t)tq_mask_byte(y + i, count - i, act_min, act_max);
    }
}

tq_status tq_clamp_mask_s8(const int8_t *y, int32_t count, int32_t act_min, int32_t act_max,
                           uint8_t *mask)
{
    if (y == NULL || mask == NULL) {
        return TQ_ERR_NULL;
    }
    if (count < 1) {
        return TQ_ERR_SHAPE;
    }
    if (act_min < -128 || act_max > 127 || act_min > act_max) {
        return TQ_ERR_PARAM;
    }
    tq_clamp_mask_pack(y, count, act_min, act_max, mask);
    return TQ_OK;
}
