/* Router: literal and parameter patterns, rest segments, 404 vs 405, precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "http/http_int.h"

static void h_a(struct http_req *req, void *ctx)
{
    UNUSED(req);
    UNUSED(ctx);
}
static void h_b(struct http_req *req, void *ctx)
{
    UNUSED(req);
    UNUSED(ctx);
}

static struct http_router *fixture(void)
{
    struct http_router *r = http_router_new();
    http_route(r, "GET", "/api/health", h_a, NULL);
    http_route(r, "GET", "/api/collections/{collection}/records", h_a, NULL);
    http_route(r, "POST", "/api/collections/{collection}/records", h_b, NULL);
    http_route(r, "GET", "/api/collections/{collection}/records/{id}", h_a, NULL);
    http_route(r, "PATCH", "/api/collections/{collection}/records/{id}", h_b, NULL);
    http_route(r, "GET", "/batch/", h_a, NULL);
    http_route(r, "GET", "/_/{path...}", h_b, NULL);
    return r;
}

static enum http_match match(struct http_router *r, const char *method, const char *path,
                             const struct http_route **rt, struct http_params *p, struct buf *allow)
{
    return http_router_match(r, method, str_from(path), rt, p, allow);
}

static void test_literal_and_params(void **state)
{
    UNUSED(state);
    struct http_router *r = fixture();
    const struct http_route *rt;
    struct http_params p;

    assert_int_equal(match(r, "GET", "/api/health", &rt, &p, NULL), HTTP_MATCH_OK);
    assert_string_equal(http_route_pattern(rt), "/api/health");
    assert_int_equal(p.n, 0);

    assert_int_equal(match(r, "GET", "/api/collections/posts/records/abc123", &rt, &p, NULL),
                     HTTP_MATCH_OK);
    assert_string_equal(http_route_pattern(rt), "/api/collections/{collection}/records/{id}");
    assert_int_equal(p.n, 2);
    assert_string_equal(p.p[0].name, "collection");
    assert_true(str_eq_cstr(p.p[0].value, "posts"));
    assert_string_equal(p.p[1].name, "id");
    assert_true(str_eq_cstr(p.p[1].value, "abc123"));

    /* the method picks among routes with the same pattern */
    assert_int_equal(match(r, "POST", "/api/collections/x/records", &rt, &p, NULL), HTTP_MATCH_OK);
    assert_string_equal(http_route_pattern(rt), "/api/collections/{collection}/records");
    http_router_free(r);
}

static void test_not_found(void **state)
{
    UNUSED(state);
    struct http_router *r = fixture();
    const struct http_route *rt;
    struct http_params p;
    const char *paths[] = {"/",
                           "/api",
                           "/api/health/",
                           "/api/healthz",
                           "/api/collections//records", /* empty parameter */
                           "/api/collections/posts/records/a/b",
                           "/batch",
                           "relative",
                           ""};
    for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
        assert_int_equal(match(r, "GET", paths[i], &rt, &p, NULL), HTTP_MATCH_NOT_FOUND);
        assert_null(rt);
    }
    http_router_free(r);
}

static void test_bad_method_lists_allowed(void **state)
{
    UNUSED(state);
    struct http_router *r = fixture();
    const struct http_route *rt;
    struct http_params p;
    struct buf allow;
    buf_init(&allow);
    assert_int_equal(match(r, "DELETE", "/api/collections/posts/records/x1", &rt, &p, &allow),
                     HTTP_MATCH_BAD_METHOD);
    assert_string_equal(buf_cstr(&allow), "GET, PATCH");
    assert_non_null(rt); /* for the metrics label */
    buf_release(&allow);

    /* HEAD is served by GET routes */
    assert_int_equal(match(r, "HEAD", "/api/health", &rt, &p, NULL), HTTP_MATCH_OK);
    http_router_free(r);
}

static void test_rest_segment(void **state)
{
    UNUSED(state);
    struct http_router *r = fixture();
    const struct http_route *rt;
    struct http_params p;
    assert_int_equal(match(r, "GET", "/_/assets/app.js", &rt, &p, NULL), HTTP_MATCH_OK);
    assert_int_equal(p.n, 1);
    assert_true(str_eq_cstr(p.p[0].value, "assets/app.js"));
    assert_int_equal(match(r, "GET", "/_/", &rt, &p, NULL), HTTP_MATCH_OK);
    assert_true(str_eq_cstr(p.p[0].value, ""));
    assert_int_equal(match(r, "GET", "/_", &rt, &p, NULL), HTTP_MATCH_OK);
    assert_int_equal(p.p[0].value.len, 0);
    http_router_free(r);
}

static void test_too_many_segments(void **state)
{
    UNUSED(state);
    struct http_router *r = fixture();
    const struct http_route *rt;
    struct http_params p;
    char path[4096] = "";
    for (int i = 0; i < 100; i++)
        strcat(path, "/a");
    assert_int_equal(match(r, "GET", path, &rt, &p, NULL), HTTP_MATCH_NOT_FOUND);
    http_router_free(r);
}

static void test_route_body_limit(void **state)
{
    UNUSED(state);
    struct http_router *r = fixture();
    http_route_max_body(r, "POST", "/api/collections/{collection}/auth-with-password", h_b, NULL,
                        4096);
    assert_int_equal(
        http__route_max_body(r, "POST", str_from("/api/collections/users/auth-with-password")),
        4096);
    /* routes without their own limit, and paths no route fits, take the server's */
    assert_int_equal(http__route_max_body(r, "POST", str_from("/api/collections/u/records")), 0);
    assert_int_equal(
        http__route_max_body(r, "GET", str_from("/api/collections/users/auth-with-password")), 0);
    assert_int_equal(http__route_max_body(r, "POST", str_from("/nope")), 0);
    http_router_free(r);
}

static void collect(void *arg, const char *method, const char *pattern)
{
    struct buf *out = arg;
    buf_printf(out, "%s %s\n", method, pattern);
}

/* http_router_each lists every route in registration order, the fallback last. */
static void test_each(void **state)
{
    UNUSED(state);
    struct http_router *r = fixture();
    struct buf out;
    buf_init(&out);
    http_router_each(r, collect, &out);
    assert_string_equal(buf_cstr(&out), "GET /api/health\n"
                                        "GET /api/collections/{collection}/records\n"
                                        "POST /api/collections/{collection}/records\n"
                                        "GET /api/collections/{collection}/records/{id}\n"
                                        "PATCH /api/collections/{collection}/records/{id}\n"
                                        "GET /batch/\n"
                                        "GET /_/{path...}\n");
    buf_reset(&out);
    http_router_fallback(r, "/{path...}", h_a, NULL);
    http_router_each(r, collect, &out);
    const char *s = buf_cstr(&out);
    const char *last = "GET /_/{path...}\n* /{path...}\n";
    assert_true(strlen(s) > strlen(last));
    assert_string_equal(s + strlen(s) - strlen(last), last);
    buf_release(&out);
    http_router_free(r);

    r = http_router_new(); /* an empty router lists nothing */
    buf_init(&out);
    http_router_each(r, collect, &out);
    assert_int_equal(out.len, 0);
    buf_release(&out);
    http_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_and_params),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_bad_method_lists_allowed),
        cmocka_unit_test(test_rest_segment),
        cmocka_unit_test(test_too_many_segments),
        cmocka_unit_test(test_route_body_limit),
        cmocka_unit_test(test_each),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
