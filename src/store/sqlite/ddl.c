/* ddl.c - collections of the sqlite backend: the system table `_collections`, one real table
 * per collection, and the migrations a collection update needs (rename the table, add,
 * rename and drop columns, rebuild when a column changes kind, recreate the indexes), each
 * change in one transaction. Identifiers are always quoted; they were validated before. */
#include <string.h>
#include <strings.h>

#include "store/sqlite/sqlite_int.h"

enum col_kind { K_TEXT, K_NUM, K_BOOL, K_MULTI, K_JSON, K_GEO };

static enum col_kind kind_of(const struct store_field *f)
{
    if (store_field_multiple(f))
        return K_MULTI;
    switch (f->type) {
    case STORE_FIELD_NUMBER: return K_NUM;
    case STORE_FIELD_BOOL: return K_BOOL;
    case STORE_FIELD_JSON: return K_JSON;
    case STORE_FIELD_GEO_POINT: return K_GEO;
    default: return K_TEXT;
    }
}

static void column_def(struct buf *b, const struct store_field *f)
{
    store__quote(b, f->name);
    if (f->primary_key) {
        buf_puts(b, " TEXT PRIMARY KEY DEFAULT ('r'||lower(hex(randomblob(7)))) NOT NULL");
        return;
    }
    switch (kind_of(f)) {
    case K_TEXT: buf_puts(b, " TEXT DEFAULT '' NOT NULL"); break;
    case K_NUM: buf_puts(b, " NUMERIC DEFAULT 0 NOT NULL"); break;
    case K_BOOL: buf_puts(b, " BOOLEAN DEFAULT FALSE NOT NULL"); break;
    case K_MULTI: buf_puts(b, " JSON DEFAULT '[]' NOT NULL"); break;
    case K_JSON: buf_puts(b, " JSON DEFAULT NULL"); break;
    case K_GEO: buf_puts(b, " JSON DEFAULT '{\"lon\":0,\"lat\":0}' NOT NULL"); break;
    }
}

static void create_table_sql(struct buf *b, const struct store_collection *c, const char *table)
{
    buf_puts(b, "CREATE TABLE ");
    store__quote(b, table);
    buf_puts(b, " (");
    for (size_t i = 0; i < c->n_fields; i++) {
        if (i)
            buf_puts(b, ", ");
        column_def(b, &c->fields[i]);
    }
    buf_puts(b, ")");
}

static int exec_buf(struct sq_conn *cn, struct buf *b)
{
    int rc = sq__exec(cn, buf_cstr(b));
    buf_reset(b);
    return rc;
}

