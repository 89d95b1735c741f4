/* storage.h - where the bytes of file fields live, behind a small backend interface (the local
 * directory <dir>/storage/ today; an S3 backend can follow), plus what works on those bytes:
 * MIME sniffing, the bounded worker pool that writes uploads and makes thumbnails (libvips),
 * and the thumbnail maker itself.
 *
 * Keys are relative paths "<collectionId>/<recordId>/<filename>"; thumbnails live under
 * "<collectionId>/<recordId>/thumbs_<filename>/<size>_<filename>" (PocketBase's layout). A key
 * never holds "..", an empty segment, a leading '/', a backslash or a control character
 * (storage_key_valid); every function refuses other keys with ERR_INVALID.
 *
 * Threads: a struct storage may be used from any thread at once (the local backend's only
 * mutable state is its table of directory syncs in progress, under its own lock); the pool's
 * submit may be called from any thread. */
#ifndef TANDEM_STORAGE_STORAGE_H
#define TANDEM_STORAGE_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/core.h"

struct storage;

struct storage_stat {
    uint64_t size;
    int64_t mtime_ns;
    uint64_t ino;
};

/* One entry of a listing: a file, or a "directory" (a key prefix with more below it). */
typedef void (*storage_list_cb)(void *arg, const char *name, bool is_dir);

struct storage_ops {
    const char *name; /* "local" */
    int (*open)(const char *dir, struct storage **out);
    void (*close)(struct storage *s);
    /* Stores data under key durably (temp file, fsync, rename, fsync of the directory),
     * replacing what was there. */
    int (*put)(struct storage *s, const char *key, const void *data, size_t len);
    /* Writes data under key, which must not exist (ERR_CONFLICT), straight under its name (no
     * temporary file) and syncs its bytes, but NOT its directory entries: for a file nothing
     * refers to until sync returned for it (an upload whose record commits after the sync),
     * so a crash before then leaves an orphan, maybe partly written, that the sweep removes. */
    int (*create)(struct storage *s, const char *key, const void *data, size_t len);
    /* Makes the directory entries of the files keys[0..n) made by create durable (each file's
     * directory and its parent, each once; a directory's fsync is shared by the threads that
     * need the same directory synced at the same time). */
    int (*sync)(struct storage *s, const char *const *keys, size_t n);
    /* An open descriptor on key's bytes for sending (sendfile), and its stat; ERR_NOTFOUND. */
    int (*open_read)(struct storage *s, const char *key, int *fd_out, struct storage_stat *st_out);
    /* Removes key (a file) or everything under key (a prefix); missing is not an error. */
    int (*remove)(struct storage *s, const char *key);
    /* The immediate children of prefix ("" = the top); ERR_NOTFOUND when there are none. */
    int (*list)(struct storage *s, const char *prefix, storage_list_cb cb, void *arg);
    /* A local file path for key, for libraries that read or write paths (libvips). */
    int (*local_path)(struct storage *s, const char *key, char *out, size_t cap);
};

struct storage {
    const struct storage_ops *ops;
};

/* Opens the backend named name ("local": the directory dir/storage, created 0700). */
int storage_open(const char *name, const char *dir, struct storage **out) MUST_USE;
void storage_close(struct storage *s);
bool storage_key_valid(const char *key);
int storage_put(struct storage *s, const char *key, const void *data, size_t len) MUST_USE;
int storage_create(struct storage *s, const char *key, const void *data, size_t len) MUST_USE;
int storage_sync(struct storage *s, const char *const *keys, size_t n) MUST_USE;
int storage_open_read(struct storage *s, const char *key, int *fd_out,
                      struct storage_stat *st_out) MUST_USE;
int storage_remove(struct storage *s, const char *key);
int storage_list(struct storage *s, const char *prefix, storage_list_cb cb, void *arg);
int storage_local_path(struct storage *s, const char *key, char *out, size_t cap) MUST_USE;

/* ---- MIME types, from the bytes (never from the client) ---- */

/* The type of a file from its first bytes (up to 512 are looked at): "image/png",
 * "image/jpeg", "application/pdf", "text/plain", ..., "application/octet-stream" when
 * nothing matches. RETURNS a static string. */
const char *storage_sniff(const void *data, size_t len);
/* Whether a file of sniffed type may be served inline (images but SVG, audio, video, PDF,
 * plain text); others are sent as attachments. */
bool storage_inline_type(const char *type);
/* Whether storage_thumb can read the type (PNG, JPEG, GIF, WebP). */
bool storage_thumbable(const char *type);

/* ---- the worker pool ----
 *
 * n threads run jobs in FIFO order; at most max_queue wait. Slow work on files (writing an
 * upload with its fsync, making a thumbnail) runs here, never on an HTTP thread, and never
 * on more than n threads at once. */
struct storage_pool;
typedef void (*storage_job_cb)(void *arg);
int storage_pool_new(size_t n_threads, size_t max_queue, struct storage_pool **out) MUST_USE;
/* Queues fn(arg); ERR_LIMIT when the queue is full, ERR_BUSY once stopping: then fn is never
 * called. */
int storage_pool_submit(struct storage_pool *p, storage_job_cb fn, void *arg) MUST_USE;
/* Runs what is queued, then joins the threads. */
void storage_pool_stop(struct storage_pool *p);
void storage_pool_free(struct storage_pool *p);

/* ---- thumbnails (libvips) ---- */

/* Starts libvips once for the process (each operation on one thread, no operation cache). */
int storage_thumb_init(void) MUST_USE;
/* Makes the thumbnail spec ("WxH", "WxHt", "WxHb", "WxHf", "0xH", "Wx0") of src_key into
 * dst_key, in the source's format: WxH crops the centre, t the top, b the bottom, f fits
 * inside without cropping; 0xH and Wx0 keep the aspect ratio. The result is written to a
 * temporary file and renamed, so readers never see half a thumbnail. */
int storage_thumb(struct storage *s, const char *src_key, const char *spec,
                  const char *dst_key) MUST_USE;

#endif
