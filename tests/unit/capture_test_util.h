/* capture_test_util.h - helpers shared by the capture unit tests (header-only). */
#ifndef TANDEM_TESTS_CAPTURE_TEST_UTIL_H
#define TANDEM_TESTS_CAPTURE_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include <zlib.h>

#include "capture/capture.h"

/* 2026-05-01T12:00:10.000Z */
#define T_RECV 1777636810000000LL

static inline struct capture_input t_input(enum capture_api api, const char *body)
{
    struct capture_input in = {0};
    in.api = api;
    in.body = body;
    in.body_len = strlen(body);
    in.received_us = T_RECV;
    return in;
}

/* Parses and asserts the status; returns the result for more checks. */
static inline void t_parse(const struct capture_input *in, struct capture_result *r,
                           int want_status)
{
    assert_int_equal(capture_parse(in, r), 0);
    if (r->status != want_status)
        print_error("status %d message: %s\n", r->status, r->message);
    assert_int_equal(r->status, want_status);
}

static inline void t_expect_error(enum capture_api api, const char *body, const char *key,
                                  int status, const char *message)
{
    struct capture_input in = t_input(api, body);
    in.auth_key = key;
    struct capture_result r;
    t_parse(&in, &r, status);
    assert_string_equal(r.message, message);
    assert_int_equal(r.n_events, 0);
    assert_null(r.events);
    capture_result_release(&r);
}

/* The canonical record of event i, parsed (caller json_decref()s). */
static inline json_t *t_record(const struct capture_result *r, size_t i)
{
    assert_true(i < r->n_events);
    json_error_t err;
    json_t *j = json_loadb(r->events[i].record, r->events[i].record_len, 0, &err);
    if (!j)
        print_error("bad record: %s\n", err.text);
    assert_non_null(j);
    return j;
}

static inline const char *t_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static inline void t_assert_null_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    assert_non_null(v);           /* the key is present ... */
    assert_true(json_is_null(v)); /* ... and null */
}

/* gzip-compresses src into a malloc'd buffer. */
static inline unsigned char *t_gzip(const void *src, size_t len, size_t *out_len)
{
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, len) + 64;
    unsigned char *out = malloc(cap);
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

#endif
