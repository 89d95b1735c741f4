/* backup.c - backups of the data directory: one gzip-compressed tar archive per backup in
 * <dir>/backups, made while the server serves, and the restore applied at the next start.
 *
 * Consistency (docs/operations.md): the pieces are copied in an order under which the
 * restored directory is one the running server could have had:
 *   1. the warehouse, with its writers held off: its consumer offsets are then at most the
 *      durable ends of the topics, which only grow;
 *   2. with the outbox relay paused: the store (one SQLite read snapshot) and the durable end
 *      E of "changes". The relay is the only writer of that topic and it deletes outbox rows
 *      only once they are in it, so every change missing from the copied outbox is below E,
 *      and every row left in it is above E (or dropped by the relay's start-up check);
 *   3. the event log: "changes" cut at E, every other topic at its durable end, which is at
 *      least what the warehouse copy has loaded.
 * After a restore the relay moves the copied outbox rows, the loaders resume from the copied
 * offsets, and nothing is loaded twice or skipped. */
#define _GNU_SOURCE /* nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "evlog/evlog.h"
#include "core/datadir.h"
#include "ops/ops.h"
#include "pipeline/pipeline.h"
#include "store/store.h"
#include "warehouse/warehouse.h"

#define BACKUPS_DIR "backups"
#define RESTORE_MARK ".restore" /* in backups/: the name of the archive to restore */
#define RESTORE_WORK ".restore" /* in the data dir: the restore's working directory */
#define TAR_BLOCK 512
#define BUSY_TEXT "Try again later - another backup/restore operation has already been started."

/* What a backup holds, relative to the data directory (directories are walked): the store,
 * the log, the warehouse, the secret, the uploaded files and the ML model files. */
static const char *const members[] = {
    "app.db", "log", "warehouse.duckdb", "warehouse.duckdb.wal", "secret", "storage", "ml"};
/* What a restore replaces: the members, the store's and log's side files, and the capture
 * dedup snapshot (rebuilt from the restored log; one from after the backup would not fit).
 * The file trees are replaced only by an archive that holds them (an archive made before
 * backups held files leaves the current ones, whose orphans the files sweep removes). */
static const char *const replaced[] = {
    "app.db", "app.db-wal",     "app.db-shm", "log", "warehouse.duckdb", "warehouse.duckdb.wal",
    "secret", "dedup.snapshot", "storage",    "ml"};
static const char *const file_trees[] = {"storage", "ml"};
#define LONGLINK "././@LongLink" /* GNU tar's entry that carries the next entry's long name */
#define LONG_NAME_MAX 1024

/* One backup, upload or restore at a time, in this process. */
static pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;
static bool busy;

static bool take_busy(void)
{
    pthread_mutex_lock(&busy_lock);
    bool ok = !busy;
    busy = true;
    pthread_mutex_unlock(&busy_lock);
    return ok;
}

static void drop_busy(void)
{
    pthread_mutex_lock(&busy_lock);
    busy = false;
    pthread_mutex_unlock(&busy_lock);
}

