/* rows.c - records of the sqlite backend: reading rows into PocketBase JSON, list queries,
 * writes with relation checks, unique violations as validation errors, cascading deletes,
 * and the outbox row that every change writes in the same transaction. */
#include <string.h>
#include <strings.h>

#include "store/sqlite/sqlite_int.h"

#define CASCADE_MAX_DEPTH 32

bool sq__secret_field(const struct store_collection *c, const struct store_field *f)
{
    return f->type == STORE_FIELD_PASSWORD ||
           (c->type == STORE_COLLECTION_AUTH && strcmp(f->name, "tokenKey") == 0);
}

/* "t"."a", "t"."b", ... for the public fields (plus the secret ones when secrets). */
static void select_cols(struct buf *b, const struct store_collection *c, bool secrets,
                        const char *alias)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_fields; i++) {
        if (!secrets && sq__secret_field(c, &c->fields[i]))
            continue;
        if (n++)
            buf_puts(b, ", ");
        store__quote(b, alias ? alias : c->name);
        buf_putc(b, '.');
        store__quote(b, c->fields[i].name);
    }
}

json_t *sq__value_json(const struct store_field *f, sqlite3_value *val)
{
    int t = sqlite3_value_type(val);
    const char *text = (const char *)sqlite3_value_text(val);
    if (store_field_multiple(f)) {
        json_t *v = text ? json_loads(text, 0, NULL) : NULL;
        if (!json_is_array(v)) {
            json_decref(v);
            v = json_array();
        }
        return v;
    }
    switch (f->type) {
    case STORE_FIELD_NUMBER:
        if (t == SQLITE_INTEGER)
            return json_integer(sqlite3_value_int64(val));
        if (t == SQLITE_FLOAT) {
            double d = sqlite3_value_double(val);
            return d == (double)(json_int_t)d && d < 9e15 && d > -9e15 ? json_integer((json_int_t)d)
                                                                       : json_real(d);
        }
        return json_integer(0);
    case STORE_FIELD_BOOL: return json_boolean(sqlite3_value_int64(val) != 0);
    case STORE_FIELD_JSON: {
        if (t == SQLITE_NULL)
            return json_null();
        json_t *v = json_loads(text ? text : "null", JSON_DECODE_ANY, NULL);
        return v ? v : json_null();
    }
    case STORE_FIELD_GEO_POINT: {
        json_t *v = text ? json_loads(text, 0, NULL) : NULL;
        json_t *lon = json_object_get(v, "lon"), *lat = json_object_get(v, "lat");
        json_t *p = json_object();
        json_object_set_new(p, "lon", json_is_number(lon) ? json_incref(lon) : json_integer(0));
        json_object_set_new(p, "lat", json_is_number(lat) ? json_incref(lat) : json_integer(0));
        json_decref(v);
        return p;
    }
    default: return json_string(text ? text : "");
    }
}

static json_t *column_json(const struct store_field *f, sqlite3_stmt *st, int i)
{
    return sq__value_json(f, sqlite3_column_value(st, i));
}

/* Reads the current row (selected with select_cols) into a record object, with its keys in
 * byte order as PocketBase writes them: the values are read in column order, then inserted
 * in key order (jansson keeps insertion order), so no second object is built. */
static json_t *row_json(const struct store_collection *c, sqlite3_stmt *st, bool secrets,
                        struct store_auth_record *auth)
{
    enum { ON_STACK = 64 };
    struct kv {
        const char *key;
        json_t *v;
    } stack[ON_STACK], *kv = stack;
    size_t cap = c->n_fields + 2, n = 0;
    if (cap > ON_STACK)
        kv = xmalloc(cap * sizeof(*kv));
    kv[n++] = (struct kv){"collectionId", json_string(c->id)};
    kv[n++] = (struct kv){"collectionName", json_string(c->name)};
    int col = 0;
    for (size_t i = 0; i < c->n_fields; i++) {
        const struct store_field *f = &c->fields[i];
        if (sq__secret_field(c, f)) {
            if (!secrets)
                continue;
            const char *text = (const char *)sqlite3_column_text(st, col++);
            if (auth && f->type == STORE_FIELD_PASSWORD)
                auth->password_hash = xstrdup(text ? text : "");
            else if (auth)
                auth->token_key = xstrdup(text ? text : "");
            continue;
        }
        kv[n++] = (struct kv){f->name, column_json(f, st, col++)};
    }
    /* insertion sort: a handful of keys, mostly in order already */
    for (size_t i = 1; i < n; i++) {
        struct kv x = kv[i];
        size_t j = i;
        for (; j > 0 && strcmp(kv[j - 1].key, x.key) > 0; j--)
            kv[j] = kv[j - 1];
        kv[j] = x;
    }
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, kv[i].key, kv[i].v); /* a duplicate name: the last one wins */
    if (kv != stack)
        free(kv);
    return o;
}

static int get_row(struct sq_conn *cn, const struct store_collection *c, const char *id,
                   bool secrets, struct store_auth_record *auth, json_t **out)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT ");
    select_cols(&b, c, secrets, NULL);
    buf_puts(&b, " FROM ");
    store__quote(&b, c->name);
    buf_puts(&b, " WHERE ");
    store__quote(&b, c->name);
    buf_puts(&b, ".\"id\" = ?1 LIMIT 1");
    struct sq_stmt st;
    int rc = sq__prep(cn, buf_cstr(&b), &st);
    buf_release(&b);
    *out = NULL;
    if (rc)
        return rc;
    sqlite3_bind_text(st.stmt, 1, id, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(st.stmt);
    if (step == SQLITE_ROW)
        *out = row_json(c, st.stmt, secrets, auth);
    else if (step == SQLITE_DONE)
        rc = sq__fail(cn, ERR_NOTFOUND, "no record %s in %s", id, c->name);
    else
        rc = sq__fail_db(cn, "cannot read the record");
    sq__done(&st);
    return rc;
}

/* A collection as the snapshot holds it now (the caller's copy may be older). */
static struct store_collection *current(struct sq_store *s, struct sq_conn *cn,
                                        const struct store_collection *c)
{
    struct store_collection *cur = sq__col_find(s, c->id);
    if (!cur)
        sq__fail(cn, ERR_NOTFOUND, "no collection %s", c->name);
    return cur;
}

/* Steps a statement that asks whether a row exists: 1 (a row), 0 (none) or the failure. */
static int step_found(struct sq_conn *cn, sqlite3_stmt *stmt, const char *what)
{
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW)
        return 1;
    if (step == SQLITE_DONE)
        return 0;
    return sq__fail_db(cn, what);
}

/* 1 when the record id of c satisfies cond (or there is no condition), 0 when it does not
 * (or does not exist), < 0 on failure. */
static int cond_holds(struct sq_conn *cn, const struct store_collection *c, const char *id,
                      const struct store_cond *cond)
{
    if (!cond || !cond->sql || !*cond->sql)
        return 1;
    size_t n = json_array_size(cond->params);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT 1 FROM ");
    store__quote(&b, c->name);
    buf_printf(&b,
               " AS \"" STORE_LIST_ALIAS "\" WHERE (%s) AND \"" STORE_LIST_ALIAS
               "\".\"id\" = ?%zu LIMIT 1",
               cond->sql, n + 1);
    struct sq_stmt st;
    int rc = sq__prep(cn, buf_cstr(&b), &st);
    buf_release(&b);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        sq__bind_json(st.stmt, (int)i + 1, json_array_get(cond->params, i));
    sqlite3_bind_text(st.stmt, (int)n + 1, id, -1, SQLITE_TRANSIENT);
    rc = step_found(cn, st.stmt, "cannot check the condition");
    sq__done(&st);
    return rc;
}

