/* str.h - string views and growable byte buffers.
 *
 * struct str borrows bytes it does not own; struct buf owns a heap buffer that is always
 * NUL-terminated after its len bytes (once anything was appended). Both are plain values
 * touched by one thread at a time. */
#ifndef TANDEM_CORE_STR_H
#define TANDEM_CORE_STR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct str {
    const char *ptr;
    size_t len;
};

#define STR_LIT(s) ((struct str){(s), sizeof(s) - 1})
#define STR_FMT(s) (int)(s).len, (s).ptr /* printf("%.*s", STR_FMT(x)) */

struct str str_from(const char *cstr); /* NULL gives the empty view */
bool str_eq(struct str a, struct str b);
bool str_eq_cstr(struct str a, const char *b);
bool str_has_prefix(struct str s, const char *prefix);
/* The value of a hexadecimal digit, or -1. */
int str_hex_digit(char c);
/* Length of the well-formed UTF-8 sequence at p (at most n >= 1 bytes): 1 for ASCII, 2-4,
 * or 0 when it is not one (overlongs, surrogates and code points past U+10FFFF are not). */
size_t str_utf8_seq(const unsigned char *p, size_t n);
/* Drops, in place, every byte of s that is not part of a well-formed UTF-8 sequence (e.g. a
 * character cut by a printf precision), so the text is safe for a JSON string. */
void str_utf8_scrub(char *s);

struct buf {
    char *ptr;
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_release(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps the memory */
/* Grows to hold extra more bytes; aborts on out of memory. */
void buf_reserve(struct buf *b, size_t extra);
/* Like buf_reserve but returns -ENOMEM instead of aborting (client-sized data). */
int buf_try_reserve(struct buf *b, size_t extra) MUST_USE;
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);
/* Appends s as the inside of a JSON string (no quotes), escaping as JSON requires. */
void buf_json_escape(struct buf *b, const char *s, size_t len);
/* RETURNS: the buffer's bytes as a C string; "" when empty. Valid until the next change. */
const char *buf_cstr(struct buf *b);
/* TAKES the buffer's memory for the caller (free() it); the buf is left empty. */
char *buf_detach(struct buf *b, size_t *len_out);

#endif
