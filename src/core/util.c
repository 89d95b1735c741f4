/* util.c - time, ids, random bytes, CRC-32C and whole writes to a descriptor. */
#include <errno.h>
#include <string.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

int64_t time_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t time_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void time_format(int64_t us, char sep, char out[TIME_PB_LEN])
{
    int64_t secs = us >= 0 ? us / 1000000 : (us - 999999) / 1000000;
    int ms = (int)((us - secs * 1000000) / 1000);
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02d%c%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, sep, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    memcpy(out, tmp, TIME_PB_LEN - 1);
    out[TIME_PB_LEN - 1] = '\0';
}

void time_format_pb(int64_t us, char out[TIME_PB_LEN])
{
    time_format(us, ' ', out);
}

void time_format_iso(int64_t us, char out[TIME_PB_LEN])
{
    time_format(us, 'T', out);
}

static int digits(const char *s, size_t len, size_t *pos, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (*pos >= len || s[*pos] < '0' || s[*pos] > '9')
            return ERR_INVALID;
        v = v * 10 + (s[(*pos)++] - '0');
    }
    *out = v;
    return 0;
}

/* days since 1970-01-01 of a proleptic Gregorian date */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int time_parse(const char *s, size_t len, int64_t *us_out)
{
    size_t p = 0;
    int y, mo, d, h = 0, mi = 0, se = 0;
    int64_t frac_us = 0;
    if (digits(s, len, &p, 4, &y) || p >= len || s[p++] != '-' || digits(s, len, &p, 2, &mo) ||
        p >= len || s[p++] != '-' || digits(s, len, &p, 2, &d))
        return ERR_INVALID;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
        return ERR_INVALID;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return ERR_INVALID;
    int64_t off_s = 0;
    if (p < len) {
        if (s[p] != 'T' && s[p] != ' ' && s[p] != 't')
            return ERR_INVALID;
        p++;
        if (digits(s, len, &p, 2, &h) || p >= len || s[p++] != ':' || digits(s, len, &p, 2, &mi))
            return ERR_INVALID;
        if (p < len && s[p] == ':') {
            p++;
            if (digits(s, len, &p, 2, &se))
                return ERR_INVALID;
            if (p < len && s[p] == '.') {
                p++;
                int64_t scale = 100000;
                size_t start = p;
                while (p < len && s[p] >= '0' && s[p] <= '9') {
                    frac_us += (s[p] - '0') * scale;
                    scale /= 10;
                    p++;
                }
                if (p == start)
                    return ERR_INVALID;
            }
        }
        if (h > 23 || mi > 59 || se > 60)
            return ERR_INVALID;
        if (p < len) {
            if (s[p] == 'Z' || s[p] == 'z') {
                p++;
            } else if (s[p] == '+' || s[p] == '-') {
                int sign = s[p++] == '-' ? -1 : 1;
                int oh, om = 0;
                if (digits(s, len, &p, 2, &oh))
                    return ERR_INVALID;
                if (p < len && s[p] == ':')
                    p++;
                if (p < len && digits(s, len, &p, 2, &om))
                    return ERR_INVALID;
                if (oh > 23 || om > 59)
                    return ERR_INVALID;
                off_s = sign * (oh * 3600 + om * 60);
            }
        }
        if (p != len)
            return ERR_INVALID;
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off_s;
    *us_out = secs * 1000000 + frac_us;
    return 0;
}

void rand_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            PANIC("getrandom failed: %s", strerror(errno));
        }
        p += r;
        n -= (size_t)r;
    }
}

void rand_hex(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char tmp[64];
    while (n > 0) {
        size_t k = n < sizeof(tmp) ? n : sizeof(tmp);
        rand_bytes(tmp, k);
        for (size_t i = 0; i < k; i++) {
            *out++ = hex[tmp[i] >> 4];
            *out++ = hex[tmp[i] & 15];
        }
        n -= k;
    }
    *out = '\0';
}

void rand_string(char *out, size_t n, const char *alphabet)
{
    size_t k = strlen(alphabet);
    unsigned limit = 256 - 256 % (unsigned)k; /* bytes from here up are rejected: no bias */
    unsigned char r[64];
    size_t len = 0, i = sizeof(r);
    while (len < n) {
        if (i == sizeof(r)) {
            rand_bytes(r, sizeof(r));
            i = 0;
        }
        unsigned char b = r[i++];
        if (b < limit)
            out[len++] = alphabet[b % k];
    }
    out[n] = '\0';
}

void id_random(char out[ID_LEN + 1])
{
    rand_string(out, ID_LEN, "abcdefghijklmnopqrstuvwxyz0123456789");
}

/* CRC-32C, slicing-by-8 tables built once. */
static uint32_t crc_table[8][256];
static atomic_int crc_ready;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    atomic_store(&crc_ready, 1);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
/* The SSE4.2 crc32 instruction computes CRC-32C: 8 bytes per instruction instead of eight
 * table lookups (the event log checksums every record it appends). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    uint64_t c = ~crc;
    for (; len >= 8; p += 8, len -= 8)
        c = _mm_crc32_u64(c, le_get64(p));
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#define CRC32C_HW() __builtin_cpu_supports("sse4.2")
#else
#define CRC32C_HW() 0
#define crc32c_hw crc32c_table
#endif

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
    static int hw = -1; /* racing threads store the same value */
    int use_hw = __atomic_load_n(&hw, __ATOMIC_RELAXED);
    if (use_hw < 0) {
        use_hw = CRC32C_HW() ? 1 : 0;
        __atomic_store_n(&hw, use_hw, __ATOMIC_RELAXED);
    }
    if (use_hw)
        return crc32c_hw(crc, data, len);
    return crc32c_table(crc, data, len);
}

/* The portable version; tests compare the two. */
uint32_t crc32c_table(uint32_t crc, const void *data, size_t len)
{
    if (!atomic_load_explicit(&crc_ready, memory_order_acquire))
        crc32c_init(); /* idempotent: racing threads write the same values */
    const uint8_t *p = data;
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ le_get32(p);
        uint32_t hi = le_get32(p + 4);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
              crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
              crc_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

int fd_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : ERR_IO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}
