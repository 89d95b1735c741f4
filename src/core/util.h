/* util.h - time, ids, checksums and little-endian codecs. All functions are thread-safe. */
#ifndef TANDEM_CORE_UTIL_H
#define TANDEM_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"

/* Wall clock in microseconds since the Unix epoch. */
int64_t time_now_us(void);
/* Monotonic clock in microseconds, for durations. */
int64_t time_mono_us(void);

/* PocketBase's date form "2006-01-02 15:04:05.000Z" (UTC, milliseconds): 24 chars + NUL. */
#define TIME_PB_LEN 25
void time_format_pb(int64_t us, char out[TIME_PB_LEN]);
/* ISO 8601 "2006-01-02T15:04:05.000Z": 24 chars + NUL. */
void time_format_iso(int64_t us, char out[TIME_PB_LEN]);
/* Parses ISO 8601 / RFC 3339 and PocketBase dates: "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS",
 * with 'T' or ' ', optional fraction, and 'Z' or +HH:MM / -HH:MM. */
int time_parse(const char *s, size_t len, int64_t *us_out) MUST_USE;

/* A random record id: 15 characters of [a-z0-9] + NUL (PocketBase's form). */
#define ID_LEN 15
void id_random(char out[ID_LEN + 1]);
/* n characters drawn uniformly from alphabet (2 to 256 characters) + NUL into out. */
void rand_string(char *out, size_t n, const char *alphabet);
/* Fills buf with n random bytes from the kernel's CSPRNG. */
void rand_bytes(void *buf, size_t n);
/* n random bytes written as 2n lowercase hex characters + NUL. */
void rand_hex(char *out, size_t n);

/* CRC-32C (Castagnoli). Start with crc = 0; feed pieces in order. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);
/* The same without the CPU's crc32 instruction (tests compare the two). */
uint32_t crc32c_table(uint32_t crc, const void *data, size_t len);

/* Writes all len bytes of data to fd, retrying after EINTR and short writes. 0, -errno, or
 * ERR_IO when a write makes no progress. */
int fd_write_all(int fd, const void *data, size_t len) MUST_USE;

static inline void le_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void le_put64(uint8_t *p, uint64_t v)
{
    le_put32(p, (uint32_t)v);
    le_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t le_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le_get64(const uint8_t *p)
{
    return (uint64_t)le_get32(p) | (uint64_t)le_get32(p + 4) << 32;
}

#endif
