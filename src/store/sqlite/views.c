/* views.c - view collections of the sqlite backend: the viewQuery check, field inference as
 * PocketBase does it (core/view.go), and the SQL views themselves.
 *
 * A view collection is a SQLite view `CREATE VIEW "name" AS SELECT * FROM (viewQuery)`; its
 * records are read through the same code as a table's. The query is checked at save time:
 * it is prepared under an authorizer that allows only reading the application's collections
 * (SELECT, reads, functions, recursive CTEs; no writes, no pragmas, no system tables), it must
 * be one statement and sqlite3_stmt_readonly() must hold. Fields come from the prepared
 * statement: the result column names, the origin table and column SQLite reports for plain
 * columns (a field of a collection is copied, its `id` becomes a relation to it), and the
 * select list's text for count()/total() (number) and CAST(... AS type); anything else is a
 * json field, and the `id` column a text primary key, as in PocketBase.
 *
 * Every schema change that touches tables drops the views first and creates them again at the
 * end of its transaction (sq__views_drop, then ddl.c's views_recreate, which also infers each
 * view's fields again and saves them when its tables changed them): SQLite's table rebuilds and
 * renames re-parse every view, and a view the change breaks makes the change fail. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "store/sqlite/sqlite_int.h"

#define VIEW_MAX_COLUMNS 1000

struct authz {
    struct store_collection **list;
    size_t n;
    bool denied;
    bool secret; /* the denial was a password or tokenKey column */
};

static const struct store_collection *find_by_name(struct store_collection **list, size_t n,
                                                   const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (list[i] && strcasecmp(list[i]->name, name) == 0)
            return list[i];
    return NULL;
}

static int authorize(void *arg, int action, const char *a3, const char *a4, const char *db,
                     const char *trigger)
{
    struct authz *z = arg;
    UNUSED(a4);
    UNUSED(trigger);
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE: return SQLITE_OK;
    case SQLITE_READ: {
        const struct store_collection *c =
            !db || strcmp(db, "main") == 0 ? find_by_name(z->list, z->n, a3) : NULL;
        if (!c)
            break;
        const struct store_field *f = NULL;
        for (size_t i = 0; a4 && i < c->n_fields && !f; i++)
            if (strcasecmp(c->fields[i].name, a4) == 0)
                f = &c->fields[i];
        /* secrets stay out of views whatever expression would carry them (PocketBase lets a
         * superuser read them; tandem does not) */
        if (f && (f->type == STORE_FIELD_PASSWORD ||
                  (c->type == STORE_COLLECTION_AUTH && strcmp(f->name, "tokenKey") == 0))) {
            z->secret = true;
            break;
        }
        return SQLITE_OK;
    }
    default: break;
    }
    z->denied = true;
    return SQLITE_DENY;
}

/* ---- the select list, for count()/total()/cast() ---- */

struct span {
    const char *p;
    size_t len;
};

static bool word_at(const char *q, size_t i, size_t n, const char *w)
{
    size_t l = strlen(w);
    if (i + l > n || strncasecmp(q + i, w, l) != 0)
        return false;
    if (i > 0 && (isalnum((unsigned char)q[i - 1]) || q[i - 1] == '_'))
        return false;
    return i + l == n || !(isalnum((unsigned char)q[i + l]) || q[i + l] == '_');
}

/* Skips a quoted string, identifier or comment starting at i; returns the index after it,
 * or i when there is none there. */
static size_t skip_quoted(const char *q, size_t i, size_t n)
{
    char c = q[i];
    if (c == '\'' || c == '"' || c == '`' || c == '[') {
        char close = c == '[' ? ']' : c;
        for (i++; i < n; i++)
            if (q[i] == close) {
                if (close != ']' && i + 1 < n && q[i + 1] == close) {
                    i++;
                    continue;
                }
                return i + 1;
            }
        return n;
    }
    if (c == '-' && i + 1 < n && q[i + 1] == '-') {
        while (i < n && q[i] != '\n')
            i++;
        return i;
    }
    if (c == '/' && i + 1 < n && q[i + 1] == '*') {
        const char *end = strstr(q + i + 2, "*/");
        return end ? (size_t)(end - q) + 2 : n;
    }
    return i;
}

/* The items of the outermost SELECT list of q (up to its FROM), at most max. Returns how many
 * there are, 0 when it cannot tell. */
