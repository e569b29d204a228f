/*
 * tinyqt: Arm Helium (M-profile Vector Extension) switch and helpers shared
 * by the kernels' MVE paths (private header).
 *
 * TQ_USE_MVE is 1 when the target has integer MVE (__ARM_FEATURE_MVE, e.g.
 * Cortex-M55) and TQ_FORCE_PORTABLE is not defined; such a target also has
 * the DSP extension, so a kernel without an MVE path keeps its DSP path.
 *
 * Bytes: the MVE paths accumulate the same int32 sums as the portable path
 * (integer additions, any order, wrapping alike) and requantize four lanes
 * exactly as tq_requantize does one (tq_rq4_apply; in assembly
 * TQ_MVE_RQ4_ASM), so every path gives identical outputs.
 * Tails use predicated loads (vctp8q): lanes past the end read no memory.
 */
#ifndef TINYQT_MVE_H
#define TINYQT_MVE_H

#if defined(__ARM_FEATURE_MVE) && !defined(TQ_FORCE_PORTABLE)
#define TQ_USE_MVE 1
#include <arm_mve.h>
#else
#define TQ_USE_MVE 0
#endif

#if TQ_USE_MVE
#include <stddef.h>
#include <stdint.h>

/* ---- requantization of 4 channels -------------------------------------
 * tq_requantize (requant.h) lane by lane, exactly:
 *  - the left shift wraps like (uint32_t)x << left (VSHL);
 *  - tq_doubling_high_mul(a, b) = (a*b + 2^30) >> 31 = (2ab + 2^31) >> 32,
 *    which is VQRDMULH (it saturates only for INT32_MIN * INT32_MIN, a
 *    multiplier the kernels reject);
 *  - the rounding divide by 2^r (ties away from zero) is VRSHL by -r
 *    (ties up) after subtracting 1 from negative values when r > 0; the
 *    product is > INT32_MIN, so the subtraction cannot wrap. */
typedef struct {
    int32x4_t mult;
    int32x4_t left;   /* max(shift, 0) */
    int32x4_t right;  /* min(shift, 0): VRSHL's count */
    int32x4_t fix;    /* -1 where shift < 0, else 0 */
} tq_rq4;

/* The requantization of channels c..c+3 (lanes past n are zeroed). */
static inline void tq_rq4_init(tq_rq4 *rq, const int32_t *mult, const int32_t *shift, int32_t n)
{
    const mve_pred16_t pr = vctp32q((uint32_t)n);
    const int32x4_t s = vldrwq_z_s32(shift, pr);
    const int32x4_t zero = vdupq_n_s32(0);
    rq->mult = vldrwq_z_s32(mult, pr);
    rq->left = vmaxq_s32(s, zero);
    rq->right = vminq_s32(s, zero);
    rq->fix = vshrq_n_s32(rq->right, 31);
}

/* One multiplier and shift in all four lanes. */
static inline void tq_rq4_dup(tq_rq4 *rq, int32_t mult, int32_t shift)
{
    rq->mult = vdupq_n_s32(mult);
    rq->left = vdupq_n_s32(shift > 0 ? shift : 0);
    rq->right = vdupq_n_s32(shift < 0 ? shift : 0);
    rq->fix = vdupq_n_s32(shift < 0 ? -1 : 0);
}

/* tq_requantize(acc) per lane. */
static inline int32x4_t tq_rq4_raw(const tq_rq4 *rq, int32x4_t acc)
{
    int32x4_t x = vqrdmulhq_s32(vshlq_s32(acc, rq->left), rq->mult);
    x = vaddq_s32(x, vandq_s32(vshrq_n_s32(x, 31), rq->fix));
    return vrshlq_s32(x, rq->right);
}

