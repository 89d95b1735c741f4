/* The warehouse's erasure of a person (wh_erase_persons) and of deleted app records' history
 * (wh_erase_records) on a real DuckDB file: exactly the matching rows of events, changes and
 * _rejects go (a reject's payload matched by its members, a payload that is not JSON kept),
 * every other row stays, a second run changes nothing, and the matching values are no longer
 * in the file or its WAL. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "warehouse/warehouse.h"
#include "wh_test_util.h"

struct fx {
    char path[1024];
    struct wh *wh;
    struct wh_conn *c;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(wht_open(f->path, sizeof(f->path), "erase", &f->wh, &f->c), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    wht_close(f->path, f->wh, f->c);
    free(f);
    return 0;
}

/* Whether the file at path or its WAL holds needle. */
static bool on_disk(const char *path, const char *needle)
{
    char wal[1100];
    snprintf(wal, sizeof(wal), "%s.wal", path);
    const char *const files[] = {path, wal};
    bool found = false;
    for (size_t i = 0; i < ARRAY_LEN(files) && !found; i++) {
        FILE *fp = fopen(files[i], "rb");
        if (!fp)
            continue;
        struct buf b;
        buf_init(&b);
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
            buf_append(&b, chunk, n);
        fclose(fp);
        found = memmem(b.ptr, b.len, needle, strlen(needle)) != NULL;
        buf_release(&b);
    }
    return found;
}

static void test_persons_events_and_rejects(void **state)
{
    struct fx *f = *state;
    struct wh_event ev[3] = {
        {.log_offset = 0,
         .id = "m0",
         .type = "track",
         .event = "E",
         .user_id = "u1",
         .properties = "{\"v\":\"SECRET-EV-U1\"}"},
        {.log_offset = 1,
         .id = "m1",
         .type = "track",
         .event = "E",
         .anonymous_id = "other",
         .properties = "{\"v\":\"KEEP\"}"},
        {.log_offset = 2,
         .id = "m2",
         .type = "track",
         .event = "E",
         .anonymous_id = "a1",
         .properties = "{}"},
    };
    static const char p3[] = "{\"userId\":\"u1\",\"bad\":\"SECRET-REJ-U1\"}";
    static const char p4[] = "{\"anonymousId\":\"other\",\"bad\":1}";
    static const char p5[] = "\xff not json u1";
    static const char p6[] = "{\"previousId\":\"a1\"}";
    struct wh_reject rej[4] = {
        {.log_offset = 3, .reason = "bad", .payload = p3, .payload_len = sizeof(p3) - 1},
        {.log_offset = 4, .reason = "bad", .payload = p4, .payload_len = sizeof(p4) - 1},
        {.log_offset = 5, .reason = "bad", .payload = p5, .payload_len = sizeof(p5) - 1},
        {.log_offset = 6, .reason = "bad", .payload = p6, .payload_len = sizeof(p6) - 1},
    };
    struct wh_load ld = {.consumer = "warehouse-events",
                         .topic = "events",
                         .next_offset = 7,
                         .rejects = rej,
                         .n_rejects = 4};
    struct wh_load_stats st;
    assert_int_equal(wh_load_events(f->c, &ld, ev, 3, &st), 0);
    assert_int_equal(wh_checkpoint(f->c, true), 0);
    assert_true(on_disk(f->path, "SECRET-REJ-U1"));

    const char *ids[] = {"u1", "a1"};
    uint64_t n = 0;
    assert_int_equal(wh_erase_persons(f->c, ids, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_rows(f->c, "SELECT log_offset FROM events ORDER BY 1", "[[1]]");
    assert_rows(f->c, "SELECT log_offset FROM _rejects ORDER BY 1", "[[4],[5]]");
    assert_false(on_disk(f->path, "SECRET-REJ-U1"));
    assert_false(on_disk(f->path, "SECRET-EV-U1"));
    /* again: nothing more */
    assert_int_equal(wh_erase_persons(f->c, ids, 2, &n), 0);
    assert_int_equal(n, 0);
    assert_rows(f->c, "SELECT count(*) FROM _rejects", "[[2]]");
}

static void test_records_changes_and_rejects(void **state)
{
    struct fx *f = *state;
    json_t *r1 = json_pack("{s:s,s:s}", "id", "r1", "email", "SECRET-R1@example.org");
    json_t *r1b = json_pack("{s:s,s:s}", "id", "r1", "email", "SECRET-R1B@example.org");
    json_t *r2 = json_pack("{s:s,s:s}", "id", "r2", "email", "keep@example.org");
    json_t *r1c2 = json_pack("{s:s}", "id", "r1");
    struct wh_change ch[5] = {
        {.log_offset = 0,
         .id = 1,
         .collection = "users",
         .collection_id = "c1",
         .record_id = "r1",
         .action = WH_ACTION_CREATE,
         .record = r1},
        {.log_offset = 1,
         .id = 2,
         .collection = "users",
         .collection_id = "c1",
         .record_id = "r2",
         .action = WH_ACTION_CREATE,
         .record = r2},
        {.log_offset = 2,
         .id = 3,
         .collection = "users",
         .collection_id = "c1",
         .record_id = "r1",
         .action = WH_ACTION_UPDATE,
         .record = r1b},
        {.log_offset = 3,
         .id = 4,
         .collection = "posts",
         .collection_id = "c2",
         .record_id = "r1",
         .action = WH_ACTION_CREATE,
         .record = r1c2},
        {.log_offset = 4,
         .id = 5,
         .collection = "users",
         .collection_id = "c1",
         .record_id = "r1",
         .action = WH_ACTION_DELETE,
         .record = r1b},
    };
    static const char p5[] =
        "{\"collectionId\":\"c1\",\"recordId\":\"r1\",\"record\":\"SECRET-REJ-R1\"}";
    static const char p6[] = "{\"collectionId\":\"c2\",\"recordId\":\"r1\"}";
    struct wh_reject rej[2] = {
        {.log_offset = 5, .reason = "bad", .payload = p5, .payload_len = sizeof(p5) - 1},
        {.log_offset = 6, .reason = "bad", .payload = p6, .payload_len = sizeof(p6) - 1},
    };
    struct wh_load ld = {.consumer = "warehouse-changes",
                         .topic = "changes",
                         .next_offset = 7,
                         .rejects = rej,
                         .n_rejects = 2};
    struct wh_load_stats st;
    assert_int_equal(wh_load_changes(f->c, &ld, ch, 5, &st), 0);
    assert_int_equal(wh_checkpoint(f->c, true), 0);
    assert_true(on_disk(f->path, "SECRET-R1B@example.org"));

    const char *colls[] = {"c1"}, *recs[] = {"r1"};
    uint64_t n = 0;
    assert_int_equal(wh_erase_records(f->c, colls, recs, 1, &n), 0);
    assert_int_equal(n, 3);
    assert_rows(f->c, "SELECT log_offset FROM changes ORDER BY 1", "[[1],[3]]");
    assert_rows(f->c, "SELECT log_offset FROM _rejects ORDER BY 1", "[[6]]");
    assert_false(on_disk(f->path, "SECRET-R1@example.org"));
    assert_false(on_disk(f->path, "SECRET-R1B@example.org"));
    assert_false(on_disk(f->path, "SECRET-REJ-R1"));
    assert_int_equal(wh_erase_records(f->c, colls, recs, 1, &n), 0);
    assert_int_equal(n, 0);
    json_decref(r1);
    json_decref(r1b);
    json_decref(r2);
    json_decref(r1c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_persons_events_and_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_changes_and_rejects, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
