/* storage.c - the facade (backend registry, key checks, dispatch), MIME sniffing and the
 * bounded worker pool. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "storage/storage.h"

extern const struct storage_ops storage_local_ops;
static const struct storage_ops *const backends[] = {&storage_local_ops};

int storage_open(const char *name, const char *dir, struct storage **out)
{
    for (size_t i = 0; i < ARRAY_LEN(backends); i++)
        if (strcmp(backends[i]->name, name ? name : "local") == 0)
            return backends[i]->open(dir, out);
    return ERR_INVALID;
}

void storage_close(struct storage *s)
{
    if (s)
        s->ops->close(s);
}

bool storage_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 1024 || key[0] == '/' || key[n - 1] == '/')
        return false;
    const char *seg = key;
    for (const char *p = key;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t sl = (size_t)(p - seg);
            if (sl == 0 || (sl == 1 && seg[0] == '.') ||
                (sl == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            if (!*p)
                return true;
            seg = p + 1;
        } else if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\') {
            return false;
        }
    }
}

int storage_put(struct storage *s, const char *key, const void *data, size_t len)
{
    return storage_key_valid(key) ? s->ops->put(s, key, data, len) : ERR_INVALID;
}

int storage_create(struct storage *s, const char *key, const void *data, size_t len)
{
    return storage_key_valid(key) ? s->ops->create(s, key, data, len) : ERR_INVALID;
}

int storage_sync(struct storage *s, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!storage_key_valid(keys[i]))
            return ERR_INVALID;
    return n ? s->ops->sync(s, keys, n) : 0;
}

int storage_open_read(struct storage *s, const char *key, int *fd_out, struct storage_stat *st_out)
{
    return storage_key_valid(key) ? s->ops->open_read(s, key, fd_out, st_out) : ERR_INVALID;
}

int storage_remove(struct storage *s, const char *key)
{
    return storage_key_valid(key) ? s->ops->remove(s, key) : ERR_INVALID;
}

int storage_list(struct storage *s, const char *prefix, storage_list_cb cb, void *arg)
{
    if (*prefix && !storage_key_valid(prefix))
        return ERR_INVALID;
    return s->ops->list(s, prefix, cb, arg);
}

int storage_local_path(struct storage *s, const char *key, char *out, size_t cap)
{
    return storage_key_valid(key) ? s->ops->local_path(s, key, out, cap) : ERR_INVALID;
}

/* ---- sniffing ---- */

static bool starts(const unsigned char *d, size_t n, size_t at, const char *magic, size_t ml)
{
    return n >= at + ml && memcmp(d + at, magic, ml) == 0;
}

/* Valid UTF-8 without NUL or most control bytes: plain text. */
static bool texty(const unsigned char *d, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char ch = d[i];
        if (ch < 0x80) {
            if (ch < 0x20 && ch != '\n' && ch != '\r' && ch != '\t' && ch != '\f')
                return false;
            i++;
            continue;
        }
        size_t k = ch >= 0xF0 && ch <= 0xF4 ? 3 : ch >= 0xE0 ? 2 : ch >= 0xC2 ? 1 : 0;
        if (k == 0 || ch > 0xF4)
            return false;
        if (i + k >= n) /* a character cut by the 512-byte window */
            return true;
        for (size_t j = 1; j <= k; j++)
            if ((d[i + j] & 0xC0) != 0x80)
                return false;
        i += k + 1;
    }
    return true;
}

/* Whether the text (after spaces) starts with tag, case-insensitively. */
static bool text_starts(const unsigned char *d, size_t n, const char *tag)
{
    size_t i = 0, tl = strlen(tag);
    if (n >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF)
        i = 3;
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n'))
        i++;
    return n - i >= tl && strncasecmp((const char *)d + i, tag, tl) == 0;
}

static bool has_text(const unsigned char *d, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (strncasecmp((const char *)d + i, needle, m) == 0)
            return true;
    return false;
}

