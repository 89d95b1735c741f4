/* frame.c - the record frame codec, the segment scanner, the sparse index and directory
 * helpers of the local backend. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evlog/local/local_int.h"

#define SCAN_CHUNK (1u << 20)

uint32_t evlog__frame_payload_crc(const void *payload, size_t len)
{
    return crc32c(0, payload, len);
}

void evlog__frame_seal(uint8_t *frame, uint32_t len, uint64_t offset, int64_t ts_us,
                       uint32_t payload_crc)
{
    le_put32(frame, len);
    le_put64(frame + 8, offset);
    le_put64(frame + 16, (uint64_t)ts_us);
    uint32_t c = crc32c(payload_crc, frame, 4);
    c = crc32c(c, frame + 8, 16);
    le_put32(frame + 4, c);
}

void evlog__frame_put(uint8_t *dst, uint64_t offset, int64_t ts_us, const void *payload, size_t len)
{
    if (len)
        memcpy(dst + EVLOG_FRAME_HDR, payload, len);
    evlog__frame_seal(dst, (uint32_t)len, offset, ts_us, evlog__frame_payload_crc(payload, len));
}

enum evlog__frame_rc evlog__frame_get(const uint8_t *p, size_t avail, uint32_t max_len,
                                      uint64_t expect, struct evlog_rec_view *out)
{
    if (avail < EVLOG_FRAME_HDR)
        return EVLOG_FRAME_SHORT;
    uint32_t len = le_get32(p);
    if (len > max_len)
        return EVLOG_FRAME_BADLEN;
    if (avail - EVLOG_FRAME_HDR < len)
        return EVLOG_FRAME_SHORT;
    uint32_t c = crc32c(0, p + EVLOG_FRAME_HDR, len);
    c = crc32c(c, p, 4);
    c = crc32c(c, p + 8, 16);
    if (c != le_get32(p + 4))
        return EVLOG_FRAME_BADCRC;
    uint64_t off = le_get64(p + 8);
    if (expect != UINT64_MAX && off != expect)
        return EVLOG_FRAME_BADOFF;
    out->offset = off;
    out->timestamp_us = (int64_t)le_get64(p + 16);
    out->data = p + EVLOG_FRAME_HDR;
    out->len = len;
    return EVLOG_FRAME_OK;
}

const char *evlog__frame_rc_str(enum evlog__frame_rc rc)
{
    switch (rc) {
    case EVLOG_FRAME_OK: return "ok";
    case EVLOG_FRAME_SHORT: return "truncated record";
    case EVLOG_FRAME_BADLEN: return "implausible record length";
    case EVLOG_FRAME_BADCRC: return "checksum mismatch";
    case EVLOG_FRAME_BADOFF: return "unexpected record offset";
    }
    return "unknown";
}

/* ---- sparse index ---- */

void evlog__idx_add(struct evlog__idx *x, uint64_t offset, uint64_t pos)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        x->offsets = xrealloc(x->offsets, x->cap * sizeof(uint64_t));
        x->positions = xrealloc(x->positions, x->cap * sizeof(uint64_t));
    }
    x->offsets[x->n] = offset;
    x->positions[x->n] = pos;
    x->n++;
    x->last_pos = pos;
}

void evlog__idx_find(const struct evlog__idx *x, uint64_t off, uint64_t *offset_out,
                     uint64_t *pos_out)
{
    size_t lo = 0, hi = x->n; /* first entry with offset > off */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->offsets[mid] <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    assert(lo > 0);
    *offset_out = x->offsets[lo - 1];
    *pos_out = x->positions[lo - 1];
}

void evlog__idx_release(struct evlog__idx *x)
{
    free(x->offsets);
    free(x->positions);
    memset(x, 0, sizeof(*x));
}

/* ---- scanning ---- */

/* A read window over a file. */
struct win {
    int fd;
    uint64_t file_bytes;
    uint8_t *buf;
    size_t cap;
    uint64_t pos; /* file position of buf[0] */
    size_t len;   /* valid bytes in buf */
};