static int record_get(struct store *st, const struct store_collection *c, const char *id,
                      const struct store_cond *cond, json_t **out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    *out = NULL;
    if (!cond || !cond->sql || !*cond->sql)
        return get_row(cn, c, id, false, NULL, out);
    /* the check and the read see one snapshot */
    int rc = sq__exec_cached(cn, "BEGIN");
    if (rc)
        return rc;
    int holds = cond_holds(cn, c, id, cond);
    if (holds == 1)
        rc = get_row(cn, c, id, false, NULL, out);
    else
        rc = holds < 0 ? holds : sq__fail(cn, ERR_NOTFOUND, "no record %s in %s", id, c->name);
    if (rc || sq__exec_cached(cn, "COMMIT") != 0)
        (void)sqlite3_exec(cn->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

static void bind_params(sqlite3_stmt *st, const json_t *params, size_t first)
{
    for (size_t i = 0; i < json_array_size(params); i++)
        sq__bind_json(st, (int)(first + i), json_array_get(params, i));
}

/* Binds the image's value of field f the way the row would store it: multi-valued and json
 * fields as JSON text, bools as 0/1, the rest as they are. */
static int bind_image(sqlite3_stmt *st, int idx, const struct store_field *f, const json_t *v)
{
    if (!v || json_is_null(v))
        return sqlite3_bind_null(st, idx);
    if ((f->type == STORE_FIELD_JSON || f->type == STORE_FIELD_GEO_POINT) &&
        !store_field_multiple(f)) {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        if (!text)
            return SQLITE_NOMEM;
        return sqlite3_bind_text(st, idx, text, -1, free);
    }
    return sq__bind_json(st, idx, v);
}

int sq__record_match(struct store *st, const struct store_collection *c, const json_t *record,
                     const struct store_cond *cond)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    if (!cond || !cond->sql || !*cond->sql)
        return 1;
    if (!json_is_object(record))
        return sq__fail(cn, ERR_INVALID, "no record image to match");
    /* a CTE named like the list alias stands in for the table: the condition reads the
     * image's columns, its subqueries the real tables */
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "WITH \"" STORE_LIST_ALIAS "\"(");
    for (size_t i = 0; i < c->n_fields; i++) {
        if (i)
            buf_puts(&b, ", ");
        store__quote(&b, c->fields[i].name);
    }
    buf_puts(&b, ") AS (SELECT ");
    for (size_t i = 0; i < c->n_fields; i++)
        buf_puts(&b, i ? ", ?" : "?");
    buf_printf(&b, ") SELECT 1 FROM \"" STORE_LIST_ALIAS "\" WHERE (%s) LIMIT 1", cond->sql);
    struct sq_stmt stt;
    int rc = sq__prep(cn, buf_cstr(&b), &stt);
    buf_release(&b);
    if (rc)
        return rc == ERR_INTERNAL ? ERR_INVALID : rc;
    for (size_t i = 0; i < c->n_fields; i++) {
        const struct store_field *f = &c->fields[i];
        bind_image(stt.stmt, (int)i + 1, f,
                   sq__secret_field(c, f) ? NULL : json_object_get(record, f->name));
    }
    bind_params(stt.stmt, cond->params, c->n_fields + 1);
    rc = step_found(cn, stt.stmt, "cannot match the record image");
    sq__done(&stt);
    return rc;
}

static int record_list(struct store *st, const struct store_collection *c,
                       const struct store_list_query *q, struct store_list_result *out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    struct buf from, b;
    buf_init(&from);
    buf_init(&b);
    int rc = 0;
    struct sq_stmt stt = {0};
    /* FROM ... WHERE ..., shared by the page and the count query */
    buf_puts(&from, " FROM ");
    store__quote(&from, c->name);
    buf_puts(&from, " AS \"" STORE_LIST_ALIAS "\"");
    if (q->where_sql && *q->where_sql)
        buf_printf(&from, " WHERE (%s)", q->where_sql);
    size_t n_where = json_array_size(q->where_params);
    size_t n_order = q->order_sql ? json_array_size(q->order_params) : 0;

    buf_puts(&b, "SELECT ");
    select_cols(&b, c, false, STORE_LIST_ALIAS);
    buf_puts(&b, buf_cstr(&from));
    if (q->order_sql && *q->order_sql)
        buf_printf(&b, " ORDER BY %s", q->order_sql);
    for (size_t i = 0; i < q->n_sort && !(q->order_sql && *q->order_sql); i++) {
        buf_puts(&b, i ? ", " : " ORDER BY ");
        const char *f = q->sort[i].field;
        if (strcmp(f, "@random") == 0) {
            buf_puts(&b, "RANDOM()");
            continue;
        }
        if (strcmp(f, "@rowid") == 0) {
            buf_puts(&b, "\"" STORE_LIST_ALIAS "\".rowid");
        } else {
            const struct store_field *fd = store_collection_field(c, f);
            if (!fd || sq__secret_field(c, fd)) {
                rc = sq__fail(cn, ERR_INVALID, "invalid sort field %s", f);
                goto out;
            }
            buf_puts(&b, "\"" STORE_LIST_ALIAS "\".");
            store__quote(&b, fd->name);
        }
        buf_puts(&b, q->sort[i].desc ? " DESC" : " ASC");
    }
    buf_printf(&b, " LIMIT ?%zu OFFSET ?%zu", n_where + n_order + 1, n_where + n_order + 2);
    if ((rc = sq__prep(cn, buf_cstr(&b), &stt)))
        goto out;
    bind_params(stt.stmt, q->where_params, 1);
    if (n_order)
        bind_params(stt.stmt, q->order_params, n_where + 1);
    int64_t per_page = q->per_page > 0 ? q->per_page : 30;
    int64_t page = q->page > 0 ? q->page : 1;
    sqlite3_bind_int64(stt.stmt, (int)(n_where + n_order + 1), per_page);
    /* a huge page number must not overflow the offset */
    int64_t offset = page - 1 > INT64_MAX / per_page ? INT64_MAX : (page - 1) * per_page;
    sqlite3_bind_int64(stt.stmt, (int)(n_where + n_order + 2), offset);
    out->items = json_array();
    int step;
    while ((step = sqlite3_step(stt.stmt)) == SQLITE_ROW)
        json_array_append_new(out->items, row_json(c, stt.stmt, false, NULL));
    if (step != SQLITE_DONE) {
        rc = sq__fail_db(cn, "cannot list records");
        if (rc == ERR_INTERNAL)
            rc = ERR_INVALID;
        goto out;
    }
    sq__done(&stt);
    if (q->skip_total) {
        out->total_items = out->total_pages = -1;
        goto out;
    }
    buf_reset(&b);
    buf_puts(&b, "SELECT COUNT(*)");
    buf_puts(&b, buf_cstr(&from));
    if ((rc = sq__prep(cn, buf_cstr(&b), &stt)))
        goto out;
    bind_params(stt.stmt, q->where_params, 1);
    if (sqlite3_step(stt.stmt) != SQLITE_ROW) {
        rc = sq__fail_db(cn, "cannot count records");
        goto out;
    }
    out->total_items = sqlite3_column_int64(stt.stmt, 0);
    out->total_pages = (out->total_items + per_page - 1) / per_page;
out:
    sq__done(&stt);
    buf_release(&from);
    buf_release(&b);
    if (rc) {
        json_decref(out->items);
        out->items = NULL;
    }
    return rc;
}

