/* storage/: key checks, MIME sniffing, thumb specs, the local backend (durable put, read,
 * listing, recursive remove), the bounded pool, thumbnails made by libvips, and the file-part
 * collection of multipart bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "api/records_int.h"
#include "storage/storage.h"
#include "store/schema.h"

static void test_keys(void **state)
{
    UNUSED(state);
    assert_true(storage_key_valid("pbc_1/abc/photo_x.png"));
    assert_true(storage_key_valid("a"));
    assert_false(storage_key_valid(""));
    assert_false(storage_key_valid("/etc/passwd"));
    assert_false(storage_key_valid("a/../b"));
    assert_false(storage_key_valid("a/./b"));
    assert_false(storage_key_valid(".."));
    assert_false(storage_key_valid("a//b"));
    assert_false(storage_key_valid("a/b/"));
    assert_false(storage_key_valid("a\\b"));
    assert_false(storage_key_valid("a\nb"));
}

static void test_sniff(void **state)
{
    UNUSED(state);
    assert_string_equal(storage_sniff("\x89PNG\r\n\x1a\n....", 12), "image/png");
    assert_string_equal(storage_sniff("\xff\xd8\xff\xe0", 4), "image/jpeg");
    assert_string_equal(storage_sniff("GIF89a", 6), "image/gif");
    assert_string_equal(storage_sniff("RIFF\0\0\0\0WEBPVP8 ", 16), "image/webp");
    assert_string_equal(storage_sniff("%PDF-1.7", 8), "application/pdf");
    assert_string_equal(storage_sniff("hello world\n", 12), "text/plain");
    assert_string_equal(storage_sniff("<!DOCTYPE html><p>", 18), "text/html");
    assert_string_equal(storage_sniff("<?xml version=\"1.0\"?><svg>", 26), "image/svg+xml");
    assert_string_equal(storage_sniff("{\"a\":1}", 7), "application/json");
    assert_string_equal(storage_sniff("\x01\x02\x03\x00", 4), "application/octet-stream");
    assert_string_equal(storage_sniff("", 0), "application/octet-stream");
    /* the client's name or type never matters: only the bytes are looked at */
    assert_true(storage_inline_type("image/png"));
    assert_false(storage_inline_type("image/svg+xml"));
    assert_false(storage_inline_type("text/html"));
    assert_true(storage_thumbable("image/jpeg"));
    assert_false(storage_thumbable("image/svg+xml"));
}

static void test_thumb_specs(void **state)
{
    UNUSED(state);
    int w, h;
    char m;
    assert_true(store_thumb_parse("100x50", &w, &h, &m));
    assert_int_equal(w, 100);
    assert_int_equal(h, 50);
    assert_int_equal(m, 0);
    assert_true(store_thumb_parse("20x30t", &w, &h, &m));
    assert_int_equal(m, 't');
    assert_true(store_thumb_parse("0x30", &w, &h, &m));
    assert_true(store_thumb_parse("30x0", &w, &h, &m));
    assert_false(store_thumb_parse("0x0", NULL, NULL, NULL));
    assert_false(store_thumb_parse("0x30f", NULL, NULL, NULL));
    assert_false(store_thumb_parse("10x", NULL, NULL, NULL));
    assert_false(store_thumb_parse("x10", NULL, NULL, NULL));
    assert_false(store_thumb_parse("10x10z", NULL, NULL, NULL));
    assert_false(store_thumb_parse("99999x10", NULL, NULL, NULL));
    assert_false(store_thumb_parse("-1x10", NULL, NULL, NULL));
}