static int create_indexes(struct sq_conn *cn, const struct store_collection *c)
{
    for (size_t i = 0; i < c->n_indexes; i++) {
        int rc = sq__exec(cn, c->indexes[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int drop_indexes(struct sq_conn *cn, const struct store_collection *c)
{
    struct buf b;
    buf_init(&b);
    int rc = 0;
    for (size_t i = 0; i < c->n_indexes && !rc; i++) {
        struct store__index ix;
        if (store__index_parse(c->indexes[i], &ix) != 0)
            continue;
        buf_puts(&b, "DROP INDEX IF EXISTS ");
        store__quote(&b, ix.name);
        rc = exec_buf(cn, &b);
        store__index_release(&ix);
    }
    buf_release(&b);
    return rc;
}

static int save_row(struct sq_conn *cn, const struct store_collection *c, bool insert)
{
    json_t *j = store_collection_to_json(c);
    char *spec = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(j);
    const char *sql =
        insert ? "INSERT INTO \"_collections\" (\"name\", \"type\", \"system\", \"spec\", "
                 "\"created\", \"updated\", \"id\") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
               : "UPDATE \"_collections\" SET \"name\" = ?1, \"type\" = ?2, \"system\" = ?3, "
                 "\"spec\" = ?4, \"created\" = ?5, \"updated\" = ?6 WHERE \"id\" = ?7";
    struct sq_stmt st;
    int rc = sq__prep(cn, sql, &st);
    if (rc) {
        free(spec);
        return rc;
    }
    sqlite3_bind_text(st.stmt, 1, c->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st.stmt, 2, store_collection_type_name(c->type), -1, SQLITE_STATIC);
    sqlite3_bind_int(st.stmt, 3, c->system);
    sqlite3_bind_text(st.stmt, 4, spec, -1, free);
    sqlite3_bind_text(st.stmt, 5, c->created, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st.stmt, 6, c->updated, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st.stmt, 7, c->id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st.stmt) != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot save the collection");
    sq__done(&st);
    return rc;
}

static int create_table_only(struct sq_conn *cn, const struct store_collection *c)
{
    if (c->type == STORE_COLLECTION_VIEW)
        return 0; /* made by views_recreate, once every table is there */
    struct buf b;
    buf_init(&b);
    create_table_sql(&b, c, c->name);
    int rc = exec_buf(cn, &b);
    buf_release(&b);
    return rc;
}

int sq__collection_install(struct sq_store *s, struct sq_conn *cn, const struct store_collection *c)
{
    UNUSED(s);
    if (c->type == STORE_COLLECTION_VIEW) {
        int rc = sq__view_install(cn, c);
        return rc ? rc : save_row(cn, c, true);
    }
    struct buf b;
    buf_init(&b);
    create_table_sql(&b, c, c->name);
    int rc = exec_buf(cn, &b);
    buf_release(&b);
    if (!rc)
        rc = create_indexes(cn, c);
    if (!rc)
        rc = save_row(cn, c, true);
    return rc;
}

/* ---- the case-insensitive email index of auth collections ---- */

/* The email index c's definition asks for (add_auth_indexes put one there), or NULL. */
static const char *email_index(const struct store_collection *c, char **name_out)
{
    for (size_t i = 0; i < c->n_indexes; i++) {
        struct store__index ix;
        if (store__index_parse(c->indexes[i], &ix) != 0)
            continue;
        bool hit = ix.unique && ix.n_cols == 1 && strcmp(ix.cols[0], "email") == 0 &&
                   strstr(ix.col_suffix[0], "COLLATE NOCASE");
        if (hit)
            *name_out = xstrdup(ix.name);
        store__index_release(&ix);
        if (hit)
            return c->indexes[i];
    }
    return NULL;
}

/* The number of emails of c held by more than one record when case is ignored, and how many
 * records hold them. */
static int email_case_duplicates(struct sq_conn *cn, const struct store_collection *c,
                                 int64_t *n_emails_out, int64_t *n_records_out)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT count(*), coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM ");
    store__quote(&b, c->name);
    buf_puts(&b, " WHERE \"email\" != '' GROUP BY \"email\" COLLATE NOCASE HAVING n > 1)");
    struct sq_stmt st;
    int rc = sq__prep(cn, buf_cstr(&b), &st);
    buf_release(&b);
    if (rc)
        return rc;
    if (sqlite3_step(st.stmt) == SQLITE_ROW) {
        *n_emails_out = sqlite3_column_int64(st.stmt, 0);
        *n_records_out = sqlite3_column_int64(st.stmt, 1);
    } else {
        rc = sq__fail_db(cn, "cannot look for duplicate emails");
    }
    sq__done(&st);
    return rc;
}

int sq__auth_indexes_upgrade(struct sq_store *s, struct sq_conn *cn)
{
    struct store_collection **all;
    size_t n;
    int rc = 0;
    sq__col_all(s, &all, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        struct store_collection *c = all[i];
        char *name = NULL;
        const char *want = c->type == STORE_COLLECTION_AUTH ? email_index(c, &name) : NULL;
        if (!want)
            continue;
        struct sq_stmt st;
        bool same = false;
        rc = sq__prep(cn,
                      "SELECT \"sql\" FROM sqlite_master WHERE \"type\" = 'index' AND "
                      "\"name\" = ?1",
                      &st);
        if (!rc) {
            sqlite3_bind_text(st.stmt, 1, name, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(st.stmt) == SQLITE_ROW) {
                const char *have = (const char *)sqlite3_column_text(st.stmt, 0);
                same = have && strcmp(have, want) == 0;
            }
            sq__done(&st);
        }
        int64_t n_emails = 0, n_records = 0;
        if (!rc && !same)
            rc = email_case_duplicates(cn, c, &n_emails, &n_records);
        if (!rc && !same && n_emails > 0) {
            /* The index cannot exist over duplicates. The old one (if any) stays; record
             * writes still refuse new case-duplicates (rows.c checks every email written)
             * and sign-in refuses an email that matches more than one record. */
            xlog_warn("auth collection %s: %lld emails are each held by more than one record "
                      "when case is ignored (%lld records); they cannot sign in with their "
                      "email until the duplicates are changed or deleted, and the "
                      "case-insensitive unique index on email is created at the first start "
                      "after that",
                      c->name, (long long)n_emails, (long long)n_records);
        } else if (!rc && !same) {
            struct buf b;
            buf_init(&b);
            buf_puts(&b, "DROP INDEX IF EXISTS ");
            store__quote(&b, name);
            rc = exec_buf(cn, &b);
            buf_release(&b);
            if (!rc)
                rc = sq__exec(cn, want);
            if (!rc)
                rc = save_row(cn, c, false);
            if (!rc)
                xlog_info("auth collection %s: email is now unique without regard to case",
                          c->name);
        }
        free(name);
    }
    store_collection_list_free(all, n);
    return rc;
}

static bool is_view_spec(const json_t *spec)
{
    const char *t = json_string_value(json_object_get(spec, "type"));
    return t && strcmp(t, "view") == 0;
}

/* Every collection, with c in the place of the one with its id (appended when new; removed
 * when c is NULL and drop_id is given). Release with store_collection_list_free. */
static void col_all_with(struct sq_store *s, struct store_collection *c, const char *drop_id,
                         struct store_collection ***out, size_t *n_out)
{
    struct store_collection **all;
    size_t n;
    sq__col_all(s, &all, &n);
    const char *id = c ? c->id : drop_id;
    size_t i = 0;
    while (i < n && strcmp(all[i]->id, id) != 0)
        i++;
    if (i < n) {
        store_collection_unref(all[i]);
        if (c) {
            all[i] = store_collection_ref(c);
        } else {
            memmove(&all[i], &all[i + 1], (n - i - 1) * sizeof(*all));
            n--;
        }
    } else if (c) {
        all = xrealloc(all, (n + 1) * sizeof(*all));
        all[n++] = store_collection_ref(c);
    }
    *out = all;
    *n_out = n;
}

/* Makes the SQL views of list again, in order, after sq__views_drop and the table changes of
 * a transaction, as PocketBase re-saves views whose tables changed: each view's fields are
 * inferred again, and a view whose fields changed (a copied field's options, say) gets a new
 * definition, saved and put in list in place of the old (the caller publishes list after its
 * commit). ERR_INVALID when a view no longer works: errors["fields"] says which, *bad_out (when
 * given) is its index in list. */
static int views_recreate(struct sq_conn *cn, struct store_collection **list, size_t n,
                          const char *now, json_t *errors, size_t *bad_out)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        struct store_collection *v = list[i];
        if (v->type != STORE_COLLECTION_VIEW)
            continue;
        json_t *e = json_object(), *fields = NULL, *patch = NULL;
        struct store_collection *nc = NULL;
        rc = sq__view_fields(cn, list, n, v->view_query, e, &fields);
        if (!rc) {
            patch = json_pack("{s:O}", "fields", fields);
            rc = store__collection_from_json(patch, v, now, e, &nc);
        }
        bool same = !rc && nc->n_fields == v->n_fields;
        for (size_t k = 0; same && k < v->n_fields; k++) {
            json_t *a = store__field_to_json(&v->fields[k]),
                   *b = store__field_to_json(&nc->fields[k]);
            same = json_equal(a, b);
            json_decref(a);
            json_decref(b);
        }
        if (!rc && !same && !(rc = save_row(cn, nc, false))) {
            store_collection_unref(list[i]);
            list[i] = v = store_collection_ref(nc);
        }
        store_collection_unref(nc);
        json_decref(patch);
        if (!rc)
            rc = sq__view_install(cn, v);
        if (rc == ERR_INVALID) {
            json_t *why = json_object_get(e, "viewQuery");
            char msg[700];
            snprintf(msg, sizeof(msg), "The view collection %s would no longer work: %s", v->name,
                     why ? json_string_value(json_object_get(why, "message")) : cn->errmsg);
            if (errors)
                store__verr_set(errors, "fields", "validation_view_dependency", msg);
            if (bad_out)
                *bad_out = i;
            rc = sq__fail(cn, ERR_INVALID, "%s", msg);
        }
        json_decref(e);
        json_decref(fields);
    }
    return rc;
}

/* Publishes the views of list (views_recreate may have given them new definitions). */
static void views_publish(struct sq_store *s, struct store_collection **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i]->type == STORE_COLLECTION_VIEW)
            sq__col_put(s, list[i]->id, store_collection_ref(list[i]));
}