bool ops_backup_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0, sfx = strlen(OPS_BACKUP_SUFFIX);
    if (n <= sfx || n > OPS_BACKUP_NAME_MAX || strcmp(name + n - sfx, OPS_BACKUP_SUFFIX) != 0)
        return false;
    for (size_t i = 0; i < n - sfx; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

void ops_backup_default_name(const char *prefix, char *out, size_t cap)
{
    time_t t = (time_t)(time_now_us() / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%s%04d%02d%02d%02d%02d%02d%s", prefix, tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, OPS_BACKUP_SUFFIX);
}

/* ---- small file helpers ---- */

static int path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    return n < 0 || (size_t)n >= cap ? ERR_INVALID : 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* rm -rf path; a missing path is fine. */
static int rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : -errno;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -errno;
}

static bool exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static int backups_dir(const char *dir, char *out, size_t cap)
{
    if (path_join(out, cap, dir, BACKUPS_DIR) != 0)
        return ERR_INVALID;
    if (mkdir(out, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---- tar (ustar) through gzip ---- */

/* A numeric field: octal digits and a NUL, or (a value too large for them, e.g. a file of
 * 8 GiB or more) GNU tar's base-256 form, the first byte 0x80 then big-endian bytes. */
static void octal(char *field, size_t width, uint64_t v)
{
    uint64_t limit = (uint64_t)1 << (3 * (width - 1));
    if (v < limit) {
        for (size_t i = width - 1; i-- > 0; v >>= 3)
            field[i] = (char)('0' + (v & 7));
        field[width - 1] = '\0';
        return;
    }
    memset(field, 0, width);
    field[0] = (char)0x80;
    for (size_t i = width; i-- > 1 && v; v >>= 8)
        field[i] = (char)(v & 0xff);
}

static int gz_write_all(gzFile gz, const void *p, size_t len)
{
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? 1u << 30 : (unsigned)len;
        if (gzwrite(gz, p, chunk) != (int)chunk)
            return ERR_IO;
        p = (const char *)p + chunk;
        len -= chunk;
    }
    return 0;
}

static int tar_header_type(gzFile gz, const char *name, char type, uint64_t size, int64_t mtime);

/* One entry's header; a name of 100 bytes or more goes first in a GNU long-name entry (the
 * header then holds its first 99 bytes), as GNU tar and bsdtar write and read them. */
static int tar_header(gzFile gz, const char *name, bool is_dir, uint64_t size, int64_t mtime)
{
    size_t len = strlen(name);
    if (len >= LONG_NAME_MAX)
        return ERR_INVALID;
    if (len < 100)
        return tar_header_type(gz, name, is_dir ? '5' : '0', size, mtime);
    int rc = tar_header_type(gz, LONGLINK, 'L', len + 1, 0);
    uint8_t block[TAR_BLOCK];
    for (size_t at = 0; rc == 0 && at < len + 1; at += TAR_BLOCK) {
        memset(block, 0, sizeof(block));
        memcpy(block, name + at, len + 1 - at < TAR_BLOCK ? len + 1 - at : TAR_BLOCK);
        rc = gz_write_all(gz, block, sizeof(block));
    }
    char cut[100];
    memcpy(cut, name, 99);
    cut[99] = '\0';
    return rc ? rc : tar_header_type(gz, cut, is_dir ? '5' : '0', size, mtime);
}

static int tar_header_type(gzFile gz, const char *name, char type, uint64_t size, int64_t mtime)
{
    uint8_t h[TAR_BLOCK];
    memset(h, 0, sizeof(h));
    if (strlen(name) >= 100)
        return ERR_INVALID;
    bool is_dir = type == '5';
    memcpy(h, name, strlen(name));
    octal((char *)h + 100, 8, is_dir ? 0700 : 0600);
    octal((char *)h + 108, 8, 0);
    octal((char *)h + 116, 8, 0);
    octal((char *)h + 124, 12, size);
    octal((char *)h + 136, 12, (uint64_t)(mtime > 0 ? mtime : 0));
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof(h); i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    return gz_write_all(gz, h, sizeof(h));
}

static int tar_add_file(gzFile gz, const char *path, const char *name, const struct stat *sb)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = tar_header(gz, name, false, (uint64_t)sb->st_size, sb->st_mtime);
    char *buf = xmalloc(1 << 16);
    uint64_t left = (uint64_t)sb->st_size;
    while (rc == 0 && left > 0) {
        ssize_t r = read(fd, buf, left < (1 << 16) ? (size_t)left : (size_t)1 << 16);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : ERR_CORRUPT; /* the staged copy never shrinks */
            break;
        }
        rc = gz_write_all(gz, buf, (size_t)r);
        left -= (uint64_t)r;
    }
    size_t pad = (size_t)((TAR_BLOCK - (uint64_t)sb->st_size % TAR_BLOCK) % TAR_BLOCK);
    if (rc == 0 && pad) {
        memset(buf, 0, pad);
        rc = gz_write_all(gz, buf, pad);
    }
    free(buf);
    close(fd);
    return rc;
}

/* Adds path as name: a file, or a directory and everything below it in name order. */
static int tar_add(gzFile gz, const char *path, const char *name)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return -errno;
    if (S_ISREG(sb.st_mode))
        return tar_add_file(gz, path, name, &sb);
    if (!S_ISDIR(sb.st_mode))
        return 0;
    int rc = tar_header(gz, name, true, 0, sb.st_mtime);
    struct dirent **list = NULL;
    int n = scandir(path, &list, NULL, alphasort);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        const char *e = list[i]->d_name;
        if (rc == 0 && strcmp(e, ".") != 0 && strcmp(e, "..") != 0) {
            char sub[PATH_MAX], subname[PATH_MAX];
            if (path_join(sub, sizeof(sub), path, e) != 0 ||
                path_join(subname, sizeof(subname), name, e) != 0)
                rc = ERR_INVALID;
            else
                rc = tar_add(gz, sub, subname);
        }
        free(list[i]);
    }
    free(list);
    return rc;
}

/* A member name an archive may carry: relative, no "." or ".." part, [A-Za-z0-9._-/]. */
static bool member_name_ok(const char *name)
{
    if (!*name || name[0] == '/')
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-' || *p == '/'))
            return false;
    char copy[LONG_NAME_MAX];
    snprintf(copy, sizeof(copy), "%s", name);
    char *save = NULL;
    for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save))
        if (strcmp(part, ".") == 0 || strcmp(part, "..") == 0)
            return false;
    /* the first part must be one of the members */
    size_t first = strcspn(name, "/");
    for (size_t i = 0; i < ARRAY_LEN(members); i++)
        if (strlen(members[i]) == first && strncmp(members[i], name, first) == 0)
            return true;
    return false;
}