struct fx {
    char dir[256];
    struct storage *st;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof(fx->dir), "%s/storage-XXXXXX", tmp ? tmp : "/tmp");
    mkdir(tmp ? tmp : "/tmp", 0700);
    if (!mkdtemp(fx->dir))
        return -1;
    if (storage_open("local", fx->dir, &fx->st) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    (void)storage_remove(fx->st, "c");
    storage_close(fx->st);
    char path[300];
    snprintf(path, sizeof(path), "%s/storage", fx->dir);
    rmdir(path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void count(void *arg, const char *name, bool is_dir)
{
    UNUSED(name);
    ((int *)arg)[is_dir ? 1 : 0]++;
}

static void test_local_backend(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(storage_put(fx->st, "c/r/a.txt", "hello", 5), 0);
    assert_int_equal(storage_put(fx->st, "c/r/thumbs_a.txt/1x1_a.txt", "t", 1), 0);
    assert_int_equal(storage_put(fx->st, "c/../x", "no", 2), ERR_INVALID);
    int fd;
    struct storage_stat st;
    assert_int_equal(storage_open_read(fx->st, "c/r/a.txt", &fd, &st), 0);
    assert_int_equal(st.size, 5);
    char buf[8] = "";
    assert_int_equal(read(fd, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "hello", 5);
    close(fd);
    assert_int_equal(storage_open_read(fx->st, "c/r/none", &fd, &st), ERR_NOTFOUND);
    /* a put replaces, whole */
    assert_int_equal(storage_put(fx->st, "c/r/a.txt", "bye", 3), 0);
    assert_int_equal(storage_open_read(fx->st, "c/r/a.txt", &fd, &st), 0);
    assert_int_equal(st.size, 3);
    close(fd);
    int n[2] = {0, 0};
    assert_int_equal(storage_list(fx->st, "c/r", count, n), 0);
    assert_int_equal(n[0], 1); /* a.txt, and no temporary file left */
    assert_int_equal(n[1], 1); /* thumbs_a.txt */
    assert_int_equal(storage_list(fx->st, "c/none", count, n), ERR_NOTFOUND);
    /* a prefix goes with everything under it; missing is fine */
    assert_int_equal(storage_remove(fx->st, "c/r"), 0);
    assert_int_equal(storage_open_read(fx->st, "c/r/a.txt", &fd, &st), ERR_NOTFOUND);
    assert_int_equal(storage_remove(fx->st, "c/r"), 0);
}

struct sync_arg {
    struct storage *st;
    int i, rc;
};

static void *create_and_sync(void *arg)
{
    struct sync_arg *a = arg;
    char key[64];
    snprintf(key, sizeof(key), "c/t%d/f.txt", a->i);
    const char *keys[] = {key};
    a->rc = storage_create(a->st, key, "x", 1);
    for (int k = 0; k < 20 && a->rc == 0; k++) /* the same directories, over and over */
        a->rc = storage_sync(a->st, keys, 1);
    return NULL;
}

/* create writes a new file at once (never over one) and sync makes a group durable; threads
 * syncing files of the same directories at once all succeed (their directory syncs are
 * shared). */
static void test_create_and_sync(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(storage_create(fx->st, "c/r1/a.txt", "hello", 5), 0);
    assert_int_equal(storage_create(fx->st, "c/r1/a.txt", "again", 5), ERR_CONFLICT);
    assert_int_equal(storage_create(fx->st, "c/r2/b.txt", "", 0), 0);
    assert_int_equal(storage_create(fx->st, "c/../x", "no", 2), ERR_INVALID);
    int fd;
    struct storage_stat st;
    assert_int_equal(storage_open_read(fx->st, "c/r1/a.txt", &fd, &st), 0);
    assert_int_equal(st.size, 5); /* the refused second create left the first alone */
    close(fd);
    const char *keys[] = {"c/r1/a.txt", "c/r2/b.txt"};
    assert_int_equal(storage_sync(fx->st, keys, 2), 0);
    const char *missing[] = {"c/r1/a.txt", "c/r3/none"};
    assert_true(storage_sync(fx->st, missing, 2) != 0);
    int n[2] = {0, 0};
    assert_int_equal(storage_list(fx->st, "c/r1", count, n), 0);
    assert_int_equal(n[0], 1); /* no temporary file */
    pthread_t th[12];
    struct sync_arg args[12];
    for (int i = 0; i < 12; i++) {
        args[i] = (struct sync_arg){fx->st, i, -1};
        assert_int_equal(pthread_create(&th[i], NULL, create_and_sync, &args[i]), 0);
    }
    for (int i = 0; i < 12; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, 0);
    }
}

static void test_thumbnail(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(storage_thumb_init(), 0);
    VipsImage *img =
        vips_image_new_from_memory_copy("\x80\x40\x20\x80\x40\x20", 6, 2, 1, 3, VIPS_FORMAT_UCHAR);
    VipsImage *big = NULL;
    assert_int_equal(vips_resize(img, &big, 32, "vscale", 48.0, NULL), 0); /* 64x48 */
    void *png = NULL;
    size_t len = 0;
    assert_int_equal(vips_image_write_to_buffer(big, ".png", &png, &len, NULL), 0);
    assert_int_equal(storage_put(fx->st, "c/r/p.png", png, len), 0);
    g_free(png);
    g_object_unref(big);
    g_object_unref(img);
    static const struct {
        const char *spec;
        int w, h;
    } cases[] = {{"10x10", 10, 10},
                 {"16x0", 16, 12},
                 {"0x24", 32, 24},
                 {"40x20f", 27, 20},
                 {"40x20t", 40, 20}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char key[64], path[512];
        snprintf(key, sizeof(key), "c/r/thumbs_p.png/%s_p.png", cases[i].spec);
        assert_int_equal(storage_thumb(fx->st, "c/r/p.png", cases[i].spec, key), 0);
        assert_int_equal(storage_local_path(fx->st, key, path, sizeof(path)), 0);
        VipsImage *t = vips_image_new_from_file(path, NULL);
        assert_non_null(t);
        assert_int_equal(vips_image_get_width(t), cases[i].w);
        assert_int_equal(vips_image_get_height(t), cases[i].h);
        g_object_unref(t);
    }
    /* not an image: refused, nothing made */
    assert_int_equal(storage_put(fx->st, "c/r/t.png", "text", 4), 0);
    assert_int_equal(storage_thumb(fx->st, "c/r/t.png", "10x10", "c/r/thumbs_t.png/10x10_t.png"),
                     ERR_INVALID);
    int fd;
    struct storage_stat st;
    assert_int_equal(storage_open_read(fx->st, "c/r/thumbs_t.png/10x10_t.png", &fd, &st),
                     ERR_NOTFOUND);
    assert_int_equal(storage_thumb(fx->st, "c/r/p.png", "0x0", "c/r/x"), ERR_INVALID);
}

struct pool_count {
    pthread_mutex_t mu;
    int n;
};

static void bump(void *arg)
{
    struct pool_count *c = arg;
    pthread_mutex_lock(&c->mu);
    c->n++;
    pthread_mutex_unlock(&c->mu);
}

static void test_pool(void **state)
{
    UNUSED(state);
    struct storage_pool *p = NULL;
    struct pool_count c = {PTHREAD_MUTEX_INITIALIZER, 0};
    assert_int_equal(storage_pool_new(2, 1000, &p), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(storage_pool_submit(p, bump, &c), 0);
    storage_pool_stop(p); /* runs what is queued first */
    assert_int_equal(c.n, 100);
    assert_int_equal(storage_pool_submit(p, bump, &c), ERR_BUSY);
    storage_pool_free(p);
    /* a full queue refuses */
    assert_int_equal(storage_pool_new(1, 0, &p), 0);
    assert_int_equal(storage_pool_submit(p, bump, &c), ERR_LIMIT);
    storage_pool_free(p);
}

static void test_multipart_files(void **state)
{
    UNUSED(state);
    const char *body = "--B\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n"
                       "--B\r\nContent-Disposition: form-data; name=\"docs+\"; filename=\"a b.txt\""
                       "\r\nContent-Type: image/png\r\n\r\nabc\r\n--B--\r\n";
    struct arena a;
    arena_init(&a, 4096);
    struct api_uploads ups = {.arena = &a};
    json_t *out = json_object();
    assert_int_equal(
        api__parse_multipart("multipart/form-data; boundary=B", str_from(body), 10, out, &ups), 0);
    assert_string_equal(json_string_value(json_object_get(out, "title")), "hi");
    assert_null(json_object_get(out, "docs+")); /* files are not values */
    assert_int_equal(ups.n, 1);
    assert_string_equal(ups.v[0].key, "docs+");
    assert_string_equal(ups.v[0].filename, "a b.txt");
    assert_int_equal(ups.v[0].len, 3);
    assert_memory_equal(ups.v[0].data, "abc", 3);
    json_decref(out);
    arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_sniff),
        cmocka_unit_test(test_thumb_specs),
        cmocka_unit_test_setup_teardown(test_local_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_and_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thumbnail, setup, teardown),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_multipart_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