/* clamp(tq_requantize(acc) + out_offset, act_min, act_max) per lane. */
static inline int32x4_t tq_rq4_apply(const tq_rq4 *rq, int32x4_t acc, int32_t out_offset,
                                     int32_t act_min, int32_t act_max)
{
    const int32x4_t x = vaddq_n_s32(tq_rq4_raw(rq, acc), out_offset);
    return vminq_s32(vmaxq_s32(x, vdupq_n_s32(act_min)), vdupq_n_s32(act_max));
}

/* tq_rq4_apply in assembly, for a q register a that already holds acc (+
 * base) and a shift with no left part: the operands name q registers (t a
 * scratch one) holding the multiplier, right shift, fix and the bounds, off
 * a core register with the output offset. 8 instructions; 7 in the _RIGHT
 * form, for lanes that all shift right (fix all ones: no VAND). */
#define TQ_MVE_RQ4_FIXED(a, t, mult, fix_and, right, off, lo, hi)                      \
    "vqrdmulh.s32 " a ", " a ", " mult "\n\t"                                          \
    "vshr.s32 " t ", " a ", #31\n\t"                                                   \
    fix_and                                                                          \
    "vadd.i32 " a ", " a ", " t "\n\t"                                                 \
    "vrshl.s32 " a ", " a ", " right "\n\t"                                            \
    "vadd.i32 " a ", " a ", " off "\n\t"                                               \
    "vmax.s32 " a ", " a ", " lo "\n\t"                                                \
    "vmin.s32 " a ", " a ", " hi "\n\t"
#define TQ_MVE_RQ4_ASM(a, t, mult, right, fix, off, lo, hi)                            \
    TQ_MVE_RQ4_FIXED(a, t, mult, "vand " t ", " t ", " fix "\n\t", right, off, lo, hi)
#define TQ_MVE_RQ4_RIGHT_ASM(a, t, mult, right, off, lo, hi) TQ_MVE_RQ4_FIXED(a, t, mult, "", right, off, lo, hi)

/* 1 when each of the n shifts is a right shift (negative): the Helium
 * requantization's rounding fix then applies to every lane. */
static inline int tq_all_right_shift(const int32_t *shift, int32_t n)
{
    int32_t c;
    for (c = 0; c < n; c++) {
        if (shift[c] >= 0) {
            return 0;
        }
    }
    return 1;
}

/* The 4 lanes (s0, s1, s2, s3) of an int32 vector. */
static inline int32x4_t tq_lanes4(int32_t s0, int32_t s1, int32_t s2, int32_t s3)
{
    int32x4_t v = vdupq_n_s32(s0);
    v = vsetq_lane_s32(s1, v, 1);
    v = vsetq_lane_s32(s2, v, 2);
    return vsetq_lane_s32(s3, v, 3);
}
/* acc[0..3] = (x.w0, x.w1, x.w2, x.w3): 4 dot products over k int8 values
 * (VMLADAVA, 16 values per step; tail = vctp8q(k % 16) predicates a last
 * partial step, so nothing past x[k - 1] or a row's end is read). */
__attribute__((always_inline)) static inline void
tq_dot4_mve(const int8_t *x, const int8_t *w0, const int8_t *w1, const int8_t *w2, const int8_t *w3, int32_t k,
            mve_pred16_t tail, int32_t *acc)
{
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, i;
    for (i = 0; i + 16 <= k; i += 16) {
        const int8x16_t xv = vldrbq_s8(x + i);
        s0 = vmladavaq_s8(s0, xv, vldrbq_s8(w0 + i));
        s1 = vmladavaq_s8(s1, xv, vldrbq_s8(w1 + i));
        s2 = vmladavaq_s8(s2, xv, vldrbq_s8(w2 + i));
        s3 = vmladavaq_s8(s3, xv, vldrbq_s8(w3 + i));
    }
    if (i < k) {
        const int8x16_t xv = vldrbq_z_s8(x + i, tail);
        s0 = vmladavaq_s8(s0, xv, vldrbq_z_s8(w0 + i, tail));
        s1 = vmladavaq_s8(s1, xv, vldrbq_z_s8(w1 + i, tail));
        s2 = vmladavaq_s8(s2, xv, vldrbq_z_s8(w2 + i, tail));
        s3 = vmladavaq_s8(s3, xv, vldrbq_z_s8(w3 + i, tail));
    }
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
}