static uint64_t parse_octal(const uint8_t *p, size_t width, bool *ok)
{
    uint64_t v = 0;
    if (p[0] == 0x80) { /* base-256 */
        for (size_t i = 1; i < width; i++) {
            if (v >> 56)
                *ok = false;
            v = v << 8 | p[i];
        }
        return v;
    }
    size_t i = 0;
    while (i < width && p[i] == ' ')
        i++;
    size_t digits = 0;
    for (; i < width && p[i] >= '0' && p[i] <= '7'; i++, digits++)
        v = v * 8 + (uint64_t)(p[i] - '0');
    if (digits == 0 || digits > 21 || (i < width && p[i] != '\0' && p[i] != ' '))
        *ok = false;
    return v;
}

static int gz_read_full(gzFile gz, void *p, size_t len)
{
    size_t got = 0;
    while (got < len) {
        unsigned chunk = len - got > (1u << 30) ? 1u << 30 : (unsigned)(len - got);
        int r = gzread(gz, (char *)p + got, chunk);
        if (r <= 0)
            return ERR_CORRUPT;
        got += (size_t)r;
    }
    return 0;
}

/* Reads the archive at path; with dest, writes its members below dest (which exists).
 * Checks every header, name and the end; ERR_CORRUPT with err filled otherwise. */
