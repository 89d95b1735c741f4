/* err.h - error codes shared by every module.
 *
 * Fallible functions return 0 on success and a negative value on failure: either -errno or
 * one of the ERR_* codes below. err_str() names any of them. Detail of a failure lives on the
 * handle that failed (store_errmsg(), ...), never in the code itself. */
#ifndef TANDEM_CORE_ERR_H
#define TANDEM_CORE_ERR_H

#include <stdio.h>
#include <stdlib.h>

#define MUST_USE __attribute__((warn_unused_result))
#define UNUSED(x) ((void)(x))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))

enum {
    ERR_NOTFOUND = -10000, /* no such thing */
    ERR_CONFLICT = -10001, /* exists already, or a concurrent change won */
    ERR_INVALID = -10002,  /* malformed input */
    ERR_LIMIT = -10003,    /* over a configured limit */
    ERR_CORRUPT = -10004,  /* stored data fails its checks */
    ERR_BUSY = -10005,     /* temporarily unable; retry later */
    ERR_DENIED = -10006,   /* not allowed */
    ERR_IO = -10007,       /* a failed write or sync; writes stop until repaired */
    ERR_INTERNAL = -10008, /* an engine failed in a way the caller cannot fix */
    ERR_TIMEOUT = -10009,  /* stopped at a deadline; nothing was changed */
};

/* Human-readable name of a return code (ERR_* or -errno). Never NULL. */
const char *err_str(int rc);
/* Formats a one-line message into err (err_len bytes; nothing when err is NULL or err_len 0). */
void err_set(char *err, size_t err_len, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Stop the process for a broken invariant or corruption; stays on in release builds. */
NORETURN void core_panic(const char *file, int line, const char *fmt, ...) PRINTF_LIKE(3, 4);
#define PANIC(...) core_panic(__FILE__, __LINE__, __VA_ARGS__)

/* Allocation for small internal sizes: aborts when memory runs out. Sizes a client controls
 * use plain malloc and turn failure into an error instead. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
