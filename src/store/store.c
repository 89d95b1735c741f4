/* store.c - the store facade: backend registry and dispatch, plus the operations built on
 * the backend methods (superuser upsert). */
#include <pthread.h>
#include <string.h>

#include "store/store_int.h"

static const struct store_ops *const backends[] = {
    &store__sqlite_ops,
};

const struct store_ops *store_backend(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(backends); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

int store_open(const struct store_cfg *cfg, struct store **out, char *err, size_t err_len)
{
    const char *name = cfg->backend ? cfg->backend : "sqlite";
    const struct store_ops *ops = store_backend(name);
    *out = NULL;
    if (!ops) {
        snprintf(err, err_len, "unknown store backend %s", name);
        return ERR_INVALID;
    }
    return ops->open(cfg, out, err, err_len);
}

void store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

void store_on_deleted(struct store *st, store_deleted_fn fn, void *arg)
{
    st->deleted_arg = arg;
    st->deleted_fn = fn;
}

/* leaf: guards every store's outbox hook while it is called or replaced */
static pthread_mutex_t outbox_hook_mu = PTHREAD_MUTEX_INITIALIZER;

void store_on_outbox(struct store *st, store_outbox_fn fn, void *arg)
{
    pthread_mutex_lock(&outbox_hook_mu);
    st->outbox_fn = fn;
    st->outbox_arg = arg;
    pthread_mutex_unlock(&outbox_hook_mu);
}

void store__outbox_committed(struct store *st)
{
    pthread_mutex_lock(&outbox_hook_mu);
    if (st->outbox_fn)
        st->outbox_fn(st->outbox_arg);
    pthread_mutex_unlock(&outbox_hook_mu);
}

void store_deadline(struct store *st, int64_t deadline_us)
{
    if (st && st->ops->deadline)
        st->ops->deadline(st, deadline_us);
}

const char *store_errmsg(struct store *st)
{
    return st->ops->errmsg(st);
}

int store_collection_list(struct store *st, struct store_collection ***out, size_t *n_out)
{
    return st->ops->collection_list(st, out, n_out);
}

void store_collection_list_free(struct store_collection **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_collection_unref(list[i]);
    free(list);
}

int store_collection_get(struct store *st, const char *id_or_name, struct store_collection **out)
{
    return st->ops->collection_get(st, id_or_name, out);
}

int store_collection_create(struct store *st, const json_t *spec, json_t **errors_out,
                            struct store_collection **out)
{
    if (errors_out)
        *errors_out = NULL;
    if (out)
        *out = NULL;
    return st->ops->collection_create(st, spec, errors_out, out);
}

int store_collection_update(struct store *st, const char *id_or_name, const json_t *patch,
                            json_t **errors_out, struct store_collection **out)
{
    if (errors_out)
        *errors_out = NULL;
    if (out)
        *out = NULL;
    return st->ops->collection_update(st, id_or_name, patch, errors_out, out);
}

int store_collection_view_fields(struct store *st, const char *query, json_t **errors_out,
                                 json_t **fields_out)
{
    *errors_out = NULL;
    *fields_out = NULL;
    return st->ops->view_fields(st, query, errors_out, fields_out);
}

int store_auth_rehash(struct store *st, const struct store_collection *c, const char *id,
                      const char *old_hash, const char *new_hash)
{
    return st->ops->auth_rehash(st, c, id, old_hash, new_hash);
}

int store_view_file_origin(struct store *st, const struct store_collection *view, const char *field,
                           const char *filename, char *coll_id_out, size_t coll_cap,
                           char *rec_id_out, size_t rec_cap)
{
    return st->ops->view_file_origin(st, view, field, filename, coll_id_out, coll_cap, rec_id_out,
                                     rec_cap);
}

int store_collection_import(struct store *st, const json_t *collections, bool delete_missing,
                            json_t **errors_out)
{
    if (errors_out)
        *errors_out = NULL;
    return st->ops->collection_import(st, collections, delete_missing, errors_out);
}

int store_collection_truncate(struct store *st, const char *id_or_name)
{
    return st->ops->collection_truncate(st, id_or_name);
}

struct store_collection *store_collection_catalog(struct store *st)
{
    return st->ops->catalog(st);
}

int store_collection_delete(struct store *st, const char *id_or_name)
{
    return st->ops->collection_delete(st, id_or_name);
}

int store_record_get(struct store *st, const struct store_collection *c, const char *id,
                     json_t **out)
{
    return st->ops->record_get(st, c, id, NULL, out);
}

int store_record_list(struct store *st, const struct store_collection *c,
                      const struct store_list_query *q, struct store_list_result *out)
{
    return st->ops->record_list(st, c, q, out);
}

int store_record_referencing(struct store *st, const struct store_collection *c, const char *field,
                             const char *target_id, size_t max, json_t **out)
{
    return st->ops->record_referencing(st, c, field, target_id, max, out);
}

int store_record_create(struct store *st, const struct store_collection *c, const json_t *body,
                        const char *password_hash, json_t **errors_out, json_t **out)
{
    if (errors_out)
        *errors_out = NULL;
    return st->ops->record_create(st, c, body, password_hash, NULL, errors_out, out);
}

int store_record_update(struct store *st, const struct store_collection *c, const char *id,
                        const json_t *body, const char *password_hash, json_t **errors_out,
                        json_t **out)
{
    if (errors_out)
        *errors_out = NULL;
    return st->ops->record_update(st, c, id, body, password_hash, NULL, errors_out, out);
}

int store_record_delete(struct store *st, const struct store_collection *c, const char *id)
{
    return st->ops->record_delete(st, c, id, NULL);
}

int store_record_get_if(struct store *st, const struct store_collection *c, const char *id,
                        const struct store_cond *cond, json_t **out)
{
    return st->ops->record_get(st, c, id, cond, out);
}

int store_record_match(struct store *st, const struct store_collection *c, const json_t *record,
                       const struct store_cond *cond)
{
    if (!cond || !cond->sql || !*cond->sql)
        return 1;
    if (!st->ops->record_match)
        return ERR_INTERNAL;
    return st->ops->record_match(st, c, record, cond);
}

int store_record_create_if(struct store *st, const struct store_collection *c, const json_t *body,
                           const char *password_hash, const struct store_cond *cond,
                           json_t **errors_out, json_t **out)
{
    if (errors_out)
        *errors_out = NULL;
    return st->ops->record_create(st, c, body, password_hash, cond, errors_out, out);
}

int store_record_create_batch(struct store *st, struct store_create_item *items, size_t n)
{
    if (st->ops->record_create_batch)
        return st->ops->record_create_batch(st, items, n);
    for (size_t i = 0; i < n; i++) {
        items[i].errors = NULL;
        items[i].record = NULL;
        struct store_create_item *it = &items[i];
        if (it->update_id && it->delete_it) {
            it->rc = st->ops->record_delete(st, it->c, it->update_id, it->cond);
            continue;
        }
        it->rc = it->update_id
                     ? st->ops->record_update(st, it->c, it->update_id, it->body, it->password_hash,
                                              it->cond, &it->errors, &it->record)
                     : st->ops->record_create(st, it->c, it->body, it->password_hash, it->cond,
                                              &it->errors, &it->record);
    }
    return 0;
}

int store_record_update_if(struct store *st, const struct store_collection *c, const char *id,
                           const json_t *body, const char *password_hash,
                           const struct store_cond *cond, json_t **errors_out, json_t **out)
{
    if (errors_out)
        *errors_out = NULL;
    return st->ops->record_update(st, c, id, body, password_hash, cond, errors_out, out);
}

int store_record_delete_if(struct store *st, const struct store_collection *c, const char *id,
                           const struct store_cond *cond)
{
    return st->ops->record_delete(st, c, id, cond);
}

int store_auth_find(struct store *st, const struct store_collection *c, const char *field,
                    const char *value, struct store_auth_record *out)
{
    return st->ops->auth_find(st, c, field, value, out);
}

int store_auth_get(struct store *st, const struct store_collection *c, const char *id,
                   struct store_auth_record *out)
{
    return st->ops->auth_get(st, c, id, out);
}

int store_auth_token_key(struct store *st, const struct store_collection *c, const char *id,
                         char *out, size_t out_len)
{
    return st->ops->auth_token_key(st, c, id, out, out_len);
}

int store_auth_epoch(struct store *st, uint64_t *instance_out, uint64_t *epoch_out)
{
    if (!st->ops->auth_epoch)
        return ERR_INTERNAL;
    return st->ops->auth_epoch(st, instance_out, epoch_out);
}

void store_auth_record_release(struct store_auth_record *r)
{
    json_decref(r->record);
    free(r->password_hash);
    free(r->token_key);
    memset(r, 0, sizeof(*r));
}

int store_superuser_upsert(struct store *st, const char *email, const char *password_hash,
                           char *id_out)
{
    struct store_collection *c = NULL;
    struct store_auth_record ar = {0};
    json_t *body = NULL, *rec = NULL, *errors = NULL;
    int rc = store_collection_get(st, STORE__SUPERUSERS_ID, &c);
    if (rc)
        return rc;
    rc = store_auth_find(st, c, "email", email, &ar);
    if (rc == 0) {
        body = json_object();
        rc = store_record_update(st, c, json_string_value(json_object_get(ar.record, "id")), body,
                                 password_hash, &errors, &rec);
    } else if (rc == ERR_NOTFOUND) {
        body = json_pack("{s:s, s:b}", "email", email, "verified", 1);
        rc = store_record_create(st, c, body, password_hash, &errors, &rec);
    }
    if (rc == 0 && id_out)
        snprintf(id_out, ID_LEN + 1, "%s", json_string_value(json_object_get(rec, "id")));
    store_auth_record_release(&ar);
    json_decref(body);
    json_decref(rec);
    json_decref(errors);
    store_collection_unref(c);
    return rc;
}

int store_outbox_rows(struct store *st, int64_t after_id, size_t max, struct store_outbox_row **out,
                      size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!st->ops->outbox_rows)
        return ERR_INTERNAL;
    return st->ops->outbox_rows(st, after_id, max, out, n_out);
}