static int tar_extract(const char *path, const char *dest, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return errno == ENOENT ? ERR_NOTFOUND : -errno;
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    bool has_db = false, ended = false;
    char *buf = xmalloc(1 << 16);
    uint8_t h[TAR_BLOCK];
    char long_name[LONG_NAME_MAX] = ""; /* from a GNU long-name entry, for the next entry */
    while (rc == 0) {
        if (gz_read_full(gz, h, sizeof(h)) != 0) {
            snprintf(err, err_len, "the archive ends before its end marker");
            rc = ERR_CORRUPT;
            break;
        }
        bool zero = true;
        for (size_t i = 0; i < sizeof(h) && zero; i++)
            zero = h[i] == 0;
        if (zero) {
            ended = true;
            break;
        }
        bool ok = memcmp(h + 257, "ustar", 5) == 0;
        unsigned want = (unsigned)parse_octal(h + 148, 8, &ok), sum = 0;
        for (size_t i = 0; i < sizeof(h); i++)
            sum += (i >= 148 && i < 156) ? ' ' : h[i];
        uint64_t size = parse_octal(h + 124, 12, &ok);
        char type = (char)h[156];
        if (ok && sum == want && type == 'L' && memcmp(h, LONGLINK, sizeof(LONGLINK)) == 0) {
            /* the next entry's name: size bytes (NUL included) in whole blocks */
            if (size < 2 || size > LONG_NAME_MAX || long_name[0]) {
                snprintf(err, err_len, "not a tandem backup (bad long name entry)");
                rc = ERR_CORRUPT;
                break;
            }
            uint64_t padded = (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
            if (gz_read_full(gz, buf, (size_t)padded) != 0) {
                snprintf(err, err_len, "the archive is truncated in a long name");
                rc = ERR_CORRUPT;
                break;
            }
            memcpy(long_name, buf, (size_t)size);
            long_name[size - 1] = '\0';
            if (strlen(long_name) < 100) {
                snprintf(err, err_len, "not a tandem backup (bad long name entry)");
                rc = ERR_CORRUPT;
                break;
            }
            continue;
        }
        char name[LONG_NAME_MAX];
        memcpy(name, h, 100);
        name[100] = '\0';
        if (long_name[0]) {
            memcpy(name, long_name, sizeof(name));
            long_name[0] = '\0';
        }
        size_t nl = strlen(name);
        while (nl > 0 && name[nl - 1] == '/')
            name[--nl] = '\0';
        if (!ok || sum != want || (type != '0' && type != '5' && type != '\0') ||
            !member_name_ok(name)) {
            snprintf(err, err_len, "not a tandem backup (bad entry \"%.60s\")", name);
            rc = ERR_CORRUPT;
            break;
        }
        if (strcmp(name, "app.db") == 0)
            has_db = true;
        char out_path[PATH_MAX];
        int out = -1;
        if (dest && path_join(out_path, sizeof(out_path), dest, name) != 0) {
            rc = ERR_INVALID;
            break;
        }
        if (type == '5') {
            if (dest && mkdir(out_path, 0700) != 0 && errno != EEXIST) {
                snprintf(err, err_len, "cannot create %s: %s", out_path, strerror(errno));
                rc = -errno;
            }
            continue;
        }
        if (dest) {
            struct statvfs vfs;
            if (statvfs(dest, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < size) {
                snprintf(err, err_len, "not enough disk space to restore %s", name);
                rc = -ENOSPC;
                break;
            }
            out = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (out < 0) {
                snprintf(err, err_len, "cannot create %s: %s", out_path, strerror(errno));
                rc = -errno;
                break;
            }
        }
        uint64_t padded = (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
        for (uint64_t at = 0; rc == 0 && at < padded;) {
            size_t want_n = padded - at < (1 << 16) ? (size_t)(padded - at) : (size_t)1 << 16;
            if (gz_read_full(gz, buf, want_n) != 0) {
                snprintf(err, err_len, "the archive is truncated in %s", name);
                rc = ERR_CORRUPT;
                break;
            }
            if (out >= 0 && at < size) {
                size_t data = size - at < want_n ? (size_t)(size - at) : want_n;
                if (write(out, buf, data) != (ssize_t)data) {
                    snprintf(err, err_len, "cannot write %s: %s", out_path, strerror(errno));
                    rc = errno ? -errno : ERR_IO;
                }
            }
            at += want_n;
        }
        if (out >= 0) {
            if (rc == 0 && fsync(out) != 0)
                rc = -errno;
            close(out);
        }
    }
    int zerr = 0;
    if (rc == 0 && ended) {
        gzerror(gz, &zerr);
        if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
            snprintf(err, err_len, "the archive is not valid gzip");
            rc = ERR_CORRUPT;
        }
    }
    if (rc == 0 && long_name[0]) {
        snprintf(err, err_len, "not a tandem backup (a long name entry ends it)");
        rc = ERR_CORRUPT;
    }
    if (rc == 0 && !has_db) {
        snprintf(err, err_len, "not a tandem backup (no app.db)");
        rc = ERR_CORRUPT;
    }
    free(buf);
    gzclose(gz);
    return rc;
}

/* Before a new archive at final: the name is free and no other operation runs (then this
 * one holds the busy flag). */
static int begin_new(const char *final, const char *name, char *err, size_t err_len)
{
    if (exists(final)) {
        snprintf(err, err_len, "A backup named %s exists already.", name);
        return ERR_CONFLICT;
    }
    if (!take_busy()) {
        snprintf(err, err_len, "%s", BUSY_TEXT);
        return ERR_BUSY;
    }
    return 0;
}

/* ---- create ---- */

/* Copies the file src to the new file dst (when it cannot be linked). */
static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int rc = -errno;
        close(in);
        return rc;
    }
    char *buf = xmalloc(1 << 16);
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, 1 << 16);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : 0;
            break;
        }
        for (ssize_t w = 0; rc == 0 && w < r;) {
            ssize_t k = write(out, buf + w, (size_t)(r - w));
            if (k < 0 && errno != EINTR)
                rc = -errno;
            else if (k > 0)
                w += k;
        }
        if (rc != 0)
            break;
    }
    free(buf);
    close(in);
    if (close(out) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* Whether a file tree entry is left out of backups: hidden and temporary files (a write in
 * progress) and thumbnail directories (made again on demand). */
static bool tree_skip(const char *name, bool is_dir)
{
    return name[0] == '.' || strstr(name, ".tmp") != NULL ||
           (is_dir && strncmp(name, "thumbs_", 7) == 0);
}

/* Mirrors the file tree src into dst with hard links (copies across file systems), adding
 * only what dst lacks. Files of these trees are never changed in place (a new version is a
 * new file, or a rename over the old one), so a link is a snapshot of the file. A file that
 * goes away during the walk is skipped. */
static int link_tree(const char *src, const char *dst)
{
    struct stat sb;
    if (lstat(src, &sb) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(sb.st_mode))
        return 0;
    if (mkdir(dst, 0700) != 0 && errno != EEXIST)
        return -errno;
    DIR *d = opendir(src);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char a[PATH_MAX], b[PATH_MAX];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            path_join(a, sizeof(a), src, e->d_name) != 0 ||
            path_join(b, sizeof(b), dst, e->d_name) != 0 || lstat(a, &sb) != 0)
            continue;
        if (tree_skip(e->d_name, S_ISDIR(sb.st_mode)))
            continue;
        if (S_ISDIR(sb.st_mode)) {
            rc = link_tree(a, b);
        } else if (S_ISREG(sb.st_mode) && link(a, b) != 0 && errno != EEXIST) {
            if (errno == ENOENT)
                continue;
            rc = errno == EXDEV || errno == EPERM || errno == EMLINK ? copy_file(a, b) : -errno;
            if (rc == -ENOENT || rc == -EEXIST)
                rc = 0;
        }
    }
    closedir(d);
    return rc;
}

