/* secret.c - <dir>/secret: the key material every signing key derives from. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth_int.h"

#define SECRET_NAME "secret"
#define DERIVE_CONTEXT "tandem-token-v1"

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Writes fresh key material to a temporary file, syncs it and links it into place. link()
 * fails with EEXIST when another process created the secret first; the caller then loads
 * that one. -errno on failure; the temporary file never survives. */
static int secret_create(const char *dir, const char *path, char *err, size_t err_len)
{
    char tmp[4096];
    uint8_t key[AUTH_SECRET_LEN];
    int rc = 0, fd = -1;
    bool made_tmp = false;

    char nonce[17];
    rand_hex(nonce, 8); /* unique per attempt, even between threads of one process */
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%s", dir, SECRET_NAME, nonce) >=
        sizeof(tmp)) {
        err_set(err, err_len, "data directory path too long: %s", dir);
        return -ENAMETOOLONG;
    }
    randombytes_buf(key, sizeof(key));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        err_set(err, err_len, "cannot create %s: %s", tmp, strerror(-rc));
        goto out;
    }
    made_tmp = true;
    if (fchmod(fd, 0600) != 0 || (rc = fd_write_all(fd, key, sizeof(key))) != 0 || fsync(fd) != 0) {
        rc = rc ? rc : -errno;
        err_set(err, err_len, "cannot write %s: %s", tmp, strerror(-rc));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        err_set(err, err_len, "cannot write %s: %s", tmp, strerror(-rc));
        goto out;
    }
    fd = -1;
    if (link(tmp, path) != 0) {
        rc = -errno;
        if (rc != -EEXIST)
            err_set(err, err_len, "cannot create %s: %s", path, strerror(-rc));
        goto out;
    }
    rc = fsync_dir(dir);
    if (rc != 0)
        err_set(err, err_len, "cannot sync directory %s: %s", dir, strerror(-rc));

out:
    if (fd >= 0)
        close(fd);
    if (made_tmp)
        unlink(tmp);
    sodium_memzero(key, sizeof(key));
    return rc;
}

static int secret_load(const char *path, uint8_t key[AUTH_SECRET_LEN], char *err, size_t err_len)
{
    uint8_t buf[AUTH_SECRET_LEN + 1];
    size_t got = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        err_set(err, err_len, "cannot open %s: %s", path, strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        err_set(err, err_len, "cannot stat %s: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ERR_CORRUPT;
        err_set(err, err_len, "%s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = ERR_DENIED;
        err_set(err, err_len, "%s is accessible by group or others (mode %04o): chmod 600 it", path,
                (unsigned)(st.st_mode & 07777));
        goto out;
    }
    while (got < sizeof(buf)) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            err_set(err, err_len, "cannot read %s: %s", path, strerror(-rc));
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got != AUTH_SECRET_LEN) {
        rc = ERR_CORRUPT;
        err_set(err, err_len, "%s has the wrong size (%s %d bytes expected)", path,
                got > AUTH_SECRET_LEN ? "more than" : "less than", AUTH_SECRET_LEN);
        goto out;
    }
    memcpy(key, buf, AUTH_SECRET_LEN);
out:
    sodium_memzero(buf, sizeof(buf));
    close(fd);
    return rc;
}

int auth_secret_open(const char *dir, struct auth_secret **out, char *err, size_t err_len)
{
    char path[4096];
    uint8_t key[AUTH_SECRET_LEN];
    int rc = auth_init();
    if (rc != 0) {
        err_set(err, err_len, "libsodium cannot initialise");
        return rc;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, SECRET_NAME) >= sizeof(path)) {
        err_set(err, err_len, "data directory path too long: %s", dir);
        return -ENAMETOOLONG;
    }
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT) {
            rc = -errno;
            err_set(err, err_len, "cannot stat %s: %s", path, strerror(-rc));
            return rc;
        }
        rc = secret_create(dir, path, err, err_len);
        if (rc != 0 && rc != -EEXIST)
            return rc;
        if (rc == 0)
            xlog_info("created %s", path);
    }
    rc = secret_load(path, key, err, err_len);
    if (rc != 0)
        goto out;
    rc = auth_secret_from_bytes(key, sizeof(key), out);
out:
    sodium_memzero(key, sizeof(key));
    return rc;
}

int auth_secret_from_bytes(const void *key, size_t len, struct auth_secret **out)
{
    if (len != AUTH_SECRET_LEN)
        return ERR_INVALID;
    auth__sodium_ready();
    struct auth_secret *s = xmalloc(sizeof(*s));
    memcpy(s->key, key, AUTH_SECRET_LEN);
    *out = s;
    return 0;
}

uint64_t auth__secrets_freed;

void auth_secret_free(struct auth_secret *s)
{
    if (!s)
        return;
    __atomic_fetch_add(&auth__secrets_freed, 1, __ATOMIC_SEQ_CST);
    sodium_memzero(s, sizeof(*s));
    free(s);
}

void auth_secret_collection(const struct auth_secret *s, const char *purpose,
                            const char *collection_id, char out[AUTH_COLLECTION_SECRET_LEN + 1])
{
    _Static_assert(AUTH_SECRET_LEN <= crypto_generichash_KEYBYTES_MAX, "BLAKE2b key size");
    _Static_assert(AUTH_COLLECTION_SECRET_LEN == 2 * 32, "hex of BLAKE2b-256");
    crypto_generichash_state st;
    uint8_t digest[32];
    crypto_generichash_init(&st, s->key, AUTH_SECRET_LEN, sizeof(digest));
    /* NUL separators (sizeof includes them) keep ("a", "bc") and ("ab", "c") apart. */
    crypto_generichash_update(&st, (const uint8_t *)DERIVE_CONTEXT, sizeof(DERIVE_CONTEXT));
    crypto_generichash_update(&st, (const uint8_t *)purpose, strlen(purpose) + 1);
    crypto_generichash_update(&st, (const uint8_t *)collection_id, strlen(collection_id));
    crypto_generichash_final(&st, digest, sizeof(digest));
    sodium_bin2hex(out, AUTH_COLLECTION_SECRET_LEN + 1, digest, sizeof(digest));
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(digest, sizeof(digest));
}
