/* whd_mirror.c - the `changes` table and the app_<collection> mirrors on DuckDB.
 *
 * A mirror has an `id` column plus one column per mirrored field, named as the field. Which
 * field a column belongs to is kept in _mirror_fields (by the field's stable id), so renames
 * survive restarts. Mirror rows are written by one path only, mirror_put(), both when changes
 * are loaded and when a mirror is (re)filled from `changes`. Mirrors have no primary key:
 * a batch deletes every id it touches and appends the final image of each record, which keeps
 * ids unique without DuckDB's index costs. */
#include <string.h>
#include <strings.h>

#include "warehouse/duckdb/whd_int.h"

enum col_kind { K_VARCHAR, K_DOUBLE, K_BOOL, K_TS, K_LIST, K_JSON, K_BAD };

static const char *const kind_sql[] = {"VARCHAR",   "DOUBLE",    "BOOLEAN",
                                       "TIMESTAMP", "VARCHAR[]", "JSON"};

static enum col_kind kind_of_sql(const char *t)
{
    for (size_t i = 0; i < ARRAY_LEN(kind_sql); i++)
        if (strcmp(kind_sql[i], t) == 0)
            return (enum col_kind)i;
    return K_BAD;
}

static bool field_mirrored(const struct store_field *f)
{
    return f->type != STORE_FIELD_PASSWORD && !f->hidden && strcmp(f->name, "id") != 0;
}

static enum col_kind kind_of_field(const struct store_field *f)
{
    if (store_field_multiple(f))
        return K_LIST;
    switch (f->type) {
    case STORE_FIELD_NUMBER: return K_DOUBLE;
    case STORE_FIELD_BOOL: return K_BOOL;
    case STORE_FIELD_DATE:
    case STORE_FIELD_AUTODATE: return K_TS;
    case STORE_FIELD_JSON:
    case STORE_FIELD_GEO_POINT: return K_JSON; /* {"lon":x,"lat":y} */
    default: return K_VARCHAR;
    }
}

static bool ident_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 120)
        return false;
    for (const char *p = s; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                  (p != s && *p >= '0' && *p <= '9');
        if (!ok)
            return false;
    }
    return true;
}

/* ---- small query helpers ---- */

/* Reads the VARCHAR cell (col,row) of a chunk; NULL when NULL. Borrowed from the chunk. */
static const char *cell_str(duckdb_data_chunk ch, idx_t col, idx_t row, size_t *len_out)
{
    duckdb_vector v = duckdb_data_chunk_get_vector(ch, col);
    uint64_t *val = duckdb_vector_get_validity(v);
    if (val && !duckdb_validity_row_is_valid(val, row))
        return NULL;
    duckdb_string_t *s = &((duckdb_string_t *)duckdb_vector_get_data(v))[row];
    *len_out = duckdb_string_t_length(*s);
    return duckdb_string_t_data(s);
}

/* Runs a query with up to 3 VARCHAR parameters; res must be destroyed by the caller. */
static int query_params(struct whd_conn *c, const char *sql, const char *const *params,
                        size_t n_params, duckdb_result *res)
{
    duckdb_prepared_statement ps;
    if (duckdb_prepare(c->con, sql, &ps) != DuckDBSuccess) {
        int rc = whd__fail(c, ERR_INTERNAL, "cannot prepare %s: %s", sql, duckdb_prepare_error(ps));
        duckdb_destroy_prepare(&ps);
        return rc;
    }
    for (size_t i = 0; i < n_params; i++)
        duckdb_bind_varchar(ps, i + 1, params[i]);
    duckdb_state st = duckdb_execute_prepared(ps, res);
    duckdb_destroy_prepare(&ps);
    if (st != DuckDBSuccess)
        return whd__result_fail(c, res, NULL);
    return 0;
}

static int exec_params(struct whd_conn *c, const char *sql, const char *const *params,
                       size_t n_params)
{
    duckdb_result res;
    int rc = query_params(c, sql, params, n_params, &res);
    if (rc == 0)
        duckdb_destroy_result(&res);
    return rc;
}

/* ---- a mirror's shape ---- */

struct mcol {
    char *name;
    enum col_kind kind;
};

struct mirror {
    char *table;
    struct mcol *cols; /* without id */
    size_t n_cols;
};

static void mirror_release(struct mirror *m)
{
    free(m->table);
    for (size_t i = 0; i < m->n_cols; i++)
        free(m->cols[i].name);
    free(m->cols);
    memset(m, 0, sizeof(*m));
}

/* Mirror layouts by collection id, so that a batch of changes does not ask DuckDB's catalog
 * twice per collection (each statement costs a parse, a plan and a hand-off to DuckDB's
 * worker). Mirrors change only through whd__apply_collection and whd__drop_collection, which
 * clear the cache of their connection, as does a failed load; every connection has its own. */
#define MIRROR_CACHE_MAX 64

struct whd_mirror_cache {
    size_t n;
    struct {
        char *collection_id;
        bool missing; /* ERR_NOTFOUND: no mirror */
        struct mirror m;
    } v[MIRROR_CACHE_MAX];
};