/* WHERE text matching rows of c whose relation field f holds ?1. */
static void ref_cond(struct buf *b, const struct store_collection *c, const struct store_field *f)
{
    if (store_field_multiple(f)) {
        buf_puts(b, "EXISTS (SELECT 1 FROM json_each(");
        store__quote(b, c->name);
        buf_putc(b, '.');
        store__quote(b, f->name);
        buf_puts(b, ") WHERE json_each.value = ?1)");
    } else {
        store__quote(b, c->name);
        buf_putc(b, '.');
        store__quote(b, f->name);
        buf_puts(b, " = ?1");
    }
}

static int record_referencing(struct store *st, const struct store_collection *c, const char *field,
                              const char *target_id, size_t max, json_t **out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    *out = NULL;
    const struct store_field *f = store_collection_field(c, field);
    if (!f || f->type != STORE_FIELD_RELATION)
        return sq__fail(cn, ERR_INVALID, "%s is not a relation field of %s", field, c->name);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT ");
    select_cols(&b, c, false, NULL);
    buf_puts(&b, " FROM ");
    store__quote(&b, c->name);
    buf_puts(&b, " WHERE ");
    ref_cond(&b, c, f);
    buf_puts(&b, " ORDER BY rowid LIMIT ?2");
    struct sq_stmt stt;
    int rc = sq__prep(cn, buf_cstr(&b), &stt);
    buf_release(&b);
    if (rc)
        return rc;
    sqlite3_bind_text(stt.stmt, 1, target_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stt.stmt, 2, (sqlite3_int64)max);
    json_t *arr = json_array();
    int step;
    while ((step = sqlite3_step(stt.stmt)) == SQLITE_ROW)
        json_array_append_new(arr, row_json(c, stt.stmt, false, NULL));
    if (step != SQLITE_DONE) {
        rc = sq__fail_db(cn, "cannot read back-relations");
        json_decref(arr);
    } else {
        *out = arr;
    }
    sq__done(&stt);
    return rc;
}

/* Reads use the collection as it is now: a caller may hold a snapshot from before a schema
 * change (renamed table or fields). A collection deleted meanwhile is ERR_NOTFOUND. */
static int fresh(struct sq_store *s, const struct store_collection *c,
                 struct store_collection **cur_out)
{
    *cur_out = NULL;
    if (c == s->catalog)
        return 0;
    *cur_out = sq__col_find(s, c->id);
    if (*cur_out)
        return 0;
    struct sq_conn *cn = sq__conn(s);
    if (cn)
        sq__fail(cn, ERR_NOTFOUND, "no collection %s", c->name);
    return ERR_NOTFOUND;
}

int sq__record_image(struct sq_conn *cn, const struct store_collection *c, const char *id,
                     json_t **out)
{
    return get_row(cn, c, id, false, NULL, out);
}

int sq__record_get(struct store *st, const struct store_collection *c, const char *id,
                   const struct store_cond *cond, json_t **out)
{
    struct store_collection *cur;
    *out = NULL;
    int rc = fresh((struct sq_store *)st, c, &cur);
    if (rc == 0)
        rc = record_get(st, cur ? cur : c, id, cond, out);
    store_collection_unref(cur);
    return rc;
}

int sq__record_list(struct store *st, const struct store_collection *c,
                    const struct store_list_query *q, struct store_list_result *out)
{
    struct store_collection *cur;
    memset(out, 0, sizeof(*out));
    int rc = fresh((struct sq_store *)st, c, &cur);
    if (rc == 0)
        rc = record_list(st, cur ? cur : c, q, out);
    store_collection_unref(cur);
    return rc;
}

int sq__record_referencing(struct store *st, const struct store_collection *c, const char *field,
                           const char *target_id, size_t max, json_t **out)
{
    struct store_collection *cur;
    *out = NULL;
    int rc = fresh((struct sq_store *)st, c, &cur);
    if (rc == 0)
        rc = record_referencing(st, cur ? cur : c, field, target_id, max, out);
    store_collection_unref(cur);
    return rc;
}

/* ---- writes ---- */

int sq__outbox_add(struct sq_conn *cn, const struct store_collection *c, const char *id,
                   const char *action, const json_t *record, const char *now)
{
    struct sq_stmt st;
    int rc = sq__prep(cn,
                      "INSERT INTO \"_outbox\" (\"collection_id\", \"collection\", \"record_id\", "
                      "\"action\", \"record\", \"created\") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                      &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st.stmt, 1, c->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st.stmt, 2, c->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st.stmt, 3, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st.stmt, 4, action, -1, SQLITE_STATIC);
    sq__bind_json(st.stmt, 5, record ? record : json_null());
    sqlite3_bind_text(st.stmt, 6, now, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st.stmt) != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot write the outbox");
    else
        cn->outbox_added = true;
    sq__done(&st);
    if (rc == 0 && strcmp(action, "delete") == 0 && record)
        sq__note_deleted(cn, c, id, record); /* its files go after the COMMIT */
    return rc;
}

/* Every relation id of vals must exist in its target collection. */
static int check_relations(struct sq_store *s, struct sq_conn *cn, const struct store_collection *c,
                           const json_t *vals, json_t *errors)
{
    int rc = 0;
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < c->n_fields && !rc; i++) {
        const struct store_field *f = &c->fields[i];
        json_t *v = json_object_get(vals, f->name);
        if (f->type != STORE_FIELD_RELATION || !v)
            continue;
        json_t *ids = json_is_array(v) ? json_incref(v) : json_pack("[O]", v);
        if (json_is_string(v) && json_string_length(v) == 0) {
            json_decref(ids);
            continue;
        }
        struct store_collection *target = strcmp(f->collection_id, c->id) == 0
                                              ? store_collection_ref((struct store_collection *)c)
                                              : sq__col_find(s, f->collection_id);
        size_t found = 0;
        if (target && json_array_size(ids)) {
            buf_reset(&b);
            buf_puts(&b, "SELECT COUNT(*) FROM ");
            store__quote(&b, target->name);
            buf_puts(&b, " WHERE \"id\" IN (SELECT value FROM json_each(?1))");
            struct sq_stmt st;
            if ((rc = sq__prep(cn, buf_cstr(&b), &st)) == 0) {
                sq__bind_json(st.stmt, 1, ids);
                if (sqlite3_step(st.stmt) == SQLITE_ROW)
                    found = (size_t)sqlite3_column_int64(st.stmt, 0);
                else
                    rc = sq__fail_db(cn, "cannot check relations");
                sq__done(&st);
            }
        }
        if (!rc && found != json_array_size(ids))
            store__verr_set(errors, f->name, "validation_missing_rel_records",
                            "Failed to find all relation records with the provided ids.");
        store_collection_unref(target);
        json_decref(ids);
    }
    buf_release(&b);
    return rc;
}

