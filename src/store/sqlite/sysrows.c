/* sysrows.c - the store's system rows (_sysrows): small server-side records that are not
 * collections - the mail queue and its dead letters, one-time passwords, MFA sessions and
 * the devices an auth record signed in from. Keyed by (kind, id); ref names what a row
 * belongs to (an auth record), due_us orders a queue. */
#include <string.h>

#include "store/sqlite/sqlite_int.h"

static void bind_text_or_empty(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

int sq__sys_put(struct store *st, const struct store_sysrow *row)
{
    struct sq_store *s = (struct sq_store *)st;
    char *text = json_dumps(row->value, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text)
        return ERR_INVALID;
    struct sq_conn *cn = sq__conn(s);
    if (!cn) {
        free(text);
        return ERR_INTERNAL;
    }
    int rc = sq__begin(s, cn);
    if (rc) {
        free(text);
        return rc;
    }
    struct sq_stmt stt;
    rc = sq__prep(cn,
                  "INSERT INTO \"_sysrows\" (\"kind\", \"id\", \"ref\", \"value\", \"created_us\", "
                  "\"due_us\") VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (\"kind\", \"id\") DO "
                  "UPDATE SET \"ref\" = excluded.\"ref\", \"value\" = excluded.\"value\", "
                  "\"due_us\" = excluded.\"due_us\"",
                  &stt);
    if (!rc) {
        bind_text_or_empty(stt.stmt, 1, row->kind);
        bind_text_or_empty(stt.stmt, 2, row->id);
        bind_text_or_empty(stt.stmt, 3, row->ref);
        sqlite3_bind_text(stt.stmt, 4, text, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(stt.stmt, 5, row->created_us ? row->created_us : time_now_us());
        sqlite3_bind_int64(stt.stmt, 6, row->due_us);
        if (sqlite3_step(stt.stmt) != SQLITE_DONE)
            rc = sq__fail_db(cn, "cannot write a system row");
        sq__done(&stt);
    }
    free(text);
    if (rc) {
        sq__rollback(s, cn);
        return rc;
    }
    return sq__commit(s, cn);
}

int sq__sys_take(struct store *st, const char *kind, const char *id)
{
    const char *p[] = {kind ? kind : "", id ? id : ""};
    int changes = 0;
    int rc = sq__write_one((struct sq_store *)st,
                           "DELETE FROM \"_sysrows\" WHERE \"kind\" = ?1 AND \"id\" = ?2", p, 2,
                           &changes);
    return rc ? rc : changes ? 0 : ERR_NOTFOUND;
}

/* One row of a SELECT of kind, id, ref, value, created_us, due_us as JSON. */
static json_t *row_json(sqlite3_stmt *st)
{
    const char *value = (const char *)sqlite3_column_text(st, 3);
    json_t *v = value ? json_loads(value, 0, NULL) : NULL;
    if (!v)
        return NULL;
    return json_pack("{s:s,s:s,s:o,s:I,s:I}", "id", (const char *)sqlite3_column_text(st, 1), "ref",
                     (const char *)sqlite3_column_text(st, 2), "value", v, "created_us",
                     (json_int_t)sqlite3_column_int64(st, 4), "due_us",
                     (json_int_t)sqlite3_column_int64(st, 5));
}

int sq__sys_list(struct store *st, const char *kind, const char *id, const char *ref,
                 int64_t due_before_us, size_t max, json_t **out)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    struct sq_stmt stt;
    int rc = sq__prep(cn,
                      "SELECT \"kind\", \"id\", \"ref\", \"value\", \"created_us\", \"due_us\" "
                      "FROM \"_sysrows\" WHERE \"kind\" = ?1 AND (?2 IS NULL OR \"id\" = ?2) "
                      "AND (?3 IS NULL OR \"ref\" = ?3) AND (?4 = 0 OR \"due_us\" <= ?4) "
                      "ORDER BY \"due_us\", \"created_us\", \"id\" LIMIT ?5",
                      &stt);
    if (rc)
        return rc;
    bind_text_or_empty(stt.stmt, 1, kind);
    if (id)
        sqlite3_bind_text(stt.stmt, 2, id, -1, SQLITE_TRANSIENT);
    if (ref)
        sqlite3_bind_text(stt.stmt, 3, ref, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stt.stmt, 4, due_before_us);
    sqlite3_bind_int64(stt.stmt, 5, (sqlite3_int64)(max > INT32_MAX ? INT32_MAX : max));
    json_t *arr = json_array();
    int step;
    while ((step = sqlite3_step(stt.stmt)) == SQLITE_ROW) {
        json_t *r = row_json(stt.stmt);
        if (!r) {
            rc = sq__fail(cn, ERR_CORRUPT, "a system row of kind %s is not JSON", kind);
            break;
        }
        json_array_append_new(arr, r);
    }
    if (!rc && step != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot read system rows");
    sq__done(&stt);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

int sq__sys_count(struct store *st, const char *kind, int64_t *n_out)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    struct sq_stmt stt;
    int rc = sq__prep(cn, "SELECT count(*) FROM \"_sysrows\" WHERE \"kind\" = ?1", &stt);
    if (rc)
        return rc;
    bind_text_or_empty(stt.stmt, 1, kind);
    if (sqlite3_step(stt.stmt) == SQLITE_ROW)
        *n_out = sqlite3_column_int64(stt.stmt, 0);
    else
        rc = sq__fail_db(cn, "cannot count system rows");
    sq__done(&stt);
    return rc;
}
