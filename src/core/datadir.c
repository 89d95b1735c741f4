/* datadir.c - creating the data directory private, and making an existing one private. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/datadir.h"
#include "core/str.h"
#include "core/util.h"
#include "core/xlog.h"

#define MAX_DEPTH 16 /* the data directory is shallow (log/<topic>/); deeper is not ours */

/* mkdir -p, new directories with mode 0700. */
static int make_dirs(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static bool kept(const char *name, const char *const *keep)
{
    for (; keep && *keep; keep++)
        if (strcmp(name, *keep) == 0)
            return true;
    return false;
}

/* Removes group and other bits from every regular file and directory in the directory dfd
 * (which it closes). Entries are opened with O_NOFOLLOW and changed through their own
 * descriptor, so a symbolic link, or an entry swapped for one, is never followed. */
static void walk(int dfd, const char *path, const char *const *keep, int depth,
                 struct datadir_report *r)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        r->n_unfixable++;
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (depth == 0 && kept(e->d_name, keep))
            continue;
        int fd =
            openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ELOOP) { /* ELOOP: a symbolic link, which has no mode of its own */
                xlog_warn("cannot open %s/%s to check its mode: %s", path, e->d_name,
                          strerror(errno));
                r->n_unfixable++;
            }
            continue;
        }
        struct stat st;
        if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
            close(fd);
            continue;
        }
        if (st.st_mode & 077) {
            if (fchmod(fd, st.st_mode & 07700) == 0) {
                r->n_fixed++;
            } else {
                xlog_warn("cannot make %s/%s private (mode %04o): %s", path, e->d_name,
                          (unsigned)(st.st_mode & 07777), strerror(errno));
                r->n_unfixable++;
            }
        }
        if (S_ISDIR(st.st_mode) && depth + 1 < MAX_DEPTH) {
            char sub[4096];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            walk(fd, sub, keep, depth + 1, r); /* closes fd */
        } else {
            close(fd);
        }
    }
    closedir(d);
}

int datadir_prepare(const char *dir, const char *const *keep, struct datadir_report *report,
                    char *err, size_t err_len)
{
    struct datadir_report r = {0};
    int rc = make_dirs(dir);
    if (rc) {
        err_set(err, err_len, "cannot create data directory %s: %s", dir, strerror(-rc));
        return rc;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = -errno;
        err_set(err, err_len, "cannot open data directory %s: %s", dir, strerror(-rc));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (st.st_mode & 077) {
        r.dir_mode = st.st_mode & 07777;
        if (fchmod(fd, st.st_mode & 07700) != 0) {
            rc = -errno;
            err_set(err, err_len,
                    "data directory %s is accessible by group or others (mode %04o) and "
                    "cannot be made private: %s; chmod 700 it",
                    dir, r.dir_mode, strerror(-rc));
            close(fd);
            return rc;
        }
        xlog_warn("data directory %s was accessible by group or others (mode %04o): now %04o", dir,
                  r.dir_mode, (unsigned)(st.st_mode & 07700));
    }
    walk(fd, dir, keep, 0, &r); /* closes fd */
    if (r.n_fixed)
        xlog_warn("%zu files and directories under %s were accessible by group or others: "
                  "now private",
                  r.n_fixed, dir);
    if (report)
        *report = r;
    return 0;
}

static int path_of(char *out, size_t n, const char *dir, const char *name, const char *suffix)
{
    int k = snprintf(out, n, "%s/%s%s", dir, name, suffix);
    return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

int datadir_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char tmp[4096], path[4096];
    int rc = path_of(tmp, sizeof(tmp), dir, name, ".tmp");
    if (rc == 0)
        rc = path_of(path, sizeof(path), dir, name, "");
    if (rc != 0)
        return rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = fd_write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    rc = fsync(dfd) != 0 ? -errno : 0;
    close(dfd);
    return rc;
}

int datadir_read_file(const char *dir, const char *name, size_t max, struct buf *out)
{
    char path[4096];
    int rc = path_of(path, sizeof(path), dir, name, "");
    if (rc != 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? ERR_NOTFOUND : -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
    } else if ((uint64_t)st.st_size > max) {
        rc = ERR_LIMIT;
    } else if (buf_try_reserve(out, (size_t)st.st_size) != 0) {
        rc = -ENOMEM;
    } else {
        for (;;) {
            ssize_t r = read(fd, out->ptr + out->len, out->cap - out->len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                rc = -errno;
                break;
            }
            out->len += (size_t)r;
            if (r == 0 || out->len == out->cap)
                break;
        }
    }
    close(fd);
    return rc;
}