/* The email of an auth record must not be held by another record of c in any case. The
 * unique index (COLLATE NOCASE) says so too; this check also holds in a database whose old
 * case-duplicates keep that index from being created (sq__auth_indexes_upgrade), and runs
 * inside the write transaction, so no other write comes between it and the row's. */
static int check_email_unique(struct sq_conn *cn, const struct store_collection *c, const char *id,
                              const json_t *vals, json_t *errors)
{
    const char *email = json_string_value(json_object_get(vals, "email"));
    if (c->type != STORE_COLLECTION_AUTH || !email || !*email ||
        !store_collection_field(c, "email"))
        return 0;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT 1 FROM ");
    store__quote(&b, c->name);
    buf_puts(&b, " WHERE \"email\" = ?1 COLLATE NOCASE AND \"email\" != '' AND \"id\" IS NOT ?2 "
                 "LIMIT 1");
    struct sq_stmt st;
    int rc = sq__prep(cn, buf_cstr(&b), &st);
    buf_release(&b);
    if (rc)
        return rc;
    sqlite3_bind_text(st.stmt, 1, email, -1, SQLITE_TRANSIENT);
    if (id)
        sqlite3_bind_text(st.stmt, 2, id, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st.stmt, 2);
    int step = sqlite3_step(st.stmt);
    if (step == SQLITE_ROW)
        store__verr_set(errors, "email", "validation_not_unique", "Value must be unique.");
    else if (step != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot check the email");
    sq__done(&st);
    return rc;
}

/* A failed INSERT/UPDATE on a UNIQUE constraint: mark the fields as not unique. */
static bool unique_errors(struct sq_conn *cn, const struct store_collection *c, json_t *errors)
{
    int code = sqlite3_extended_errcode(cn->db);
    if (code != SQLITE_CONSTRAINT_UNIQUE && code != SQLITE_CONSTRAINT_PRIMARYKEY)
        return false;
    const char *msg = sqlite3_errmsg(cn->db);
    const char *p = strstr(msg, "failed: ");
    bool any = false;
    if (p) {
        p += 8;
        while (*p) {
            const char *end = strstr(p, ", ");
            size_t len = end ? (size_t)(end - p) : strlen(p);
            const char *dot = memchr(p, '.', len);
            const char *col = dot ? dot + 1 : p;
            size_t cl = len - (size_t)(col - p);
            for (size_t i = 0; i < c->n_fields; i++)
                if (strlen(c->fields[i].name) == cl && strncmp(c->fields[i].name, col, cl) == 0) {
                    store__verr_set(errors, c->fields[i].name, "validation_not_unique",
                                    "Value must be unique.");
                    any = true;
                }
            if (!end)
                break;
            p = end + 2;
        }
    }
    if (!any)
        store__verr_set(errors, "id", "validation_not_unique", "Value must be unique.");
    return true;
}

static int write_row(struct sq_conn *cn, const struct store_collection *c, const char *update_id,
                     const json_t *vals, const char *password_hash, json_t *errors)
{
    struct buf b;
    buf_init(&b);
    size_t n = 0;
    const struct store_field *pw = NULL;
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type == STORE_FIELD_PASSWORD)
            pw = &c->fields[i];
    if (update_id) {
        buf_puts(&b, "UPDATE ");
        store__quote(&b, c->name);
        buf_puts(&b, " SET ");
    } else {
        buf_puts(&b, "INSERT INTO ");
        store__quote(&b, c->name);
        buf_puts(&b, " (");
    }
    for (size_t i = 0; i < c->n_fields; i++) {
        const struct store_field *f = &c->fields[i];
        bool set = f == pw ? password_hash != NULL : json_object_get(vals, f->name) != NULL;
        if (!set)
            continue;
        if (n)
            buf_puts(&b, ", ");
        n++;
        store__quote(&b, f->name);
        if (update_id)
            buf_printf(&b, " = ?%zu", n);
    }
    if (!update_id) {
        buf_puts(&b, ") VALUES (");
        for (size_t i = 1; i <= n; i++)
            buf_printf(&b, "%s?%zu", i > 1 ? ", " : "", i);
        buf_puts(&b, ")");
    } else {
        buf_printf(&b, " WHERE \"id\" = ?%zu", n + 1);
    }
    struct sq_stmt st;
    int rc = n ? sq__prep(cn, buf_cstr(&b), &st) : 0;
    buf_release(&b);
    if (rc || !n)
        return rc;
    int k = 0;
    for (size_t i = 0; i < c->n_fields; i++) {
        const struct store_field *f = &c->fields[i];
        if (f == pw) {
            if (password_hash)
                sqlite3_bind_text(st.stmt, ++k, password_hash, -1, SQLITE_TRANSIENT);
            continue;
        }
        json_t *v = json_object_get(vals, f->name);
        if (!v)
            continue;
        if (store_field_multiple(f) || f->type == STORE_FIELD_JSON ||
            f->type == STORE_FIELD_GEO_POINT) {
            if (json_is_null(v))
                sqlite3_bind_null(st.stmt, ++k);
            else
                sqlite3_bind_text(
                    st.stmt, ++k,
                    json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)), -1,
                    free);
        } else {
            sq__bind_json(st.stmt, ++k, v);
        }
    }
    if (update_id)
        sqlite3_bind_text(st.stmt, ++k, update_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st.stmt) != SQLITE_DONE) {
        if (unique_errors(cn, c, errors))
            rc = sq__fail(cn, ERR_INVALID, "%s", sqlite3_errmsg(cn->db));
        else
            rc = sq__fail_db(cn, "cannot write the record");
    }
    sq__done(&st);
    return rc;
}

/* Shared by create and update, inside a write transaction the caller began: validates and
 * writes one record and its outbox row. On success *rec_out is the new row (the caller's);
 * on ERR_INVALID *errors_out (when given) holds the field errors. Leaves the transaction
 * open either way: the caller rolls back (or back to a savepoint) on failure. */
