/* arena.c - region allocator. */
#include <stdalign.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"

#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ONE_BLOCK_EACH 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ONE_BLOCK_EACH 1
#endif
#endif

#define ARENA_ALIGN alignof(max_align_t)

struct arena_block {
    struct arena_block *next;
    size_t cap;
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

struct arena_cleanup {
    struct arena_cleanup *next;
    arena_cleanup_cb fn;
    void *arg;
};

void arena_init(struct arena *a, size_t block_size)
{
    a->blocks = NULL;
    a->cleanups = NULL;
    a->block_size = block_size ? block_size : 4096;
    a->n_bytes = 0;
}

void arena_release(struct arena *a)
{
    /* cleanups may use arena memory, so they run before the blocks go */
    while (a->cleanups) {
        struct arena_cleanup *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->arg);
    }
    while (a->blocks) {
        struct arena_block *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
    a->n_bytes = 0;
}

static struct arena_block *arena_new_block(struct arena *a, size_t min)
{
    size_t cap = min > a->block_size ? min : a->block_size;
#ifdef ARENA_ONE_BLOCK_EACH
    cap = min;
#endif
    struct arena_block *b = xmalloc(sizeof(*b) + cap);
    b->cap = cap;
    b->used = 0;
    b->next = a->blocks;
    a->blocks = b;
    return b;
}

void *arena_alloc(struct arena *a, size_t n)
{
    size_t need = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (need < n)
        PANIC("arena allocation of %zu bytes overflows", n);
    struct arena_block *b = a->blocks;
#ifdef ARENA_ONE_BLOCK_EACH
    b = arena_new_block(a, n);
    need = n;
#else
    if (!b || b->cap - b->used < need) {
        /* a large allocation gets a block of its own, so the current block keeps its room */
        if (need > a->block_size / 4 && b) {
            struct arena_block *big = xmalloc(sizeof(*big) + need);
            big->cap = need;
            big->used = 0;
            big->next = b->next;
            b->next = big;
            b = big;
        } else {
            b = arena_new_block(a, need);
        }
    }
#endif
    void *p = b->data + b->used;
    b->used += need;
    a->n_bytes += n;
    return p;
}

void *arena_zalloc(struct arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return arena_strdup(a, "");
    }
    char *p = arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void arena_on_release(struct arena *a, arena_cleanup_cb fn, void *arg)
{
    struct arena_cleanup *c = arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
}
