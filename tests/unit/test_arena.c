/* Arena: alignment, large allocations, cleanups in reverse order, printf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdalign.h>
#include <string.h>

#include "core/core.h"

static void test_alignment_and_contents(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 256);
    char *prev = NULL;
    for (int i = 1; i < 200; i++) {
        char *p = arena_alloc(&a, (size_t)i);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        memset(p, i & 0xff, (size_t)i);
        if (prev)
            assert_int_equal((unsigned char)prev[0], (i - 1) & 0xff); /* not overwritten */
        prev = p;
    }
    assert_int_equal(a.n_bytes, 199 * 200 / 2);
    arena_release(&a);
    assert_int_equal(a.n_bytes, 0);
}

static void test_large_and_zero(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 1024);
    char *small = arena_alloc(&a, 10);
    char *big = arena_zalloc(&a, 1 << 20);
    for (size_t i = 0; i < (1 << 20); i += 4096)
        assert_int_equal(big[i], 0);
    memset(big, 7, 1 << 20);
    char *after = arena_alloc(&a, 10);
    strcpy(small, "small");
    strcpy(after, "after");
    assert_string_equal(small, "small");
    assert_int_equal(big[(1 << 20) - 1], 7);
    assert_non_null(arena_alloc(&a, 0));
    arena_release(&a);
}

static int order[4];
static int n_order;
static void record(void *arg)
{
    order[n_order++] = (int)(intptr_t)arg;
}

static void test_cleanups_reverse(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 0);
    n_order = 0;
    for (intptr_t i = 1; i <= 3; i++)
        arena_on_release(&a, record, (void *)i);
    arena_release(&a);
    assert_int_equal(n_order, 3);
    assert_int_equal(order[0], 3);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 1);
    /* release twice is harmless */
    arena_release(&a);
    assert_int_equal(n_order, 3);
}

static void test_strings(void **state)
{
    UNUSED(state);
    struct arena a;
    arena_init(&a, 64);
    assert_string_equal(arena_strndup(&a, "abcdef", 3), "abc");
    assert_string_equal(arena_strdup(&a, ""), "");
    char *s = arena_printf(&a, "%s-%d-%0300d", "x", 42, 7);
    assert_int_equal(strlen(s), 5 + 300);
    assert_memory_equal(s, "x-42-", 5);
    arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_contents),
        cmocka_unit_test(test_large_and_zero),
        cmocka_unit_test(test_cleanups_reverse),
        cmocka_unit_test(test_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