void whd__mirror_cache_clear(struct whd_conn *c)
{
    struct whd_mirror_cache *mc = c->mirrors;
    if (!mc)
        return;
    for (size_t i = 0; i < mc->n; i++) {
        free(mc->v[i].collection_id);
        mirror_release(&mc->v[i].m);
    }
    free(mc);
    c->mirrors = NULL;
}

static void mirror_copy(struct mirror *to, const struct mirror *from)
{
    to->table = xstrdup(from->table);
    to->n_cols = from->n_cols;
    to->cols = xcalloc(from->n_cols ? from->n_cols : 1, sizeof(*to->cols));
    for (size_t i = 0; i < from->n_cols; i++) {
        to->cols[i].name = xstrdup(from->cols[i].name);
        to->cols[i].kind = from->cols[i].kind;
    }
}

static int mirror_load(struct whd_conn *c, const char *collection_id, struct mirror *m);

/* mirror_load through the connection's cache: for loading changes only (the schema changes
 * read the catalog itself). */
static int mirror_load_cached(struct whd_conn *c, const char *collection_id, struct mirror *m)
{
    struct whd_mirror_cache *mc = c->mirrors;
    for (size_t i = 0; mc && i < mc->n; i++)
        if (strcmp(mc->v[i].collection_id, collection_id) == 0) {
            memset(m, 0, sizeof(*m));
            if (mc->v[i].missing)
                return ERR_NOTFOUND;
            mirror_copy(m, &mc->v[i].m);
            return 0;
        }
    int rc = mirror_load(c, collection_id, m);
    if (rc < 0 && rc != ERR_NOTFOUND)
        return rc;
    if (!mc)
        mc = c->mirrors = xcalloc(1, sizeof(*mc));
    if (mc->n < MIRROR_CACHE_MAX) {
        mc->v[mc->n].collection_id = xstrdup(collection_id);
        mc->v[mc->n].missing = rc == ERR_NOTFOUND;
        memset(&mc->v[mc->n].m, 0, sizeof(mc->v[mc->n].m));
        if (rc == 0)
            mirror_copy(&mc->v[mc->n].m, m);
        mc->n++;
    }
    return rc;
}

/* The mirror of collection_id with its columns in table order; ERR_NOTFOUND if none. */
static int mirror_load(struct whd_conn *c, const char *collection_id, struct mirror *m)
{
    memset(m, 0, sizeof(*m));
    duckdb_result res;
    int rc = query_params(c, "SELECT table_name FROM _mirrors WHERE collection_id = $1",
                          &collection_id, 1, &res);
    if (rc < 0)
        return rc;
    if (duckdb_row_count(&res) == 0) {
        duckdb_destroy_result(&res);
        return ERR_NOTFOUND;
    }
    char *t = duckdb_value_varchar(&res, 0, 0);
    m->table = xstrdup(t);
    duckdb_free(t);
    duckdb_destroy_result(&res);
    const char *p[] = {m->table};
    rc = query_params(c,
                      "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                      "current_database() AND schema_name = 'main' AND table_name = $1 "
                      "AND column_name <> 'id' ORDER BY column_index",
                      p, 1, &res);
    if (rc < 0) {
        mirror_release(m);
        return rc;
    }
    idx_t n = duckdb_row_count(&res);
    m->cols = xcalloc(n ? n : 1, sizeof(*m->cols));
    for (idx_t i = 0; i < n; i++) {
        char *name = duckdb_value_varchar(&res, 0, i);
        char *type = duckdb_value_varchar(&res, 1, i);
        m->cols[m->n_cols].name = xstrdup(name);
        m->cols[m->n_cols].kind = kind_of_sql(type);
        m->n_cols++;
        duckdb_free(name);
        duckdb_free(type);
    }
    duckdb_destroy_result(&res);
    return 0;
}

/* ---- writing mirror rows ---- */

struct rejects {
    struct wh_reject *v;
    size_t n, cap;
    char **strs;
    size_t n_strs, cap_strs;
};

static void rejects_release(struct rejects *r)
{
    free(r->v);
    for (size_t i = 0; i < r->n_strs; i++)
        free(r->strs[i]);
    free(r->strs);
    memset(r, 0, sizeof(*r));
}

static char *rejects_keep(struct rejects *r, char *s)
{
    if (r->n_strs == r->cap_strs) {
        r->cap_strs = r->cap_strs ? r->cap_strs * 2 : 16;
        r->strs = xrealloc(r->strs, r->cap_strs * sizeof(*r->strs));
    }
    r->strs[r->n_strs++] = s;
    return s;
}

static void rejects_add(struct rejects *r, uint64_t log_offset, const char *reason,
                        const json_t *record)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    char *payload = record ? json_dumps(record, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (payload)
        rejects_keep(r, payload);
    r->v[r->n++] = (struct wh_reject){
        .log_offset = log_offset,
        .reason = rejects_keep(r, xstrdup(reason)),
        .payload = payload,
        .payload_len = payload ? strlen(payload) : 0,
    };
}

struct cellv {
    bool null;
    double d;
    bool b;
    int64_t ts;
    const char *s;
    char *owned; /* JSON text */
    duckdb_value list;
};