/* Checks what needs the other collections: unique name and id, relation targets. */
static int check_against_list(struct store_collection **all, size_t n,
                              const struct store_collection *c, json_t *errors)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(all[i]->id, c->id) == 0)
            continue;
        if (strcasecmp(all[i]->name, c->name) == 0 || strcasecmp(all[i]->id, c->name) == 0) {
            store__verr_set(errors, "name", "validation_collection_name_exists",
                            "Collection name must be unique (case insensitive).");
            rc = ERR_INVALID;
        }
    }
    json_t *ferrs = json_object();
    for (size_t k = 0; k < c->n_fields; k++) {
        const struct store_field *f = &c->fields[k];
        if (f->type != STORE_FIELD_RELATION)
            continue;
        bool ok = strcmp(f->collection_id, c->id) == 0;
        for (size_t i = 0; i < n && !ok; i++)
            if (strcmp(all[i]->id, f->collection_id) == 0)
                ok = true;
        if (!ok) {
            char key[32];
            snprintf(key, sizeof(key), "%zu", k);
            json_object_set_new(
                ferrs, key,
                json_pack("{s:o}", "collectionId",
                          store__verr("validation_missing_collection",
                                      "The relation collection doesn't exist.", NULL)));
            rc = ERR_INVALID;
        }
    }
    if (json_object_size(ferrs) && !json_object_get(errors, "fields"))
        json_object_set(errors, "fields", ferrs);
    json_decref(ferrs);
    return rc;
}

static int check_against_others(struct sq_store *s, const struct store_collection *c,
                                json_t *errors)
{
    struct store_collection **all;
    size_t n;
    sq__col_all(s, &all, &n);
    int rc = check_against_list(all, n, c, errors);
    store_collection_list_free(all, n);
    return rc;
}

/* Translates a failed DDL statement into a validation error where it is the client's
 * doing (an index over duplicate values, a clashing index name). */
static int ddl_error(struct sq_conn *cn, int rc, json_t *errors)
{
    if (rc == ERR_CONFLICT) {
        store__verr_set(errors, "indexes", "validation_invalid_index_expression",
                        "The unique index cannot be created: the values are not unique.");
        return ERR_INVALID;
    }
    if (strstr(cn->errmsg, "already exists")) {
        store__verr_set(errors, "indexes", "validation_duplicated_index_name",
                        "An index with this name already exists.");
        return ERR_INVALID;
    }
    return rc;
}