static int save_in(struct sq_store *s, struct sq_conn *cn, const struct store_collection *cin,
                   const char *id, const json_t *body, const char *password_hash,
                   const struct store_cond *cond, const char *now, bool restore,
                   json_t **errors_out, json_t **rec_out)
{
    *rec_out = NULL;
    json_t *errors = json_object();
    json_t *old = NULL, *vals = NULL, *rec = NULL, *view = NULL;
    struct store_cond built = {0};
    int rc = 0;
    struct store_collection *c = current(s, cn, cin);
    if (!c) {
        rc = ERR_NOTFOUND;
        goto out;
    }
    if (c->type == STORE_COLLECTION_VIEW) {
        rc = sq__fail(cn, ERR_DENIED, "Unsupported collection type.");
        goto out;
    }
    if (id && c->type == STORE_COLLECTION_AUTH)
        sq__auth_changed(cn); /* password, email or tokenKey may change */
    if (id && (rc = get_row(cn, c, id, false, NULL, &old)))
        goto out;
    /* the condition sees the body this transaction writes (cond->build), and a record the
     * requester may not update is missing whatever its body's errors */
    int prc =
        store__record_prepare(c, old, body, now, errors, &vals, cond && cond->build ? &view : NULL);
    if (cond && cond->build) {
        if (cond->build(cond->build_arg, view, &built) != 0) {
            rc = sq__fail(cn, id ? ERR_NOTFOUND : ERR_DENIED, "the rule does not compile");
            goto out;
        }
        cond = &built;
    }
    if (id && (rc = cond_holds(cn, c, id, cond)) != 1) {
        if (rc == 0)
            rc = sq__fail(cn, ERR_NOTFOUND, "no record %s in %s", id, c->name);
        goto out;
    }
    rc = prc;
    const struct store_field *pw = NULL;
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type == STORE_FIELD_PASSWORD)
            pw = &c->fields[i];
    if (!rc && pw && pw->required && !old && (!password_hash || !*password_hash)) {
        store__verr_set(errors, pw->name, "validation_required", "Cannot be blank.");
        rc = ERR_INVALID;
    }
    if (!rc && c->type == STORE_COLLECTION_AUTH) {
        if (old && password_hash && !json_object_get(body, "tokenKey")) {
            /* a new password invalidates the tokens signed with the old tokenKey */
            const struct store_field *tk = store_collection_field(c, "tokenKey");
            char *g = tk && tk->autogenerate_pattern ? store__autogenerate(tk->autogenerate_pattern)
                                                     : NULL;
            if (g)
                json_object_set_new(vals, "tokenKey", json_string(g));
            free(g);
        }
    }
    if (rc)
        goto out;
    if (restore) /* a record moved over keeps its dates (store_create_item.restore) */
        for (size_t i = 0; i < c->n_fields; i++) {
            const struct store_field *f = &c->fields[i];
            const char *d = json_string_value(json_object_get(body, f->name));
            int64_t us;
            if (f->type == STORE_FIELD_AUTODATE && d && time_parse(d, strlen(d), &us) == 0) {
                char buf[TIME_PB_LEN];
                time_format_pb(us, buf);
                json_object_set_new(vals, f->name, json_string(buf));
            }
        }
    if (!restore && (rc = check_relations(s, cn, c, vals, errors)))
        goto out;
    if ((rc = check_email_unique(cn, c, id, vals, errors)))
        goto out;
    if (json_object_size(errors)) {
        rc = ERR_INVALID;
        goto out;
    }
    if ((rc = write_row(cn, c, id, vals, password_hash, errors)))
        goto out;
    const char *rid = id ? id : json_string_value(json_object_get(vals, "id"));
    if (!rid) {
        rc = sq__fail(cn, ERR_INTERNAL, "record without id");
        goto out;
    }
    if (!id && (rc = cond_holds(cn, c, rid, cond)) != 1) {
        if (rc == 0)
            rc = sq__fail(cn, ERR_DENIED, "the new record does not satisfy the condition");
        goto out;
    }
    if ((rc = get_row(cn, c, rid, false, NULL, &rec)))
        goto out;
    if ((rc = sq__outbox_add(cn, c, rid, id ? "update" : "create", rec, now)))
        goto out;
    *rec_out = rec;
    rec = NULL;
out:
    if (rc == ERR_INVALID)
        sq__fail(cn, ERR_INVALID, id ? "Failed to update record." : "Failed to create record.");
    if (rc == ERR_INVALID && errors_out)
        *errors_out = json_incref(errors);
    store_collection_unref(c);
    json_decref(errors);
    json_decref(old);
    json_decref(vals);
    json_decref(view);
    json_decref(rec);
    return rc;
}

/* One create or update in its own transaction. */
static int save(struct store *st, const struct store_collection *cin, const char *id,
                const json_t *body, const char *password_hash, const struct store_cond *cond,
                json_t **errors_out, json_t **out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    if (out)
        *out = NULL;
    char now[TIME_PB_LEN];
    sq__now(now);
    int rc = sq__begin(s, cn);
    if (rc)
        return rc;
    json_t *rec = NULL;
    rc = save_in(s, cn, cin, id, body, password_hash, cond, now, false, errors_out, &rec);
    if (rc) {
        sq__rollback(s, cn);
        if (rc == ERR_INVALID) /* the rollback must not take the message */
            sq__fail(cn, ERR_INVALID, id ? "Failed to update record." : "Failed to create record.");
        return rc;
    }
    rc = sq__commit(s, cn);
    if (rc == 0 && out) {
        *out = rec;
        rec = NULL;
    }
    json_decref(rec);
    return rc;
}

int sq__record_create(struct store *st, const struct store_collection *c, const json_t *body,
                      const char *password_hash, const struct store_cond *cond, json_t **errors_out,
                      json_t **out)
{
    return save(st, c, NULL, body, password_hash, cond, errors_out, out);
}

static int delete_in(struct sq_store *s, struct sq_conn *cn, const struct store_collection *cin,
                     const char *id, const struct store_cond *cond);

/* Group commit: every item (a create, or an update or delete of update_id) under a savepoint of one
 * transaction, one COMMIT. An item that
 * fails rolls back to its savepoint, so the others still commit; a failure that ends the
 * transaction itself (SQLite rolls back on I/O errors and the like) or a failed COMMIT fails
 * every item that had not failed on its own. Outbox ids follow the item order. */
int sq__record_create_batch(struct store *st, struct store_create_item *items, size_t n)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    for (size_t i = 0; i < n; i++) {
        items[i].rc = ERR_INTERNAL;
        items[i].errors = NULL;
        items[i].record = NULL;
    }
    if (!cn)
        return ERR_INTERNAL;
    int rc = sq__begin(s, cn);
    bool begun = rc == 0;
    size_t ran = 0; /* items[0, ran) ran; items[i].rc is their own outcome */
    for (; ran < n && !rc; ran++) {
        struct store_create_item *it = &items[ran];
        char now[TIME_PB_LEN];
        sq__now(now);
        /* the item's own deadline stops its reads (its create rule), never the writes that
         * the whole group's transaction needs */
        sq__deadline(cn, it->deadline_us, true);
        if ((rc = sq__exec_cached(cn, "SAVEPOINT \"batch_item\"")))
            break;
        if (it->update_id && it->delete_it)
            it->rc = delete_in(s, cn, it->c, it->update_id, it->cond);
        else
            it->rc = save_in(s, cn, it->c, it->update_id, it->body, it->password_hash, it->cond,
                             now, it->restore && !it->update_id, &it->errors, &it->record);
        if (it->rc == 0) {
            rc = sq__exec_cached(cn, "RELEASE \"batch_item\"");
            continue;
        }
        char keep[sizeof(cn->errmsg)];
        memcpy(keep, cn->errmsg, sizeof(keep));
        if (sqlite3_get_autocommit(cn->db)) /* the failure ended the transaction */
            rc = it->rc;
        else if (!(rc = sq__exec_cached(cn, "ROLLBACK TO \"batch_item\"")))
            rc = sq__exec_cached(cn, "RELEASE \"batch_item\"");
        memcpy(cn->errmsg, keep, sizeof(keep));
    }
    sq__deadline(cn, 0, false);
    if (begun && rc)
        sq__rollback(s, cn);
    else if (begun)
        rc = sq__commit(s, cn);
    if (rc) /* nothing was written: what had succeeded, or not run, fails with the batch */
        for (size_t i = 0; i < n; i++)
            if (i >= ran || items[i].rc == 0) {
                json_decref(items[i].record);
                items[i].record = NULL;
                items[i].rc = rc;
            }
    return rc;
}

