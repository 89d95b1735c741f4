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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_writes_the_database_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
