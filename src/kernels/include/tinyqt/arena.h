/*
 * tinyqt: the SRAM arena, one caller-owned buffer with a hard size.
 *
 * Two ways to take memory from it, both bounds-checked:
 *  - tq_arena_alloc: a bump allocation (aligned), for ad-hoc use;
 *  - tq_arena_at: the region [offset, offset + bytes) assigned by a static
 *    memory plan.
 * A request that does not fit returns TQ_ERR_NO_MEMORY, hands out nothing,
 * writes nothing, and records how many bytes were asked for and how many
 * were left (last_request / last_available) for the error message.
 */
#ifndef TINYQT_ARENA_H
#define TINYQT_ARENA_H

#include "tinyqt/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint8_t *base;          /* start of the caller's buffer */
    size_t size;            /* its size in bytes */
    size_t used;            /* bump pointer, bytes from base */
    size_t high_water;      /* largest end of any region handed out */
    size_t last_request;    /* bytes asked for by the last failed request */
    size_t last_available;  /* bytes that were left for it */
} tq_arena;

/* Wraps buffer[0 .. size). buffer may be NULL only when size is 0. */
tq_status tq_arena_init(tq_arena *arena, void *buffer, size_t size);

/* Bump allocation of bytes with the given power-of-two alignment (0 or 1 =
 * unaligned). On success *out points into the arena. */
tq_status tq_arena_alloc(tq_arena *arena, size_t bytes, size_t align, void **out);

/* The planned region [offset, offset + bytes); overflow-safe bounds check. */
tq_status tq_arena_at(tq_arena *arena, size_t offset, size_t bytes, void **out);

/* Releases every bump allocation (planned regions are not tracked). */
void tq_arena_reset(tq_arena *arena);

/* Bytes still free for tq_arena_alloc (ignoring alignment). */
size_t tq_arena_remaining(const tq_arena *arena);

#ifdef __cplusplus
}
#endif

#endif /* TINYQT_ARENA_H */
