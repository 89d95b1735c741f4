/* local.c - the local storage backend: key "a/b/c" is the file <dir>/storage/a/b/c. put writes
 * to a temporary file in the same directory, fsyncs and renames it, and fsyncs the directory,
 * so a crash leaves either the whole file or none. create writes and fdatasyncs a new file in
 * place (nothing refers to it yet) and sync makes its directory entries durable, sharing each
 * directory's fsync among the threads that need it at once. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/storage.h"

/* A directory being synced, shared by the threads that need it synced at the same time:
 * uploads of different records all need their collection's directory synced (its entries for
 * the new record directories), and one fsync that starts after a thread's change covers that
 * thread. */
#define DIR_SLOTS 16
struct dir_slot {
    char path[PATH_MAX];
    uint64_t started, done; /* fsyncs of path started / finished since the slot was claimed */
    int rc;                 /* of the last one finished */
    bool busy;              /* one is running */
    int waiters;
};

struct local {
    struct storage base;
    char root[PATH_MAX]; /* <dir>/storage, no trailing '/' */
    pthread_mutex_t mu;  /* leaf: guards dirs */
    pthread_cond_t cv;
    struct dir_slot dirs[DIR_SLOTS];
};

static int path_of(const struct local *l, const char *key, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s%s", l->root, *key ? "/" : "", key);
    return n < 0 || (size_t)n >= cap ? ERR_LIMIT : 0;
}

static int fsync_dir(const char *path);

/* mkdir -p of the directories above path (below root, which exists); a directory made here
 * is made durable in its parent at once, so a synced file is never lost with its directory,
 * except path's own directory when !durable: local_sync syncs its parent then. */
static int make_parents_as(const struct local *l, char *path, bool durable)
{
    size_t rl = strlen(l->root);
    /* most often path's own directory alone is missing (a new record's), or none is: that
     * one first, so the directories above are not tried one by one */
    char *own = strrchr(path, '/');
    if (own && (size_t)(own - path) > rl) {
        *own = '\0';
        int rc = mkdir(path, 0700) == 0 ? (durable ? fsync_dir(path) : 0)
                 : errno == EEXIST      ? 0
                 : errno == ENOENT      ? 1 /* a directory above is missing too */
                                        : -errno;
        *own = '/';
        if (rc <= 0)
            return rc;
    }
    for (char *p = path + rl + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        bool mine = !strchr(p + 1, '/'); /* path's own directory */
        int rc = mkdir(path, 0700) == 0 ? (durable || !mine ? fsync_dir(path) : 0) /* its entry */
                 : errno == EEXIST      ? 0
                                        : -errno;
        *p = '/';
        if (rc)
            return rc;
    }
    return 0;
}

static int make_parents(const struct local *l, char *path)
{
    return make_parents_as(l, path, true);
}

/* fsync of the directory dir */
static int fsync_path(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* fsync of the directory that holds path */
static int fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    return fsync_path(dir);
}