/* The file trees (uploads, model files) into the staging directory (see stage). */
static int stage_trees(const struct ops_backup_src *src, const char *staging, char *err,
                       size_t err_len)
{
    for (size_t i = 0; i < ARRAY_LEN(file_trees); i++) {
        char from[PATH_MAX], to[PATH_MAX];
        if (path_join(from, sizeof(from), src->dir, file_trees[i]) != 0 ||
            path_join(to, sizeof(to), staging, file_trees[i]) != 0)
            return ERR_INVALID;
        int rc = link_tree(from, to);
        if (rc != 0) {
            snprintf(err, err_len, "cannot copy %s: %s", from, err_str(rc));
            return rc;
        }
    }
    return 0;
}

static int stage(const struct ops_backup_src *src, const char *staging, char *err, size_t err_len)
{
    char path[PATH_MAX];
    int rc = mkdir(staging, 0700) == 0 ? 0 : -errno;
    if (rc < 0) {
        snprintf(err, err_len, "cannot create %s: %s", staging, strerror(-rc));
        return rc;
    }
    /* 1. the warehouse */
    if (src->wh) {
        struct wh_conn *c = NULL;
        rc = wh_conn_open(src->wh, &c);
        if (rc == 0 && (rc = path_join(path, sizeof(path), staging, "warehouse.duckdb")) == 0)
            rc = wh_backup(c, path);
        if (rc != 0)
            snprintf(err, err_len, "cannot copy the warehouse: %s", wh_errmsg(c));
        wh_conn_close(c);
        if (rc != 0)
            return rc;
    }
    /* the file trees, before the store and again after it: every file a record of the store
     * copy names was written before that record committed, so it is in one pass or the
     * other, unless it is created and deleted again between the two; files of records the
     * copy lacks are orphans the files sweep removes after a restore */
    if ((rc = stage_trees(src, staging, err, err_len)) != 0)
        return rc;
    /* 2. the store and the end of "changes", with the relay paused */
    uint64_t changes_end = 0;
    pipeline_relay_pause(src->relay);
    rc = path_join(path, sizeof(path), staging, "app.db");
    if (rc == 0 && (rc = store_backup(src->store, path)) != 0)
        snprintf(err, err_len, "cannot copy the store: %s", store_errmsg(src->store));
    if (rc == 0 && (rc = evlog_end_offset(src->log, PIPELINE_TOPIC_CHANGES, &changes_end)) != 0)
        snprintf(err, err_len, "cannot read the log: %s", evlog_errmsg(src->log));
    pipeline_relay_resume(src->relay);
    if (rc != 0)
        return rc;
    /* 3. the log */
    struct evlog_cut cut = {PIPELINE_TOPIC_CHANGES, changes_end};
    rc = path_join(path, sizeof(path), staging, "log");
    if (rc == 0 && (rc = evlog_snapshot(src->log, path, &cut, 1)) != 0) {
        snprintf(err, err_len, "cannot copy the log: %s", evlog_errmsg(src->log));
        return rc;
    }
    if ((rc = stage_trees(src, staging, err, err_len)) != 0)
        return rc;
    /* 4. the secret, so tokens stay valid after a restore */
    char from[PATH_MAX];
    if (path_join(from, sizeof(from), src->dir, "secret") == 0 && exists(from) &&
        path_join(path, sizeof(path), staging, "secret") == 0) {
        FILE *in = fopen(from, "rb"), *out = fopen(path, "wb");
        char buf[4096];
        size_t n;
        while (in && out && (n = fread(buf, 1, sizeof(buf), in)) > 0)
            if (fwrite(buf, 1, n, out) != n)
                rc = ERR_IO;
        if (!in || !out || ferror(in))
            rc = ERR_IO;
        if (out && fclose(out) != 0)
            rc = ERR_IO;
        if (in)
            fclose(in);
        if (rc != 0) {
            snprintf(err, err_len, "cannot copy the secret");
            return rc;
        }
    }
    return 0;
}

/* The staged directory as <bdir>/<name>, through a temporary file. */
static int pack(const char *staging, const char *bdir, const char *name, char *err, size_t err_len)
{
    char tmp[PATH_MAX], final[PATH_MAX], path[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", bdir, name) >= (int)sizeof(tmp) ||
        path_join(final, sizeof(final), bdir, name) != 0)
        return ERR_INVALID;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_len, "cannot create %s: %s", tmp, strerror(errno));
        return -errno;
    }
    int dupfd = dup(fd);
    gzFile gz = dupfd >= 0 ? gzdopen(dupfd, "wb6") : NULL;
    int rc = gz ? 0 : -ENOMEM;
    if (!gz && dupfd >= 0)
        close(dupfd);
    for (size_t i = 0; rc == 0 && i < ARRAY_LEN(members); i++) {
        if (path_join(path, sizeof(path), staging, members[i]) != 0)
            rc = ERR_INVALID;
        else if (exists(path))
            rc = tar_add(gz, path, members[i]);
    }
    if (rc == 0) {
        static const uint8_t zeros[2 * TAR_BLOCK];
        rc = gz_write_all(gz, zeros, sizeof(zeros));
    }
    if (gz && gzclose(gz) != Z_OK && rc == 0)
        rc = ERR_IO;
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && link(tmp, final) != 0) /* never replaces an archive made meanwhile */
        rc = errno == EEXIST ? ERR_CONFLICT : -errno;
    unlink(tmp);
    if (rc == 0)
        rc = fsync_path(bdir);
    if (rc != 0 && !*err)
        snprintf(err, err_len, "cannot write %s: %s", final, err_str(rc));
    return rc;
}

