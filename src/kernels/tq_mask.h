/* tinyqt: the packed clamp mask a forward kernel writes when asked
 * (private header; layout in tinyqt/backward.h). */
#ifndef TINYQT_MASK_H
#define TINYQT_MASK_H

#include "tinyqt/types.h"

/* mask[TQ_MASK_BYTES(count)] <- bit i = (act_min < y[i] < act_max); unused
 * bits of the last byte 0. No argument checks: count >= 1, pointers valid,
 * -128 <= act_min <= act_max <= 127. */
void tq_clamp_mask_pack(const int8_t *y, int32_t count, int32_t act_min, int32_t act_max,
                        uint8_t *mask);

/* For a forward kernel's public entry after its body succeeded: packs the
 * clamp mask of its count outputs y when params asked for one. */
static inline void tq_forward_mask(const tq_conv_params *params, const int8_t *y, int32_t count)
{
    if (params->clamp_mask != NULL && count > 0) {
        tq_clamp_mask_pack(y, count, params->act_min, params->act_max, params->clamp_mask);
    }
}

#endif /* TINYQT_MASK_H */
