/* Configuration: defaults, environment, command line, precedence, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/core.h"

static int load(struct cfg *c, char **argv, char **envp, char *err)
{
    int argc = 0;
    while (argv && argv[argc])
        argc++;
    return cfg_load(c, argc, argv, envp, err, 256);
}

static void test_defaults(void **state)
{
    UNUSED(state);
    struct cfg c;
    char err[256];
    assert_int_equal(load(&c, NULL, NULL, err), 0);
    assert_string_equal(c.http, "127.0.0.1:8090");
    assert_string_equal(c.dir, "./tandem_data");
    assert_string_equal(c.log_level, "info");
    assert_int_equal(c.max_body, 32 * 1024 * 1024);
    assert_int_equal(c.idle_timeout, 60);
    assert_int_equal(c.threads, 0);
}

static void test_env_then_argv(void **state)
{
    UNUSED(state);
    struct cfg c;
    char err[256];
    char *env[] = {"PATH=/bin",
                   "TANDEM_DIR=/tmp/envdir",
                   "TANDEM_MAX_BODY=1MiB",
                   "TANDEM_HTTP=0.0.0.0:1",
                   "TANDEM_UNKNOWN=x",
                   NULL};
    char *argv[] = {"--http", "127.0.0.1:0", "--max-body=512k", "--idle-timeout", "2m", NULL};
    assert_int_equal(load(&c, argv, env, err), 0);
    assert_string_equal(c.dir, "/tmp/envdir");  /* from the environment */
    assert_string_equal(c.http, "127.0.0.1:0"); /* argv wins over the environment */
    assert_int_equal(c.max_body, 512 * 1024);   /* argv wins */
    assert_int_equal(c.idle_timeout, 120);
}

static void test_sizes_and_durations(void **state)
{
    UNUSED(state);
    struct cfg c;
    char err[256];
    struct {
        const char *arg;
        int64_t want;
    } sizes[] = {{"--max-body=1", 1},
                 {"--max-body=10b", 10},
                 {"--max-body=2KiB", 2048},
                 {"--max-body=3mb", 3 << 20},
                 {"--max-body=1G", 1 << 30}};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        char *argv[] = {(char *)sizes[i].arg, NULL};
        assert_int_equal(load(&c, argv, NULL, err), 0);
        assert_int_equal(c.max_body, sizes[i].want);
    }
    char *argv[] = {"--idle-timeout=1h", NULL};
    assert_int_equal(load(&c, argv, NULL, err), 0);
    assert_int_equal(c.idle_timeout, 3600);
}

static void test_errors_name_the_option(void **state)
{
    UNUSED(state);
    struct cfg c;
    char err[256];
    struct {
        const char *argv[3];
        const char *want;
    } cases[] = {
        {{"--nope", "1"}, "unknown option --nope"},
        {{"--nope=1"}, "unknown option --nope"},
        {{"--max-body", "lots"}, "invalid value 'lots' for --max-body"},
        {{"--max-body=0"}, "invalid value '0' for --max-body"},
        {{"--max-body=99999999999999999999999"}, "for --max-body"},
        {{"--idle-timeout=5x"}, "invalid value '5x' for --idle-timeout"},
        {{"--threads=-1"}, "invalid value '-1' for --threads"},
        {{"--threads=1000"}, "for --threads"},
        {{"--http"}, "option --http needs a value"},
        {{"--http="}, "invalid value '' for --http"},
        {{"serve"}, "unexpected argument 'serve'"},
        {{"-x"}, "unexpected argument '-x'"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int argc = cases[i].argv[1] ? 2 : 1;
        err[0] = '\0';
        assert_int_equal(cfg_load(&c, argc, (char **)cases[i].argv, NULL, err, sizeof(err)),
                         ERR_INVALID);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: '%s' does not contain '%s'", i, err, cases[i].want);
    }
    char *env[] = {"TANDEM_MAX_BODY=huge", NULL};
    assert_int_equal(load(&c, NULL, env, err), ERR_INVALID);
    assert_non_null(strstr(err, "TANDEM_MAX_BODY"));
}

/* --public may be set empty (off); --index-fallback is a boolean that also stands alone. */
static void test_public_and_booleans(void **state)
{
    UNUSED(state);
    struct cfg c;
    char err[256];
    assert_int_equal(load(&c, NULL, NULL, err), 0);
    assert_string_equal(c.public_dir, "auto");
    assert_true(c.index_fallback);

    char *a1[] = {"--public", "", "--index-fallback", "off", NULL};
    assert_int_equal(load(&c, a1, NULL, err), 0);
    assert_string_equal(c.public_dir, "");
    assert_false(c.index_fallback);
    assert_true(cfg_given(&c, "public"));

    char *env[] = {"TANDEM_INDEX_FALLBACK=false", "TANDEM_PUBLIC=/srv/www", NULL};
    char *a2[] = {"--index-fallback", "--threads", "2", NULL}; /* bare: true */
    assert_int_equal(load(&c, a2, env, err), 0);
    assert_true(c.index_fallback);
    assert_string_equal(c.public_dir, "/srv/www");
    assert_int_equal(c.threads, 2);

    char *a3[] = {"--index-fallback", NULL}; /* last argument */
    assert_int_equal(load(&c, a3, env, err), 0);
    assert_true(c.index_fallback);
    char *a4[] = {"--index-fallback=NO", NULL};
    assert_int_equal(load(&c, a4, NULL, err), 0);
    assert_false(c.index_fallback);

    char *a5[] = {"--index-fallback=maybe", NULL};
    assert_int_equal(load(&c, a5, NULL, err), ERR_INVALID);
    assert_non_null(strstr(err, "invalid value 'maybe' for --index-fallback"));
    /* other strings still refuse the empty value */
    char *a6[] = {"--dir", "", NULL};
    assert_int_equal(load(&c, a6, NULL, err), ERR_INVALID);
}

static void test_help_lists_every_option(void **state)
{
    UNUSED(state);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_print_help(f);
    fclose(f);
    for (const struct cfg_opt *o = cfg_opts; o->name; o++) {
        char want[64];
        snprintf(want, sizeof(want), "--%s", o->name);
        assert_non_null(strstr(text, want));
        assert_non_null(strstr(text, o->env));
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_then_argv),
        cmocka_unit_test(test_sizes_and_durations),
        cmocka_unit_test(test_errors_name_the_option),
        cmocka_unit_test(test_public_and_booleans),
        cmocka_unit_test(test_help_lists_every_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