/* Converts one field value; false with reason when it does not fit its column. */
static bool convert(const struct mcol *col, const json_t *v, struct cellv *out, char *reason,
                    size_t reason_len)
{
    memset(out, 0, sizeof(*out));
    if (!v || json_is_null(v)) {
        out->null = true;
        return true;
    }
    switch (col->kind) {
    case K_VARCHAR:
        if (!json_is_string(v))
            goto bad;
        out->s = json_string_value(v);
        return true;
    case K_DOUBLE:
        if (!json_is_number(v))
            goto bad;
        out->d = json_number_value(v);
        return true;
    case K_BOOL:
        if (!json_is_boolean(v))
            goto bad;
        out->b = json_is_true(v);
        return true;
    case K_TS:
        if (!json_is_string(v))
            goto bad;
        if (json_string_length(v) == 0) {
            out->null = true;
            return true;
        }
        if (time_parse(json_string_value(v), json_string_length(v), &out->ts) < 0)
            goto bad;
        return true;
    case K_LIST: {
        duckdb_logical_type vt = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        duckdb_value *items = xcalloc(n ? n : 1, sizeof(*items));
        bool ok = true;
        size_t k = 0;
        if (json_is_string(v)) {
            if (json_string_length(v) > 0)
                items[k++] =
                    duckdb_create_varchar_length(json_string_value(v), json_string_length(v));
        } else if (json_is_array(v)) {
            for (size_t i = 0; i < n && ok; i++) {
                const json_t *x = json_array_get(v, i);
                if (!json_is_string(x))
                    ok = false;
                else
                    items[k++] =
                        duckdb_create_varchar_length(json_string_value(x), json_string_length(x));
            }
        } else {
            ok = false;
        }
        if (ok)
            out->list = duckdb_create_list_value(vt, items, k);
        for (size_t i = 0; i < k; i++)
            duckdb_destroy_value(&items[i]);
        free(items);
        duckdb_destroy_logical_type(&vt);
        if (!ok)
            goto bad;
        return true;
    }
    case K_JSON:
        out->owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        out->s = out->owned;
        return true;
    default:
        snprintf(reason, reason_len, "field %s: the mirror column has an unknown type", col->name);
        return false;
    }
bad:
    snprintf(reason, reason_len, "field %s: value does not fit column type %s", col->name,
             kind_sql[col->kind]);
    return false;
}

static void cell_release(struct cellv *cv)
{
    free(cv->owned);
    if (cv->list)
        duckdb_destroy_value(&cv->list);
}

static int append_cell(duckdb_appender app, const struct mcol *col, const struct cellv *cv)
{
    duckdb_state st;
    if (cv->null)
        st = duckdb_append_null(app);
    else
        switch (col->kind) {
        case K_DOUBLE: st = duckdb_append_double(app, cv->d); break;
        case K_BOOL: st = duckdb_append_bool(app, cv->b); break;
        case K_TS: st = duckdb_append_timestamp(app, (duckdb_timestamp){cv->ts}); break;
        case K_LIST: st = duckdb_append_value(app, cv->list); break;
        default: st = duckdb_append_varchar(app, cv->s); break;
        }
    return st == DuckDBSuccess ? 0 : -1;
}

/* Appends record as a row of m; a value that does not fit goes to rej instead. */
static int mirror_put(struct whd_conn *c, duckdb_appender app, const struct mirror *m,
                      const char *record_id, const json_t *record, uint64_t log_offset,
                      struct rejects *rej)
{
    struct cellv *cells = xcalloc(m->n_cols ? m->n_cols : 1, sizeof(*cells));
    char reason[256];
    size_t done = 0;
    int rc = 0;
    bool ok = json_is_object(record);
    if (!ok)
        snprintf(reason, sizeof(reason), "record %s: the after image is not an object", record_id);
    for (; ok && done < m->n_cols; done++)
        if (!convert(&m->cols[done], json_object_get(record, m->cols[done].name), &cells[done],
                     reason, sizeof(reason)))
            ok = false;
    if (!ok) {
        char full[400];
        snprintf(full, sizeof(full), "mirror %s: %s", m->table, reason);
        rejects_add(rej, log_offset, full, record);
        goto out;
    }
    if (duckdb_append_varchar(app, record_id) != DuckDBSuccess)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < m->n_cols; i++)
        rc = append_cell(app, &m->cols[i], &cells[i]);
    if (rc == 0 && duckdb_appender_end_row(app) != DuckDBSuccess)
        rc = -1;
    if (rc < 0) {
        const char *e = duckdb_appender_error(app);
        rc = whd__fail(c, ERR_INTERNAL, "cannot append to %s: %s", m->table, e ? e : "?");
    }
out:
    for (size_t i = 0; i < done; i++)
        cell_release(&cells[i]);
    free(cells);
    return rc;
}

static int appender_open(struct whd_conn *c, const char *table, duckdb_appender *app)
{
    if (duckdb_appender_create(c->con, NULL, table, app) != DuckDBSuccess) {
        const char *e = *app ? duckdb_appender_error(*app) : NULL;
        int rc = whd__fail(c, ERR_INTERNAL, "cannot append to %s: %s", table, e ? e : "?");
        duckdb_appender_destroy(app);
        return rc;
    }
    return 0;
}

static int appender_finish(struct whd_conn *c, duckdb_appender *app, const char *table, int rc)
{
    if (rc == 0 && duckdb_appender_close(*app) != DuckDBSuccess) {
        const char *e = duckdb_appender_error(*app);
        rc = whd__fail(c, ERR_INTERNAL, "cannot append to %s: %s", table, e ? e : "?");
    }
    duckdb_appender_destroy(app);
    return rc;
}

