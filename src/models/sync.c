/* sync.c - a model's published rows into a collection, through the store, so that the outbox,
 * the `changes` topic, the mirrors, realtime and the API rules see them like any other write.
 *
 * Each row becomes the record whose id is derived from the row's key (models_sync_id: a hash
 * of the collection id and the key), so a row always lands on the same record: writing a batch
 * twice creates nothing twice. A sync computes the plan first (creates, updates of records
 * whose synced fields differ, deletes of records whose key left the model when "delete" is
 * set) by comparing each row, as the store would write it (store_record_body_view), with the
 * record. A plan that would update or delete more than maxChangeShare of the existing records
 * stops before writing anything and asks for confirmation. The plan is then applied in
 * batches of MODELS_SYNC_BATCH operations, each one store transaction (all or nothing). A
 * crash between batches leaves whole batches only; the next sync recomputes the plan, finds
 * the applied rows unchanged, and finishes the rest. */
#include <sodium.h>
#include <string.h>

#include "models/models_int.h"

void models_sync_id(const char *collection_id, const char *key, char out[16])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char h[32];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const unsigned char *)collection_id, strlen(collection_id) + 1);
    crypto_generichash_update(&st, (const unsigned char *)key, strlen(key));
    crypto_generichash_final(&st, h, sizeof(h));
    for (int i = 0; i < 15; i++)
        out[i] = alphabet[h[i] % 36];
    out[15] = 0;
}

/* ---- what a field can take ---- */

static bool starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static bool numeric_type(const char *t)
{
    static const char *const nums[] = {"TINYINT",  "SMALLINT",  "INTEGER",  "BIGINT",  "HUGEINT",
                                       "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
                                       "FLOAT",    "DOUBLE",    "DECIMAL"};
    for (size_t i = 0; i < ARRAY_LEN(nums); i++)
        if (starts(t, nums[i]))
            return true;
    return false;
}

static bool fits(const struct store_field *f, const char *t)
{
    bool text = strcmp(t, "VARCHAR") == 0 || strcmp(t, "UUID") == 0;
    switch (f->type) {
    case STORE_FIELD_NUMBER: return numeric_type(t);
    case STORE_FIELD_BOOL: return strcmp(t, "BOOLEAN") == 0;
    case STORE_FIELD_TEXT:
    case STORE_FIELD_EMAIL:
    case STORE_FIELD_URL:
    case STORE_FIELD_EDITOR: return text;
    case STORE_FIELD_SELECT:
    case STORE_FIELD_RELATION:
        return text || (store_field_multiple(f) && strcmp(t, "VARCHAR[]") == 0);
    case STORE_FIELD_DATE: return text || starts(t, "TIMESTAMP") || strcmp(t, "DATE") == 0;
    case STORE_FIELD_JSON: return true;
    default: return false;
    }
}

static const char *field_type_name(const struct store_field *f)
{
    switch (f->type) {
    case STORE_FIELD_NUMBER: return "number";
    case STORE_FIELD_BOOL: return "bool";
    case STORE_FIELD_DATE: return "date";
    case STORE_FIELD_JSON: return "json";
    case STORE_FIELD_AUTODATE: return "autodate";
    case STORE_FIELD_PASSWORD: return "password";
    case STORE_FIELD_RELATION: return "relation";
    case STORE_FIELD_SELECT: return "select";
    default: return "text";
    }
}

int models__sync_check(struct store *st, const json_t *sync, const json_t *columns, char *why,
                       size_t why_len)
{
    const char *coll = json_string_value(json_object_get(sync, "collection"));
    const char *key = json_string_value(json_object_get(sync, "key"));
    json_t *del = json_object_get(sync, "delete");
    json_t *share = json_object_get(sync, "maxChangeShare");
    struct store_collection *c = NULL;
    int rc = ERR_INVALID;
    if (!st) {
        snprintf(why, why_len, "no application store to sync into");
        return rc;
    }
    if (!coll || !key) {
        snprintf(why, why_len, "sync needs a collection and a key column");
        return rc;
    }
    if (del && !json_is_boolean(del)) {
        snprintf(why, why_len, "sync.delete must be a boolean");
        return rc;
    }
    if (share &&
        (!json_is_number(share) || json_number_value(share) <= 0 || json_number_value(share) > 1)) {
        snprintf(why, why_len, "sync.maxChangeShare must be a number in (0, 1]");
        return rc;
    }
    if (store_collection_get(st, coll, &c) < 0) {
        snprintf(why, why_len, "sync: unknown collection %s", coll);
        return rc;
    }
    if (c->type != STORE_COLLECTION_BASE) {
        snprintf(why, why_len, "sync: %s is not a base collection", coll);
        goto out;
    }
    bool key_seen = false;
    size_t i;
    json_t *col;
    json_array_foreach(columns, i, col)
    {
        const char *name = json_string_value(json_object_get(col, "name"));
        const char *type = json_string_value(json_object_get(col, "type"));
        key_seen = key_seen || strcmp(name, key) == 0;
        if (strcmp(name, "id") == 0) {
            snprintf(why, why_len,
                     "sync: the column id cannot be synced (record ids come from the key)");
            goto out;
        }
        const struct store_field *f = store_collection_field(c, name);
        if (!f) {
            snprintf(why, why_len, "sync: the collection %s has no field for the column %s", coll,
                     name);
            goto out;
        }
        if (!fits(f, type)) {
            snprintf(why, why_len, "sync: the column %s (%s) cannot go into the %s field %s of %s",
                     name, type, field_type_name(f), name, coll);
            goto out;
        }
    }
    if (!key_seen) {
        snprintf(why, why_len, "sync: the model has no key column %s", key);
        goto out;
    }
    rc = 0;
out:
    store_collection_unref(c);
    return rc;
}