static size_t select_items(const char *q, struct span *items, size_t max)
{
    size_t n = strlen(q), depth = 0, n_items = 0, start = 0;
    bool in_list = false;
    for (size_t i = 0; i < n;) {
        size_t j = skip_quoted(q, i, n);
        if (j != i) {
            i = j;
            continue;
        }
        char c = q[i];
        if (c == '(') {
            depth++;
        } else if (c == ')') {
            if (depth)
                depth--;
        } else if (depth == 0 && !in_list && word_at(q, i, n, "select")) {
            in_list = true;
            start = i + 6;
            i += 6;
            continue;
        } else if (depth == 0 && in_list && (c == ',' || word_at(q, i, n, "from"))) {
            if (n_items == max)
                return 0;
            items[n_items++] = (struct span){q + start, i - start};
            if (c != ',')
                return n_items;
            start = i + 1;
        }
        i++;
    }
    if (in_list && n_items < max)
        items[n_items++] = (struct span){q + start, n - start};
    return in_list ? n_items : 0;
}

/* The item's text without surrounding blanks and a leading DISTINCT/ALL, lowercased into out. */
static void item_text(struct span it, char *out, size_t cap)
{
    while (it.len && isspace((unsigned char)*it.p)) {
        it.p++;
        it.len--;
    }
    while (it.len && isspace((unsigned char)it.p[it.len - 1]))
        it.len--;
    for (int k = 0; k < 2; k++) {
        const char *w = k == 0 ? "distinct" : "all";
        size_t l = strlen(w);
        if (it.len > l && strncasecmp(it.p, w, l) == 0 && isspace((unsigned char)it.p[l])) {
            it.p += l;
            it.len -= l;
            while (it.len && isspace((unsigned char)*it.p)) {
                it.p++;
                it.len--;
            }
        }
    }
    size_t m = it.len < cap - 1 ? it.len : cap - 1;
    for (size_t i = 0; i < m; i++)
        out[i] = (char)tolower((unsigned char)it.p[i]);
    out[m] = '\0';
}

static bool call_of(const char *t, const char *fn)
{
    size_t l = strlen(fn);
    if (strncmp(t, fn, l) != 0)
        return false;
    t += l;
    while (isspace((unsigned char)*t))
        t++;
    return *t == '(';
}

/* The field type a CAST(... AS type) item gives, or -1. */
static int cast_type(const char *t)
{
    if (!call_of(t, "cast"))
        return -1;
    const char *p = strchr(t, '('), *as = NULL;
    size_t n = strlen(p), depth = 0, i;
    for (i = 0; i < n;) {
        size_t j = skip_quoted(p, i, n);
        if (j != i) {
            i = j;
            continue;
        }
        if (p[i] == '(')
            depth++;
        else if (p[i] == ')' && --depth == 0)
            break;
        else if (depth == 1 && word_at(p, i, n, "as"))
            as = p + i + 2;
        i++;
    }
    if (!as || i == n)
        return -1;
    while (isspace((unsigned char)*as))
        as++;
    static const char *const nums[] = {"real", "integer", "int", "decimal", "numeric"};
    for (size_t k = 0; k < ARRAY_LEN(nums); k++)
        if (word_at(as, 0, strlen(as), nums[k]))
            return STORE_FIELD_NUMBER;
    if (word_at(as, 0, strlen(as), "text"))
        return STORE_FIELD_TEXT;
    if (word_at(as, 0, strlen(as), "boolean") || word_at(as, 0, strlen(as), "bool"))
        return STORE_FIELD_BOOL;
    return -1;
}

/* ---- inference ---- */

static json_t *simple_field(enum store_field_type t, const char *name)
{
    char id[160];
    store__field_default_id(t, name, id, sizeof(id));
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "id", id, "name", name, "type", store_field_type_name(t));
    if (t == STORE_FIELD_JSON)
        json_object_set_new(o, "maxSize", json_integer(1));
    return o;
}

static void view_error(json_t *errors, const char *msg)
{
    store__verr_set(errors, "viewQuery", "validation_invalid_view_query", msg);
}