/* Empties m and refills it from the latest change of every record in `changes`. */
static int mirror_refill(struct whd_conn *c, const char *collection_id, const struct mirror *m,
                         struct rejects *rej)
{
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, "DELETE FROM ");
    whd__quote_ident(&sql, m->table);
    int rc = whd__exec(c, buf_cstr(&sql));
    buf_release(&sql);
    if (rc < 0)
        return rc;
    duckdb_result res;
    rc = query_params(c,
                      "SELECT record_id, record::VARCHAR, log_offset FROM changes "
                      "WHERE collection_id = $1 QUALIFY row_number() OVER "
                      "(PARTITION BY record_id ORDER BY log_offset DESC) = 1 "
                      "AND action <> 'delete'",
                      &collection_id, 1, &res);
    if (rc < 0)
        return rc;
    duckdb_appender app = NULL;
    if ((rc = appender_open(c, m->table, &app)) < 0) {
        duckdb_destroy_result(&res);
        return rc;
    }
    duckdb_data_chunk ch;
    while (rc == 0 && (ch = duckdb_fetch_chunk(res)) != NULL) {
        idx_t n = duckdb_data_chunk_get_size(ch);
        uint64_t *offs = duckdb_vector_get_data(duckdb_data_chunk_get_vector(ch, 2));
        for (idx_t r = 0; rc == 0 && r < n; r++) {
            size_t id_len = 0, rec_len = 0;
            const char *id = cell_str(ch, 0, r, &id_len);
            const char *rec = cell_str(ch, 1, r, &rec_len);
            if (!id || !rec)
                continue;
            char *rid = xstrndup(id, id_len);
            json_t *j = json_loadb(rec, rec_len, 0, NULL);
            rc = mirror_put(c, app, m, rid, j, offs[r], rej);
            json_decref(j);
            free(rid);
        }
        duckdb_destroy_data_chunk(&ch);
    }
    duckdb_destroy_result(&res);
    return appender_finish(c, &app, m->table, rc);
}

/* ---- apply_collection ---- */

struct stored_field {
    char *field_id, *column, *type;
};

static void stored_release(struct stored_field *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].field_id);
        free(s[i].column);
        free(s[i].type);
    }
    free(s);
}

static int stored_load(struct whd_conn *c, const char *collection_id, struct stored_field **out,
                       size_t *n_out)
{
    duckdb_result res;
    int rc = query_params(c,
                          "SELECT field_id, column_name, column_type FROM _mirror_fields "
                          "WHERE collection_id = $1",
                          &collection_id, 1, &res);
    if (rc < 0)
        return rc;
    idx_t n = duckdb_row_count(&res);
    struct stored_field *s = xcalloc(n ? n : 1, sizeof(*s));
    for (idx_t i = 0; i < n; i++) {
        char *a = duckdb_value_varchar(&res, 0, i), *b = duckdb_value_varchar(&res, 1, i),
             *t = duckdb_value_varchar(&res, 2, i);
        s[i].field_id = xstrdup(a);
        s[i].column = xstrdup(b);
        s[i].type = xstrdup(t);
        duckdb_free(a);
        duckdb_free(b);
        duckdb_free(t);
    }
    duckdb_destroy_result(&res);
    *out = s;
    *n_out = n;
    return 0;
}

static int alter(struct whd_conn *c, const char *table, const char *what, const char *col,
                 const char *tail)
{
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, "ALTER TABLE ");
    whd__quote_ident(&sql, table);
    buf_printf(&sql, " %s ", what);
    whd__quote_ident(&sql, col);
    if (tail)
        buf_printf(&sql, " %s", tail);
    int rc = whd__exec(c, buf_cstr(&sql));
    buf_release(&sql);
    return rc;
}

/* Makes table free for collection_id: another collection's mirror may hold it (two
 * collections swapped names, or a name was reused after a delete). That mirror waits under a
 * name of its own id until its collection is applied (renamed from there) or dropped. */
static int free_table_name(struct whd_conn *c, const char *collection_id, const char *table)
{
    duckdb_result res;
    const char *p[] = {table, collection_id};
    int rc = query_params(c,
                          "SELECT collection_id FROM _mirrors WHERE table_name = $1 "
                          "AND collection_id <> $2",
                          p, 2, &res);
    if (rc < 0)
        return rc;
    char *other = duckdb_row_count(&res) ? duckdb_value_varchar(&res, 0, 0) : NULL;
    duckdb_destroy_result(&res);
    if (!other)
        return 0;
    char parked[200];
    snprintf(parked, sizeof(parked), "app__parked_%s", other);
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, "ALTER TABLE ");
    whd__quote_ident(&sql, table);
    buf_puts(&sql, " RENAME TO ");
    whd__quote_ident(&sql, parked);
    rc = whd__exec(c, buf_cstr(&sql));
    buf_release(&sql);
    const char *p2[] = {other, parked};
    if (rc >= 0)
        rc = exec_params(c, "UPDATE _mirrors SET table_name = $2 WHERE collection_id = $1", p2, 2);
    duckdb_free(other);
    return rc;
}