int sq__collection_create(struct store *st, const json_t *spec, json_t **errors_out,
                          struct store_collection **out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    json_t *errors = json_object();
    struct store_collection *c = NULL;
    char now[TIME_PB_LEN];
    sq__now(now);
    json_t *vspec = NULL;
    int rc = 0;
    if (is_view_spec(spec)) {
        /* the fields of a view come from its query, read against the current schema (the
         * view is checked again, under the write lock, when it is made) */
        struct store_collection **all;
        size_t n_all;
        sq__col_all(s, &all, &n_all);
        rc = sq__view_spec(cn, all, n_all, spec, NULL, errors, &vspec);
        store_collection_list_free(all, n_all);
        if (rc)
            goto invalid;
        spec = vspec;
    }
    rc = store__collection_from_json(spec, NULL, now, errors, &c);
    if (rc)
        goto invalid;
    rc = sq__begin(s, cn);
    if (rc)
        goto out;
    /* a new collection whose id is taken: the same name derives the same id, so say it is
     * the name when the names match */
    struct store_collection *same = sq__col_find(s, c->id);
    if (same) {
        if (strcasecmp(same->name, c->name) == 0)
            store__verr_set(errors, "name", "validation_collection_name_exists",
                            "Collection name must be unique (case insensitive).");
        else
            store__verr_set(errors, "id", "validation_invalid_value",
                            "The collection id is already in use.");
        rc = ERR_INVALID;
        store_collection_unref(same);
    }
    if (!rc)
        rc = check_against_others(s, c, errors);
    if (!rc)
        rc = sq__collection_install(s, cn, c);
    if (rc) {
        rc = ddl_error(cn, rc, errors);
        sq__rollback(s, cn);
        if (rc == ERR_INVALID)
            goto invalid;
        goto out;
    }
    rc = sq__commit(s, cn);
    if (rc)
        goto out;
    sq__col_put(s, c->id, store_collection_ref(c));
    if (out)
        *out = store_collection_ref(c);
    goto out;
invalid:
    sq__fail(cn, ERR_INVALID, "Failed to create collection.");
    rc = ERR_INVALID;
out:
    json_decref(vspec);
    store_collection_unref(c);
    if (rc == ERR_INVALID && errors_out)
        *errors_out = json_incref(errors);
    json_decref(errors);
    return rc;
}

/* The SELECT expression that converts an old column to a new field of another kind. */
static void convert_expr(struct buf *b, const struct store_field *of, const struct store_field *nf)
{
    enum col_kind ok = kind_of(of), nk = kind_of(nf);
    struct buf q;
    buf_init(&q);
    store__quote(&q, of->name);
    const char *col = buf_cstr(&q);
    if (ok == nk) {
        buf_puts(b, col);
    } else if (ok == K_TEXT && nk == K_MULTI) {
        buf_printf(b, "(CASE WHEN %s = '' THEN '[]' ELSE json_array(%s) END)", col, col);
    } else if (ok == K_MULTI && nk == K_TEXT) {
        buf_printf(b, "COALESCE(json_extract(%s, '$[#-1]'), '')", col);
    } else if (nk == K_NUM || nk == K_BOOL) {
        buf_printf(b, "COALESCE(CAST(%s AS NUMERIC), 0)", col);
    } else if (nk == K_GEO) {
        /* an object keeps its numeric lon/lat, anything else becomes the zero point */
        buf_printf(b,
                   "(CASE WHEN json_valid(%s) AND json_type(%s) = 'object' THEN "
                   "json_object('lon', COALESCE(json_extract(%s, '$.lon') + 0, 0), "
                   "'lat', COALESCE(json_extract(%s, '$.lat') + 0, 0)) "
                   "ELSE '{\"lon\":0,\"lat\":0}' END)",
                   col, col, col, col);
    } else if (nk == K_JSON) {
        buf_printf(b, "(CASE WHEN json_valid(%s) THEN %s ELSE json_quote(%s) END)", col, col, col);
    } else {
        buf_printf(b, "COALESCE(CAST(%s AS TEXT), '')", col);
    }
    buf_release(&q);
}

