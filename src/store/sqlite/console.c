/* console.c - the SQL console (store_sql): one statement on the application database, with
 * change capture below the SQL.
 *
 * A statement that writes runs in a write transaction (write_mu, BEGIN IMMEDIATE) with
 * SQLite's pre-update hook installed. The hook notes each record of a collection table that a
 * row change touches: its id, whether it existed before (a delete or an update reached it)
 * and, the first time, its image before (from the old column values). After the statement,
 * still in the transaction, each noted record is read again: created (absent before, present
 * after), updated (present both times), deleted (present before, absent after) or nothing
 * (made and removed by the same statement). Each gets the outbox row the records API would
 * have written, and everything commits together: the relay, the mirrors and realtime see the
 * change exactly once. Triggers and cascades are seen too (the hook fires for them).
 *
 * An authorizer, set while the statement is prepared, refuses what would take the catalog or
 * the capture out of step: schema changes of collection and system tables, writes to system
 * tables, ATTACH, PRAGMA assignments and transaction control. */
/* the pre-update hook's declarations (Debian's libsqlite3 is built with it; checked by the
 * build, which links sqlite3_preupdate_hook) */
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "store/sqlite/sqlite_int.h"

#define MAX_TOUCHED 100000 /* records one console statement may change */

struct touched {
    const struct store_collection *c;
    char *id;
    bool before;
    json_t *image_before; /* on a delete or update: the image the record had */
};

struct console {
    struct sq_conn *cn;
    struct store_collection **cols;
    size_t n_cols;
    int **cids;  /* per collection: the table column of each field, or -1 */
    int *id_cid; /* per collection: the column of "id" */
    struct touched *t;
    size_t n_t, cap_t;
    bool overflow;
    char denied[300];
};

static const struct store_collection *find_col(struct console *k, const char *table, size_t *idx)
{
    for (size_t i = 0; table && i < k->n_cols; i++) {
        if (strcmp(k->cols[i]->name, table) == 0) {
            *idx = i;
            return k->cols[i];
        }
    }
    return NULL;
}

/* System tables: the store's own (a leading '_') that are no collection, and SQLite's. */
static bool system_table(struct console *k, const char *table)
{
    size_t i;
    if (!table)
        return false;
    if (strncmp(table, "sqlite_", 7) == 0)
        return true;
    return table[0] == '_' && !find_col(k, table, &i);
}