/* The field of column i of a prepared view query. */
static json_t *column_field(sqlite3_stmt *st, int i, const char *hint,
                            struct store_collection **list, size_t n)
{
    const char *name = sqlite3_column_name(st, i);
    if (strcmp(name, "id") == 0) {
        json_t *f = simple_field(STORE_FIELD_TEXT, "id");
        json_object_set_new(f, "id", json_string("text3208210256"));
        json_object_set_new(f, "system", json_true());
        json_object_set_new(f, "required", json_true());
        json_object_set_new(f, "primaryKey", json_true());
        json_object_set_new(f, "pattern", json_string("^[a-z0-9]+$"));
        return f;
    }
    if (hint && (call_of(hint, "count") || call_of(hint, "total")))
        return simple_field(STORE_FIELD_NUMBER, name);
    int ct = hint ? cast_type(hint) : -1;
    if (ct >= 0)
        return simple_field((enum store_field_type)ct, name);
    const struct store_collection *from = find_by_name(list, n, sqlite3_column_table_name(st, i));
    const char *origin = sqlite3_column_origin_name(st, i);
    const struct store_field *of = NULL;
    for (size_t k = 0; from && origin && k < from->n_fields && !of; k++)
        if (strcasecmp(from->fields[k].name, origin) == 0)
            of = &from->fields[k];
    if (!of)
        return simple_field(STORE_FIELD_JSON, name);
    if (of->primary_key) {
        json_t *f = simple_field(STORE_FIELD_RELATION, name);
        json_object_set_new(f, "collectionId", json_string(from->id));
        json_object_set_new(f, "maxSelect", json_integer(1));
        return f;
    }
    json_t *f = store__field_to_json(of);
    char id[160];
    store__field_default_id(of->type, name, id, sizeof(id));
    json_object_set_new(f, "id", json_string(id));
    json_object_set_new(f, "name", json_string(name));
    return f;
}

int sq__view_fields(struct sq_conn *cn, struct store_collection **list, size_t n, const char *query,
                    json_t *errors, json_t **fields_out)
{
    *fields_out = NULL;
    char *q = store__view_query_trim(query);
    struct authz z = {list, n, false, false};
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    json_t *fields = NULL;
    struct span *items = NULL;
    int rc = ERR_INVALID;
    if (!*q) {
        store__verr_set(errors, "viewQuery", "validation_required", "Cannot be blank.");
        goto out;
    }
    sqlite3_set_authorizer(cn->db, authorize, &z);
    int prc = sqlite3_prepare_v2(cn->db, q, -1, &st, &tail);
    sqlite3_set_authorizer(cn->db, NULL, NULL);
    if (prc != SQLITE_OK) {
        char msg[600];
        if (z.secret)
            snprintf(msg, sizeof(msg), "The query may not read password or tokenKey fields.");
        else if (z.denied)
            snprintf(msg, sizeof(msg),
                     "The query may only read the application's collections (one SELECT).");
        else
            snprintf(msg, sizeof(msg), "Invalid query: %s.", sqlite3_errmsg(cn->db));
        view_error(errors, msg);
        goto out;
    }
    while (tail && (isspace((unsigned char)*tail) || *tail == ';'))
        tail++;
    if (!st || (tail && *tail)) {
        view_error(errors, "The query must be exactly one SELECT statement.");
        goto out;
    }
    if (!sqlite3_stmt_readonly(st) || sqlite3_stmt_isexplain(st)) {
        view_error(errors, "The query must be a read-only SELECT.");
        goto out;
    }
    int n_cols = sqlite3_column_count(st);
    if (n_cols <= 0 || n_cols > VIEW_MAX_COLUMNS) {
        view_error(errors, "The query must return between 1 and 1000 columns.");
        goto out;
    }
    items = xcalloc((size_t)n_cols + 1, sizeof(*items));
    size_t n_items = select_items(q, items, (size_t)n_cols + 1);
    for (size_t i = 0; i < n_items; i++) {
        char t[512];
        item_text(items[i], t, sizeof(t));
        size_t l = strlen(t);
        if (strcmp(t, "*") == 0 || (l >= 2 && strcmp(t + l - 2, ".*") == 0)) {
            view_error(errors, "Wildcard columns are not supported: name every column.");
            goto out;
        }
    }
    bool hints = n_items == (size_t)n_cols;
    bool has_id = false;
    fields = json_array();
    for (int i = 0; i < n_cols; i++) {
        const char *name = sqlite3_column_name(st, i);
        char msg[300];
        if (!name || !store_name_valid(name, 100)) {
            snprintf(msg, sizeof(msg), "Column %.100s needs an alias that is a valid field name.",
                     name ? name : "?");
            view_error(errors, msg);
            goto out;
        }
        for (int k = 0; k < i; k++)
            if (strcasecmp(sqlite3_column_name(st, k), name) == 0) {
                snprintf(msg, sizeof(msg), "Duplicated column name %s.", name);
                view_error(errors, msg);
                goto out;
            }
        has_id |= strcmp(name, "id") == 0;
        char t[512];
        if (hints)
            item_text(items[i], t, sizeof(t));
        json_array_append_new(fields, column_field(st, i, hints ? t : NULL, list, n));
    }
    if (!has_id) {
        view_error(errors, "Missing required id column (you can use `(ROW_NUMBER() OVER()) as "
                           "id` if you don't have one).");
        goto out;
    }
    *fields_out = fields;
    fields = NULL;
    rc = 0;
out:
    sqlite3_finalize(st);
    json_decref(fields);
    free(items);
    free(q);
    return rc;
}

