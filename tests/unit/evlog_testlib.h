/* evlog_testlib.h - helpers shared by the evlog unit tests (static, header only). */
#ifndef TANDEM_TESTS_EVLOG_TESTLIB_H
#define TANDEM_TESTS_EVLOG_TESTLIB_H

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evlog/evlog.h"

/* A fresh directory under $TMPDIR; free() the result after tl_rmrf(). */
static inline char *tl_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/evlog-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        abort();
    }
    return p;
}

static inline void tl_rmrf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        unlink(dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[8192];
        if ((size_t)snprintf(p, sizeof(p), "%.4000s/%.255s", dir, e->d_name) >= sizeof(p))
            continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            tl_rmrf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The log directory inside a temporary directory. */
static inline void tl_cfg(struct evlog_cfg *cfg, const char *tmp, char *dir_buf, size_t len)
{
    evlog_cfg_defaults(cfg);
    snprintf(dir_buf, len, "%s/log", tmp);
    cfg->dir = dir_buf;
}

/* Payload of record i: deterministic, length 1 + i % mod. */
static inline size_t tl_payload(uint64_t i, size_t mod, char *out, size_t cap)
{
    size_t len = 1 + (size_t)(i % mod);
    if (len > cap)
        len = cap;
    for (size_t k = 0; k < len; k++)
        out[k] = (char)('a' + (i * 7 + k) % 26);
    if (len >= 8)
        snprintf(out, 8, "%07" PRIu64, i % 10000000);
    return len;
}

static inline char *tl_seg_path(const char *dir, const char *topic, uint64_t base)
{
    size_t n = strlen(dir) + strlen(topic) + 32;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s/%020" PRIu64 ".seg", dir, topic, base);
    return p;
}

static inline long tl_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Reads a whole file; *len_out gets its size. */
static inline unsigned char *tl_slurp(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    *len_out = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    *len_out = (size_t)n;
    return b;
}

static inline void tl_spit(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(path);
        abort();
    }
    fclose(f);
}

#endif