void store_outbox_rows_free(struct store_outbox_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(rows[i].mem_);
    free(rows);
}

int store_outbox_delete(struct store *st, int64_t up_to_id)
{
    return st->ops->outbox_delete(st, up_to_id);
}

int store_outbox_pending(struct store *st, int64_t *n_out)
{
    return st->ops->outbox_pending(st, n_out);
}

int store_sql(struct store *st, const char *sql, size_t max_rows, size_t max_bytes,
              int64_t deadline_us, struct store_sql_result *out)
{
    return st->ops->sql(st, sql, max_rows, max_bytes, deadline_us, out);
}

void store_sql_result_release(struct store_sql_result *r)
{
    json_decref(r->columns);
    json_decref(r->rows);
    memset(r, 0, sizeof(*r));
}

int store_backup(struct store *st, const char *dest_path)
{
    return st->ops->backup(st, dest_path);
}

int store_wal_truncate(struct store *st)
{
    return st->ops->wal_truncate(st);
}

int store_sync(struct store *st)
{
    return st->ops->sync(st);
}

int store_sync_commits(struct store *st)
{
    return st->ops->sync_commits ? st->ops->sync_commits(st) : st->ops->sync(st);
}

int store_writekey_create(struct store *st, const char *name, const char *key_hash,
                          const char *prefix)
{
    return st->ops->writekey_create(st, name, key_hash, prefix);
}