/* A block of output channels oc .. oc + nc - 1 (nc <= 4) of a conv whose
 * filter rows hold k int8 values: the rows (a missing channel repeats row
 * oc: computed, never stored), base = bias + input_offset * row sums
 * (wrapping, as the portable path's tq_add_wrap), the requantization and
 * the store predicate. */
typedef struct {
    const int8_t *w0, *w1, *w2, *w3;
    int32x4_t base;
    tq_rq4 rq;
    mve_pred16_t pc;
    int32_t full_right; /* 4 channels, all shifting right: tq_oc4_store_n's assembly loop */
} tq_oc4;

/* Pixels whose sums a block keeps for one tq_oc4_store_n (int32 x 4 each). */
#define TQ_OC4_PIXELS 32

static inline void tq_oc4_init(tq_oc4 *b, const int8_t *filter, int32_t k, int32_t oc, int32_t out_c,
                               const int32_t *bias, const int32_t *mult, const int32_t *shift,
                               int32_t input_offset)
{
    const int32_t nc = out_c - oc < 4 ? out_c - oc : 4;
    int32_t r0 = 0, r1 = 0, r2 = 0, r3 = 0, i;
    b->pc = vctp32q((uint32_t)nc);
    b->w0 = filter + (size_t)oc * k;
    b->w1 = nc > 1 ? b->w0 + k : b->w0;
    b->w2 = nc > 2 ? b->w0 + 2 * k : b->w0;
    b->w3 = nc > 3 ? b->w0 + 3 * k : b->w0;
    for (i = 0; i < k; i += 16) {
        const mve_pred16_t pr = vctp8q((uint32_t)(k - i));
        r0 = vaddvaq_s8(r0, vldrbq_z_s8(b->w0 + i, pr));
        r1 = vaddvaq_s8(r1, vldrbq_z_s8(b->w1 + i, pr));
        r2 = vaddvaq_s8(r2, vldrbq_z_s8(b->w2 + i, pr));
        r3 = vaddvaq_s8(r3, vldrbq_z_s8(b->w3 + i, pr));
    }
    b->base = vmlaq_n_s32(bias != NULL ? vldrwq_z_s32(bias + oc, b->pc) : vdupq_n_s32(0),
                          tq_lanes4(r0, r1, r2, r3), input_offset);
    tq_rq4_init(&b->rq, mult + oc, shift + oc, nc);
    b->full_right = nc == 4 && tq_all_right_shift(shift + oc, 4);
}

/* Requantizes acc + the block's base and stores the block's channels at
 * out (one narrowing VSTRB.32). */
static inline void tq_oc4_store(const tq_oc4 *b, int32x4_t acc, int32_t out_offset, int32_t act_min,
                                int32_t act_max, int8_t *out)
{
    vstrbq_p_s32(out, tq_rq4_apply(&b->rq, vaddq_s32(acc, b->base), out_offset, act_min, act_max), b->pc);
}

/* acc[4j + r] = x_j . v_r (r < 4) for n (>= 1) vectors x_j = x + j * x_step
 * of at most 16 values (pk: their predicate, so that nothing past one is
 * read; the rows v_r are zero past it). One assembly loop, 9 instructions a
 * vector: the predicate is set once (compiled intrinsics set it again for
 * every load) and the sums go out with two STRD. */