int sq__record_update(struct store *st, const struct store_collection *c, const char *id,
                      const json_t *body, const char *password_hash, const struct store_cond *cond,
                      json_t **errors_out, json_t **out)
{
    return save(st, c, id, body, password_hash, cond, errors_out, out);
}

/* ---- delete with cascades ---- */

struct del_ctx {
    struct sq_store *s;
    struct sq_conn *cn;
    struct store_collection **all;
    size_t n_all;
    json_t *visited; /* "collectionId/recordId" -> true */
    char now[TIME_PB_LEN];
};

static int ids_referencing(struct sq_conn *cn, const struct store_collection *rc_col,
                           const struct store_field *f, const char *id, json_t **out)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT \"id\" FROM ");
    store__quote(&b, rc_col->name);
    buf_puts(&b, " WHERE ");
    ref_cond(&b, rc_col, f);
    struct sq_stmt st;
    int rc = sq__prep(cn, buf_cstr(&b), &st);
    buf_release(&b);
    if (rc)
        return rc;
    sqlite3_bind_text(st.stmt, 1, id, -1, SQLITE_TRANSIENT);
    json_t *ids = json_array();
    int step;
    while ((step = sqlite3_step(st.stmt)) == SQLITE_ROW)
        json_array_append_new(ids, json_string((const char *)sqlite3_column_text(st.stmt, 0)));
    if (step != SQLITE_DONE) {
        rc = sq__fail_db(cn, "cannot find references");
        json_decref(ids);
    } else {
        *out = ids;
    }
    sq__done(&st);
    return rc;
}

static int delete_rec(struct del_ctx *d, const struct store_collection *c, const char *id,
                      int depth);

/* Removes id from the relation field f of the record rid of rc_col (or deletes that record
 * when the cascade says so). */
static int unlink_ref(struct del_ctx *d, const struct store_collection *rc_col,
                      const struct store_field *f, const char *rid, const char *id, int depth)
{
    json_t *rec = NULL;
    int rc = get_row(d->cn, rc_col, rid, false, NULL, &rec);
    if (rc)
        return rc == ERR_NOTFOUND ? 0 : rc;
    json_t *v = json_object_get(rec, f->name);
    json_t *nv;
    size_t left = 0;
    if (json_is_array(v)) {
        nv = json_array();
        for (size_t i = 0; i < json_array_size(v); i++)
            if (strcmp(json_string_value(json_array_get(v, i)), id) != 0)
                json_array_append(nv, json_array_get(v, i));
        left = json_array_size(nv);
    } else {
        nv = json_string("");
    }
    if (f->cascade_delete && left == 0) {
        json_decref(nv);
        json_decref(rec);
        return delete_rec(d, rc_col, rid, depth + 1);
    }
    if (!f->cascade_delete && left == 0 && (f->required || f->min_select > 0)) {
        json_decref(nv);
        json_decref(rec);
        return sq__fail(d->cn, ERR_CONFLICT,
                        "Failed to delete record. Make sure that the record is not part of a "
                        "required relation reference.");
    }
    json_t *vals = json_object();
    json_object_set_new(vals, f->name, nv);
    for (size_t i = 0; i < rc_col->n_fields; i++)
        if (rc_col->fields[i].type == STORE_FIELD_AUTODATE && rc_col->fields[i].on_update)
            json_object_set_new(vals, rc_col->fields[i].name, json_string(d->now));
    json_t *errors = json_object();
    rc = write_row(d->cn, rc_col, rid, vals, NULL, errors);
    json_decref(errors);
    json_decref(vals);
    json_decref(rec);
    if (rc)
        return rc;
    if ((rc = get_row(d->cn, rc_col, rid, false, NULL, &rec)))
        return rc;
    rc = sq__outbox_add(d->cn, rc_col, rid, "update", rec, d->now);
    json_decref(rec);
    return rc;
}

/* Deletes what system collections keep about the auth record id of c by (collectionRef,
 * recordRef), as PocketBase does: its OAuth2 links (`_externalAuths`), and any other system
 * collection of that shape. */
static int delete_auth_refs(struct del_ctx *d, const struct store_collection *c, const char *id,
                            int depth)
{
    int rc = 0;
    for (size_t i = 0; i < d->n_all && !rc; i++) {
        const struct store_collection *sc = d->all[i];
        if (!sc->system || !store_collection_field(sc, "collectionRef") ||
            !store_collection_field(sc, "recordRef"))
            continue;
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "SELECT \"id\" FROM ");
        store__quote(&b, sc->name);
        buf_puts(&b, " WHERE \"collectionRef\" = ?1 AND \"recordRef\" = ?2");
        struct sq_stmt st;
        rc = sq__prep(d->cn, buf_cstr(&b), &st);
        buf_release(&b);
        if (rc)
            break;
        sqlite3_bind_text(st.stmt, 1, c->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st.stmt, 2, id, -1, SQLITE_TRANSIENT);
        json_t *ids = json_array();
        int step;
        while ((step = sqlite3_step(st.stmt)) == SQLITE_ROW)
            json_array_append_new(ids, json_string((const char *)sqlite3_column_text(st.stmt, 0)));
        if (step != SQLITE_DONE)
            rc = sq__fail_db(d->cn, "cannot find what refers to an auth record");
        sq__done(&st);
        for (size_t j = 0; j < json_array_size(ids) && !rc; j++)
            rc = delete_rec(d, sc, json_string_value(json_array_get(ids, j)), depth + 1);
        json_decref(ids);
    }
    return rc;
}

static int delete_rec(struct del_ctx *d, const struct store_collection *c, const char *id,
                      int depth)
{
    if (depth > CASCADE_MAX_DEPTH)
        return sq__fail(d->cn, ERR_LIMIT, "cascade delete nested too deeply");
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", c->id, id);
    if (json_object_get(d->visited, key))
        return 0;
    json_object_set_new(d->visited, key, json_true());
    json_t *rec = NULL;
    int rc = get_row(d->cn, c, id, false, NULL, &rec);
    if (rc)
        return rc;
    for (size_t i = 0; i < d->n_all && !rc; i++) {
        const struct store_collection *rcol = d->all[i];
        if (rcol->type == STORE_COLLECTION_VIEW)
            continue; /* read-only: it follows its tables */
        for (size_t k = 0; k < rcol->n_fields && !rc; k++) {
            const struct store_field *f = &rcol->fields[k];
            if (f->type != STORE_FIELD_RELATION || strcmp(f->collection_id, c->id) != 0)
                continue;
            json_t *ids = NULL;
            if ((rc = ids_referencing(d->cn, rcol, f, id, &ids)))
                break;
            for (size_t j = 0; j < json_array_size(ids) && !rc; j++) {
                const char *rid = json_string_value(json_array_get(ids, j));
                char rkey[512];
                snprintf(rkey, sizeof(rkey), "%s/%s", rcol->id, rid);
                if (json_object_get(d->visited, rkey))
                    continue; /* being deleted already */
                rc = unlink_ref(d, rcol, f, rid, id, depth);
            }
            json_decref(ids);
        }
    }
    if (!rc && c->type == STORE_COLLECTION_AUTH)
        rc = delete_auth_refs(d, c, id, depth);
    if (!rc) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "DELETE FROM ");
        store__quote(&b, c->name);
        buf_puts(&b, " WHERE \"id\" = ?1");
        struct sq_stmt st;
        rc = sq__prep(d->cn, buf_cstr(&b), &st);
        buf_release(&b);
        if (!rc) {
            sqlite3_bind_text(st.stmt, 1, id, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(st.stmt) != SQLITE_DONE)
                rc = sq__fail_db(d->cn, "cannot delete the record");
            sq__done(&st);
        }
    }
    if (!rc)
        rc = sq__outbox_add(d->cn, c, id, "delete", rec, d->now);
    json_decref(rec);
    return rc;
}