static int migrate(struct sq_conn *cn, const struct store_collection *old,
                   const struct store_collection *nc)
{
    struct buf b;
    buf_init(&b);
    int rc = drop_indexes(cn, old);
    if (rc)
        goto out;
    if (strcmp(old->name, nc->name) != 0) {
        buf_puts(&b, "ALTER TABLE ");
        store__quote(&b, old->name);
        buf_puts(&b, " RENAME TO ");
        store__quote(&b, nc->name);
        if ((rc = exec_buf(cn, &b)))
            goto out;
    }
    bool rebuild = false;
    for (size_t i = 0; i < nc->n_fields; i++) {
        const struct store_field *of = store_collection_field_by_id(old, nc->fields[i].id);
        if (of && kind_of(of) != kind_of(&nc->fields[i]))
            rebuild = true;
    }
    if (rebuild) {
        char tmp[300];
        snprintf(tmp, sizeof(tmp), "_tmp_%s", nc->name);
        create_table_sql(&b, nc, tmp);
        if ((rc = exec_buf(cn, &b)))
            goto out;
        buf_puts(&b, "INSERT INTO ");
        store__quote(&b, tmp);
        buf_puts(&b, " (");
        size_t n = 0;
        for (size_t i = 0; i < nc->n_fields; i++) {
            if (!store_collection_field_by_id(old, nc->fields[i].id))
                continue;
            if (n++)
                buf_puts(&b, ", ");
            store__quote(&b, nc->fields[i].name);
        }
        buf_puts(&b, ") SELECT ");
        n = 0;
        for (size_t i = 0; i < nc->n_fields; i++) {
            const struct store_field *of = store_collection_field_by_id(old, nc->fields[i].id);
            if (!of)
                continue;
            if (n++)
                buf_puts(&b, ", ");
            convert_expr(&b, of, &nc->fields[i]);
        }
        buf_puts(&b, " FROM ");
        store__quote(&b, nc->name);
        if ((rc = exec_buf(cn, &b)))
            goto out;
        buf_puts(&b, "DROP TABLE ");
        store__quote(&b, nc->name);
        if ((rc = exec_buf(cn, &b)))
            goto out;
        buf_puts(&b, "ALTER TABLE ");
        store__quote(&b, tmp);
        buf_puts(&b, " RENAME TO ");
        store__quote(&b, nc->name);
        if ((rc = exec_buf(cn, &b)))
            goto out;
    } else {
        for (size_t i = 0; i < old->n_fields; i++) {
            if (store_collection_field_by_id(nc, old->fields[i].id))
                continue;
            buf_puts(&b, "ALTER TABLE ");
            store__quote(&b, nc->name);
            buf_puts(&b, " DROP COLUMN ");
            store__quote(&b, old->fields[i].name);
            if ((rc = exec_buf(cn, &b)))
                goto out;
        }
        /* renames go through temporary names so that swapping two names works */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < nc->n_fields; i++) {
                const struct store_field *nf = &nc->fields[i];
                const struct store_field *of = store_collection_field_by_id(old, nf->id);
                if (!of || strcmp(of->name, nf->name) == 0)
                    continue;
                char tmpname[128];
                snprintf(tmpname, sizeof(tmpname), "_tmp_rename_%zu", i);
                buf_puts(&b, "ALTER TABLE ");
                store__quote(&b, nc->name);
                buf_puts(&b, " RENAME COLUMN ");
                store__quote(&b, pass == 0 ? of->name : tmpname);
                buf_puts(&b, " TO ");
                store__quote(&b, pass == 0 ? tmpname : nf->name);
                if ((rc = exec_buf(cn, &b)))
                    goto out;
            }
        }
        for (size_t i = 0; i < nc->n_fields; i++) {
            if (store_collection_field_by_id(old, nc->fields[i].id))
                continue;
            buf_puts(&b, "ALTER TABLE ");
            store__quote(&b, nc->name);
            buf_puts(&b, " ADD COLUMN ");
            column_def(&b, &nc->fields[i]);
            if ((rc = exec_buf(cn, &b)))
                goto out;
        }
    }
    rc = create_indexes(cn, nc);
out:
    buf_release(&b);
    return rc;
}

int sq__collection_update(struct store *st, const char *id_or_name, const json_t *patch,
                          json_t **errors_out, struct store_collection **out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    json_t *errors = json_object();
    struct store_collection *c = NULL;
    char now[TIME_PB_LEN];
    sq__now(now);
    int rc = sq__begin(s, cn);
    if (rc) {
        json_decref(errors);
        return rc;
    }
    sq__auth_changed(cn); /* a type or field change may end an auth collection's tokens */
    /* read the current definition under the write lock: no other change can interleave */
    struct store_collection *old = sq__col_find(s, id_or_name);
    if (!old) {
        sq__rollback(s, cn);
        json_decref(errors);
        return sq__fail(cn, ERR_NOTFOUND, "no collection %s", id_or_name);
    }
    struct store_collection **all = NULL, **after = NULL;
    size_t n_all = 0, n_after = 0;
    json_t *vpatch = NULL;
    sq__col_all(s, &all, &n_all);
    if (old->type == STORE_COLLECTION_VIEW) {
        rc = sq__view_spec(cn, all, n_all, patch, old, errors, &vpatch);
        if (!rc)
            patch = vpatch;
    }
    if (!rc)
        rc = store__collection_from_json(patch, old, now, errors, &c);
    if (!rc)
        rc = check_against_others(s, c, errors);
    /* views re-parse against the changed tables: off while they change, back after */
    if (!rc)
        rc = sq__views_drop(cn, all, n_all);
    if (!rc && c->type != STORE_COLLECTION_VIEW)
        rc = migrate(cn, old, c);
    if (!rc)
        rc = save_row(cn, c, false);
    if (!rc) {
        col_all_with(s, c, NULL, &after, &n_after);
        rc = views_recreate(cn, after, n_after, now, errors, NULL);
        for (size_t i = 0; !rc && i < n_after; i++)
            if (strcmp(after[i]->id, c->id) == 0 && after[i] != c) { /* c is a view: its own */
                store_collection_unref(c);
                c = store_collection_ref(after[i]);
            }
    }
    store_collection_list_free(all, n_all);
    json_decref(vpatch);
    if (rc) {
        store_collection_list_free(after, n_after);
        rc = ddl_error(cn, rc, errors);
        sq__rollback(s, cn);
        if (rc == ERR_INVALID)
            sq__fail(cn, ERR_INVALID, "Failed to update collection.");
        goto out;
    }
    rc = sq__commit(s, cn);
    if (!rc)
        views_publish(s, after, n_after);
    store_collection_list_free(after, n_after);
    if (rc)
        goto out;
    sq__col_put(s, c->id, store_collection_ref(c));
    if (out)
        *out = store_collection_ref(c);
out:
    store_collection_unref(old);
    store_collection_unref(c);
    if (rc == ERR_INVALID && errors_out)
        *errors_out = json_incref(errors);
    json_decref(errors);
    return rc;
}