const char *storage_sniff(const void *data, size_t len)
{
    const unsigned char *d = data;
    size_t n = len < 512 ? len : 512;
    if (starts(d, n, 0, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if (starts(d, n, 0, "\xff\xd8\xff", 3))
        return "image/jpeg";
    if (starts(d, n, 0, "GIF87a", 6) || starts(d, n, 0, "GIF89a", 6))
        return "image/gif";
    if (starts(d, n, 0, "RIFF", 4) && starts(d, n, 8, "WEBP", 4))
        return "image/webp";
    if (starts(d, n, 0, "RIFF", 4) && starts(d, n, 8, "WAVE", 4))
        return "audio/wav";
    if (starts(d, n, 0, "RIFF", 4) && starts(d, n, 8, "AVI ", 4))
        return "video/x-msvideo";
    if (starts(d, n, 0, "BM", 2) && n >= 14)
        return "image/bmp";
    if (starts(d, n, 0, "\x00\x00\x01\x00", 4))
        return "image/x-icon";
    if (starts(d, n, 0, "II*\x00", 4) || starts(d, n, 0, "MM\x00*", 4))
        return "image/tiff";
    if (starts(d, n, 4, "ftyp", 4)) {
        if (starts(d, n, 8, "avif", 4))
            return "image/avif";
        if (starts(d, n, 8, "heic", 4) || starts(d, n, 8, "heix", 4))
            return "image/heic";
        if (starts(d, n, 8, "qt  ", 4))
            return "video/quicktime";
        if (starts(d, n, 8, "M4A ", 4))
            return "audio/mp4";
        return "video/mp4";
    }
    if (starts(d, n, 0, "\x1a\x45\xdf\xa3", 4))
        return has_text(d, n, "webm") ? "video/webm" : "video/x-matroska";
    if (starts(d, n, 0, "OggS", 4))
        return "audio/ogg";
    if (starts(d, n, 0, "ID3", 3) || (n >= 2 && d[0] == 0xFF && (d[1] & 0xE0) == 0xE0))
        return "audio/mpeg";
    if (starts(d, n, 0, "fLaC", 4))
        return "audio/flac";
    if (starts(d, n, 0, "%PDF-", 5))
        return "application/pdf";
    if (starts(d, n, 0, "PK\x03\x04", 4))
        return "application/zip";
    if (starts(d, n, 0, "\x1f\x8b", 2))
        return "application/gzip";
    if (starts(d, n, 0, "7z\xbc\xaf\x27\x1c", 6))
        return "application/x-7z-compressed";
    if (starts(d, n, 0,
               "\x7f"
               "ELF",
               4))
        return "application/x-elf";
    if (starts(d, n, 0, "wOFF", 4))
        return "font/woff";
    if (starts(d, n, 0, "wOF2", 4))
        return "font/woff2";
    if (n > 0 && texty(d, n)) {
        if (text_starts(d, n, "<?xml") || text_starts(d, n, "<svg"))
            return has_text(d, n, "<svg") ? "image/svg+xml" : "text/xml";
        if (text_starts(d, n, "<!doctype html") || text_starts(d, n, "<html") ||
            text_starts(d, n, "<head") || text_starts(d, n, "<body") ||
            text_starts(d, n, "<script"))
            return "text/html";
        if (text_starts(d, n, "{") || text_starts(d, n, "["))
            return "application/json";
        return "text/plain";
    }
    return "application/octet-stream";
}

bool storage_inline_type(const char *type)
{
    if (strcmp(type, "image/svg+xml") == 0)
        return false;
    return strncmp(type, "image/", 6) == 0 || strncmp(type, "audio/", 6) == 0 ||
           strncmp(type, "video/", 6) == 0 || strcmp(type, "application/pdf") == 0 ||
           strcmp(type, "text/plain") == 0;
}

bool storage_thumbable(const char *type)
{
    return strcmp(type, "image/png") == 0 || strcmp(type, "image/jpeg") == 0 ||
           strcmp(type, "image/gif") == 0 || strcmp(type, "image/webp") == 0;
}

/* ---- the pool ---- */

struct pool_job {
    storage_job_cb fn;
    void *arg;
    struct pool_job *next;
};

struct storage_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pool_job *head, *tail; /* guarded by mu */
    size_t queued, max_queue;
    bool stopping;
    size_t n_threads;
    pthread_t *threads;
};

static void *pool_main(void *arg)
{
    struct storage_pool *p = arg;
    pthread_setname_np(pthread_self(), "storage-pool"); /* for profiles */
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        struct pool_job *j = p->head;
        if (!j)
            break;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int storage_pool_new(size_t n_threads, size_t max_queue, struct storage_pool **out)
{
    struct storage_pool *p = xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->max_queue = max_queue;
    p->threads = xcalloc(n_threads, sizeof(pthread_t));
    for (; p->n_threads < n_threads; p->n_threads++)
        if (pthread_create(&p->threads[p->n_threads], NULL, pool_main, p) != 0)
            break;
    if (p->n_threads == 0) {
        storage_pool_free(p);
        return ERR_INTERNAL;
    }
    *out = p;
    return 0;
}

int storage_pool_submit(struct storage_pool *p, storage_job_cb fn, void *arg)
{
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        rc = ERR_BUSY;
    } else if (p->queued >= p->max_queue) {
        rc = ERR_LIMIT;
    } else {
        struct pool_job *j = xmalloc(sizeof(*j));
        *j = (struct pool_job){fn, arg, NULL};
        if (p->tail)
            p->tail->next = j;
        else
            p->head = j;
        p->tail = j;
        p->queued++;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void storage_pool_stop(struct storage_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    bool was = p->stopping;
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (!was)
        for (size_t i = 0; i < p->n_threads; i++)
            pthread_join(p->threads[i], NULL);
}

void storage_pool_free(struct storage_pool *p)
{
    if (!p)
        return;
    storage_pool_stop(p);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}