/* One delete with its cascades inside a write transaction the caller began (as save_in). */
static int delete_in(struct sq_store *s, struct sq_conn *cn, const struct store_collection *cin,
                     const char *id, const struct store_cond *cond)
{
    struct del_ctx d = {.s = s, .cn = cn, .visited = json_object()};
    sq__now(d.now);
    sq__auth_changed(cn); /* cascades may reach auth records */
    int rc;
    struct store_collection *c = current(s, cn, cin);
    if (!c) {
        rc = ERR_NOTFOUND;
        goto out;
    }
    if (c->type == STORE_COLLECTION_VIEW) {
        rc = sq__fail(cn, ERR_DENIED, "Unsupported collection type.");
        goto out;
    }
    sq__col_all(s, &d.all, &d.n_all);
    if ((rc = cond_holds(cn, c, id, cond)) != 1) {
        if (rc == 0)
            rc = sq__fail(cn, ERR_NOTFOUND, "no record %s in %s", id, c->name);
        goto out;
    }
    rc = delete_rec(&d, c, id, 0);
out:
    store_collection_list_free(d.all, d.n_all);
    store_collection_unref(c);
    json_decref(d.visited);
    return rc;
}

int sq__record_delete(struct store *st, const struct store_collection *cin, const char *id,
                      const struct store_cond *cond)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    int rc = sq__begin(s, cn);
    if (rc)
        return rc;
    rc = delete_in(s, cn, cin, id, cond);
    if (rc)
        sq__rollback(s, cn);
    else
        rc = sq__commit(s, cn);
    return rc;
}

/* Whether c holds a record with this id (an upsert's choice). 1, 0 or an error. */
static int record_exists(struct sq_store *s, struct sq_conn *cn, const struct store_collection *cin,
                         const char *id)
{
    struct store_collection *c = current(s, cn, cin);
    if (!c)
        return ERR_NOTFOUND;
    json_t *row = NULL;
    int rc = get_row(cn, c, id, false, NULL, &row);
    json_decref(row);
    store_collection_unref(c);
    return rc == 0 ? 1 : rc == ERR_NOTFOUND ? 0 : rc;
}

int sq__record_ops(struct store *st, struct store_op *ops, size_t n, size_t *failed_out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    *failed_out = n;
    for (size_t i = 0; i < n; i++) {
        ops[i].rc = 0;
        ops[i].errors = NULL;
        ops[i].record = NULL;
        ops[i].created = false;
    }
    if (!cn)
        return ERR_INTERNAL;
    int rc = sq__begin(s, cn);
    if (rc)
        return rc;
    size_t i = 0;
    for (; i < n && !rc; i++) {
        struct store_op *op = &ops[i];
        char now[TIME_PB_LEN];
        sq__now(now);
        const char *id = op->id;
        const struct store_cond *cond = op->cond;
        if (op->kind == STORE_OP_UPSERT) {
            int ex = id && *id ? record_exists(s, cn, op->c, id) : 0;
            if (ex < 0) {
                rc = op->rc = ex;
                break;
            }
            op->created = ex == 0;
            if (op->created) {
                id = NULL;
                cond = op->create_cond;
            }
        }
        if (op->kind == STORE_OP_DELETE)
            op->rc = delete_in(s, cn, op->c, id, cond);
        else
            op->rc = save_in(s, cn, op->c, op->kind == STORE_OP_CREATE ? NULL : id, op->body,
                             op->password_hash, cond, now, false, &op->errors, &op->record);
        op->created |= op->kind == STORE_OP_CREATE;
        rc = op->rc;
    }
    if (rc) {
        char keep[sizeof(cn->errmsg)];
        memcpy(keep, cn->errmsg, sizeof(keep));
        sq__rollback(s, cn);
        memcpy(cn->errmsg, keep, sizeof(keep));
        *failed_out = i - 1;
    } else {
        rc = sq__commit(s, cn);
    }
    if (rc) /* nothing was written */
        for (size_t k = 0; k < n; k++) {
            json_decref(ops[k].record);
            ops[k].record = NULL;
        }
    return rc;
}

int sq__collection_truncate(struct store *st, const char *id_or_name)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    struct del_ctx d = {.s = s, .cn = cn, .visited = json_object()};
    sq__now(d.now);
    json_t *ids = json_array();
    struct buf b;
    buf_init(&b);
    int rc = sq__begin(s, cn);
    if (rc)
        goto out_nolock;
    sq__auth_changed(cn);
    struct store_collection *c = sq__col_find(s, id_or_name);
    if (!c) {
        rc = sq__fail(cn, ERR_NOTFOUND, "no collection %s", id_or_name);
        goto fail;
    }
    if (c->type == STORE_COLLECTION_VIEW) {
        rc = sq__fail(cn, ERR_INVALID, "View collections cannot be truncated.");
        goto fail;
    }
    sq__col_all(s, &d.all, &d.n_all);
    buf_puts(&b, "SELECT \"id\" FROM ");
    store__quote(&b, c->name);
    buf_puts(&b, " ORDER BY rowid");
    struct sq_stmt st2;
    if ((rc = sq__prep(cn, buf_cstr(&b), &st2)))
        goto fail;
    int step;
    while ((step = sqlite3_step(st2.stmt)) == SQLITE_ROW)
        json_array_append_new(ids, json_string((const char *)sqlite3_column_text(st2.stmt, 0)));
    if (step != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot list the records");
    sq__done(&st2);
    for (size_t i = 0; i < json_array_size(ids) && !rc; i++)
        rc = delete_rec(&d, c, json_string_value(json_array_get(ids, i)), 0);
    if (rc)
        goto fail;
    rc = sq__commit(s, cn);
    goto out;
fail:
    sq__rollback(s, cn);
out:
    store_collection_list_free(d.all, d.n_all);
    store_collection_unref(c);
out_nolock:
    buf_release(&b);
    json_decref(ids);
    json_decref(d.visited);
    return rc;
}

/* ---- auth ---- */

