/* tinyqt: int8 softmax (TFLite SOFTMAX int8). PLACEHOLDER being replaced by
 * the bit-exact implementation. */
#include "tinyqt/kernels.h"

tq_status tq_softmax_s8(const tq_softmax_params *params, int32_t rows, int32_t depth,
                        const int8_t *input, int8_t *output)
{
    (void)params; (void)rows; (void)depth; (void)input; (void)output;
    return TQ_ERR_UNSUPPORTED;
}
