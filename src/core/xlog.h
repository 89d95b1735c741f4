/* xlog.h - diagnostic logging: one JSON object per line on stderr.
 *
 *   {"time":"2026-11-21T19:48:38.123Z","level":"warn","msg":"cannot open segment ...", ...}
 *
 * Lines are written with a single write(2), so lines from different threads never interleave.
 * The level check is a relaxed atomic load and costs nothing when a level is off. Named xlog so
 * it never collides with the event log (evlog). Safe from any thread. */
#ifndef TANDEM_CORE_XLOG_H
#define TANDEM_CORE_XLOG_H

#include <stdbool.h>

#include "core/err.h"

enum xlog_level {
    XLOG_DEBUG = 0,
    XLOG_INFO = 1,
    XLOG_WARN = 2,
    XLOG_ERROR = 3,
    XLOG_OFF = 4,
};

void xlog_set_level(enum xlog_level level);
bool xlog_enabled(enum xlog_level level);
/* Parses "debug", "info", "warn", "error" or "off"; -ERR_INVALID otherwise. */
int xlog_parse_level(const char *name, enum xlog_level *out) MUST_USE;
/* Redirects output to fd (tests); -1 restores stderr. */
void xlog_set_fd(int fd);

/* fields: extra members already in JSON form, without braces (`"status":200,"us":31`), or
 * NULL. msg is escaped. */
void xlog_emit(enum xlog_level level, const char *fields, const char *fmt, ...) PRINTF_LIKE(3, 4);

#define xlog__at(lvl, ...)                                                                         \
    do {                                                                                           \
        if (xlog_enabled(lvl))                                                                     \
            xlog_emit(lvl, NULL, __VA_ARGS__);                                                     \
    } while (0)
#define xlog_debug(...) xlog__at(XLOG_DEBUG, __VA_ARGS__)
#define xlog_info(...) xlog__at(XLOG_INFO, __VA_ARGS__)
#define xlog_warn(...) xlog__at(XLOG_WARN, __VA_ARGS__)
#define xlog_error(...) xlog__at(XLOG_ERROR, __VA_ARGS__)

#endif
