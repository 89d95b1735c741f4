/* err.c - error names, panics and aborting allocators. */
#include <stdarg.h>
#include <string.h>

#include "core/err.h"

const char *err_str(int rc)
{
    switch (rc) {
    case 0: return "ok";
    case ERR_NOTFOUND: return "not found";
    case ERR_CONFLICT: return "conflict";
    case ERR_INVALID: return "invalid input";
    case ERR_LIMIT: return "over a limit";
    case ERR_CORRUPT: return "corrupt data";
    case ERR_BUSY: return "busy";
    case ERR_DENIED: return "not allowed";
    case ERR_IO: return "i/o failure";
    case ERR_INTERNAL: return "internal error";
    case ERR_TIMEOUT: return "deadline passed";
    default: break;
    }
    if (rc < 0 && rc > -4096)
        return strerror(-rc);
    return "unknown error";
}

void core_panic(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tandem: panic at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

static void oom(size_t n)
{
    PANIC("out of memory allocating %zu bytes", n);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

void err_set(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}
