/* The dashboard's embedded files: lookup, the table generated from web/, and If-None-Match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "api/dashboard_int.h"

static bool contains(const void *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp((const char *)hay + i, needle, n) == 0)
            return true;
    return false;
}

static const struct api_asset *find(const char *path)
{
    return api__dashboard_find(str_from(path));
}

static void test_find(void **state)
{
    UNUSED(state);
    const struct api_asset *index = find("");
    assert_non_null(index);
    assert_string_equal(index->path, "index.html");
    assert_ptr_equal(find("index.html"), index);
    assert_string_equal(index->content_type, "text/html; charset=utf-8");

    const struct api_asset *chart = find("vendor/chart.umd.min.js");
    assert_non_null(chart);
    assert_string_equal(chart->content_type, "text/javascript; charset=utf-8");
    assert_true(chart->len > 100000); /* the real library, not a placeholder */
    assert_true(contains(chart->data, chart->len, "Chart"));

    assert_non_null(find("style.css"));
    assert_string_equal(find("style.css")->content_type, "text/css; charset=utf-8");
    assert_non_null(find("js/app.js"));

    assert_null(find("nope.html"));
    assert_null(find("/index.html"));
    assert_null(find("index.htm"));
    assert_null(find("index.html/"));
    assert_null(find("js"));
    assert_null(find("../web/index.html"));
    assert_null(find("node_modules/chart.js/package.json"));
}

/* Every entry is complete; names are unique; ETags are quoted and differ with the bytes. */
static void test_table(void **state)
{
    UNUSED(state);
    assert_true(api_dashboard_n_assets >= 10);
    for (size_t i = 0; i < api_dashboard_n_assets; i++) {
        const struct api_asset *a = &api_dashboard_assets[i];
        assert_non_null(a->path);
        assert_non_null(a->content_type);
        assert_non_null(a->data);
        assert_true(a->len > 0);
        size_t n = strlen(a->etag);
        assert_true(n > 4);
        assert_int_equal(a->etag[0], '"');
        assert_int_equal(a->etag[n - 1], '"');
        assert_ptr_equal(find(a->path), a);
        for (size_t k = i + 1; k < api_dashboard_n_assets; k++) {
            const struct api_asset *b = &api_dashboard_assets[k];
            assert_string_not_equal(a->path, b->path);
            if (a->len != b->len || memcmp(a->data, b->data, a->len) != 0)
                assert_string_not_equal(a->etag, b->etag);
        }
    }
}

/* What index.html loads is embedded, and it has no inline script (the CSP allows only
 * 'self'): every <script has a src. */
static void test_index_references(void **state)
{
    UNUSED(state);
    const struct api_asset *index = find("index.html");
    char *html = test_malloc(index->len + 1);
    memcpy(html, index->data, index->len);
    html[index->len] = 0;
    int refs = 0;
    for (const char *attr_name = "src=\""; attr_name;
         attr_name = strcmp(attr_name, "src=\"") == 0 ? "href=\"" : NULL) {
        for (const char *p = strstr(html, attr_name); p; p = strstr(p + 1, attr_name)) {
            const char *v = p + strlen(attr_name);
            const char *end = strchr(v, '"');
            assert_non_null(end);
            if (v[0] == '#')
                continue; /* in-page links */
            char ref[256];
            snprintf(ref, sizeof(ref), "%.*s", (int)(end - v), v);
            if (!find(ref))
                fail_msg("index.html references %s, which is not embedded", ref);
            refs++;
        }
    }
    assert_true(refs >= 4);
    int scripts = 0;
    for (const char *p = strstr(html, "<script"); p; p = strstr(p + 1, "<script")) {
        const char *close = strchr(p, '>');
        assert_non_null(close);
        assert_true(contains(p, (size_t)(close - p), " src="));
        scripts++;
    }
    assert_int_equal(scripts, 2);
    assert_null(strstr(html, " style="));
    assert_null(strstr(html, "<style"));
    test_free(html);
}

static void test_etag_matches(void **state)
{
    UNUSED(state);
    const char *etag = "\"abc-12\"";
    assert_true(api__etag_matches("\"abc-12\"", etag));
    assert_true(api__etag_matches("W/\"abc-12\"", etag)); /* weak comparison */
    assert_true(api__etag_matches("\"x\", \"abc-12\"", etag));
    assert_true(api__etag_matches("\"x\",W/\"abc-12\" ,\"y\"", etag));
    assert_true(api__etag_matches("*", etag));
    assert_true(api__etag_matches("  *", etag));

    assert_false(api__etag_matches(NULL, etag));
    assert_false(api__etag_matches("", etag));
    assert_false(api__etag_matches("\"abc-1\"", etag));
    assert_false(api__etag_matches("\"abc-123\"", etag));
    assert_false(api__etag_matches("abc-12", etag));                /* unquoted */
    assert_false(api__etag_matches("\"abc-12", etag));              /* unterminated */
    assert_false(api__etag_matches("w/\"abc-12\"", etag));          /* W/ is case-sensitive */
    assert_false(api__etag_matches("\"x\" junk \"abc-12\"", etag)); /* malformed list */
    assert_false(api__etag_matches("\"\"", etag));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_index_references),
        cmocka_unit_test(test_etag_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