static int deny(struct console *k, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int deny(struct console *k, const char *fmt, ...)
{
    if (!k->denied[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(k->denied, sizeof(k->denied), fmt, ap);
        va_end(ap);
    }
    return SQLITE_DENY;
}

static int authorize(void *arg, int action, const char *a1, const char *a2, const char *db,
                     const char *trigger)
{
    struct console *k = arg;
    (void)db;
    (void)trigger;
    size_t i;
    const char *table = NULL;
    switch (action) {
    case SQLITE_CREATE_TABLE:
    case SQLITE_DROP_TABLE:
    case SQLITE_CREATE_VIEW:
    case SQLITE_DROP_VIEW:
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE: table = a1; break;
    case SQLITE_CREATE_INDEX:
    case SQLITE_DROP_INDEX:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_DROP_TRIGGER:
    case SQLITE_ALTER_TABLE: table = a2; break;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
        /* DDL writes the schema table: the DDL codes above decide about it */
        if (a1 && (strcmp(a1, "sqlite_master") == 0 || strcmp(a1, "sqlite_schema") == 0 ||
                   strcmp(a1, "sqlite_temp_master") == 0 || strcmp(a1, "sqlite_temp_schema") == 0))
            return SQLITE_OK;
        if (system_table(k, a1))
            return deny(k, "Writes to the system table %s are not allowed.", a1);
        /* IGNORE on a DELETE keeps it but turns off the truncate optimization, which would
         * empty a table without a pre-update call per row */
        return action == SQLITE_DELETE ? SQLITE_IGNORE : SQLITE_OK;
    case SQLITE_ATTACH:
    case SQLITE_DETACH: return deny(k, "ATTACH and DETACH are not allowed.");
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
        return deny(k, "Transaction control is not allowed: each statement is its own "
                       "transaction.");
    case SQLITE_PRAGMA: {
        /* the pragmas that take an argument only to say what to read */
        static const char *const readers[] = {
            "table_info",  "table_xinfo",      "index_list",        "index_info",
            "index_xinfo", "foreign_key_list", "foreign_key_check", "integrity_check",
            "quick_check", "table_list"};
        for (size_t r = 0; a2 && r < sizeof(readers) / sizeof(readers[0]); r++)
            if (strcasecmp(a1, readers[r]) == 0)
                return SQLITE_OK;
        if (a2)
            return deny(k, "PRAGMA %s cannot be set here.", a1);
        return SQLITE_OK;
    }
    default: return SQLITE_OK;
    }
    if (find_col(k, table, &i))
        return deny(k,
                    "%s is a collection table: change its schema through /api/collections, not "
                    "SQL.",
                    table);
    if (system_table(k, table))
        return deny(k, "%s is a system table: its schema cannot be changed.", table);
    return SQLITE_OK;
}

static void note(struct console *k, const struct store_collection *c, size_t ci, sqlite3 *db,
                 bool old_side, bool before)
{
    sqlite3_value *v = NULL;
    int rc = old_side ? sqlite3_preupdate_old(db, k->id_cid[ci], &v)
                      : sqlite3_preupdate_new(db, k->id_cid[ci], &v);
    const char *id = rc == SQLITE_OK ? (const char *)sqlite3_value_text(v) : NULL;
    if (!id)
        return;
    for (size_t i = 0; i < k->n_t; i++)
        if (k->t[i].c == c && strcmp(k->t[i].id, id) == 0)
            return; /* the first sighting decides "before" and holds the old image */
    if (k->n_t == MAX_TOUCHED) {
        k->overflow = true;
        return;
    }
    if (k->n_t == k->cap_t) {
        k->cap_t = k->cap_t ? k->cap_t * 2 : 16;
        k->t = xrealloc(k->t, k->cap_t * sizeof(*k->t));
    }
    struct touched *t = &k->t[k->n_t++];
    *t = (struct touched){.c = c, .id = xstrdup(id), .before = before};
    if (!before)
        return;
    json_t *img = json_object();
    json_object_set_new(img, "collectionId", json_string(c->id));
    json_object_set_new(img, "collectionName", json_string(c->name));
    for (size_t f = 0; f < c->n_fields; f++) {
        sqlite3_value *fv = NULL;
        if (k->cids[ci][f] < 0 || sq__secret_field(c, &c->fields[f]) ||
            sqlite3_preupdate_old(db, k->cids[ci][f], &fv) != SQLITE_OK)
            continue;
        json_object_set_new(img, c->fields[f].name, sq__value_json(&c->fields[f], fv));
    }
    t->image_before = img;
}

static void preupdate(void *arg, sqlite3 *db, int op, const char *zdb, const char *table,
                      sqlite3_int64 key1, sqlite3_int64 key2)
{
    struct console *k = arg;
    (void)key1;
    (void)key2;
    size_t ci;
    const struct store_collection *c = strcmp(zdb, "main") == 0 ? find_col(k, table, &ci) : NULL;
    if (!c)
        return;
    if (op == SQLITE_DELETE || op == SQLITE_UPDATE)
        note(k, c, ci, db, true, true);
    if (op == SQLITE_INSERT || op == SQLITE_UPDATE)
        note(k, c, ci, db, false, false);
}

/* The table column of each field (PRAGMA table_info), per collection. */
static int map_columns(struct console *k)
{
    k->cids = xcalloc(k->n_cols ? k->n_cols : 1, sizeof(*k->cids));
    k->id_cid = xcalloc(k->n_cols ? k->n_cols : 1, sizeof(*k->id_cid));
    for (size_t i = 0; i < k->n_cols; i++) {
        const struct store_collection *c = k->cols[i];
        k->cids[i] = xmalloc((c->n_fields ? c->n_fields : 1) * sizeof(int));
        k->id_cid[i] = -1;
        for (size_t f = 0; f < c->n_fields; f++)
            k->cids[i][f] = -1;
        struct sq_stmt st;
        int rc = sq__prep(k->cn, "SELECT cid, name FROM pragma_table_info(?1)", &st);
        if (rc)
            return rc;
        sqlite3_bind_text(st.stmt, 1, c->name, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(st.stmt) == SQLITE_ROW) {
            int cid = sqlite3_column_int(st.stmt, 0);
            const char *name = (const char *)sqlite3_column_text(st.stmt, 1);
            for (size_t f = 0; name && f < c->n_fields; f++)
                if (strcmp(c->fields[f].name, name) == 0)
                    k->cids[i][f] = cid;
            if (name && strcmp(name, "id") == 0)
                k->id_cid[i] = cid;
        }
        sq__done(&st);
    }
    return 0;
}

static void console_release(struct console *k)
{
    for (size_t i = 0; i < k->n_t; i++) {
        free(k->t[i].id);
        json_decref(k->t[i].image_before);
    }
    free(k->t);
    for (size_t i = 0; k->cids && i < k->n_cols; i++)
        free(k->cids[i]);
    free(k->cids);
    free(k->id_cid);
    store_collection_list_free(k->cols, k->n_cols);
}

static json_t *columns_of(sqlite3_stmt *stmt)
{
    json_t *cols = json_array();
    int n = sqlite3_column_count(stmt);
    for (int i = 0; i < n; i++) {
        const char *decl = sqlite3_column_decltype(stmt, i);
        int notnull = 0;
        const char *tab = sqlite3_column_table_name(stmt, i);
        const char *org = sqlite3_column_origin_name(stmt, i);
        if (tab && org)
            (void)sqlite3_table_column_metadata(sqlite3_db_handle(stmt),
                                                sqlite3_column_database_name(stmt, i), tab, org,
                                                NULL, NULL, &notnull, NULL, NULL);
        json_array_append_new(cols, json_pack("{s:s,s:s,s:b}", "name", sqlite3_column_name(stmt, i),
                                              "type", decl ? decl : "", "nullable", !notnull));
    }
    return cols;
}

/* A value as text; bytes that are not UTF-8 (a blob) as the SQL literal X'..'. */
static json_t *cell(sqlite3_stmt *stmt, int i)
{
    const char *text = (const char *)sqlite3_column_text(stmt, i);
    size_t len = (size_t)sqlite3_column_bytes(stmt, i);
    json_t *v = json_stringn(text, len);
    if (v)
        return v;
    const unsigned char *blob = sqlite3_column_blob(stmt, i);
    len = (size_t)sqlite3_column_bytes(stmt, i);
    char *hex = xmalloc(len * 2 + 4);
    size_t n = 0;
    hex[n++] = 'X';
    hex[n++] = '\'';
    for (size_t b = 0; b < len; b++) {
        static const char digits[] = "0123456789ABCDEF";
        hex[n++] = digits[blob[b] >> 4];
        hex[n++] = digits[blob[b] & 15];
    }
    hex[n++] = '\'';
    v = json_stringn(hex, n);
    free(hex);
    return v;
}

/* Steps stmt to its end, keeping up to max_rows rows / max_bytes of text. */
static int run_rows(struct sq_conn *cn, sqlite3_stmt *stmt, size_t max_rows, size_t max_bytes,
                    struct store_sql_result *out)
{
    size_t bytes = 0;
    int n = sqlite3_column_count(stmt);
    for (;;) {
        int step = sqlite3_step(stmt);
        if (step == SQLITE_DONE)
            return 0;
        if (step != SQLITE_ROW)
            return sq__fail_db(cn, "the statement failed");
        if (out->truncated)
            continue; /* a write statement with RETURNING still runs to its end */
        if (json_array_size(out->rows) >= max_rows) {
            out->truncated = true;
            continue;
        }
        json_t *row = json_array();
        for (int i = 0; i < n; i++) {
            const char *text = (const char *)sqlite3_column_text(stmt, i);
            bytes += text ? (size_t)sqlite3_column_bytes(stmt, i) + 4 : 4;
            json_array_append_new(row, text ? cell(stmt, i) : json_null());
        }
        if (bytes > max_bytes) {
            json_decref(row);
            out->truncated = true;
            continue;
        }
        json_array_append_new(out->rows, row);
    }
}

/* After the statement: the outbox row of every record it changed. */
static int capture(struct console *k)
{
    char now[TIME_PB_LEN];
    sq__now(now);
    for (size_t i = 0; i < k->n_t; i++) {
        struct touched *t = &k->t[i];
        json_t *after = NULL;
        int rc = sq__record_image(k->cn, t->c, t->id, &after);
        if (rc != 0 && rc != ERR_NOTFOUND)
            return rc;
        const char *action = NULL;
        const json_t *image = after;
        if (after)
            action = t->before ? "update" : "create";
        else if (t->before)
            action = "delete", image = t->image_before;
        if (action)
            rc = sq__outbox_add(k->cn, t->c, t->id, action, image, now);
        json_decref(after);
        if (rc)
            return rc;
        if (action && t->c->type == STORE_COLLECTION_AUTH)
            sq__auth_changed(k->cn);
    }
    return 0;
}

int sq__sql(struct store *st, const char *sql, size_t max_rows, size_t max_bytes,
            int64_t deadline_us, struct store_sql_result *out)
{
    struct sq_store *s = (struct sq_store *)st;
    memset(out, 0, sizeof(*out));
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    struct console k = {.cn = cn};
    sq__col_all(s, &k.cols, &k.n_cols);
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    bool in_tx = false;
    int rc = map_columns(&k);
    if (rc)
        goto out;

    sqlite3_set_authorizer(cn->db, authorize, &k);
    int prc = sqlite3_prepare_v2(cn->db, sql, -1, &stmt, &tail);
    sqlite3_set_authorizer(cn->db, NULL, NULL);
    if (prc != SQLITE_OK || !stmt) {
        if (k.denied[0])
            rc = sq__fail(cn, ERR_DENIED, "%s", k.denied);
        else if (prc == SQLITE_OK)
            rc = sq__fail(cn, ERR_INVALID, "The query is empty.");
        else
            rc = sq__fail(cn, ERR_INVALID, "%s", sqlite3_errmsg(cn->db));
        goto out;
    }
    while (tail &&
           (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';'))
        tail++;
    if (tail && *tail) {
        rc = sq__fail(cn, ERR_INVALID, "Only one statement can run at a time.");
        goto out;
    }
    out->columns = columns_of(stmt);
    out->rows = json_array();
    bool writes = !sqlite3_stmt_readonly(stmt);
    if (writes) {
        if ((rc = sq__begin(s, cn)) != 0)
            goto out;
        in_tx = true;
        sqlite3_preupdate_hook(cn->db, preupdate, &k);
    }
    if (deadline_us)
        sq__deadline(cn, deadline_us, false);
    rc = run_rows(cn, stmt, max_rows, max_bytes, out);
    if (deadline_us)
        sq__deadline(cn, 0, false);
    if (writes) {
        sqlite3_preupdate_hook(cn->db, NULL, NULL);
        out->affected = sqlite3_changes64(cn->db);
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    if (rc == 0 && k.overflow)
        rc = sq__fail(cn, ERR_LIMIT, "A statement may change at most %d records.", MAX_TOUCHED);
    if (rc == 0 && writes)
        rc = capture(&k);
    if (in_tx) {
        in_tx = false;
        if (rc == 0)
            rc = sq__commit(s, cn);
        else
            sq__rollback(s, cn);
    }
out:
    if (stmt)
        sqlite3_finalize(stmt);
    if (in_tx)
        sq__rollback(s, cn);
    if (rc)
        store_sql_result_release(out);
    console_release(&k);
    return rc;
}