static int apply_locked(struct whd_conn *c, const struct store_collection *coll,
                        struct rejects *rej)
{
    struct mirror m;
    struct stored_field *stored = NULL;
    size_t n_stored = 0;
    bool refill = false;
    char table[160];
    snprintf(table, sizeof(table), "app_%s", coll->name);
    const char *p3[3] = {coll->id, coll->name, table};

    int rc = free_table_name(c, coll->id, table);
    if (rc < 0)
        return rc;
    rc = mirror_load(c, coll->id, &m);
    if (rc == ERR_NOTFOUND) {
        struct buf sql;
        buf_init(&sql);
        buf_puts(&sql, "CREATE TABLE ");
        whd__quote_ident(&sql, table);
        buf_puts(&sql, " (id VARCHAR)");
        rc = whd__exec(c, buf_cstr(&sql));
        buf_release(&sql);
        if (rc < 0 || (rc = exec_params(c, "INSERT INTO _mirrors VALUES ($1, $2, $3)", p3, 3)) < 0)
            return rc;
        refill = true;
        if ((rc = mirror_load(c, coll->id, &m)) < 0)
            return rc;
    } else if (rc < 0) {
        return rc;
    }
    if (strcmp(m.table, table) != 0) {
        struct buf sql;
        buf_init(&sql);
        buf_puts(&sql, "ALTER TABLE ");
        whd__quote_ident(&sql, m.table);
        buf_puts(&sql, " RENAME TO ");
        whd__quote_ident(&sql, table);
        rc = whd__exec(c, buf_cstr(&sql));
        buf_release(&sql);
        if (rc < 0 || (rc = exec_params(c,
                                        "UPDATE _mirrors SET collection = $2, table_name = $3 "
                                        "WHERE collection_id = $1",
                                        p3, 3)) < 0)
            goto out;
        free(m.table);
        m.table = xstrdup(table);
    }
    if ((rc = stored_load(c, coll->id, &stored, &n_stored)) < 0)
        goto out;

    /* 1. drop columns whose field is gone, no longer mirrored, or changed type; move the
     *    columns of renamed fields to temporary names (so a swap of two names works) */
    for (size_t i = 0; i < n_stored; i++) {
        const struct store_field *f = NULL;
        for (size_t k = 0; k < coll->n_fields && !f; k++)
            if (strcmp(coll->fields[k].id, stored[i].field_id) == 0)
                f = &coll->fields[k];
        bool keep = f && field_mirrored(f) && ident_ok(f->name) &&
                    strcmp(kind_sql[kind_of_field(f)], stored[i].type) == 0;
        if (!keep) {
            if ((rc = alter(c, m.table, "DROP COLUMN", stored[i].column, NULL)) < 0)
                goto out;
            free(stored[i].column);
            stored[i].column = NULL; /* gone */
            if (f && field_mirrored(f))
                refill = true; /* re-added below with its new type */
        } else if (strcmp(f->name, stored[i].column) != 0) {
            char tmp[64];
            snprintf(tmp, sizeof(tmp), "__tandem_tmp_%zu", i);
            struct buf to;
            buf_init(&to);
            buf_puts(&to, "TO ");
            whd__quote_ident(&to, tmp);
            rc = alter(c, m.table, "RENAME COLUMN", stored[i].column, buf_cstr(&to));
            buf_release(&to);
            if (rc < 0)
                goto out;
            free(stored[i].column);
            stored[i].column = xstrdup(tmp);
        }
    }
    /* 2. give renamed columns their names, add new ones */
    for (size_t k = 0; k < coll->n_fields; k++) {
        const struct store_field *f = &coll->fields[k];
        if (!field_mirrored(f))
            continue;
        if (!ident_ok(f->name)) {
            rc = whd__fail(c, ERR_INVALID, "field name %s cannot be a mirror column", f->name);
            goto out;
        }
        struct stored_field *s = NULL;
        for (size_t i = 0; i < n_stored && !s; i++)
            if (stored[i].column && strcmp(stored[i].field_id, f->id) == 0)
                s = &stored[i];
        if (s && strcmp(s->column, f->name) != 0) {
            struct buf to;
            buf_init(&to);
            buf_puts(&to, "TO ");
            whd__quote_ident(&to, f->name);
            rc = alter(c, m.table, "RENAME COLUMN", s->column, buf_cstr(&to));
            buf_release(&to);
            if (rc < 0)
                goto out;
        } else if (!s) {
            if ((rc = alter(c, m.table, "ADD COLUMN", f->name, kind_sql[kind_of_field(f)])) < 0)
                goto out;
        }
    }
    /* 3. record the field -> column map */
    if ((rc = exec_params(c, "DELETE FROM _mirror_fields WHERE collection_id = $1", p3, 1)) < 0)
        goto out;
    for (size_t k = 0; k < coll->n_fields; k++) {
        const struct store_field *f = &coll->fields[k];
        if (!field_mirrored(f))
            continue;
        const char *pf[4] = {coll->id, f->id, f->name, kind_sql[kind_of_field(f)]};
        if ((rc = exec_params(c, "INSERT INTO _mirror_fields VALUES ($1, $2, $3, $4)", pf, 4)) < 0)
            goto out;
    }
    if (refill) {
        mirror_release(&m);
        if ((rc = mirror_load(c, coll->id, &m)) < 0)
            return rc;
        rc = mirror_refill(c, coll->id, &m, rej);
    }
out:
    stored_release(stored, n_stored);
    mirror_release(&m);
    return rc;
}