/* Makes up to need bytes at pos readable (fewer only at the end of the file). */
static int win_get(struct win *w, uint64_t pos, size_t need, const uint8_t **p_out,
                   size_t *avail_out)
{
    if (pos >= w->pos && pos - w->pos <= w->len && w->len - (pos - w->pos) >= need)
        goto done;
    uint64_t left = pos < w->file_bytes ? w->file_bytes - pos : 0;
    size_t want = need > SCAN_CHUNK ? need : SCAN_CHUNK;
    if (want > left)
        want = (size_t)left;
    if (want > w->cap) {
        uint8_t *nb = realloc(w->buf, want);
        if (!nb)
            return -ENOMEM;
        w->buf = nb;
        w->cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(w->fd, w->buf + got, want - got, (off_t)(pos + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    w->pos = pos;
    w->len = got;
done:
    *p_out = w->buf + (pos - w->pos);
    *avail_out = w->len - (size_t)(pos - w->pos);
    return 0;
}

/* Reads the frame at pos into view; its enum result, or a negative errno. */
static int frame_at(struct win *w, uint64_t pos, uint32_t max_len, uint64_t expect,
                    struct evlog_rec_view *v)
{
    const uint8_t *p;
    size_t avail;
    int rc = win_get(w, pos, EVLOG_FRAME_HDR, &p, &avail);
    if (rc < 0)
        return rc;
    if (avail < EVLOG_FRAME_HDR)
        return EVLOG_FRAME_SHORT;
    uint32_t len = le_get32(p);
    if (len > max_len)
        return EVLOG_FRAME_BADLEN;
    if (pos + EVLOG_FRAME_HDR + len > w->file_bytes)
        return EVLOG_FRAME_SHORT;
    rc = win_get(w, pos, EVLOG_FRAME_HDR + len, &p, &avail);
    if (rc < 0)
        return rc;
    return (int)evlog__frame_get(p, avail, max_len, expect, v);
}

int evlog__scan_segment(int fd, uint64_t base, uint32_t max_len, struct evlog__scan *out,
                        struct evlog__idx *idx)
{
    struct stat st;
    struct win w = {.fd = fd};
    int rc = 0;
    memset(out, 0, sizeof(*out));
    if (fstat(fd, &st) < 0)
        return -errno;
    w.file_bytes = out->file_bytes = (uint64_t)st.st_size;

    uint64_t pos = 0, expect = base;
    struct evlog_rec_view v;
    while (pos < w.file_bytes) {
        rc = frame_at(&w, pos, max_len, expect, &v);
        if (rc < 0)
            goto out;
        if (rc != EVLOG_FRAME_OK) {
            out->why = (enum evlog__frame_rc)rc;
            break;
        }
        if (idx && (idx->n == 0 || pos - idx->last_pos >= EVLOG_IDX_EVERY))
            evlog__idx_add(idx, expect, pos);
        if (v.timestamp_us > out->max_ts_us)
            out->max_ts_us = v.timestamp_us;
        out->n_records++;
        expect++;
        pos += EVLOG_FRAME_HDR + v.len;
    }
    rc = 0;
    out->good_bytes = pos;
    if (pos == w.file_bytes)
        goto out;
    out->damaged = true;
    /* Is there an intact record after the damage? Records between pos and q take at least a
     * header each, so the one at q carries an offset in [expect, expect + (q - pos) / 24]. */
    for (uint64_t q = pos + 1; q + EVLOG_FRAME_HDR <= w.file_bytes; q++) {
        const uint8_t *p;
        size_t avail;
        rc = win_get(&w, q, EVLOG_FRAME_HDR, &p, &avail);
        if (rc < 0)
            goto out;
        uint64_t off = le_get64(p + 8);
        if (le_get32(p) > max_len || off < expect || off - expect > (q - pos) / EVLOG_FRAME_HDR)
            continue;
        rc = frame_at(&w, q, max_len, UINT64_MAX, &v);
        if (rc < 0)
            goto out;
        if (rc == EVLOG_FRAME_OK) {
            out->intact_after = true;
            out->intact_at = q;
            out->intact_offset = v.offset;
            break;
        }
    }
    rc = 0;
out:
    free(w.buf);
    return rc;
}

/* ---- directories ---- */

bool evlog__seg_name_parse(const char *name, uint64_t *base_out)
{
    if (strlen(name) != EVLOG_SEG_NAME_LEN || strcmp(name + 20, EVLOG_SEG_SUFFIX) != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *base_out = v;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int evlog__seg_list(const char *dir, uint64_t **bases_out, size_t *n_out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    uint64_t *bases = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t base;
        if (!evlog__seg_name_parse(e->d_name, &base))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            bases = xrealloc(bases, cap * sizeof(*bases));
        }
        bases[n++] = base;
    }
    closedir(d);
    if (n)
        qsort(bases, n, sizeof(*bases), cmp_u64);
    *bases_out = bases;
    *n_out = n;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int evlog__topic_list(const char *dir, char ***names_out, size_t *n_out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        if (!evlog_name_valid(e->d_name))
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, 0) < 0 || !S_ISDIR(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            names = xrealloc(names, cap * sizeof(*names));
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), cmp_str);
    *names_out = names;
    *n_out = n;
    return 0;
}

int evlog__fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int evlog__pwrite_all(int fd, const void *p, size_t len, uint64_t pos)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t w = pwrite(fd, b, len, (off_t)pos);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        b += w;
        len -= (size_t)w;
        pos += (uint64_t)w;
    }
    return 0;
}