int ops_backup_create(const struct ops_backup_src *src, const char *name, char *err, size_t err_len)
{
    err[0] = '\0';
    if (!ops_backup_name_valid(name)) {
        snprintf(err, err_len, "Must be [a-z0-9_-] characters ending with %s.", OPS_BACKUP_SUFFIX);
        return ERR_INVALID;
    }
    char bdir[PATH_MAX], final[PATH_MAX], staging[PATH_MAX];
    int rc = backups_dir(src->dir, bdir, sizeof(bdir));
    if (rc != 0 || path_join(final, sizeof(final), bdir, name) != 0 ||
        snprintf(staging, sizeof(staging), "%s/.staging", bdir) >= (int)sizeof(staging)) {
        snprintf(err, err_len, "cannot create the backups directory");
        return rc ? rc : ERR_INVALID;
    }
    if ((rc = begin_new(final, name, err, err_len)) != 0)
        return rc;
    int64_t t0 = time_mono_us();
    (void)rm_rf(staging);
    rc = stage(src, staging, err, err_len);
    if (rc == 0)
        rc = pack(staging, bdir, name, err, err_len);
    (void)rm_rf(staging);
    drop_busy();
    if (rc == 0)
        xlog_info("backup %s made in %lld ms", name, (long long)((time_mono_us() - t0) / 1000));
    else
        xlog_error("backup %s failed: %s", name, err);
    return rc;
}

/* ---- list, delete, prune, open, store ---- */

struct entry {
    char name[OPS_BACKUP_NAME_MAX + 1];
    uint64_t size;
    int64_t mtime_us;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->mtime_us != y->mtime_us)
        return x->mtime_us > y->mtime_us ? -1 : 1;
    return strcmp(y->name, x->name);
}

/* The archives of dir, newest first; *out malloc'd. */
static int entries(const char *dir, struct entry **out, size_t *n_out)
{
    char bdir[PATH_MAX];
    *out = NULL;
    *n_out = 0;
    int rc = backups_dir(dir, bdir, sizeof(bdir));
    if (rc != 0)
        return rc;
    DIR *d = opendir(bdir);
    if (!d)
        return -errno;
    size_t n = 0, cap = 0;
    struct entry *list = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct stat sb;
        if (!ops_backup_name_valid(e->d_name) || path_join(path, sizeof(path), bdir, e->d_name) ||
            lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            list = xrealloc(list, cap * sizeof(*list));
        }
        memcpy(list[n].name, e->d_name, strlen(e->d_name) + 1); /* valid: fits */
        list[n].size = (uint64_t)sb.st_size;
        list[n].mtime_us = (int64_t)sb.st_mtim.tv_sec * 1000000 + sb.st_mtim.tv_nsec / 1000;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(list, n, sizeof(*list), cmp_entry);
    *out = list;
    *n_out = n;
    return 0;
}

int ops_backup_list(const char *dir, json_t **out)
{
    struct entry *list;
    size_t n;
    *out = NULL;
    int rc = entries(dir, &list, &n);
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char when[TIME_PB_LEN];
        time_format_pb(list[i].mtime_us, when);
        json_array_append_new(arr, json_pack("{s:s,s:I,s:s}", "key", list[i].name, "size",
                                             (json_int_t)list[i].size, "modified", when));
    }
    free(list);
    *out = arr;
    return 0;
}

/* The name marked for restore, or "" (into out). */
static void marked(const char *dir, char *out, size_t cap)
{
    char path[PATH_MAX];
    out[0] = '\0';
    if (snprintf(path, sizeof(path), "%s/%s/%s", dir, BACKUPS_DIR, RESTORE_MARK) >=
        (int)sizeof(path))
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(out, (int)cap, f))
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

int ops_backup_delete(const char *dir, const char *name)
{
    char bdir[PATH_MAX], path[PATH_MAX], mark[OPS_BACKUP_NAME_MAX + 2];
    if (!ops_backup_name_valid(name))
        return ERR_INVALID;
    int rc = backups_dir(dir, bdir, sizeof(bdir));
    if (rc != 0 || path_join(path, sizeof(path), bdir, name) != 0)
        return rc ? rc : ERR_INVALID;
    marked(dir, mark, sizeof(mark));
    if (strcmp(mark, name) == 0)
        return ERR_CONFLICT;
    if (unlink(path) != 0)
        return errno == ENOENT ? ERR_NOTFOUND : -errno;
    return fsync_path(bdir);
}