int sq__view_spec(struct sq_conn *cn, struct store_collection **list, size_t n, const json_t *spec,
                  const struct store_collection *base, json_t *errors, json_t **out)
{
    *out = json_deep_copy(spec);
    json_t *v = json_object_get(spec, "viewQuery");
    const char *q = json_is_string(v) ? json_string_value(v) : NULL;
    if (!v && base)
        q = base->view_query;
    if (!q || strlen(q) > STORE__VIEW_QUERY_MAX)
        return 0; /* the parse says what is wrong */
    json_t *fields = NULL;
    int rc = sq__view_fields(cn, list, n, q, errors, &fields);
    if (rc)
        return rc;
    json_object_set_new(*out, "fields", fields);
    return 0;
}

/* ---- the SQL views ---- */

/* The view's SELECT list: `*`, or when its id is computed (PocketBase's own hint is
 * `(ROW_NUMBER() OVER()) as id`, an integer) every column with the id cast to text, so that a
 * record is found by the id string its JSON shows. A copied id column stays as it is, so a
 * lookup by id can still use its table's primary key. */
static void view_columns(struct sq_conn *cn, const struct store_collection *c, struct buf *b)
{
    sqlite3_stmt *st = NULL;
    int id_col = -1, n = 0;
    if (sqlite3_prepare_v2(cn->db, c->view_query, -1, &st, NULL) == SQLITE_OK && st) {
        n = sqlite3_column_count(st);
        for (int i = 0; i < n; i++)
            if (strcmp(sqlite3_column_name(st, i), "id") == 0)
                id_col = i;
    }
    if (id_col < 0 || sqlite3_column_origin_name(st, id_col)) {
        buf_putc(b, '*');
    } else {
        for (int i = 0; i < n; i++) {
            if (i)
                buf_puts(b, ", ");
            if (i == id_col) {
                buf_puts(b, "CAST(\"id\" AS TEXT) AS \"id\"");
            } else {
                store__quote(b, sqlite3_column_name(st, i));
            }
        }
    }
    sqlite3_finalize(st);
}

static int view_sql(struct sq_conn *cn, const struct store_collection *c, bool create)
{
    struct buf b;
    buf_init(&b);
    if (create) {
        buf_puts(&b, "CREATE VIEW ");
        store__quote(&b, c->name);
        buf_puts(&b, " AS SELECT ");
        view_columns(cn, c, &b);
        /* on lines of its own, so that a trailing comment cannot swallow the ')' */
        buf_printf(&b, " FROM (\n%s\n)", c->view_query);
    } else {
        buf_puts(&b, "DROP VIEW IF EXISTS ");
        store__quote(&b, c->name);
    }
    /* one statement, never sqlite3_exec's several */
    sqlite3_stmt *one = NULL;
    const char *tail = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(cn->db, buf_cstr(&b), -1, &one, &tail) != SQLITE_OK || !one ||
        (tail && *tail))
        rc = sq__fail(cn, ERR_INVALID, "%s", sqlite3_errmsg(cn->db));
    else if (sqlite3_step(one) != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot save the view");
    sqlite3_finalize(one);
    if (!rc && create) {
        /* a missing table or column only shows when the view is used */
        buf_reset(&b);
        buf_puts(&b, "SELECT * FROM ");
        store__quote(&b, c->name);
        buf_puts(&b, " LIMIT 0");
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(cn->db, buf_cstr(&b), -1, &st, NULL) != SQLITE_OK)
            rc = sq__fail(cn, ERR_INVALID, "%s", sqlite3_errmsg(cn->db));
        sqlite3_finalize(st);
    }
    buf_release(&b);
    return rc;
}

