/* test_auth_secret.c - <dir>/secret: creation, reload, refusals, and the derivation of the
 * per-collection token secrets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"

static char *make_dir(void)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/auth_secret_XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(path));
    return path;
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[8192];
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (rmdir(p) != 0)
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

static void secret_path(const char *dir, char out[4200])
{
    snprintf(out, 4200, "%s/secret", dir);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void read_file(const char *path, uint8_t *buf, size_t cap, size_t *len_out)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t r = read(fd, buf, cap);
    assert_true(r >= 0);
    *len_out = (size_t)r;
    close(fd);
}

static void test_created_with_0600_and_reloaded(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[4200], err[256] = "";
    secret_path(dir, path);
    struct auth_secret *a = NULL, *b = NULL;
    assert_int_equal(auth_secret_open(dir, &a, err, sizeof(err)), 0);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, AUTH_SECRET_LEN);
    uint8_t first[AUTH_SECRET_LEN + 8];
    size_t len;
    read_file(path, first, sizeof(first), &len);
    assert_int_equal(len, AUTH_SECRET_LEN);

    /* nothing else is left in the directory (no temporary file) */
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.' || strlen(e->d_name) > 2 ? 1 : 0;
    closedir(d);
    assert_int_equal(n, 1);

    /* the second start loads the same material and leaves the file untouched */
    assert_int_equal(auth_secret_open(dir, &b, err, sizeof(err)), 0);
    uint8_t second[AUTH_SECRET_LEN + 8];
    read_file(path, second, sizeof(second), &len);
    assert_memory_equal(first, second, AUTH_SECRET_LEN);
    char ka[AUTH_COLLECTION_SECRET_LEN + 1], kb[AUTH_COLLECTION_SECRET_LEN + 1];
    auth_secret_collection(a, "auth", "_pb_users_auth_", ka);
    auth_secret_collection(b, "auth", "_pb_users_auth_", kb);
    assert_string_equal(ka, kb);

    /* and it is what auth_secret_from_bytes makes of the file's bytes */
    struct auth_secret *c = NULL;
    assert_int_equal(auth_secret_from_bytes(first, AUTH_SECRET_LEN, &c), 0);
    auth_secret_collection(c, "auth", "_pb_users_auth_", kb);
    assert_string_equal(ka, kb);

    auth_secret_free(a);
    auth_secret_free(b);
    auth_secret_free(c);
    remove_dir(dir);
}

static void test_two_dirs_have_different_secrets(void **state)
{
    (void)state;
    char *d1 = make_dir(), *d2 = make_dir();
    struct auth_secret *a = NULL, *b = NULL;
    assert_int_equal(auth_secret_open(d1, &a, NULL, 0), 0);
    assert_int_equal(auth_secret_open(d2, &b, NULL, 0), 0);
    char ka[AUTH_COLLECTION_SECRET_LEN + 1], kb[AUTH_COLLECTION_SECRET_LEN + 1];
    auth_secret_collection(a, "auth", "users", ka);
    auth_secret_collection(b, "auth", "users", kb);
    assert_string_not_equal(ka, kb);
    auth_secret_free(a);
    auth_secret_free(b);
    remove_dir(d1);
    remove_dir(d2);
}

static void test_refused_when_group_or_world_can_access(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[4200], err[256];
    secret_path(dir, path);
    uint8_t key[AUTH_SECRET_LEN];
    randombytes_buf(key, sizeof(key));
    const mode_t bad[] = {0640, 0604, 0644, 0660, 0606, 0620, 0602, 0610};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, key, sizeof(key), bad[i]);
        struct auth_secret *s = NULL;
        err[0] = '\0';
        assert_int_equal(auth_secret_open(dir, &s, err, sizeof(err)), ERR_DENIED);
        assert_null(s);
        assert_non_null(strstr(err, "chmod 600"));
        assert_non_null(strstr(err, path));
    }
    /* 0400 is fine: only the owner can read it */
    write_file(path, key, sizeof(key), 0400);
    struct auth_secret *s = NULL;
    assert_int_equal(auth_secret_open(dir, &s, err, sizeof(err)), 0);
    auth_secret_free(s);
    remove_dir(dir);
}

static void test_refused_when_size_is_wrong(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[4200], err[256];
    secret_path(dir, path);
    uint8_t key[AUTH_SECRET_LEN * 2];
    randombytes_buf(key, sizeof(key));
    const size_t sizes[] = {0, 1, AUTH_SECRET_LEN - 1, AUTH_SECRET_LEN + 1, AUTH_SECRET_LEN * 2};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        write_file(path, key, sizes[i], 0600);
        struct auth_secret *s = NULL;
        err[0] = '\0';
        assert_int_equal(auth_secret_open(dir, &s, err, sizeof(err)), ERR_CORRUPT);
        assert_null(s);
        assert_non_null(strstr(err, "wrong size"));
        /* refused, never replaced */
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, (off_t)sizes[i]);
    }
    remove_dir(dir);
}