int sq__collection_delete(struct store *st, const char *id_or_name)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    int rc = sq__begin(s, cn);
    if (rc)
        return rc;
    sq__auth_changed(cn);
    struct store_collection *c = sq__col_find(s, id_or_name);
    struct store_collection **all = NULL, **rest = NULL;
    size_t n = 0, n_rest = 0;
    struct buf b;
    buf_init(&b);
    if (!c) {
        rc = sq__fail(cn, ERR_NOTFOUND, "no collection %s", id_or_name);
        goto fail;
    }
    if (c->system) {
        rc = sq__fail(cn, ERR_DENIED, "System collections cannot be deleted.");
        goto fail;
    }
    sq__col_all(s, &all, &n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(all[i]->id, c->id) == 0)
            continue;
        for (size_t k = 0; k < all[i]->n_fields; k++) {
            const struct store_field *f = &all[i]->fields[k];
            if (f->type == STORE_FIELD_RELATION && strcmp(f->collection_id, c->id) == 0) {
                rc = sq__fail(cn, ERR_CONFLICT,
                              "The collection is referenced by the relation field %s.%s.",
                              all[i]->name, f->name);
                goto fail;
            }
        }
    }
    if ((rc = sq__views_drop(cn, all, n)))
        goto fail;
    if (c->type != STORE_COLLECTION_VIEW) {
        buf_puts(&b, "DROP TABLE ");
        store__quote(&b, c->name);
        if ((rc = exec_buf(cn, &b)))
            goto fail;
    }
    char now[TIME_PB_LEN];
    sq__now(now);
    col_all_with(s, NULL, c->id, &rest, &n_rest);
    rc = views_recreate(cn, rest, n_rest, now, NULL, NULL);
    if (rc == ERR_INVALID)
        rc = sq__fail(cn, ERR_CONFLICT, "%s", cn->errmsg);
    if (rc)
        goto fail;
    struct sq_stmt stt;
    if ((rc = sq__prep(cn, "DELETE FROM \"_collections\" WHERE \"id\" = ?1", &stt)))
        goto fail;
    sqlite3_bind_text(stt.stmt, 1, c->id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stt.stmt) != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot delete the collection");
    sq__done(&stt);
    if (rc)
        goto fail;
    rc = sq__commit(s, cn);
    if (!rc) {
        sq__col_put(s, c->id, NULL);
        views_publish(s, rest, n_rest);
    }
    goto out;
fail:
    sq__rollback(s, cn);
out:
    buf_release(&b);
    store_collection_list_free(all, n);
    store_collection_list_free(rest, n_rest);
    store_collection_unref(c);
    return rc;
}

/* ---- import ---- */

static struct store_collection *list_find(struct store_collection **list, size_t n, const char *id,
                                          const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && id && strcmp(list[i]->id, id) == 0)
            return list[i];
    for (size_t i = 0; i < n; i++)
        if (list[i] && name && strcasecmp(list[i]->name, name) == 0)
            return list[i];
    return NULL;
}

static void import_error(json_t *errors, size_t i, json_t *item_errors)
{
    json_t *ce = json_object_get(errors, "collections");
    if (!ce) {
        ce = json_object();
        json_object_set_new(errors, "collections", ce);
    }
    char key[32];
    snprintf(key, sizeof(key), "%zu", i);
    json_object_set(ce, key, item_errors);
}

/* PocketBase's import of a collection that exists: the imported definition goes on top of
 * the existing one. Existing fields it does not list (by id) stay, unless delete_missing
 * (system fields always stay); one the import lists under the same name and type is the
 * existing field (its id and options). Without "fields", the fields stay as they are, or,
 * with delete_missing, only the system ones do. RETURNS a new spec. */