/* Runs one statement, prepared: DuckDB refuses to prepare several at once, so text that
 * another parser read as one statement cannot carry a second. */
static int exec_one(struct whd_conn *c, const char *sql)
{
    duckdb_prepared_statement ps;
    if (duckdb_prepare(c->con, sql, &ps) != DuckDBSuccess) {
        int rc = whd__fail(c, ERR_INVALID, "%s", duckdb_prepare_error(ps));
        duckdb_destroy_prepare(&ps);
        return rc;
    }
    duckdb_result res;
    duckdb_state st = duckdb_execute_prepared(ps, &res);
    duckdb_destroy_prepare(&ps);
    if (st != DuckDBSuccess) {
        int rc = whd__result_fail(c, &res, NULL);
        return rc == ERR_INTERNAL ? ERR_INVALID : rc; /* a query DuckDB cannot run */
    }
    duckdb_destroy_result(&res);
    return 0;
}

/* Whether q names the identifier name (any case, as a whole word, quoted or not). */
static bool names_ident(const char *q, const char *name)
{
    size_t l = strlen(name);
    for (const char *p = q; *p; p++) {
        if (strncasecmp(p, name, l) != 0)
            continue;
        char before = p == q ? ' ' : p[-1], after = p[l];
        bool word_before = (before >= 'a' && before <= 'z') || (before >= 'A' && before <= 'Z') ||
                           (before >= '0' && before <= '9') || before == '_';
        bool word_after = (after >= 'a' && after <= 'z') || (after >= 'A' && after <= 'Z') ||
                          (after >= '0' && after <= '9') || after == '_';
        if (!word_before && !word_after)
            return true;
    }
    return false;
}

/* A view collection's mirror: a DuckDB view running its viewQuery over the mirrors, each
 * collection name the query mentions bound (as a CTE) to its mirror table. DuckDB binds
 * every CTE of a view when it is read, so naming only those keeps the view working when an
 * unrelated mirror goes. */
static int apply_view_locked(struct whd_conn *c, const struct store_collection *coll)
{
    char table[160];
    snprintf(table, sizeof(table), "app_%s", coll->name);
    const char *p3[3] = {coll->id, coll->name, table};
    struct mirror m;
    struct buf sql;
    buf_init(&sql);
    int rc = mirror_load(c, coll->id, &m);
    if (rc == 0) {
        buf_puts(&sql, "DROP VIEW IF EXISTS ");
        whd__quote_ident(&sql, m.table);
        rc = whd__exec(c, buf_cstr(&sql));
        mirror_release(&m);
        if (rc >= 0)
            rc = exec_params(c, "DELETE FROM _mirrors WHERE collection_id = $1", p3, 1);
    } else if (rc == ERR_NOTFOUND) {
        rc = 0;
    }
    duckdb_result res;
    if (rc >= 0)
        rc = query_params(c,
                          "SELECT m.collection, m.table_name FROM _mirrors m "
                          "WHERE m.collection_id <> $1",
                          p3, 1, &res);
    if (rc < 0)
        goto out;
    buf_reset(&sql);
    buf_puts(&sql, "CREATE VIEW ");
    whd__quote_ident(&sql, table);
    buf_puts(&sql, " AS ");
    idx_t n = duckdb_row_count(&res);
    bool first = true;
    for (idx_t i = 0; i < n; i++) {
        char *name = duckdb_value_varchar(&res, 0, i), *t = duckdb_value_varchar(&res, 1, i);
        if (!coll->view_query || !names_ident(coll->view_query, name)) {
            duckdb_free(name);
            duckdb_free(t);
            continue;
        }
        buf_puts(&sql, first ? "WITH " : ", ");
        first = false;
        whd__quote_ident(&sql, name);
        buf_puts(&sql, " AS (SELECT * FROM ");
        whd__quote_ident(&sql, t);
        buf_puts(&sql, ")");
        duckdb_free(name);
        duckdb_free(t);
    }
    duckdb_destroy_result(&res);
    buf_printf(&sql, " SELECT * FROM (\n%s\n)", coll->view_query ? coll->view_query : "");
    if ((rc = exec_one(c, buf_cstr(&sql))) < 0)
        goto out;
    rc = exec_params(c, "INSERT INTO _mirrors VALUES ($1, $2, $3)", p3, 3);
out:
    buf_release(&sql);
    return rc;
}

static int apply_collection_txn(struct wh_conn *wc, const struct store_collection *coll)
{
    struct whd_conn *c = whd__conn(wc);
    if (!ident_ok(coll->name) || !coll->id || !*coll->id)
        return whd__fail(c, ERR_INVALID, "collection name %s cannot be a mirror table",
                         coll->name ? coll->name : "(null)");
    struct rejects rej = {0};
    int rc = whd__begin(c);
    if (rc < 0)
        return rc;
    if (coll->type == STORE_COLLECTION_VIEW) {
        if ((rc = apply_view_locked(c, coll)) < 0) {
            whd__rollback(c);
            return rc;
        }
        return whd__commit(c);
    }
    if ((rc = apply_locked(c, coll, &rej)) < 0 ||
        (rc = whd__rejects_append(c, "mirror", "changes", rej.v, rej.n)) < 0) {
        whd__rollback(c);
        rejects_release(&rej);
        return rc;
    }
    rejects_release(&rej);
    return whd__commit(c);
}

