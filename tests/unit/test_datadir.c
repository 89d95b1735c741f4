/* The data directory is private: created 0700, an existing one that lets group or others in
 * is fixed (with everything below it), symbolic links and kept names are left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "core/datadir.h"

struct tmp {
    char root[512];
};

static void tmp_open(struct tmp *t)
{
    const char *base = getenv("TMPDIR");
    snprintf(t->root, sizeof(t->root), "%s/datadirXXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(t->root));
}

static void tmp_close(struct tmp *t)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->root);
    assert_int_equal(system(cmd), 0);
}

static unsigned mode_of(const char *root, const char *rel)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    struct stat st;
    if (lstat(p, &st) != 0)
        fail_msg("cannot stat %s", p);
    return st.st_mode & 07777;
}

static void make_file(const char *root, const char *rel, unsigned mode)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
    assert_int_equal(chmod(p, mode), 0);
}

static void make_subdir(const char *root, const char *rel, unsigned mode)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(chmod(p, mode), 0);
}

static void test_created_private(void **state)
{
    UNUSED(state);
    struct tmp t;
    tmp_open(&t);
    mode_t old = umask(0); /* even without the server's umask */
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/a/b/data", t.root);
    struct datadir_report r;
    char err[256] = "";
    assert_int_equal(datadir_prepare(dir, NULL, &r, err, sizeof(err)), 0);
    umask(old);
    assert_int_equal(mode_of(t.root, "a"), 0700);
    assert_int_equal(mode_of(t.root, "a/b"), 0700);
    assert_int_equal(mode_of(t.root, "a/b/data"), 0700);
    assert_int_equal(r.dir_mode, 0);
    assert_int_equal(r.n_fixed, 0);
    /* again: nothing to do */
    assert_int_equal(datadir_prepare(dir, NULL, &r, err, sizeof(err)), 0);
    assert_int_equal(r.n_fixed, 0);
    tmp_close(&t);
}

static void test_existing_made_private(void **state)
{
    UNUSED(state);
    struct tmp t;
    tmp_open(&t);
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/data", t.root);
    make_subdir(t.root, "data", 0755);
    make_file(t.root, "data/app.db", 0644);
    make_file(t.root, "data/app.db-wal", 0664);
    make_file(t.root, "data/private", 0600);
    make_file(t.root, "data/exec", 0755);
    make_file(t.root, "data/secret", 0644);
    make_subdir(t.root, "data/log", 0755);
    make_subdir(t.root, "data/log/events", 0777);
    make_file(t.root, "data/log/events/00000000000000000000.seg", 0666);
    make_file(t.root, "data/log/events/other", 0604);
    /* a link to a file outside: the link is not followed, the target keeps its mode */
    make_file(t.root, "outside", 0644);
    char target[700], link_path[700];
    snprintf(target, sizeof(target), "%s/outside", t.root);
    snprintf(link_path, sizeof(link_path), "%s/data/log/link", t.root);
    assert_int_equal(symlink(target, link_path), 0);

    static const char *const keep[] = {"secret", NULL};
    struct datadir_report r;
    char err[256] = "";
    assert_int_equal(datadir_prepare(dir, keep, &r, err, sizeof(err)), 0);
    assert_int_equal(r.dir_mode, 0755);
    assert_int_equal(r.n_fixed, 7);
    assert_int_equal(r.n_unfixable, 0);
    assert_int_equal(mode_of(t.root, "data"), 0700);
    assert_int_equal(mode_of(t.root, "data/app.db"), 0600);
    assert_int_equal(mode_of(t.root, "data/app.db-wal"), 0600);
    assert_int_equal(mode_of(t.root, "data/private"), 0600);
    assert_int_equal(mode_of(t.root, "data/exec"), 0700);
    assert_int_equal(mode_of(t.root, "data/log"), 0700);
    assert_int_equal(mode_of(t.root, "data/log/events"), 0700);
    assert_int_equal(mode_of(t.root, "data/log/events/00000000000000000000.seg"), 0600);
    assert_int_equal(mode_of(t.root, "data/log/events/other"), 0600);
    assert_int_equal(mode_of(t.root, "outside"), 0644);
    assert_int_equal(mode_of(t.root, "data/secret"), 0644); /* kept: its own check refuses it */
    tmp_close(&t);
}

static void test_not_a_directory(void **state)
{
    UNUSED(state);
    struct tmp t;
    tmp_open(&t);
    make_file(t.root, "file", 0600);
    char dir[700];
    char err[256] = "";
    snprintf(dir, sizeof(dir), "%s/file", t.root);
    assert_int_equal(datadir_prepare(dir, NULL, NULL, err, sizeof(err)), -ENOTDIR);
    assert_non_null(strstr(err, dir));
    snprintf(dir, sizeof(dir), "%s/file/data", t.root);
    assert_int_equal(datadir_prepare(dir, NULL, NULL, err, sizeof(err)), -ENOTDIR);
    assert_non_null(strstr(err, "cannot create data directory"));
    tmp_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_created_private),
        cmocka_unit_test(test_existing_made_private),
        cmocka_unit_test(test_not_a_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
