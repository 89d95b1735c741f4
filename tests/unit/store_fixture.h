/* store_fixture.h - helpers for the store tests: a fresh database directory under $TMPDIR,
 * JSON literals, direct SQL peeks through a separate sqlite3 handle. */
#ifndef TANDEM_TESTS_STORE_FIXTURE_H
#define TANDEM_TESTS_STORE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

struct fx {
    char dir[512];
    struct store *st;
};

static inline void fx_open(struct fx *fx)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof(fx->dir), "%s/storeXXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    struct store_cfg cfg = {.dir = fx->dir};
    char err[256];
    int rc = store_open(&cfg, &fx->st, err, sizeof(err));
    if (rc)
        fail_msg("store_open: %s", err);
}

static inline void fx_reopen(struct fx *fx)
{
    store_close(fx->st);
    struct store_cfg cfg = {.dir = fx->dir};
    char err[256];
    int rc = store_open(&cfg, &fx->st, err, sizeof(err));
    if (rc)
        fail_msg("store_open: %s", err);
}

static inline void fx_close(struct fx *fx)
{
    store_close(fx->st);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        fail_msg("cannot remove %s", fx->dir);
}

static inline json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("bad JSON in test: %s: %s", text, e.text);
    return j;
}

/* Creates a collection from JSON text; fails the test on error. RETURNS a reference. */
static inline struct store_collection *fx_coll(struct fx *fx, const char *spec)
{
    json_t *j = J(spec);
    json_t *errors = NULL;
    struct store_collection *c = NULL;
    int rc = store_collection_create(fx->st, j, &errors, &c);
    if (rc) {
        char *e = errors ? json_dumps(errors, 0) : NULL;
        fail_msg("collection create failed: %s %s %s", err_str(rc), e ? e : "",
                 store_errmsg(fx->st));
    }
    json_decref(j);
    return c;
}

/* Creates a record; fails the test on error. RETURNS the record (decref it). */
static inline json_t *fx_rec(struct fx *fx, const struct store_collection *c, const char *body)
{
    json_t *j = J(body);
    json_t *errors = NULL, *rec = NULL;
    int rc = store_record_create(fx->st, c, j, NULL, &errors, &rec);
    if (rc) {
        char *e = errors ? json_dumps(errors, 0) : NULL;
        fail_msg("record create failed: %s %s %s", err_str(rc), e ? e : "", store_errmsg(fx->st));
    }
    json_decref(j);
    return rec;
}

/* Expects a failed create with errors[field].code == code. */
static inline void fx_rec_invalid(struct fx *fx, const struct store_collection *c, const char *body,
                                  const char *field, const char *code)
{
    json_t *j = J(body);
    json_t *errors = NULL, *rec = NULL;
    int rc = store_record_create(fx->st, c, j, NULL, &errors, &rec);
    if (rc != ERR_INVALID)
        fail_msg("expected ERR_INVALID for %s, got %s", body, err_str(rc));
    json_t *e = json_object_get(errors, field);
    if (!e) {
        char *t = json_dumps(errors, 0);
        fail_msg("no error on %s for %s: %s", field, body, t);
    }
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    assert_null(rec);
    json_decref(errors);
    json_decref(j);
}

/* One integer from a SQL query on a separate connection. */
static inline long long fx_sql_int(struct fx *fx, const char *sql)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db", fx->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("bad test SQL %s: %s", sql, sqlite3_errmsg(db));
    long long v = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Up to max outbox rows with id > after_id as a JSON array of {"id","collectionId",
 * "collection","recordId","action","record","time"} (record parsed), for assertions. */
static inline int store_outbox_read(struct store *st, int64_t after_id, size_t max, json_t **out)
{
    struct store_outbox_row *rows = NULL;
    size_t n = 0;
    int rc = store_outbox_rows(st, after_id, max, &rows, &n);
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *rec =
            rows[i].record ? json_loadb(rows[i].record, rows[i].record_len, 0, NULL) : NULL;
        json_array_append_new(
            arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:s}", "id", (json_int_t)rows[i].id,
                           "collectionId", rows[i].collection_id, "collection", rows[i].collection,
                           "recordId", rows[i].record_id, "action", rows[i].action, "record",
                           rec ? rec : json_null(), "time", rows[i].time));
    }
    store_outbox_rows_free(rows, n);
    *out = arr;
    return 0;
}

#endif
