/* tinyqt: fp32 exp and log from + - * / and bit manipulation only.
 *
 * Neither glibc's nor newlib's expf/logf are used: they differ in the last
 * bit, and host and MCU must agree bit for bit. The algorithms are the
 * classic FreeBSD/musl single-precision ones (Cody-Waite range reduction and
 * a minimax rational / polynomial kernel), rewritten without fma, double or
 * library calls. Measured error (tests/test_optimizer.py sweeps them against
 * float64 references): below 1 ulp over the whole normal range. */
#include <string.h>

#include "tq_mathf.h"
#include "tq_f32.h" /* fp32 file: the MVE-F build check */

float tq_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint32_t tq_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* y * 2^k for y in [0.5, 2) and k in [-152, 129], by exact power-of-two
 * factors (a subnormal result is rounded once, in the last multiply). */
static float tq_scale2(float y, int32_t k)
{
    if (k > 127) {
        y *= tq_f32_from_bits(0x7f000000u); /* 2^127 */
        k -= 127;
        if (k > 127) {
            k = 127;
        }
    } else if (k < -126) {
        y *= tq_f32_from_bits(0x0c800000u); /* 2^-102: stays normal for y >= 0.5 */
        k += 102;
        if (k < -126) {
            k = -126;
        }
    }
    return y * tq_f32_from_bits((uint32_t)(k + 127) << 23);
}

float tq_expf(float x)
{
    static const float ln2hi = 6.9314575195e-01f;  /* 0x3f317200: 8 trailing zero bits */
    static const float ln2lo = 1.4286067653e-06f;  /* 0x35bfbe8e */
    static const float invln2 = 1.4426950216e+00f; /* 0x3fb8aa3b */
    /* minimax on [-ln2/2, ln2/2] for the rational form below */
    static const float P1 = 1.6666625440e-1f;      /* 0xaaaaa8.0p-26 */
    static const float P2 = -2.7667332906e-3f;     /* -0xb55215.0p-32 */
    uint32_t hx = tq_f32_bits(x);
    const int32_t sign = (int32_t)(hx >> 31);
    float hi, lo, c, xx, y;
    int32_t k;
    hx &= 0x7fffffffu;
    if (hx >= 0x42aeac50u) {         /* |x| >= 87.33655 or NaN */
        if (hx > 0x7f800000u) {
            return x + x;            /* NaN */
        }
        if (!sign && hx > 0x42b17217u) {
            return tq_f32_from_bits(0x7f800000u); /* x > 88.72283: +inf */
        }
        if (sign && hx >= 0x42cff1b5u) {
            return 0.0f;             /* x <= -103.97208: underflows to 0 */
        }
    }
    if (hx > 0x3eb17218u) {          /* |x| > 0.5 ln2 */
        if (hx > 0x3f851592u) {      /* |x| > 1.5 ln2 */
            k = (int32_t)(invln2 * x + (sign ? -0.5f : 0.5f));
        } else {
            k = 1 - sign - sign;
        }
        hi = x - (float)k * ln2hi;   /* exact: k * ln2hi has <= 24 bits */
        lo = (float)k * ln2lo;
        x = hi - lo;
    } else if (hx > 0x39000000u) {   /* |x| > 2^-13 */
        k = 0;
        hi = x;
        lo = 0.0f;
    } else {
        return 1.0f + x;             /* tiny: 1 + x rounds correctly */
    }
    /* exp(r) = 1 + r + r*c/(2 - c), c = r - r^2 (P1 + r^2 P2) */
    xx = x * x;
    c = x - xx * (P1 + xx * P2);
    y = 1.0f + (x * c / (2.0f - c) - lo + hi);
    if (k == 0) {
        return y;
    }
    return tq_scale2(y, k);
}

float tq_logf(float x)
{
    static const float ln2_hi = 6.9313812256e-01f; /* 0x3f317180 */
    static const float ln2_lo = 9.0580006145e-06f; /* 0x3717f7d1 */
    /* |(log(1+s)-log(1-s))/s - Lg(s)| < 2**-34.24 (FreeBSD e_logf.c) */
    static const float Lg1 = 6.6666662693e-01f;    /* 0xaaaaaa.0p-24 */
    static const float Lg2 = 4.0000972152e-01f;    /* 0xccce13.0p-25 */
    static const float Lg3 = 2.8498786688e-01f;    /* 0x91e9ee.0p-25 */
    static const float Lg4 = 2.4279078841e-01f;    /* 0xf89e26.0p-26 */
    uint32_t ix = tq_f32_bits(x);
    float f, s, z, w, t1, t2, R, hfsq, dk;
    int32_t k = 0;
    if (ix < 0x00800000u || (ix >> 31) != 0) { /* x < 2^-126, or sign set */
        if ((ix << 1) == 0) {
            return -tq_f32_from_bits(0x7f800000u); /* log(+-0) = -inf */
        }
        if ((ix >> 31) != 0) {
            if (ix > 0xff800000u) {
                return x + x;                      /* NaN stays NaN */
            }
            return tq_f32_from_bits(0x7fc00000u);  /* log(<0) = NaN */
        }
        /* subnormal: scale up by 2^25 */
        k -= 25;
        x *= tq_f32_from_bits(0x4c000000u);
        ix = tq_f32_bits(x);
    } else if (ix >= 0x7f800000u) {
        return x + x;                              /* +inf or NaN */
    } else if (ix == 0x3f800000u) {
        return 0.0f;
    }
    /* x = 2^k * m with m in [sqrt(2)/2, sqrt(2)) */
    ix += 0x3f800000u - 0x3f3504f3u;
    k += (int32_t)(ix >> 23) - 0x7f;
    ix = (ix & 0x007fffffu) + 0x3f3504f3u;
    x = tq_f32_from_bits(ix);
    f = x - 1.0f;
    s = f / (2.0f + f);
    z = s * s;
    w = z * z;
    t1 = w * (Lg2 + w * Lg4);
    t2 = z * (Lg1 + w * Lg3);
    R = t2 + t1;
    hfsq = 0.5f * f * f;
    dk = (float)k;
    return s * (hfsq + R) + dk * ln2_lo - hfsq + f + dk * ln2_hi;
}
