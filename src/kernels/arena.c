/* tinyqt: SRAM arena over one caller-owned buffer (see tinyqt/arena.h). */
#include "tinyqt/arena.h"

static tq_status tq_arena_refuse(tq_arena *arena, size_t bytes, size_t available)
{
    arena->last_request = bytes;
    arena->last_available = available;
    return TQ_ERR_NO_MEMORY;
}

tq_status tq_arena_init(tq_arena *arena, void *buffer, size_t size)
{
    if (arena == NULL || (buffer == NULL && size != 0)) {
        return TQ_ERR_NULL;
    }
    arena->base = (uint8_t *)buffer;
    arena->size = size;
    arena->used = 0;
    arena->high_water = 0;
    arena->last_request = 0;
    arena->last_available = 0;
    return TQ_OK;
}

tq_status tq_arena_alloc(tq_arena *arena, size_t bytes, size_t align, void **out)
{
    size_t start, pad;
    if (arena == NULL || out == NULL) {
        return TQ_ERR_NULL;
    }
    if (align == 0) {
        align = 1;
    }
    if ((align & (align - 1)) != 0) {
        return TQ_ERR_PARAM;
    }
    pad = (size_t)(-(uintptr_t)(arena->base + arena->used)) & (align - 1);
    if (pad > arena->size - arena->used || bytes > arena->size - arena->used - pad) {
        return tq_arena_refuse(arena, bytes, arena->size - arena->used);
    }
    start = arena->used + pad;
    arena->used = start + bytes;
    if (arena->used > arena->high_water) {
        arena->high_water = arena->used;
    }
    *out = arena->base + start;
    return TQ_OK;
}

tq_status tq_arena_at(tq_arena *arena, size_t offset, size_t bytes, void **out)
{
    if (arena == NULL || out == NULL) {
        return TQ_ERR_NULL;
    }
    if (offset > arena->size || bytes > arena->size - offset) {
        return tq_arena_refuse(arena, bytes, offset > arena->size ? 0 : arena->size - offset);
    }
    if (offset + bytes > arena->high_water) {
        arena->high_water = offset + bytes;
    }
    *out = arena->base + offset;
    return TQ_OK;
}

void tq_arena_reset(tq_arena *arena)
{
    if (arena != NULL) {
        arena->used = 0;
    }
}

size_t tq_arena_remaining(const tq_arena *arena)
{
    return arena == NULL ? 0 : arena->size - arena->used;
}
