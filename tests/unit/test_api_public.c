/* Static hosting: which URL paths may name a file, and the Content-Type of a name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "api/api_int.h"

static void test_clean_accepts(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 1024);
    struct {
        const char *path, *rel;
        bool dir_form;
    } ok[] = {
        {"/", "", true},
        {"/index.html", "index.html", false},
        {"/a/b/c.js", "a/b/c.js", false},
        {"/docs/", "docs", true},
        {"/my%20file.txt", "my file.txt", false},
        {"/caf%C3%A9.html", "caf\xc3\xa9.html", false},
        {"/a..b", "a..b", false},
        {"/v1.2/x", "v1.2/x", false},
        {"/.well-known/assetlinks.json", ".well-known/assetlinks.json", false},
    };
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        const char *rel = NULL;
        bool dir_form = !ok[i].dir_form;
        if (api__public_clean(&a, str_from(ok[i].path), &rel, &dir_form) != 0)
            fail_msg("%s refused", ok[i].path);
        assert_string_equal(rel, ok[i].rel);
        assert_int_equal(dir_form, ok[i].dir_form);
    }
    arena_release(&a);
}

static void test_clean_refuses(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 1024);
    static const char *const bad[] = {
        "",
        "x",
        "/..",
        "/../etc/hostname",
        "/a/../../etc/hostname",
        "/%2e%2e/etc/hostname",
        "/%2E%2E%2Fetc%2Fhostname",
        "/..%2f..%2fetc/hostname",
        "/a%2fb",
        "/a%5cb",
        "/a\\b",
        "/..\\..\\etc\\hostname",
        "/a%00.html",
        "/a%0a",
        "/.",
        "/./index.html",
        "/a//b",
        "//etc/hostname",
        "/.env",
        "/.git/config",
        "/a/.hidden",
        "/a/.well-known/x",
        "/%2ewell-known%2fx",
        "/bad%zz",
        "/bad%4",
        "/bad%",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        const char *rel = NULL;
        bool dir_form = false;
        if (api__public_clean(&a, str_from(bad[i]), &rel, &dir_form) != ERR_INVALID)
            fail_msg("'%s' accepted as '%s'", bad[i], rel ? rel : "(null)");
    }
    arena_release(&a);
}

static void test_types(void **state)
{
    UNUSED(state);
    struct {
        const char *name, *type;
    } cases[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"a/b/STYLE.CSS", "text/css; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"m.mjs", "text/javascript; charset=utf-8"},
        {"d.json", "application/json; charset=utf-8"},
        {"i.svg", "image/svg+xml; charset=utf-8"},
        {"p.png", "image/png"},
        {"p.jpeg", "image/jpeg"},
        {"p.jpg", "image/jpeg"},
        {"f.woff2", "font/woff2"},
        {"w.wasm", "application/wasm"},
        {"app.js.map", "application/json; charset=utf-8"},
        {"doc.pdf", "application/pdf"},
        {"blob.bin", "application/octet-stream"},
        {"noext", "application/octet-stream"},
        {"dir.js/noext", "application/octet-stream"},
        {".well-known/.js", "application/octet-stream"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        assert_string_equal(api__public_type(cases[i].name), cases[i].type);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_accepts),
        cmocka_unit_test(test_clean_refuses),
        cmocka_unit_test(test_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