static void test_refused_when_unreadable_or_not_a_file(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[4200], err[256];
    secret_path(dir, path);
    struct auth_secret *s = NULL;

    /* a directory where the file should be */
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(auth_secret_open(dir, &s, err, sizeof(err)), ERR_CORRUPT);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(rmdir(path), 0);

    /* a dangling symbolic link: not followed to create a file elsewhere */
    char target[4300];
    snprintf(target, sizeof(target), "%s/elsewhere", dir);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(auth_secret_open(dir, &s, err, sizeof(err)), -ENOENT);
    assert_int_equal(access(target, F_OK), -1);
    unlink(path);

    /* the data directory does not exist, or is a file */
    char missing[4300];
    snprintf(missing, sizeof(missing), "%s/nope", dir);
    assert_int_equal(auth_secret_open(missing, &s, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "cannot create"));
    char file_dir[4300];
    snprintf(file_dir, sizeof(file_dir), "%s/plainfile", dir);
    write_file(file_dir, "x", 1, 0600);
    assert_int_equal(auth_secret_open(file_dir, &s, err, sizeof(err)), -ENOTDIR);
    assert_null(s);
    remove_dir(dir);
}

struct race {
    const char *dir;
    struct auth_secret *s;
    int rc;
};

static void *race_open(void *arg)
{
    struct race *r = arg;
    r->rc = auth_secret_open(r->dir, &r->s, NULL, 0);
    return NULL;
}

static void test_concurrent_first_starts_agree(void **state)
{
    (void)state;
    enum { N = 8 };
    char *dir = make_dir();
    pthread_t th[N];
    struct race r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (struct race){dir, NULL, -1};
        pthread_create(&th[i], NULL, race_open, &r[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    char k0[AUTH_COLLECTION_SECRET_LEN + 1], ki[AUTH_COLLECTION_SECRET_LEN + 1];
    assert_int_equal(r[0].rc, 0);
    auth_secret_collection(r[0].s, "auth", "c", k0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].rc, 0);
        auth_secret_collection(r[i].s, "auth", "c", ki);
        assert_string_equal(k0, ki);
        auth_secret_free(r[i].s);
    }
    remove_dir(dir);
}

static void test_from_bytes_length(void **state)
{
    (void)state;
    uint8_t key[AUTH_SECRET_LEN + 1] = {0};
    struct auth_secret *s = NULL;
    assert_int_equal(auth_secret_from_bytes(key, AUTH_SECRET_LEN - 1, &s), ERR_INVALID);
    assert_int_equal(auth_secret_from_bytes(key, AUTH_SECRET_LEN + 1, &s), ERR_INVALID);
    assert_null(s);
}

static void test_collection_secret_derivation(void **state)
{
    (void)state;
    uint8_t key[AUTH_SECRET_LEN];
    for (int i = 0; i < AUTH_SECRET_LEN; i++)
        key[i] = (uint8_t)i;
    struct auth_secret *s = NULL;
    assert_int_equal(auth_secret_from_bytes(key, sizeof(key), &s), 0);

    /* the documented formula, computed here in one shot:
     * hex(BLAKE2b-256(key = secret, "tandem-token-v1" NUL purpose NUL collection_id)) */
    const char msg[] = "tandem-token-v1\0auth\0_pb_users_auth_";
    uint8_t digest[32];
    crypto_generichash(digest, sizeof(digest), (const uint8_t *)msg, sizeof(msg) - 1, key,
                       sizeof(key));
    char want[65];
    sodium_bin2hex(want, sizeof(want), digest, sizeof(digest));
    char got[AUTH_COLLECTION_SECRET_LEN + 1];
    auth_secret_collection(s, "auth", "_pb_users_auth_", got);
    assert_string_equal(got, want);
    assert_int_equal(strlen(got), 64);

    /* purposes and collections are separated, including across the NUL boundary */
    char other[AUTH_COLLECTION_SECRET_LEN + 1];
    auth_secret_collection(s, "file", "_pb_users_auth_", other);
    assert_string_not_equal(got, other);
    auth_secret_collection(s, "auth", "pbc_3142635823", other);
    assert_string_not_equal(got, other);
    char ab_c[65], a_bc[65];
    auth_secret_collection(s, "ab", "c", ab_c);
    auth_secret_collection(s, "a", "bc", a_bc);
    assert_string_not_equal(ab_c, a_bc);
    auth_secret_free(s);
    auth_secret_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_created_with_0600_and_reloaded),
        cmocka_unit_test(test_two_dirs_have_different_secrets),
        cmocka_unit_test(test_refused_when_group_or_world_can_access),
        cmocka_unit_test(test_refused_when_size_is_wrong),
        cmocka_unit_test(test_refused_when_unreadable_or_not_a_file),
        cmocka_unit_test(test_concurrent_first_starts_agree),
        cmocka_unit_test(test_from_bytes_length),
        cmocka_unit_test(test_collection_secret_derivation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
