/*
 * tinyqt: strided row copies (private header).
 *
 * The kernels gather slices of rows (a tile's filter columns, mask bytes,
 * a split filter's rows, a chunk's output channels) that are a few to a few
 * dozen bytes long: a memcpy call per row spends more on its call and
 * alignment checks than on the bytes. tq_copy_rows copies them in one loop,
 * a word at a time when every row start is 4-byte aligned and the length a
 * multiple of 4 (memcpy of 4 bytes compiles to one load and one store),
 * otherwise a byte at a time; rows longer than 64 bytes still go to
 * memcpy. One out-of-line copy (tq_copy.c) serves every caller.
 */
#ifndef TINYQT_COPY_H
#define TINYQT_COPY_H

#include <stddef.h>
#include <stdint.h>

/* dst[r * dst_stride + i] <- src[r * src_stride + i] for r < rows, i < n
 * (bytes; the rows must not overlap). */
void tq_copy_rows(void *dst, size_t dst_stride, const void *src, size_t src_stride, int32_t rows, size_t n);

#endif /* TINYQT_COPY_H */
