/* tinyqt: fp32 exp / log without libm (private header; the declarations
 * are public in tinyqt/backward.h). Same bits on every IEEE-754 binary32
 * target: only + - * /, conversions and bit manipulation, no FMA. */
#ifndef TINYQT_MATHF_H
#define TINYQT_MATHF_H

#include <stdint.h>

float tq_expf(float x);
float tq_logf(float x);

/* Bit casts (memcpy is the portable, alias-safe spelling). */
float tq_f32_from_bits(uint32_t u);
uint32_t tq_f32_bits(float f);

#endif /* TINYQT_MATHF_H */