int sq__auth_find(struct store *st, const struct store_collection *c, const char *field,
                  const char *value, struct store_auth_record *out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    const struct store_field *f = store_collection_field(c, field);
    if (c->type != STORE_COLLECTION_AUTH || !f ||
        (f->type != STORE_FIELD_EMAIL && f->type != STORE_FIELD_TEXT) || sq__secret_field(c, f))
        return sq__fail(cn, ERR_INVALID, "%s is not an identity field of %s", field, c->name);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT ");
    select_cols(&b, c, true, NULL);
    buf_puts(&b, " FROM ");
    store__quote(&b, c->name);
    buf_puts(&b, " WHERE ");
    store__quote(&b, c->name);
    buf_putc(&b, '.');
    store__quote(&b, f->name);
    buf_puts(&b, f->type == STORE_FIELD_EMAIL ? " = ?1 COLLATE NOCASE" : " = ?1");
    buf_puts(&b, " LIMIT 2");
    struct sq_stmt stt;
    int rc = sq__prep(cn, buf_cstr(&b), &stt);
    buf_release(&b);
    if (rc)
        return rc;
    sqlite3_bind_text(stt.stmt, 1, value, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(stt.stmt);
    if (step == SQLITE_ROW && *value) {
        out->record = row_json(c, stt.stmt, true, out);
        /* two records answer to this identity (emails that differ only in case, from before
         * email was unique without case): signing in to either could be the wrong one */
        step = sqlite3_step(stt.stmt);
        if (step == SQLITE_ROW) {
            store_auth_record_release(out);
            xlog_warn("auth collection %s: more than one record has this %s; sign-in refused",
                      c->name, f->name);
            rc = sq__fail(cn, ERR_CONFLICT, "more than one auth record has this %s", f->name);
        } else if (step != SQLITE_DONE) {
            store_auth_record_release(out);
            rc = sq__fail_db(cn, "cannot find the auth record");
        }
    } else if (step == SQLITE_DONE || step == SQLITE_ROW)
        rc = sq__fail(cn, ERR_NOTFOUND, "no such auth record");
    else
        rc = sq__fail_db(cn, "cannot find the auth record");
    sq__done(&stt);
    return rc;
}

int sq__auth_get(struct store *st, const struct store_collection *c, const char *id,
                 struct store_auth_record *out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    if (c->type != STORE_COLLECTION_AUTH)
        return sq__fail(cn, ERR_INVALID, "%s is not an auth collection", c->name);
    return get_row(cn, c, id, true, out, &out->record);
}

int sq__auth_token_key(struct store *st, const struct store_collection *c, const char *id,
                       char *out, size_t out_len)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    if (out_len)
        out[0] = '\0';
    if (c->type != STORE_COLLECTION_AUTH || !store_collection_field(c, "tokenKey"))
        return sq__fail(cn, ERR_INVALID, "%s is not an auth collection", c->name);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT \"tokenKey\" FROM ");
    store__quote(&b, c->name);
    buf_puts(&b, " WHERE \"id\" = ?1");
    struct sq_stmt stt;
    int rc = sq__prep(cn, buf_cstr(&b), &stt);
    buf_release(&b);
    if (rc)
        return rc;
    sqlite3_bind_text(stt.stmt, 1, id, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(stt.stmt);
    if (step == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(stt.stmt, 0);
        size_t n = k ? strlen(k) : 0;
        if (n + 1 > out_len)
            rc = sq__fail(cn, ERR_LIMIT, "the tokenKey does not fit");
        else
            memcpy(out, k ? k : "", n + 1);
    } else if (step == SQLITE_DONE) {
        rc = sq__fail(cn, ERR_NOTFOUND, "no record %s in %s", id, c->name);
    } else {
        rc = sq__fail_db(cn, "cannot read the tokenKey");
    }
    sq__done(&stt);
    return rc;
}

/* ---- outbox ---- */

int sq__outbox_rows(struct store *st, int64_t after_id, size_t max, struct store_outbox_row **out,
                    size_t *n_out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    struct sq_stmt stt;
    int rc = sq__prep(cn,
                      "SELECT \"id\", \"collection_id\", \"collection\", \"record_id\", "
                      "\"action\", \"created\", \"record\" FROM \"_outbox\" WHERE \"id\" > ?1 "
                      "ORDER BY \"id\" LIMIT ?2",
                      &stt);
    if (rc)
        return rc;
    sqlite3_bind_int64(stt.stmt, 1, after_id);
    sqlite3_bind_int64(stt.stmt, 2, (sqlite3_int64)max);
    struct store_outbox_row *rows = NULL;
    size_t n = 0, cap = 0;
    int step;
    while ((step = sqlite3_step(stt.stmt)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            rows = xrealloc(rows, cap * sizeof(*rows));
        }
        /* columns 1-6 as strings in one allocation, each NUL-terminated */
        size_t len[7], total = 0;
        const char *text[7];
        for (int k = 1; k <= 6; k++) {
            text[k] = (const char *)sqlite3_column_text(stt.stmt, k);
            len[k] = text[k] ? (size_t)sqlite3_column_bytes(stt.stmt, k) : 0;
            total += len[k] + 1;
        }
        struct store_outbox_row *r = &rows[n++];
        r->id = sqlite3_column_int64(stt.stmt, 0);
        r->mem_ = xmalloc(total);
        const char **dst[7] = {NULL,       &r->collection_id, &r->collection, &r->record_id,
                               &r->action, &r->time,          &r->record};
        char *p = r->mem_;
        for (int k = 1; k <= 6; k++) {
            memcpy(p, text[k] ? text[k] : "", len[k]);
            p[len[k]] = '\0';
            *dst[k] = text[k] || k < 6 ? p : NULL;
            p += len[k] + 1;
        }
        r->record_len = len[6];
    }
    if (step != SQLITE_DONE) {
        rc = sq__fail_db(cn, "cannot read the outbox");
        store_outbox_rows_free(rows, n);
    } else {
        *out = rows;
        *n_out = n;
    }
    sq__done(&stt);
    return rc;
}

int sq__outbox_delete(struct store *st, int64_t up_to_id)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    int rc = sq__begin(s, cn);
    if (rc)
        return rc;
    struct sq_stmt stt;
    rc = sq__prep(cn, "DELETE FROM \"_outbox\" WHERE \"id\" <= ?1", &stt);
    if (!rc) {
        sqlite3_bind_int64(stt.stmt, 1, up_to_id);
        if (sqlite3_step(stt.stmt) != SQLITE_DONE)
            rc = sq__fail_db(cn, "cannot trim the outbox");
        sq__done(&stt);
    }
    if (rc) {
        sq__rollback(s, cn);
        return rc;
    }
    return sq__commit(s, cn);
}

int sq__auth_rehash(struct store *st, const struct store_collection *c, const char *id,
                    const char *old_hash, const char *new_hash)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    const struct store_field *pw = NULL;
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type == STORE_FIELD_PASSWORD)
            pw = &c->fields[i];
    if (c->type != STORE_COLLECTION_AUTH || !pw)
        return sq__fail(cn, ERR_INVALID, "%s is not an auth collection", c->name);
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "UPDATE ");
    store__quote(&b, c->name);
    buf_puts(&b, " SET ");
    store__quote(&b, pw->name);
    buf_puts(&b, " = ?1 WHERE \"id\" = ?2 AND ");
    store__quote(&b, pw->name);
    buf_puts(&b, " = ?3");
    int rc = sq__begin(s, cn);
    if (rc) {
        buf_release(&b);
        return rc;
    }
    struct sq_stmt stt;
    rc = sq__prep(cn, buf_cstr(&b), &stt);
    buf_release(&b);
    if (!rc) {
        sqlite3_bind_text(stt.stmt, 1, new_hash, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(stt.stmt, 2, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(stt.stmt, 3, old_hash, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(stt.stmt) != SQLITE_DONE)
            rc = sq__fail_db(cn, "cannot store the new password hash");
        else if (sqlite3_changes(cn->db) == 0)
            rc = sq__fail(cn, ERR_NOTFOUND, "the record or its password changed");
        sq__done(&stt);
    }
    if (rc) {
        sq__rollback(s, cn);
        return rc;
    }
    return sq__commit(s, cn);
}