int sq__view_install(struct sq_conn *cn, const struct store_collection *c)
{
    return view_sql(cn, c, true);
}

int sq__views_drop(struct sq_conn *cn, struct store_collection **list, size_t n)
{
    /* newest first: a view may read an older one */
    for (size_t i = n; i-- > 0;) {
        if (!list[i] || list[i]->type != STORE_COLLECTION_VIEW)
            continue;
        int rc = view_sql(cn, list[i], false);
        if (rc)
            return rc;
    }
    return 0;
}

int sq__view_fields_dry(struct store *st, const char *query, json_t **errors_out,
                        json_t **fields_out)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    struct store_collection **all;
    size_t n;
    sq__col_all(s, &all, &n);
    json_t *errors = json_object();
    int rc = sq__view_fields(cn, all, n, query ? query : "", errors, fields_out);
    store_collection_list_free(all, n);
    if (rc == ERR_INVALID) {
        *errors_out = errors;
        return sq__fail(cn, rc, "Invalid view query.");
    }
    json_decref(errors);
    return rc;
}

int sq__view_file_origin(struct store *st, const struct store_collection *view, const char *field,
                         const char *filename, char *coll_id_out, size_t coll_cap, char *rec_id_out,
                         size_t rec_cap)
{
    struct sq_store *s = (struct sq_store *)st;
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    if (view->type != STORE_COLLECTION_VIEW)
        return ERR_NOTFOUND;
    /* SQLite names the table and column a view's column comes from, through nested views
     * and subqueries; an expression has none */
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "SELECT ");
    store__quote(&b, field);
    buf_puts(&b, " FROM ");
    store__quote(&b, view->name);
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(cn->db, buf_cstr(&b), -1, &q, NULL) == SQLITE_OK
                 ? 0
                 : sq__fail_db(cn, "cannot read the view");
    struct store_collection *src = NULL;
    const struct store_field *sf = NULL;
    if (rc == 0) {
        const char *table = sqlite3_column_table_name(q, 0);
        const char *origin = sqlite3_column_origin_name(q, 0);
        src = table ? sq__col_find(s, table) : NULL;
        for (size_t i = 0; src && origin && i < src->n_fields && !sf; i++)
            if (strcasecmp(src->fields[i].name, origin) == 0)
                sf = &src->fields[i];
        if (!sf || sf->type != STORE_FIELD_FILE || src->type == STORE_COLLECTION_VIEW)
            rc = ERR_NOTFOUND;
    }
    sqlite3_finalize(q);
    if (rc == 0) {
        buf_reset(&b);
        buf_puts(&b, "SELECT \"id\" FROM ");
        store__quote(&b, src->name);
        buf_puts(&b, " WHERE ");
        if (sf->max_select > 1) {
            buf_puts(&b, "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(");
            store__quote(&b, sf->name);
            buf_puts(&b, ") THEN ");
            store__quote(&b, sf->name);
            buf_puts(&b, " ELSE '[]' END) WHERE value = ?1)");
        } else {
            store__quote(&b, sf->name);
            buf_puts(&b, " = ?1");
        }
        buf_puts(&b, " LIMIT 1");
        struct sq_stmt ps;
        if ((rc = sq__prep(cn, buf_cstr(&b), &ps)) == 0) {
            sqlite3_bind_text(ps.stmt, 1, filename, -1, SQLITE_TRANSIENT);
            int step = sqlite3_step(ps.stmt);
            if (step == SQLITE_ROW) {
                snprintf(coll_id_out, coll_cap, "%s", src->id);
                snprintf(rec_id_out, rec_cap, "%s", (const char *)sqlite3_column_text(ps.stmt, 0));
            } else {
                rc = step == SQLITE_DONE ? ERR_NOTFOUND : sq__fail_db(cn, "cannot find the file");
            }
            sq__done(&ps);
        }
    }
    store_collection_unref(src);
    buf_release(&b);
    return rc;
}