/* ---- the sync ---- */

static char *key_text(const json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (!v || json_is_null(v))
        return NULL;
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static bool same_value(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (!a)
        a = json_null();
    if (!b)
        b = json_null();
    return json_equal(a, b);
}

/* Every record of c as id -> record; ERR_LIMIT past MODELS_SYNC_MAX_ROWS. */
static int load_records(struct store *st, const struct store_collection *c, json_t **out)
{
    json_t *all = json_object();
    struct store_sort sort = {.field = "@rowid", .desc = false};
    int rc = 0;
    for (int64_t page = 1;; page++) {
        struct store_list_query q = {
            .page = page, .per_page = 1000, .skip_total = true, .sort = &sort, .n_sort = 1};
        struct store_list_result res = {0};
        if ((rc = store_record_list(st, c, &q, &res)) < 0)
            break;
        size_t i, n = json_array_size(res.items);
        json_t *r;
        json_array_foreach(res.items, i, r)
        {
            const char *id = json_string_value(json_object_get(r, "id"));
            if (id)
                json_object_set(all, id, r);
        }
        json_decref(res.items);
        if (json_object_size(all) > MODELS_SYNC_MAX_ROWS) {
            rc = ERR_LIMIT;
            break;
        }
        if (n < 1000)
            break;
    }
    if (rc < 0) {
        json_decref(all);
        all = NULL;
    }
    *out = all;
    return rc;
}

/* Applies ops[0..n) in one transaction; a message on failure. */
static int apply_batch(struct store *st, struct store_op *ops, size_t n, char *msg, size_t msg_len)
{
    size_t failed = 0;
    int rc = store_record_ops(st, ops, n, &failed);
    if (rc < 0) {
        char *errs =
            failed < n && ops[failed].errors ? json_dumps(ops[failed].errors, JSON_COMPACT) : NULL;
        snprintf(msg, msg_len, "writing record %s failed: %s%s%s",
                 failed < n && ops[failed].id ? ops[failed].id : "?", err_str(rc), errs ? " " : "",
                 errs ? errs : store_errmsg(st));
        free(errs);
    }
    for (size_t i = 0; i < n; i++) {
        json_decref(ops[i].errors);
        json_decref(ops[i].record);
        ops[i].errors = ops[i].record = NULL;
    }
    return rc;
}

int models__sync(struct store *st, struct wh_conn *c, const char *model, const json_t *sync,
                 bool confirm, json_t **out)
{
    const char *coll_name = json_string_value(json_object_get(sync, "collection"));
    const char *key = json_string_value(json_object_get(sync, "key"));
    bool del = json_is_true(json_object_get(sync, "delete"));
    json_t *jshare = json_object_get(sync, "maxChangeShare");
    double share = json_is_number(jshare) ? json_number_value(jshare) : 0.5;
    struct store_collection *coll = NULL;
    json_t *existing = NULL, *seen = json_object(), *bodies = json_array(), *ids = json_array();
    struct wh_result res;
    wh_result_init(&res);
    struct buf sql;
    buf_init(&sql);
    const char *status = "failed";
    char msg[1200] = "";
    uint64_t n_create = 0, n_update = 0, n_delete = 0, n_same = 0, done_c = 0, done_u = 0,
             done_d = 0;
    int rc = 0;
    if (!st || !coll_name || !key || store_collection_get(st, coll_name, &coll) < 0) {
        snprintf(msg, sizeof(msg), "the collection %s does not exist", coll_name ? coll_name : "?");
        goto out;
    }
    /* the model's rows */
    buf_puts(&sql, "SELECT * FROM \"");
    for (const char *p = model; *p; p++)
        buf_putc(&sql, *p); /* a validated name: [a-z0-9_] */
    buf_puts(&sql, "\"");
    struct wh_query q = {.sql = buf_cstr(&sql),
                         .timeout_ms = 600000,
                         .max_rows = MODELS_SYNC_MAX_ROWS,
                         .max_bytes = (uint64_t)1 << 30};
    if ((rc = wh_query(c, &q, &res)) < 0) {
        snprintf(msg, sizeof(msg), "cannot read the model: %s", wh_errmsg(c));
        goto out;
    }
    if (res.truncated) {
        snprintf(msg, sizeof(msg), "the model has more than %d rows to sync", MODELS_SYNC_MAX_ROWS);
        goto out;
    }
    if ((rc = load_records(st, coll, &existing)) < 0) {
        snprintf(msg, sizeof(msg), "cannot read the collection: %s",
                 rc == ERR_LIMIT ? "too many records" : store_errmsg(st));
        goto out;
    }
    size_t key_col = SIZE_MAX, n_cols = json_array_size(res.columns);
    for (size_t i = 0; i < n_cols; i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(res.columns, i), "name")),
                   key) == 0)
            key_col = i;
    if (key_col == SIZE_MAX) {
        snprintf(msg, sizeof(msg), "the model has no key column %s", key);
        goto out;
    }
    /* the plan */
    size_t i;
    json_t *row;
    json_array_foreach(res.rows, i, row)
    {
        char *k = key_text(json_array_get(row, key_col));
        if (!k)
            continue; /* a row without a key has no record */
        char id[16];
        models_sync_id(coll->id, k, id);
        free(k);
        if (json_object_get(seen, id))
            continue; /* a duplicate key: the first row wins (a unique test catches it) */
        json_object_set_new(seen, id, json_true());
        json_t *body = json_object();
        for (size_t j = 0; j < n_cols; j++)
            json_object_set(
                body, json_string_value(json_object_get(json_array_get(res.columns, j), "name")),
                json_array_get(row, j));
        json_t *old = json_object_get(existing, id);
        bool same = false;
        if (old) {
            json_t *view = store_record_body_view(coll, old, body);
            same = true;
            const char *fname;
            json_t *v;
            json_object_foreach(body, fname, v)
            {
                if (!same_value(json_object_get(view, fname), json_object_get(old, fname))) {
                    same = false;
                    break;
                }
            }
            json_decref(view);
        }
        if (same) {
            n_same++;
            json_decref(body);
            continue;
        }
        json_object_set_new(body, "id", json_string(id));
        json_array_append_new(bodies, body);
        old ? n_update++ : n_create++;
    }
    if (del) {
        const char *id;
        json_t *v;
        json_object_foreach(existing, id, v)
        {
            if (!json_object_get(seen, id)) {
                json_array_append_new(ids, json_string(id));
                n_delete++;
            }
        }
    }
    size_t n_existing = json_object_size(existing);
    if (!confirm && n_existing > 0 && (double)(n_update + n_delete) > share * (double)n_existing) {
        status = "needs_confirmation";
        snprintf(msg, sizeof(msg),
                 "the sync would update %llu and delete %llu of %zu records, more than the "
                 "maxChangeShare %.2f: run again with confirm",
                 (unsigned long long)n_update, (unsigned long long)n_delete, n_existing, share);
        goto out;
    }
    /* apply, batch by batch */
    struct store_op ops[MODELS_SYNC_BATCH];
    size_t n_ops = 0, n_bodies = json_array_size(bodies), n_ids = json_array_size(ids);
    uint64_t batch_c = 0, batch_u = 0;
    for (size_t k = 0; k < n_bodies + n_ids; k++) {
        struct store_op *op = &ops[n_ops++];
        memset(op, 0, sizeof(*op));
        op->c = coll;
        if (k < n_bodies) {
            /* the plan knows which records exist: a create or an update, no look-up; a record
             * made or deleted meanwhile by someone else fails the batch, and the next run
             * plans again */
            json_t *b = json_array_get(bodies, k);
            op->body = b;
            op->id = json_string_value(json_object_get(b, "id"));
            if (json_object_get(existing, op->id)) {
                op->kind = STORE_OP_UPDATE;
                batch_u++;
            } else {
                op->kind = STORE_OP_CREATE;
                batch_c++;
            }
        } else {
            op->kind = STORE_OP_DELETE;
            op->id = json_string_value(json_array_get(ids, k - n_bodies));
        }
        if (n_ops == MODELS_SYNC_BATCH || k + 1 == n_bodies + n_ids) {
            uint64_t batch_d = n_ops - batch_c - batch_u;
            if ((rc = apply_batch(st, ops, n_ops, msg, sizeof(msg))) < 0)
                goto out;
            done_c += batch_c;
            done_u += batch_u;
            done_d += batch_d;
            n_ops = 0;
            batch_c = batch_u = 0;
        }
    }
    status = "done";
out:
    *out = json_pack("{s:s,s:I,s:I,s:I,s:I,s:s?}", "status", status, "created", (json_int_t)done_c,
                     "updated", (json_int_t)done_u, "deleted", (json_int_t)done_d, "unchanged",
                     (json_int_t)n_same, "message", msg[0] ? msg : NULL);
    json_object_set_new(*out, "planned",
                        json_pack("{s:I,s:I,s:I}", "create", (json_int_t)n_create, "update",
                                  (json_int_t)n_update, "delete", (json_int_t)n_delete));
    json_decref(existing);
    json_decref(seen);
    json_decref(bodies);
    json_decref(ids);
    wh_result_release(&res);
    buf_release(&sql);
    store_collection_unref(coll);
    return 0;
}
