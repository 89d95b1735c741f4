/* arena.h - region allocator for memory that lives exactly as long as one piece of work
 * (an HTTP request, one batch). Allocations are never freed one by one; arena_release()
 * runs the registered cleanups in reverse order, then frees every block at once.
 *
 * Under AddressSanitizer each allocation is its own malloc block so overflows are caught.
 * An arena belongs to the thread that currently works on its request. */
#ifndef TANDEM_CORE_ARENA_H
#define TANDEM_CORE_ARENA_H

#include <stdarg.h>
#include <stddef.h>

#include "core/err.h"

typedef void (*arena_cleanup_cb)(void *arg);

struct arena_block;
struct arena_cleanup;

struct arena {
    struct arena_block *blocks;
    struct arena_cleanup *cleanups;
    size_t block_size; /* default size of a new block */
    size_t n_bytes;    /* bytes handed out, for limits and tests */
};

void arena_init(struct arena *a, size_t block_size);
void arena_release(struct arena *a);

/* Aligned for any type; aborts on out of memory. n may be 0. */
void *arena_alloc(struct arena *a, size_t n);
void *arena_zalloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* fn(arg) runs at arena_release(), last registered first. */
void arena_on_release(struct arena *a, arena_cleanup_cb fn, void *arg);

#endif