int store_writekey_list(struct store *st, json_t **out)
{
    return st->ops->writekey_list(st, out);
}

int store_writekey_revoke(struct store *st, const char *name)
{
    return st->ops->writekey_revoke(st, name);
}

int store_writekey_find(struct store *st, const char *key_hash, char *name_out, size_t cap)
{
    return st->ops->writekey_find(st, key_hash, name_out, cap);
}

int store_record_ops(struct store *st, struct store_op *ops, size_t n, size_t *failed_out)
{
    return st->ops->record_ops(st, ops, n, failed_out);
}

int store_param_get(struct store *st, const char *id, json_t **out)
{
    *out = NULL;
    return st->ops->param_get(st, id, out);
}

int store_param_put(struct store *st, const char *id, const json_t *value)
{
    return st->ops->param_put(st, id, value);
}

int store_sys_put(struct store *st, const struct store_sysrow *row)
{
    return st->ops->sys_put(st, row);
}

int store_sys_take(struct store *st, const char *kind, const char *id)
{
    return st->ops->sys_take(st, kind, id);
}

int store_sys_list(struct store *st, const char *kind, const char *id, const char *ref,
                   int64_t due_before_us, size_t max, json_t **out)
{
    *out = NULL;
    return st->ops->sys_list(st, kind, id, ref, due_before_us, max, out);
}

int store_sys_get(struct store *st, const char *kind, const char *id, json_t **out)
{
    json_t *arr = NULL;
    *out = NULL;
    int rc = st->ops->sys_list(st, kind, id, NULL, 0, 1, &arr);
    if (rc == 0 && json_array_size(arr) == 0)
        rc = ERR_NOTFOUND;
    if (rc == 0)
        *out = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return rc;
}

int store_sys_count(struct store *st, const char *kind, int64_t *n_out)
{
    *n_out = 0;
    return st->ops->sys_count(st, kind, n_out);
}