/* The cached layouts are dropped before (the change may touch any of them) and after (one
 * may have been read inside a transaction that did not commit). */
int whd__apply_collection(struct wh_conn *wc, const struct store_collection *coll)
{
    whd__mirror_cache_clear(whd__conn(wc));
    int rc = apply_collection_txn(wc, coll);
    whd__mirror_cache_clear(whd__conn(wc));
    return rc;
}

static int drop_collection_txn(struct wh_conn *wc, const char *collection_id)
{
    struct whd_conn *c = whd__conn(wc);
    struct mirror m;
    int rc = whd__begin(c);
    if (rc < 0)
        return rc;
    if ((rc = mirror_load(c, collection_id, &m)) < 0) {
        whd__rollback(c);
        if (rc == ERR_NOTFOUND)
            whd__fail(c, rc, "collection %s has no mirror", collection_id);
        return rc;
    }
    duckdb_result vr;
    const char *tname = m.table;
    if ((rc = query_params(c, "SELECT 1 FROM duckdb_views() WHERE view_name = $1", &tname, 1,
                           &vr)) < 0) {
        mirror_release(&m);
        whd__rollback(c);
        return rc;
    }
    bool is_view = duckdb_row_count(&vr) > 0;
    duckdb_destroy_result(&vr);
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, is_view ? "DROP VIEW " : "DROP TABLE ");
    whd__quote_ident(&sql, m.table);
    rc = whd__exec(c, buf_cstr(&sql));
    buf_release(&sql);
    mirror_release(&m);
    if (rc < 0 ||
        (rc = exec_params(c, "DELETE FROM _mirrors WHERE collection_id = $1", &collection_id, 1)) <
            0 ||
        (rc = exec_params(c, "DELETE FROM _mirror_fields WHERE collection_id = $1", &collection_id,
                          1)) < 0) {
        whd__rollback(c);
        return rc;
    }
    return whd__commit(c);
}

/* The cached layouts are dropped before (the change may touch any of them) and after (one
 * may have been read inside a transaction that did not commit). */
int whd__drop_collection(struct wh_conn *wc, const char *collection_id)
{
    whd__mirror_cache_clear(whd__conn(wc));
    int rc = drop_collection_txn(wc, collection_id);
    whd__mirror_cache_clear(whd__conn(wc));
    return rc;
}

/* ---- load_changes ---- */

static const char *action_name(enum wh_action a)
{
    return a == WH_ACTION_CREATE ? "create" : a == WH_ACTION_UPDATE ? "update" : "delete";
}

static int append_changes(struct whd_conn *c, const struct wh_change *ch, size_t n)
{
    duckdb_appender app = NULL;
    int rc = appender_open(c, "changes", &app);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct wh_change *x = &ch[i];
        char *rec = x->record ? json_dumps(x->record, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        bool ok = duckdb_append_int64(app, x->id) == DuckDBSuccess;
        ok = ok && (x->collection ? duckdb_append_varchar(app, x->collection)
                                  : duckdb_append_null(app)) == DuckDBSuccess;
        ok = ok && (x->collection_id ? duckdb_append_varchar(app, x->collection_id)
                                     : duckdb_append_null(app)) == DuckDBSuccess;
        ok = ok && (x->record_id ? duckdb_append_varchar(app, x->record_id)
                                 : duckdb_append_null(app)) == DuckDBSuccess;
        ok = ok && duckdb_append_varchar(app, action_name(x->action)) == DuckDBSuccess;
        ok = ok &&
             (rec ? duckdb_append_varchar(app, rec) : duckdb_append_null(app)) == DuckDBSuccess;
        ok = ok && (x->changed_at_us != WH_NO_TIME
                        ? duckdb_append_timestamp(app, (duckdb_timestamp){x->changed_at_us})
                        : duckdb_append_null(app)) == DuckDBSuccess;
        ok = ok && duckdb_append_uint64(app, x->log_offset) == DuckDBSuccess;
        ok = ok && duckdb_appender_end_row(app) == DuckDBSuccess;
        free(rec);
        if (!ok) {
            const char *e = duckdb_appender_error(app);
            rc = whd__fail(c, ERR_INTERNAL, "cannot append to changes: %s", e ? e : "?");
        }
    }
    return appender_finish(c, &app, "changes", rc);
}

static _Thread_local const struct wh_change *sort_base;

static int cmp_change(const void *a, const void *b)
{
    const struct wh_change *x = &sort_base[*(const size_t *)a];
    const struct wh_change *y = &sort_base[*(const size_t *)b];
    int r = strcmp(x->collection_id, y->collection_id);
    if (r == 0)
        r = strcmp(x->record_id, y->record_id);
    if (r == 0)
        r = *(const size_t *)a < *(const size_t *)b ? -1 : 1;
    return r;
}

