/* xlog.c - diagnostic logging as JSON lines. */
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/str.h"
#include "core/util.h"
#include "core/xlog.h"

static atomic_int xlog_level = XLOG_INFO;
static atomic_int xlog_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void xlog_set_level(enum xlog_level level)
{
    atomic_store_explicit(&xlog_level, (int)level, memory_order_relaxed);
}

bool xlog_enabled(enum xlog_level level)
{
    return (int)level >= atomic_load_explicit(&xlog_level, memory_order_relaxed) &&
           level < XLOG_OFF;
}

int xlog_parse_level(const char *name, enum xlog_level *out)
{
    for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum xlog_level)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

void xlog_set_fd(int fd)
{
    atomic_store(&xlog_fd, fd < 0 ? 2 : fd);
}

void xlog_emit(enum xlog_level level, const char *fields, const char *fmt, ...)
{
    char stack[1024];
    struct buf line = {stack, 0, sizeof(stack)}; /* grows to the heap only for long lines */
    char msg[512];
    char ts[TIME_PB_LEN];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;

    time_format_iso(time_now_us(), ts);
    /* the buf functions realloc, so start with a heap copy only when the stack one fills */
    line.ptr = NULL;
    line.cap = 0;
    buf_reserve(&line, sizeof(stack));
    buf_printf(&line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
               level_names[level < XLOG_OFF ? level : XLOG_ERROR]);
    buf_json_escape(&line, msg, (size_t)n);
    buf_putc(&line, '"');
    if (fields && fields[0]) {
        buf_putc(&line, ',');
        buf_puts(&line, fields);
    }
    buf_append(&line, "}\n", 2);

    int fd = atomic_load(&xlog_fd);
    size_t off = 0;
    while (off < line.len) {
        ssize_t w = write(fd, line.ptr + off, line.len - off);
        if (w <= 0)
            break; /* nowhere to report a failure to log */
        off += (size_t)w;
    }
    buf_release(&line);
}