int ops_backup_prune(const char *dir, const char *prefix, int64_t keep)
{
    struct entry *list;
    size_t n, kept = 0;
    int rc = entries(dir, &list, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (strncmp(list[i].name, prefix, strlen(prefix)) != 0)
            continue;
        if ((int64_t)kept++ < keep)
            continue;
        int drc = ops_backup_delete(dir, list[i].name);
        if (drc != 0 && drc != ERR_NOTFOUND && drc != ERR_CONFLICT)
            rc = drc;
    }
    free(list);
    return rc;
}

int ops_backup_open(const char *dir, const char *name, int *fd_out, uint64_t *size_out)
{
    char path[PATH_MAX];
    if (!ops_backup_name_valid(name))
        return ERR_INVALID;
    if (snprintf(path, sizeof(path), "%s/%s/%s", dir, BACKUPS_DIR, name) >= (int)sizeof(path))
        return ERR_INVALID;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? ERR_NOTFOUND : -errno;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ERR_NOTFOUND;
    }
    *fd_out = fd;
    *size_out = (uint64_t)sb.st_size;
    return 0;
}

int ops_backup_store(const char *dir, const char *name, const void *data, size_t len, char *err,
                     size_t err_len)
{
    char bdir[PATH_MAX], tmp[PATH_MAX], final[PATH_MAX];
    err[0] = '\0';
    if (!ops_backup_name_valid(name)) {
        snprintf(err, err_len, "Must be [a-z0-9_-] characters ending with %s.", OPS_BACKUP_SUFFIX);
        return ERR_INVALID;
    }
    int rc = backups_dir(dir, bdir, sizeof(bdir));
    if (rc != 0 || path_join(final, sizeof(final), bdir, name) != 0 ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.upload", bdir, name) >= (int)sizeof(tmp))
        return rc ? rc : ERR_INVALID;
    if ((rc = begin_new(final, name, err, err_len)) != 0)
        return rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    rc = fd < 0 ? -errno : 0;
    for (size_t at = 0; rc == 0 && at < len;) {
        ssize_t w = write(fd, (const char *)data + at, len - at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            rc = -errno;
        else
            at += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        snprintf(err, err_len, "cannot store the upload: %s", err_str(rc));
    if (rc == 0 && (rc = tar_extract(tmp, NULL, err, err_len)) != 0)
        rc = ERR_INVALID;
    if (rc == 0 && link(tmp, final) != 0) {
        rc = errno == EEXIST ? ERR_CONFLICT : -errno;
        snprintf(err, err_len, "cannot store the upload: %s", err_str(rc));
    }
    unlink(tmp);
    if (rc == 0)
        rc = fsync_path(bdir);
    drop_busy();
    return rc;
}

/* ---- restore ---- */

int ops_backup_mark_restore(const char *dir, const char *name, char *err, size_t err_len)
{
    char bdir[PATH_MAX], path[PATH_MAX];
    err[0] = '\0';
    if (!ops_backup_name_valid(name)) {
        snprintf(err, err_len, "Missing or invalid backup file.");
        return ERR_NOTFOUND;
    }
    int rc = backups_dir(dir, bdir, sizeof(bdir));
    if (rc != 0 || path_join(path, sizeof(path), bdir, name) != 0)
        return rc ? rc : ERR_INVALID;
    if (!exists(path)) {
        snprintf(err, err_len, "Missing or invalid backup file.");
        return ERR_NOTFOUND;
    }
    if (!take_busy()) {
        snprintf(err, err_len, "%s", BUSY_TEXT);
        return ERR_BUSY;
    }
    rc = tar_extract(path, NULL, err, err_len);
    if (rc != 0)
        rc = ERR_INVALID;
    char line[OPS_BACKUP_NAME_MAX + 2];
    snprintf(line, sizeof(line), "%s\n", name);
    if (rc == 0 && (rc = datadir_write_file(bdir, RESTORE_MARK, line, strlen(line))) != 0)
        snprintf(err, err_len, "cannot mark the restore: %s", err_str(rc));
    /* stays busy on success: the server is about to restart into the restore */
    if (rc != 0)
        drop_busy();
    return rc;
}

static bool is_file_tree(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(file_trees); i++)
        if (strcmp(name, file_trees[i]) == 0)
            return true;
    return false;
}

/* Moves dir/<name> to to/<name> for each replaced name that exists; a file tree only when
 * restored (the extracted archive) holds it. */
static int move_all(const char *from, const char *to, const char *restored)
{
    for (size_t i = 0; i < ARRAY_LEN(replaced); i++) {
        char a[PATH_MAX], b[PATH_MAX], r[PATH_MAX];
        if (path_join(a, sizeof(a), from, replaced[i]) ||
            path_join(b, sizeof(b), to, replaced[i]) ||
            path_join(r, sizeof(r), restored, replaced[i]))
            return ERR_INVALID;
        if (!exists(a) || (is_file_tree(replaced[i]) && !exists(r)))
            continue;
        if (exists(b) && rm_rf(b) != 0)
            return -errno;
        if (rename(a, b) != 0)
            return -errno;
    }
    int rc = fsync_path(from);
    return rc == 0 ? fsync_path(to) : rc;
}

/* What a backup or upload interrupted by a crash left in backups/: its staging directory and
 * temporary archives (never under a backup's name). */
static void sweep(const char *dir)
{
    char bdir[PATH_MAX];
    if (path_join(bdir, sizeof(bdir), dir, BACKUPS_DIR) != 0)
        return;
    DIR *d = opendir(bdir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        bool tmp = e->d_name[0] == '.' && ((n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) ||
                                           (n > 7 && strcmp(e->d_name + n - 7, ".upload") == 0) ||
                                           strcmp(e->d_name, ".staging") == 0);
        char path[PATH_MAX];
        if (tmp && strcmp(e->d_name, RESTORE_MARK ".tmp") != 0 &&
            path_join(path, sizeof(path), bdir, e->d_name) == 0)
            (void)rm_rf(path);
    }
    closedir(d);
}

int ops_backup_apply_pending(const char *dir, bool *applied_out, char *err, size_t err_len)
{
    char name[OPS_BACKUP_NAME_MAX + 2], work[PATH_MAX], fresh[PATH_MAX], old[PATH_MAX];
    char path[PATH_MAX], flag[PATH_MAX], archive[PATH_MAX];
    *applied_out = false;
    err[0] = '\0';
    sweep(dir);
    marked(dir, name, sizeof(name));
    if (!*name)
        return 0;
    if (!ops_backup_name_valid(name) || path_join(work, sizeof(work), dir, RESTORE_WORK) ||
        path_join(fresh, sizeof(fresh), work, "new") || path_join(old, sizeof(old), work, "old") ||
        snprintf(archive, sizeof(archive), "%s/%s/%s", dir, BACKUPS_DIR, name) >=
            (int)sizeof(archive)) {
        snprintf(err, err_len, "the restore mark names no backup: \"%s\"", name);
        return ERR_INVALID;
    }
    int rc = 0;
    /* 1. the archive, extracted in full (redone unless it completed) */
    if (path_join(flag, sizeof(flag), work, "extracted") || !exists(flag)) {
        (void)rm_rf(work);
        if (mkdir(work, 0700) != 0 || mkdir(fresh, 0700) != 0 || mkdir(old, 0700) != 0) {
            snprintf(err, err_len, "cannot create %s: %s", work, strerror(errno));
            return -errno;
        }
        rc = tar_extract(archive, fresh, err, err_len);
        if (rc == 0)
            rc = datadir_write_file(work, "extracted", name, strlen(name));
        if (rc != 0) {
            /* nothing was replaced yet: drop the restore, so the next start serves the data
             * as it is instead of failing again */
            char mark[PATH_MAX];
            (void)rm_rf(work);
            if (snprintf(mark, sizeof(mark), "%s/%s/%s", dir, BACKUPS_DIR, RESTORE_MARK) <
                (int)sizeof(mark))
                unlink(mark);
            return rc;
        }
    }
    /* 2. the current files out (once: later runs may find new files in their place) */
    if (path_join(flag, sizeof(flag), work, "moved-out") || !exists(flag)) {
        rc = move_all(dir, old, fresh);
        if (rc == 0)
            rc = datadir_write_file(work, "moved-out", name, strlen(name));
        if (rc != 0) {
            snprintf(err, err_len, "cannot move the current data aside: %s", err_str(rc));
            return rc;
        }
    }
    /* 3. the archive's files in */
    rc = move_all(fresh, dir, fresh);
    if (rc != 0) {
        snprintf(err, err_len, "cannot move the restored data in: %s", err_str(rc));
        return rc;
    }
    /* 4. done: the mark goes first, so a crash now never restores twice */
    if (path_join(path, sizeof(path), dir, BACKUPS_DIR) == 0) {
        char mark[PATH_MAX];
        if (path_join(mark, sizeof(mark), path, RESTORE_MARK) == 0 && unlink(mark) != 0 &&
            errno != ENOENT)
            rc = -errno;
        if (rc == 0)
            rc = fsync_path(path);
    }
    if (rc == 0)
        (void)rm_rf(work);
    *applied_out = rc == 0;
    if (rc != 0)
        snprintf(err, err_len, "cannot finish the restore: %s", err_str(rc));
    return rc;
}