static json_t *import_on_top(const json_t *spec, const struct store_collection *cur,
                             bool delete_missing)
{
    json_t *out = json_deep_copy(spec);
    json_t *fields = json_object_get(out, "fields");
    if (!json_is_array(fields)) {
        if (!delete_missing)
            return out;
        fields = json_array();
        json_object_set_new(out, "fields", fields);
    }
    for (size_t i = 0; i < cur->n_fields; i++) {
        const struct store_field *f = &cur->fields[i];
        if (!f->system && delete_missing)
            continue;
        bool listed = false;
        size_t same_name = SIZE_MAX;
        for (size_t k = 0; k < json_array_size(fields) && !listed; k++) {
            json_t *jf = json_array_get(fields, k);
            const char *id = json_string_value(json_object_get(jf, "id"));
            const char *name = json_string_value(json_object_get(jf, "name"));
            const char *type = json_string_value(json_object_get(jf, "type"));
            listed = id && strcmp(id, f->id) == 0;
            if (!listed && name && strcmp(name, f->name) == 0 && type &&
                strcmp(type, store_field_type_name(f->type)) == 0)
                same_name = k;
        }
        if (listed)
            continue;
        if (same_name != SIZE_MAX)
            json_array_set_new(fields, same_name, store__field_to_json(f));
        else
            json_array_append_new(fields, store__field_to_json(f));
    }
    return out;
}