static inline void tq_dots16_mve(const int8_t *x, int32_t x_step, int32_t n, mve_pred16_t pk, int8x16_t v0,
                                 int8x16_t v1, int8x16_t v2, int8x16_t v3, int32_t *acc)
{
    int32_t s0, s1, s2, s3;
    __asm__ volatile(
        "vmsr p0, %[pk]\n\t"
        "dls lr, %[n]\n\t"
        "1:\n\t"
        "vpst\n\t"
        "vldrbt.8 q0, [%[x]]\n\t"
        "add %[x], %[x], %[st]\n\t"
        "vmladav.s8 %[s0], q0, %q[v0]\n\t"
        "vmladav.s8 %[s1], q0, %q[v1]\n\t"
        "vmladav.s8 %[s2], q0, %q[v2]\n\t"
        "vmladav.s8 %[s3], q0, %q[v3]\n\t"
        "strd %[s0], %[s1], [%[acc]], #8\n\t"
        "strd %[s2], %[s3], [%[acc]], #8\n\t"
        "le lr, 1b"
        : [x] "+r"(x), [acc] "+r"(acc), [s0] "=&Te"(s0), [s1] "=&Te"(s1), [s2] "=&Te"(s2), [s3] "=&Te"(s3)
        : [n] "r"(n), [st] "r"(x_step), [pk] "r"((uint32_t)pk), [v0] "w"(v0), [v1] "w"(v1), [v2] "w"(v2),
          [v3] "w"(v3)
        : "q0", "lr", "p0", "memory"); /* p0: the VPR predicate */
}

/* acc[4j + r] = x_j . (a_r, b_r) (r < 2) for n (>= 1) vectors x_j = x + j *
 * x_step of 17 to 32 values: 16 in a_r, the rest in b_r (zero past the
 * end; pk predicates the second load). One assembly loop, 10 instructions
 * a vector and two rows (an int32x4 per pixel of acc, two lanes written). */
static inline void tq_dots32x2_mve(const int8_t *x, int32_t x_step, int32_t n, mve_pred16_t pk, int8x16_t a0,
                                   int8x16_t b0, int8x16_t a1, int8x16_t b1, int32_t *acc)
{
    int32_t s0, s1;
    __asm__ volatile(
        "vmsr p0, %[pk]\n\t"
        "dls lr, %[n]\n\t"
        "1:\n\t"
        "vldrb.8 q0, [%[x]]\n\t"
        "vpst\n\t"
        "vldrbt.8 q1, [%[x], #16]\n\t"
        "add %[x], %[x], %[st]\n\t"
        "vmladav.s8 %[s0], q0, %q[a0]\n\t"
        "vmladava.s8 %[s0], q1, %q[b0]\n\t"
        "vmladav.s8 %[s1], q0, %q[a1]\n\t"
        "vmladava.s8 %[s1], q1, %q[b1]\n\t"
        "strd %[s0], %[s1], [%[acc]], #16\n\t"
        "le lr, 1b"
        : [x] "+r"(x), [acc] "+r"(acc), [s0] "=&Te"(s0), [s1] "=&Te"(s1)
        : [n] "r"(n), [st] "r"(x_step), [pk] "r"((uint32_t)pk), [a0] "w"(a0), [b0] "w"(b0), [a1] "w"(a1),
          [b1] "w"(b1)
        : "q0", "q1", "lr", "p0", "memory"); /* p0: the VPR predicate */
}

/* tq_dot4_mve of n (>= 1) vectors x + j * x_step into acc + 4j. A function
 * of its own: inlined beside the assembly loops, GCC spilled its pointers
 * (VMLADAVA needs even registers) and ran 1.5x slower. */
__attribute__((noinline)) static void tq_dots_mve(const int8_t *x, int32_t x_step, int32_t k, int32_t n,
                                                  const int8_t *w0, const int8_t *w1, const int8_t *w2,
                                                  const int8_t *w3, int32_t *acc)
{
    const mve_pred16_t tail = vctp8q((uint32_t)(k & 15)); /* the last k % 16 values */
    int32_t j;
    for (j = 0; j < n; j++, x += x_step) {
        tq_dot4_mve(x, w0, w1, w2, w3, k, tail, acc + 4 * j);
    }
}

/* acc[4j .. 4j + 3] = the block's 4 dot products with x_j = x + j * x_step
 * (k values each), j < n (n >= 1): assembly loops for k <= 32, whose rows
 * stay in registers, else tq_dots_mve. */