/* Applies the changes idx[from..to) (one collection, sorted by record id, then batch order). */
static int apply_group(struct whd_conn *c, const struct wh_change *ch, const size_t *idx,
                       size_t from, size_t to, struct rejects *rej)
{
    struct mirror m;
    int rc = mirror_load_cached(c, ch[idx[from]].collection_id, &m);
    if (rc == ERR_NOTFOUND)
        return 0; /* no mirror: the change is in `changes` only */
    if (rc < 0)
        return rc;
    /* the touched ids, except those whose first change here is their create: a record's
     * create is loaded exactly once, and a mirror is refilled (apply_locked) in a transaction
     * of its own from the changes already loaded, so the mirror cannot hold such an id yet.
     * A batch of creates then deletes nothing and skips the scan of the mirror's ids. */
    duckdb_logical_type vt = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
    size_t n_ids = 0;
    duckdb_value *ids = xcalloc(to - from, sizeof(*ids));
    for (size_t i = from, first = from; i < to; i++)
        if (i + 1 == to || strcmp(ch[idx[i]].record_id, ch[idx[i + 1]].record_id) != 0) {
            if (ch[idx[first]].action != WH_ACTION_CREATE)
                ids[n_ids++] = duckdb_create_varchar(ch[idx[i]].record_id);
            first = i + 1;
        }
    duckdb_value list = duckdb_create_list_value(vt, ids, n_ids);
    for (size_t i = 0; i < n_ids; i++)
        duckdb_destroy_value(&ids[i]);
    free(ids);
    duckdb_destroy_logical_type(&vt);

    struct buf sql;
    buf_init(&sql);
    if (n_ids == 0)
        goto append;
    buf_puts(&sql, "DELETE FROM ");
    whd__quote_ident(&sql, m.table);
    /* a semi-join on a hash of the touched ids: list_contains() searched the list for every
     * row of the mirror, rows x ids string compares (26% of the server's CPU in a create
     * benchmark on a mirror of 100k records) */
    buf_puts(&sql, " WHERE id IN (SELECT unnest($1::VARCHAR[]))");
    duckdb_prepared_statement ps;
    if (duckdb_prepare(c->con, buf_cstr(&sql), &ps) != DuckDBSuccess) {
        rc = whd__fail(c, ERR_INTERNAL, "cannot prepare %s: %s", buf_cstr(&sql),
                       duckdb_prepare_error(ps));
    } else {
        duckdb_bind_value(ps, 1, list);
        duckdb_result res;
        if (duckdb_execute_prepared(ps, &res) != DuckDBSuccess)
            rc = whd__result_fail(c, &res, NULL);
        else
            duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&ps);
append:
    duckdb_destroy_value(&list);
    buf_release(&sql);

    duckdb_appender app = NULL;
    if (rc == 0)
        rc = appender_open(c, m.table, &app);
    for (size_t i = from; rc == 0 && i < to; i++) {
        bool last = i + 1 == to || strcmp(ch[idx[i]].record_id, ch[idx[i + 1]].record_id) != 0;
        const struct wh_change *x = &ch[idx[i]];
        if (!last || x->action == WH_ACTION_DELETE)
            continue;
        rc = mirror_put(c, app, &m, x->record_id, x->record, x->log_offset, rej);
    }
    if (app)
        rc = appender_finish(c, &app, m.table, rc);
    mirror_release(&m);
    return rc;
}

int whd__load_changes(struct wh_conn *wc, const struct wh_load *ld, const struct wh_change *ch,
                      size_t n, struct wh_load_stats *st)
{
    struct whd_conn *c = whd__conn(wc);
    memset(st, 0, sizeof(*st));
    for (size_t i = 0; i < n; i++)
        if (!ch[i].collection_id || !ch[i].record_id)
            return whd__fail(c, ERR_INVALID, "change at offset %llu has no collection or record id",
                             (unsigned long long)ch[i].log_offset);
    struct rejects rej = {0};
    size_t *idx = xcalloc(n ? n : 1, sizeof(*idx));
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_base = ch; /* qsort has no context argument: a per-thread pointer */
    qsort(idx, n, sizeof(*idx), cmp_change);

    int rc = whd__begin(c);
    if (rc < 0)
        goto out;
    if (n > 0 && (rc = append_changes(c, ch, n)) < 0)
        goto fail;
    for (size_t from = 0; from < n;) {
        size_t to = from + 1;
        while (to < n && strcmp(ch[idx[to]].collection_id, ch[idx[from]].collection_id) == 0)
            to++;
        if ((rc = apply_group(c, ch, idx, from, to, &rej)) < 0)
            goto fail;
        from = to;
    }
    if ((rc = whd__rejects_append(c, ld->consumer, ld->topic, ld->rejects, ld->n_rejects)) < 0 ||
        (rc = whd__rejects_append(c, ld->consumer, ld->topic, rej.v, rej.n)) < 0 ||
        (rc = whd__offset_store(c, ld->consumer, ld->topic, ld->next_offset)) < 0)
        goto fail;
    if ((rc = whd__commit(c)) < 0)
        goto out;
    st->rows = n;
    st->rejects = ld->n_rejects + rej.n;
    goto out;
fail:
    whd__rollback(c);
out:
    if (rc < 0)
        whd__mirror_cache_clear(c); /* read again next time, whatever failed */
    rejects_release(&rej);
    free(idx);
    return rc;
}