int sq__collection_import(struct store *st, const json_t *collections, bool delete_missing,
                          json_t **errors_out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    if (!json_is_array(collections)) {
        if (errors_out)
            *errors_out = json_pack("{s:o}", "collections",
                                    store__verr("validation_required", "Cannot be blank.", NULL));
        return sq__fail(cn, ERR_INVALID, "Failed to import collections.");
    }
    size_t n_in = json_array_size(collections);
    json_t *errors = json_object();
    char now[TIME_PB_LEN];
    sq__now(now);
    struct store_collection **old = NULL, **list = NULL;
    size_t n_old = 0, n_list = 0;
    struct store_collection **olds_of = xcalloc(n_in ? n_in : 1, sizeof(*olds_of));
    struct store_collection **news = xcalloc(n_in ? n_in : 1, sizeof(*news));
    char **tmp_names = NULL; /* pass 3: where a renamed table waits */
    struct buf b;
    buf_init(&b);
    int rc = sq__begin(s, cn);
    if (rc)
        goto out_nolock;
    sq__auth_changed(cn);
    sq__col_all(s, &old, &n_old);
    /* the working list: the current collections, then replaced or extended by the import */
    list = xcalloc(n_old + n_in + 1, sizeof(*list));
    for (size_t i = 0; i < n_old; i++)
        list[n_list++] = store_collection_ref(old[i]);
    /* pass 1: parse every definition, so relations may point forward */
    for (size_t i = 0; i < n_in; i++) {
        json_t *spec = json_array_get(collections, i);
        const char *id = json_string_value(json_object_get(spec, "id"));
        const char *name = json_string_value(json_object_get(spec, "name"));
        struct store_collection *cur = list_find(list, n_list, id, name);
        json_t *ie = json_object();
        const char *type = json_string_value(json_object_get(spec, "type"));
        /* a view's fields are inferred once its tables are there (pass 4) */
        json_t *pspec = is_view_spec(spec) ? json_deep_copy(spec)
                        : cur && (!type || strcmp(type, store_collection_type_name(cur->type)) == 0)
                            ? import_on_top(spec, cur, delete_missing)
                            : json_incref(spec);
        if (is_view_spec(spec))
            json_object_del(pspec, "fields");
        if (cur && type && strcmp(type, store_collection_type_name(cur->type)) != 0) {
            store__verr_set(ie, "type", "validation_collection_type_change",
                            "Collection type cannot be changed.");
            rc = ERR_INVALID;
        } else if (store__collection_from_json(pspec, cur, now, ie, &news[i]) != 0) {
            rc = ERR_INVALID;
        }
        json_decref(pspec);
        if (rc) {
            import_error(errors, i, ie);
            json_decref(ie);
            goto fail;
        }
        json_decref(ie);
        olds_of[i] = store_collection_ref(cur);
        for (size_t k = 0; k < n_list; k++)
            if (cur && list[k] == cur) {
                store_collection_unref(list[k]);
                list[k] = store_collection_ref(news[i]);
                cur = NULL;
            }
        if (!olds_of[i]) {
            if (list_find(list, n_list, news[i]->id, NULL)) {
                json_t *e = json_object();
                store__verr_set(e, "id", "validation_invalid_value",
                                "The collection id is already in use.");
                import_error(errors, i, e);
                json_decref(e);
                rc = ERR_INVALID;
                goto fail;
            }
            list[n_list++] = store_collection_ref(news[i]);
        }
    }
    /* the views go while tables change; pass 4 makes them again */
    if ((rc = sq__views_drop(cn, old, n_old)))
        goto fail;
    /* collections the import does not mention */
    if (delete_missing) {
        for (size_t k = 0; k < n_list; k++) {
            bool mentioned = false;
            for (size_t i = 0; i < n_in && !mentioned; i++)
                mentioned = list[k] == news[i];
            if (mentioned || list[k]->system)
                continue;
            buf_reset(&b);
            buf_puts(&b, "DROP TABLE ");
            store__quote(&b, list[k]->name);
            if (list[k]->type != STORE_COLLECTION_VIEW && (rc = sq__exec(cn, buf_cstr(&b))))
                goto fail;
            struct sq_stmt del;
            if ((rc = sq__prep(cn, "DELETE FROM \"_collections\" WHERE \"id\" = ?1", &del)))
                goto fail;
            sqlite3_bind_text(del.stmt, 1, list[k]->id, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(del.stmt) != SQLITE_DONE)
                rc = sq__fail_db(cn, "cannot delete the collection");
            sq__done(&del);
            if (rc)
                goto fail;
            store_collection_unref(list[k]);
            list[k] = list[--n_list];
            k--;
        }
    }
    /* pass 2: names, ids and relation targets against the final set */
    for (size_t i = 0; i < n_in; i++) {
        json_t *ie = json_object();
        if (check_against_list(list, n_list, news[i], ie) != 0) {
            import_error(errors, i, ie);
            json_decref(ie);
            rc = ERR_INVALID;
            goto fail;
        }
        json_decref(ie);
    }
    for (size_t k = 0; k < n_list; k++)
        for (size_t f = 0; f < list[k]->n_fields; f++) {
            const struct store_field *fd = &list[k]->fields[f];
            if (fd->type == STORE_FIELD_RELATION &&
                !list_find(list, n_list, fd->collection_id, NULL)) {
                store__verr_set(errors, "collections", "validation_missing_collection",
                                "A relation points to a collection that would be deleted.");
                rc = ERR_INVALID;
                goto fail;
            }
        }
    /* pass 3: the tables; renames first move every changed table out of the way, so an import
     * may swap names */
    tmp_names = xcalloc(n_in ? n_in : 1, sizeof(*tmp_names));
    for (size_t i = 0; i < n_in; i++) {
        if (!olds_of[i] || strcmp(olds_of[i]->name, news[i]->name) == 0 ||
            olds_of[i]->type == STORE_COLLECTION_VIEW)
            continue;
        tmp_names[i] = xmalloc(64);
        snprintf(tmp_names[i], 64, "_tandem_import_%zu", i);
        buf_reset(&b);
        buf_puts(&b, "ALTER TABLE ");
        store__quote(&b, olds_of[i]->name);
        buf_puts(&b, " RENAME TO ");
        store__quote(&b, tmp_names[i]);
        if ((rc = sq__exec(cn, buf_cstr(&b))))
            goto fail;
        /* the catalogue's names are unique too: its row waits under the same name */
        struct sq_stmt mv;
        if ((rc = sq__prep(cn, "UPDATE \"_collections\" SET \"name\" = ?1 WHERE \"id\" = ?2", &mv)))
            goto fail;
        sqlite3_bind_text(mv.stmt, 1, tmp_names[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(mv.stmt, 2, olds_of[i]->id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(mv.stmt) != SQLITE_DONE)
            rc = sq__fail_db(cn, "cannot rename the collection");
        sq__done(&mv);
        if (rc)
            goto fail;
    }
    for (size_t i = 0; i < n_in; i++) {
        if (olds_of[i] && olds_of[i]->type == STORE_COLLECTION_VIEW) {
            rc = 0; /* pass 4 */
        } else if (olds_of[i]) {
            struct store_collection moved = *olds_of[i]; /* the same, at its temporary name */
            if (tmp_names[i])
                moved.name = tmp_names[i];
            rc = migrate(cn, &moved, news[i]);
        } else
            rc = create_table_only(cn, news[i]);
        if (!rc)
            rc = save_row(cn, news[i], olds_of[i] == NULL);
        if (rc) {
            int vrc = ddl_error(cn, rc, errors);
            rc = vrc;
            goto fail;
        }
    }
    for (size_t i = 0; i < n_in; i++)
        if (!olds_of[i] && (rc = create_indexes(cn, news[i])) != 0) {
            rc = ddl_error(cn, rc, errors);
            goto fail;
        }
    /* pass 4: every view in order, its fields inferred from the imported tables (and the
     * views before it) */
    size_t bad = 0;
    rc = views_recreate(cn, list, n_list, now, NULL, &bad);
    if (rc == ERR_INVALID) {
        size_t i = 0;
        while (i < n_in && strcmp(news[i]->id, list[bad]->id) != 0)
            i++;
        json_t *ie = json_object();
        store__verr_set(ie, "viewQuery", "validation_invalid_view_query", cn->errmsg);
        import_error(errors, i < n_in ? i : 0, ie);
        json_decref(ie);
    }
    if (rc)
        goto fail;
    rc = sq__commit(s, cn);
    if (rc)
        goto out;
    sq__col_replace_all(s, list, n_list);
    list = NULL;
    n_list = 0;
    goto out;
fail:
    sq__rollback(s, cn);
    if (rc == ERR_INVALID)
        sq__fail(cn, ERR_INVALID, "Failed to import collections.");
out:
    store_collection_list_free(old, n_old);
out_nolock:
    if (list)
        store_collection_list_free(list, n_list);
    for (size_t i = 0; i < n_in; i++) {
        store_collection_unref(news[i]);
        store_collection_unref(olds_of[i]);
    }
    free(news);
    free(olds_of);
    for (size_t i = 0; tmp_names && i < n_in; i++)
        free(tmp_names[i]);
    free(tmp_names);
    buf_release(&b);
    if (rc == ERR_INVALID && errors_out)
        *errors_out = json_incref(errors);
    json_decref(errors);
    return rc;
}