static int local_open(const char *dir, struct storage **out)
{
    extern const struct storage_ops storage_local_ops;
    struct local *l = xcalloc(1, sizeof(*l));
    l->base.ops = &storage_local_ops;
    int n = snprintf(l->root, sizeof(l->root), "%s/storage", dir);
    if (n < 0 || (size_t)n >= sizeof(l->root) || (mkdir(l->root, 0700) != 0 && errno != EEXIST)) {
        free(l);
        return ERR_INVALID;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    *out = &l->base;
    return 0;
}

static void local_close(struct storage *s)
{
    struct local *l = (struct local *)s;
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(s);
}

static int local_put(struct storage *s, const char *key, const void *data, size_t len)
{
    struct local *l = (struct local *)s;
    char path[PATH_MAX], tmp[PATH_MAX + 32];
    int rc = path_of(l, key, path, sizeof(path));
    if (rc)
        return rc;
    if ((rc = make_parents(l, path)) != 0)
        return rc;
    char suffix[9];
    rand_hex(suffix, 4);
    snprintf(tmp, sizeof(tmp), "%s.tmp-%s", path, suffix);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if ((rc = fd_write_all(fd, data, len)) != 0)
        goto fail;
    if (fdatasync(fd) != 0) {
        rc = -errno;
        goto fail;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = -errno;
        goto fail;
    }
    return fsync_dir(path);
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

static int local_create(struct storage *s, const char *key, const void *data, size_t len)
{
    struct local *l = (struct local *)s;
    char path[PATH_MAX];
    int rc = path_of(l, key, path, sizeof(path));
    if (rc || (rc = make_parents_as(l, path, false)) != 0)
        return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? ERR_CONFLICT : -errno;
    rc = fd_write_all(fd, data, len);
    if (rc == 0 && fdatasync(fd) != 0) /* on this descriptor: local_sync need not reopen it */
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc)
        unlink(path);
    return rc;
}

/* Makes what was done in dir before the call durable: waits for an fsync of dir that starts
 * after the call, running it unless another thread does. Without a free slot, syncs alone. */
static int sync_dir_shared(struct local *l, const char *dir)
{
    pthread_mutex_lock(&l->mu);
    struct dir_slot *d = NULL;
    for (int i = 0; i < DIR_SLOTS && !d; i++)
        if (l->dirs[i].waiters > 0 && strcmp(l->dirs[i].path, dir) == 0)
            d = &l->dirs[i];
    for (int i = 0; i < DIR_SLOTS && !d; i++)
        if (l->dirs[i].waiters == 0) {
            d = &l->dirs[i];
            snprintf(d->path, sizeof(d->path), "%s", dir);
            d->started = d->done = 0;
            d->busy = false;
        }
    if (!d) {
        pthread_mutex_unlock(&l->mu);
        return fsync_path(dir);
    }
    d->waiters++;
    uint64_t need = d->started + 1; /* the one running now may have begun before the change */
    while (d->done < need) {
        if (d->busy) {
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        d->busy = true;
        uint64_t gen = ++d->started;
        pthread_mutex_unlock(&l->mu);
        int rc = fsync_path(dir);
        pthread_mutex_lock(&l->mu);
        d->busy = false;
        d->done = gen;
        d->rc = rc;
        pthread_cond_broadcast(&l->cv);
    }
    int rc = d->rc;
    d->waiters--;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* Whether dirs[0..n) holds d. */
static bool seen(char **dirs, size_t n, const char *d)
{
    for (size_t i = n; i-- > 0;) /* the same record's directory is most often the last one */
        if (strcmp(dirs[i], d) == 0)
            return true;
    return false;
}

static int local_sync(struct storage *s, const char *const *keys, size_t n)
{
    struct local *l = (struct local *)s;
    char path[PATH_MAX];
    int rc = 0;
    /* each file's directory (its entry for the file) and that directory's parent (its entry
     * for the directory, which create may have made), each once */
    size_t rl = strlen(l->root), nd = 0, cap = 0;
    char **dirs = NULL;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((rc = path_of(l, keys[i], path, sizeof(path))) != 0)
            break;
        int level = 0;
        for (char *slash = strrchr(path, '/'); slash && (size_t)(slash - path) >= rl && level < 2;
             slash = strrchr(path, '/'), level++) {
            *slash = '\0';
            if (seen(dirs, nd, path))
                break; /* and so was its parent */
            if (nd == cap) {
                cap = cap ? 2 * cap : 16;
                dirs = xrealloc(dirs, cap * sizeof(*dirs));
            }
            dirs[nd++] = xstrdup(path);
            if ((rc = sync_dir_shared(l, path)) != 0)
                break;
        }
    }
    for (size_t i = 0; i < nd; i++)
        free(dirs[i]);
    free(dirs);
    return rc;
}

static int local_open_read(struct storage *s, const char *key, int *fd_out,
                           struct storage_stat *st_out)
{
    struct local *l = (struct local *)s;
    char path[PATH_MAX];
    int rc = path_of(l, key, path, sizeof(path));
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? ERR_NOTFOUND : -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ERR_NOTFOUND;
    }
    st_out->size = (uint64_t)st.st_size;
    st_out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    st_out->ino = (uint64_t)st.st_ino;
    *fd_out = fd;
    return 0;
}

/* rm -r below path (a directory fd), never following links. */
static int remove_tree(int dfd, const char *name)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return errno == ENOENT ? 0 : -errno;
    DIR *d = fdopendir(sub);
    if (!d) {
        close(sub);
        return -errno;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int r = remove_tree(dirfd(d), e->d_name);
        if (r && !rc)
            rc = r;
    }
    closedir(d);
    if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT && !rc)
        rc = -errno;
    return rc;
}

static int local_remove(struct storage *s, const char *key)
{
    struct local *l = (struct local *)s;
    char path[PATH_MAX];
    int rc = path_of(l, key, path, sizeof(path));
    if (rc)
        return rc;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
    rc = remove_tree(dfd, slash + 1);
    close(dfd);
    return rc;
}

static int local_list(struct storage *s, const char *prefix, storage_list_cb cb, void *arg)
{
    struct local *l = (struct local *)s;
    char path[PATH_MAX];
    int rc = path_of(l, prefix, path, sizeof(path));
    if (rc)
        return rc;
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT || errno == ENOTDIR ? ERR_NOTFOUND : -errno;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir =
                fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        }
        cb(arg, e->d_name, is_dir);
    }
    closedir(d);
    return 0;
}

static int local_path(struct storage *s, const char *key, char *out, size_t cap)
{
    struct local *l = (struct local *)s;
    int rc = path_of(l, key, out, cap);
    if (rc)
        return rc;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", out);
    return make_parents(l, tmp);
}

const struct storage_ops storage_local_ops = {
    .name = "local",
    .open = local_open,
    .close = local_close,
    .put = local_put,
    .create = local_create,
    .sync = local_sync,
    .open_read = local_open_read,
    .remove = local_remove,
    .list = local_list,
    .local_path = local_path,
};
