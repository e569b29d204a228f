/* tinyqt: strided row copies (contract in tq_copy.h). */
#include <string.h>

#include "tq_copy.h"

#define TQ_COPY_ROW_MEMCPY 64 /* longer rows: memcpy's own loops repay its call */

void tq_copy_rows(void *dst, size_t dst_stride, const void *src, size_t src_stride, int32_t rows,
                  size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    int32_t r;
    size_t i;
    if (n > TQ_COPY_ROW_MEMCPY) {
        for (r = 0; r < rows; r++) {
            memcpy(d + (size_t)r * dst_stride, s + (size_t)r * src_stride, n);
        }
        return;
    }
    if (((n | dst_stride | src_stride | (uintptr_t)d | (uintptr_t)s) & 3u) == 0) {
        for (r = 0; r < rows; r++, d += dst_stride, s += src_stride) {
            for (i = 0; i < n; i += 4) {
                memcpy(d + i, s + i, 4);
            }
        }
        return;
    }
    for (r = 0; r < rows; r++, d += dst_stride, s += src_stride) {
        for (i = 0; i < n; i++) {
            d[i] = s[i];
        }
    }
}