__attribute__((always_inline)) static inline void tq_oc4_dots(const tq_oc4 *b, const int8_t *x, int32_t x_step, int32_t k, int32_t n,
                               int32_t *acc)
{
    if (k <= 16) {
        const mve_pred16_t pk = vctp8q((uint32_t)k);
        tq_dots16_mve(x, x_step, n, pk, vldrbq_z_s8(b->w0, pk), vldrbq_z_s8(b->w1, pk), vldrbq_z_s8(b->w2, pk),
                      vldrbq_z_s8(b->w3, pk), acc);
    } else if (k <= 32) {
        const mve_pred16_t pk = vctp8q((uint32_t)(k - 16));
        tq_dots32x2_mve(x, x_step, n, pk, vldrbq_s8(b->w0), vldrbq_z_s8(b->w0 + 16, pk), vldrbq_s8(b->w1),
                        vldrbq_z_s8(b->w1 + 16, pk), acc);
        tq_dots32x2_mve(x, x_step, n, pk, vldrbq_s8(b->w2), vldrbq_z_s8(b->w2 + 16, pk), vldrbq_s8(b->w3),
                        vldrbq_z_s8(b->w3 + 16, pk), acc + 2);
    } else {
        tq_dots_mve(x, x_step, k, n, b->w0, b->w1, b->w2, b->w3, acc);
    }
}

/* tq_oc4_store of n (>= 1) pixels' sums acc[4j .. 4j + 3] at out + j *
 * out_stride. With four channels that all shift right (the usual case) one
 * assembly loop keeps the block's base, multiplier, shift and clamp bounds
 * in q2-q7: 12 instructions per pixel, where the intrinsics, short of
 * Helium registers, reload them per pixel. */
static inline void tq_oc4_store_n(const tq_oc4 *b, const int32_t *acc, int32_t n, int32_t out_offset,
                                  int32_t act_min, int32_t act_max, int8_t *out, int32_t out_stride)
{
    if (b->full_right) {
        const int32_t bounds[3] = {act_min, act_max, out_offset};
        __asm__ volatile(
            "vldrw.32 q2, [%[b], %[o_base]]\n\t"
            "vldrw.32 q3, [%[b], %[o_mult]]\n\t"
            "vldrw.32 q4, [%[b], %[o_right]]\n\t"
            "dls lr, %[n]\n\t"
            "ldr %[n], [%[c]]\n\t"
            "vdup.32 q6, %[n]\n\t"
            "ldr %[n], [%[c], #4]\n\t"
            "vdup.32 q7, %[n]\n\t"
            "ldr %[n], [%[c], #8]\n\t"
            "1:\n\t"
            "vldrw.32 q0, [%[acc]], #16\n\t"
            "vadd.i32 q0, q0, q2\n\t"
            TQ_MVE_RQ4_RIGHT_ASM("q0", "q1", "q3", "q4", "%[n]", "q6", "q7")
            "vstrb.32 q0, [%[out]]\n\t"
            "add %[out], %[out], %[st]\n\t"
            "le lr, 1b"
            : [acc] "+r"(acc), [out] "+l"(out) /* VSTRB.32: a low register */, [n] "+r"(n) /* then the output offset */
            : [b] "r"(b), [c] "r"(bounds), [st] "r"(out_stride), [o_base] "i"(offsetof(tq_oc4, base)),
              [o_mult] "i"(offsetof(tq_oc4, rq) + offsetof(tq_rq4, mult)),
              [o_right] "i"(offsetof(tq_oc4, rq) + offsetof(tq_rq4, right))
            : "q0", "q1", "q2", "q3", "q4", "q6", "q7", "lr", "memory");
        return;
    }
    for (; n > 0; n--, acc += 4, out += out_stride) {
        tq_oc4_store(b, vldrwq_s32(acc), out_offset, act_min, act_max, out);
    }
}
#endif

#endif /* TINYQT_MVE_H */
