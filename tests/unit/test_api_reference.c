/* docs/api.md against the real route table: every route api_register installs has a row in
 * the reference, and every row names a route that exists. A route row is a table row whose
 * first cell is `METHOD /path` (METHOD in capitals; ANY for the static-files fallback, which
 * takes every method); other rows and text are prose. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"

#ifndef TANDEM_SOURCE_DIR
#error "TANDEM_SOURCE_DIR must name the source tree (CMakeLists.txt sets it)"
#endif

struct route_set {
    char **items; /* "METHOD /pattern" */
    size_t n;
};

static void set_add(struct route_set *s, const char *method, const char *pattern)
{
    char line[512];
    snprintf(line, sizeof(line), "%s %s", strcmp(method, "*") == 0 ? "ANY" : method, pattern);
    s->items = xrealloc(s->items, (s->n + 1) * sizeof(*s->items));
    s->items[s->n++] = xstrdup(line);
}

static bool set_has(const struct route_set *s, const char *item)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->items[i], item) == 0)
            return true;
    return false;
}

static void set_release(struct route_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

static void on_route(void *arg, const char *method, const char *pattern)
{
    set_add(arg, method, pattern);
}

static bool is_method(const char *s, size_t len)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "ANY"};
    for (size_t i = 0; i < ARRAY_LEN(methods); i++)
        if (strlen(methods[i]) == len && memcmp(methods[i], s, len) == 0)
            return true;
    return false;
}

/* The route rows of a reference text, in order; counts rows naming a route twice. */
static void parse_reference(const char *text, struct route_set *out, size_t *n_dup_out)
{
    *n_dup_out = 0;
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > 3 && memcmp(line, "| `", 3) == 0) {
            const char *cell = line + 3;
            const char *tick = memchr(cell, '`', len - 3);
            const char *sp = tick ? memchr(cell, ' ', (size_t)(tick - cell)) : NULL;
            if (sp && is_method(cell, (size_t)(sp - cell)) && sp[1] == '/' &&
                !memchr(sp + 1, ' ', (size_t)(tick - sp - 1))) {
                char method[16], pattern[400];
                snprintf(method, sizeof(method), "%.*s", (int)(sp - cell), cell);
                snprintf(pattern, sizeof(pattern), "%.*s", (int)(tick - sp - 1), sp + 1);
                struct route_set one = {0};
                set_add(&one, method, pattern);
                if (set_has(out, one.items[0])) {
                    print_message("docs/api.md names `%s` twice\n", one.items[0]);
                    (*n_dup_out)++;
                } else {
                    set_add(out, method, pattern);
                }
                set_release(&one);
            }
        }
        line += len + (eol ? 1 : 0);
    }
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct buf b;
    buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    buf_cstr(&b);
    size_t len;
    return buf_detach(&b, &len);
}

/* Only the route rows count; prose, other tables and malformed cells do not. */
static void test_parser(void **state)
{
    UNUSED(state);
    const char *text = "# title\n"
                       "`GET /not/a/row` in prose\n"
                       "| route | who |\n"
                       "|---|---|\n"
                       "| `GET /api/health` | guest |\n"
                       "| `POST /api/collections/{collection}/records` | rules |\n"
                       "| `ANY /{path...}` | guest |\n"
                       "| `--dir` | an option, not a route |\n"
                       "| `get /lowercase` | not a method |\n"
                       "| `GET /two words` | not a path |\n"
                       "| `GET /api/health` | twice |\n"
                       "| `DELETE /last`";
    struct route_set s = {0};
    size_t dups;
    parse_reference(text, &s, &dups);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.items[0], "GET /api/health");
    assert_string_equal(s.items[1], "POST /api/collections/{collection}/records");
    assert_string_equal(s.items[2], "ANY /{path...}");
    assert_string_equal(s.items[3], "DELETE /last");
    assert_int_equal(dups, 1);
    set_release(&s);
}

/* The real table: api_register with every optional part present, so that every route the
 * server can answer is registered (nothing is dereferenced while registering). */
static void test_reference_matches_router(void **state)
{
    UNUSED(state);
    xlog_set_level(XLOG_OFF);
    static char present;
    struct api_env env = {0};
    env.settings = (struct api_settings *)(void *)&present;
    env.pub = (struct api_public *)(void *)&present;
    struct http_router *r = http_router_new();
    api_register(r, &env);
    struct route_set routes = {0}, documented = {0};
    http_router_each(r, on_route, &routes);
    http_router_free(r);
    assert_true(routes.n >= 40); /* the table was really built */

    char *text = read_file(TANDEM_SOURCE_DIR "/docs/api.md");
    size_t dups;
    parse_reference(text, &documented, &dups);
    free(text);

    size_t missing = 0, stale = 0;
    for (size_t i = 0; i < routes.n; i++)
        if (!set_has(&documented, routes.items[i])) {
            print_message("route without an entry in docs/api.md: `%s`\n", routes.items[i]);
            missing++;
        }
    for (size_t i = 0; i < documented.n; i++)
        if (!set_has(&routes, documented.items[i])) {
            print_message("docs/api.md entry without a route: `%s`\n", documented.items[i]);
            stale++;
        }
    set_release(&routes);
    set_release(&documented);
    assert_int_equal(missing, 0);
    assert_int_equal(stale, 0);
    assert_int_equal(dups, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser),
        cmocka_unit_test(test_reference_matches_router),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
