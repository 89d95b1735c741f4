/* store_sync: committed transactions reach the database file itself, so a copy of app.db
 * without its WAL (what a power loss can leave when the WAL was never synced) still has them.
 * The outbox relay relies on this before it publishes changes. */
#include "store_fixture.h"

/* Rows of _outbox in a copy of app.db taken without its -wal and -shm files. */
static int64_t outbox_rows_without_wal(const char *dir)
{
    char src[600], dst[600], cmd[2600];
    snprintf(src, sizeof(src), "%s/app.db", dir);
    snprintf(dst, sizeof(dst), "%s/copy.db", dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && rm -f '%s-wal' '%s-shm'", src, dst, dst, dst);
    if (system(cmd) != 0)
        fail_msg("cannot copy %s", src);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(dst, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM _outbox", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_sync_writes_the_database_file(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx);
    json_t *spec = J("{\"name\":\"notes\",\"type\":\"base\",\"fields\":[{\"name\":\"t\","
                     "\"type\":\"text\"}]}");
    struct store_collection *c = NULL;
    json_t *errors = NULL;
    assert_int_equal(store_collection_create(fx.st, spec, &errors, &c), 0);
    json_decref(spec);
    /* a first sync, so only what follows is in the WAL */
    assert_int_equal(store_sync(fx.st), 0);
    int64_t before = outbox_rows_without_wal(fx.dir);
    for (int i = 0; i < 5; i++) {
        json_t *body = J("{\"t\":\"x\"}"), *rec = NULL;
        assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec), 0);
        json_decref(body);
        json_decref(rec);
    }
    /* committed, but (synchronous=NORMAL, WAL) only in the WAL */
    assert_int_equal(outbox_rows_without_wal(fx.dir), before);
    assert_int_equal(store_sync(fx.st), 0);
    assert_int_equal(outbox_rows_without_wal(fx.dir), before + 5);
    store_collection_unref(c);
    fx_close(&fx);
}

static void count_commit(void *arg)
{
    (*(int *)arg)++;
}

/* The outbox hook runs once per COMMIT that added outbox rows, never for one that added none
 * or rolled back; store_outbox_rows gives the rows' stored text; store_sync_commits syncs. */
static void test_outbox_hook_and_rows(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx);
    json_t *spec = J("{\"name\":\"notes\",\"type\":\"base\",\"fields\":[{\"name\":\"t\","
                     "\"type\":\"text\",\"max\":3}]}");
    struct store_collection *c = NULL;
    json_t *errors = NULL;
    assert_int_equal(store_collection_create(fx.st, spec, &errors, &c), 0);
    json_decref(spec);
    int commits = 0;
    store_on_outbox(fx.st, count_commit, &commits);
    json_t *body = J("{\"t\":\"ab\"}"), *rec = NULL;
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec), 0);
    json_decref(body);
    assert_int_equal(commits, 1);
    body = J("{\"t\":\"too long\"}"); /* refused: rolled back */
    json_t *rec2 = NULL;
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec2), ERR_INVALID);
    json_decref(body);
    json_decref(errors);
    assert_int_equal(commits, 1);
    assert_int_equal(store_outbox_delete(fx.st, 0), 0); /* a write without outbox rows */
    assert_int_equal(commits, 1);
    struct store_outbox_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(store_outbox_rows(fx.st, 0, 10, &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].action, "create");
    assert_string_equal(rows[0].collection, "notes");
    assert_string_equal(rows[0].record_id, json_string_value(json_object_get(rec, "id")));
    json_t *stored = json_loadb(rows[0].record, rows[0].record_len, 0, NULL);
    assert_true(json_equal(stored, rec));
    json_decref(stored);
    store_outbox_rows_free(rows, n);
    assert_int_equal(store_sync_commits(fx.st), 0);
    store_on_outbox(fx.st, NULL, NULL);
    body = J("{\"t\":\"cd\"}");
    json_decref(rec);
    assert_int_equal(store_record_create(fx.st, c, body, NULL, &errors, &rec), 0);
    json_decref(body);
    json_decref(rec);
    assert_int_equal(commits, 1);
    store_collection_unref(c);
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_writes_the_database_file),
        cmocka_unit_test(test_outbox_hook_and_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
