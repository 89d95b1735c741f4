/* files.c - file fields: uploads of record writes (validated, named, written off the HTTP
 * thread before the record commits, cleaned up after), GET /api/files/... (ranges, ETags,
 * thumbnails made once in the storage pool, protected files) and POST /api/files/token.
 *
 * The guarantee: a committed record never names a missing file. New files are written (and
 * fsynced) before the write's transaction; the store accepts in a file field only names the
 * record held or this write uploaded (STORE_BODY_UPLOADS); files a write dropped are removed
 * only after its commit. A crash in between leaves orphans, never dangling names, and the
 * sweep at start (api_files_start) removes the orphans. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>

#include "api/dashboard_int.h"
#include "api/records_int.h"
#include "storage/storage.h"

#define FILE_MAX_SIZE_DEFAULT (INT64_C(5) << 20) /* PocketBase's DefaultFileFieldMaxSize */
#define FILE_TOKEN_DURATION 180                  /* seconds */
#define FILES_POOL_THREADS 8 /* they mostly wait on fsync; the device merges their flushes */
#define FILES_POOL_QUEUE 1024
#define THUMBS_POOL_THREADS 2 /* libvips work, one thread per operation */
#define THUMBS_POOL_QUEUE 256
#define NAME_MAX_LEN 150
#define SMALL_FILE_MAX (64 << 10) /* read and sent with the headers; larger: sendfile */

/* One record write's file work; in the request's arena. */
struct api_files_change {
    struct api_env *env;
    struct store_collection *c; /* a reference, dropped with the arena */
    const char *rec_id;
    json_t *uploaded;        /* {field: [stored names]} (in the body too) */
    json_t *old;             /* the record before an update (read before the write), or NULL */
    struct api_upload *puts; /* the uploads to store, .key = storage key */
    size_t n_puts;
    size_t n_written;
    const char **keys; /* of puts, for storage_sync */
    bool settled;      /* api__files_settle ran */
    bool inflight;     /* counted in inflight until settled */
    void (*done)(void *arg, int rc);
    void *done_arg;
};

/* Record directories with uploads in flight ("collectionId/recordId" -> count): written or
 * being written, their record not yet committed or refused. A sweep while the server runs
 * (a file field removed, a truncation, an import) leaves these directories alone, or it
 * could remove an upload its record is about to name. */
/* guards inflight; a sweep holds it across its read of the record, so it is never taken by a
 * thread that holds a store lock (uploads register before their write, settle after it) */
static pthread_mutex_t inflight_mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *inflight;

static void inflight_add(const char *coll, const char *rec, int delta)
{
    char key[256];
    snprintf(key, sizeof(key), "%s/%s", coll, rec);
    pthread_mutex_lock(&inflight_mu);
    if (!inflight)
        inflight = json_object();
    json_int_t n = json_integer_value(json_object_get(inflight, key)) + delta;
    if (n > 0)
        json_object_set_new(inflight, key, json_integer(n));
    else
        json_object_del(inflight, key);
    pthread_mutex_unlock(&inflight_mu);
}

static bool has_file_fields(const struct store_collection *c)
{
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type == STORE_FIELD_FILE)
            return true;
    return false;
}

/* Record and collection ids as path segments: [A-Za-z0-9_-], 1..100 characters. */
static bool id_safe(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 100)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* A plain stored file name: no path, no control characters, not hidden, <= 255 bytes. */
static bool name_safe(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '/' || s[i] == '\\' || s[i] == 0x7f)
            return false;
    return true;
}

/* PocketBase's stored name: the original base in snake_case (at most 100 characters, a
 * random part added below 3), '_', 10 random [a-z0-9], the original extension (cleaned). */
static void stored_name(const char *orig, char *out, size_t cap)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    const char *slash = strrchr(orig, '/'), *bslash = strrchr(orig, '\\');
    if (slash)
        orig = slash + 1;
    if (bslash && bslash + 1 > orig)
        orig = bslash + 1;
    const char *dot = strrchr(orig, '.');
    if (dot == orig)
        dot = NULL;
    size_t base_len = dot ? (size_t)(dot - orig) : strlen(orig);
    char base[128];
    size_t n = 0;
    bool sep = false;
    for (size_t i = 0; i < base_len && n < 100; i++) {
        unsigned char ch = (unsigned char)orig[i];
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        bool digit = ch >= '0' && ch <= '9';
        if (!alpha && !digit) {
            sep = n > 0;
            continue;
        }
        bool upper = ch >= 'A' && ch <= 'Z';
        if (upper && i > 0 && n > 0 && orig[i - 1] >= 'a' && orig[i - 1] <= 'z')
            sep = true; /* camelCase -> camel_case */
        if (sep && n < 99)
            base[n++] = '_';
        sep = false;
        base[n++] = (char)(upper ? ch - 'A' + 'a' : ch);
    }
    base[n] = '\0';
    if (n < 3) {
        char r[11];
        rand_string(r, 10, alnum);
        snprintf(base + n, sizeof(base) - n, "%s", r);
    }
    char ext[24] = "";
    size_t e = 0;
    for (const char *p = dot; p && *p && e < sizeof(ext) - 1; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("_.*-+=", ch))
            ext[e++] = (char)ch;
    }
    ext[e] = '\0';
    char suffix[11];
    rand_string(suffix, 10, alnum);
    snprintf(out, cap, "%s_%s%s", base, suffix, ext);
}

static bool list_has(const json_t *v, const char *s)
{
    if (json_is_string(v))
        return strcmp(json_string_value(v), s) == 0;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (json_is_string(json_array_get(v, i)) &&
            strcmp(json_string_value(json_array_get(v, i)), s) == 0)
            return true;
    return false;
}

static void key_of(char *out, size_t cap, const char *coll, const char *rec, const char *name)
{
    snprintf(out, cap, "%s/%s/%s", coll, rec, name);
}

/* Removes a stored file and its thumbnails. */
static void remove_file(struct storage *st, const char *coll, const char *rec, const char *name)
{
    char key[600];
    if (!name_safe(name))
        return;
    key_of(key, sizeof(key), coll, rec, name);
    int rc = storage_remove(st, key);
    snprintf(key, sizeof(key), "%s/%s/thumbs_%s", coll, rec, name);
    if (storage_remove(st, key) != 0 || rc != 0)
        xlog_warn("cannot remove the file %s/%s/%s (the sweep at start will)", coll, rec, name);
}

static json_t *ferr(const char *code, const char *msg)
{
    return json_pack("{s:s,s:s}", "code", code, "message", msg);
}

static void coll_unref(void *arg)
{
    store_collection_unref(arg);
}

/* At the end of the request: uploads of a write that never reached the store go. */
static void change_release(void *arg)
{
    struct api_files_change *ch = arg;
    if (!ch->settled)
        api__files_settle(ch, ERR_INVALID, NULL);
}

bool api__files_prepare(struct http_req *req, struct api_env *env, const struct store_collection *c,
                        const char *id, json_t *body, const struct api_uploads *ups,
                        struct api_files_change **out, struct api_fail *f)
{
    struct arena *a = http_req_arena(req);
    const char *what = id ? "Failed to update record." : "Failed to create record.";
    *out = NULL;
    if (!has_file_fields(c))
        return true; /* file parts of other keys are ignored, as PocketBase does */
    if (!env->storage || !env->files_pool) {
        f->status = 503;
        f->message = "File storage is not available.";
        f->data = NULL;
        return false;
    }
    json_t *errors = api__arena_json(a, json_object());
    struct api_files_change *ch = arena_zalloc(a, sizeof(*ch));
    ch->env = env;
    ch->c = store_collection_ref((struct store_collection *)c);
    arena_on_release(a, coll_unref, ch->c);
    ch->uploaded = api__arena_json(a, json_object());
    ch->puts = ups->n ? arena_alloc(a, ups->n * sizeof(*ch->puts)) : NULL;
    ch->keys = ups->n ? arena_alloc(a, ups->n * sizeof(*ch->keys)) : NULL;

    /* the record: its id names the directory */
    if (id) {
        int rc = store_record_get_if(env->store, c, id, NULL, &ch->old);
        if (rc) {
            f->status = rc == ERR_NOTFOUND ? 404 : rc == ERR_BUSY ? 503 : 500;
            f->message = NULL;
            f->data = NULL;
            return false;
        }
        api__arena_json(a, ch->old);
        ch->rec_id = arena_strdup(a, id);
    } else {
        const json_t *bid = json_object_get(body, "id");
        if (json_is_string(bid) && json_string_length(bid) > 0) {
            ch->rec_id = arena_strdup(a, json_string_value(bid));
        } else {
            char rid[ID_LEN + 1];
            id_random(rid);
            ch->rec_id = arena_strdup(a, rid);
            json_object_set_new(body, "id", json_string(rid));
        }
    }
    if (!id_safe(ch->rec_id) || !id_safe(c->id)) {
        json_object_set_new(errors, "id",
                            ferr("validation_invalid_format", "Invalid value format."));
        goto refused;
    }

    for (size_t i = 0; i < ups->n; i++) {
        const struct api_upload *u = &ups->v[i];
        char name[STORE_BODY_KEY_MAX + 1], op;
        if (!store_body_key(u->key, name, &op))
            continue;
        const struct store_field *fd = store_collection_field(c, name);
        if (!fd || fd->type != STORE_FIELD_FILE || json_object_get(errors, fd->name))
            continue;
        if (u->len == 0 && !*u->filename)
            continue; /* an empty file input */
        char msg[256];
        if (op == '-' || op == 'g') {
            json_object_set_new(errors, fd->name,
                                ferr("validation_invalid_value", "Files cannot be removed "
                                                                 "by upload."));
            continue;
        }
        int64_t max = fd->max_size > 0 ? fd->max_size : FILE_MAX_SIZE_DEFAULT;
        if ((int64_t)u->len > max) {
            snprintf(msg, sizeof(msg),
                     "Failed to upload \"%.100s\" - the maximum allowed file size is %lld bytes.",
                     u->filename, (long long)max);
            json_object_set_new(errors, fd->name, ferr("validation_file_size_limit", msg));
            continue;
        }
        const char *type = storage_sniff(u->data, u->len);
        bool ok = fd->n_mime_types == 0;
        for (size_t k = 0; k < fd->n_mime_types && !ok; k++)
            ok = strcasecmp(fd->mime_types[k], type) == 0 ||
                 strcmp(fd->mime_types[k], "application/octet-stream") == 0;
        if (!ok) {
            snprintf(msg, sizeof(msg),
                     "Failed to upload \"%.100s\" due to unsupported file type %s.", u->filename,
                     type);
            json_object_set_new(errors, fd->name, ferr("validation_invalid_mime_type", msg));
            continue;
        }
        char stored[NAME_MAX_LEN + 40];
        stored_name(u->filename, stored, sizeof(stored));
        /* the body: the name under the key it came with, so the store applies the
         * modifier; the uploads list lets the store accept it */
        json_t *cur = json_object_get(body, u->key);
        if (!cur)
            json_object_set_new(body, u->key, json_pack("[s]", stored));
        else if (json_is_array(cur))
            json_array_append_new(cur, json_string(stored));
        else
            json_object_set_new(body, u->key, json_pack("[O,s]", cur, stored));
        json_t *list = json_object_get(ch->uploaded, fd->name);
        if (!list) {
            list = json_array();
            json_object_set_new(ch->uploaded, fd->name, list);
        }
        json_array_append_new(list, json_string(stored));
        char key[600];
        key_of(key, sizeof(key), c->id, ch->rec_id, stored);
        ch->puts[ch->n_puts++] =
            (struct api_upload){arena_strdup(a, key), arena_strdup(a, stored), u->data, u->len};
    }
    if (json_object_size(errors))
        goto refused;
    json_object_set(body, STORE_BODY_UPLOADS, ch->uploaded);
    if (ch->n_puts) {
        ch->inflight = true;
        inflight_add(c->id, ch->rec_id, 1);
    }
    arena_on_release(a, change_release, ch);
    *out = ch;
    return true;
refused:
    f->status = 400;
    f->message = what;
    f->data = json_incref(errors);
    return false;
}

bool api__files_pending(const struct api_files_change *ch)
{
    return ch && ch->n_puts > ch->n_written;
}

/* Writes the uploads not yet written, each synced, straight under its name (storage_create:
 * no temporary file and rename, since nothing names it before the record commits); their
 * directory entries are synced after (storage_sync). */
static int write_files(struct api_files_change *ch)
{
    for (; ch->n_written < ch->n_puts; ch->n_written++) {
        const struct api_upload *u = &ch->puts[ch->n_written];
        int rc = storage_create(ch->env->storage, u->key, u->data, u->len);
        if (rc) {
            xlog_error("cannot store the upload %s: %s", u->key, err_str(rc));
            return rc;
        }
        ch->keys[ch->n_written] = u->key;
    }
    return 0;
}

int api__files_write_now(struct api_files_change *ch)
{
    if (!ch || ch->n_written == ch->n_puts)
        return 0;
    int rc = write_files(ch);
    if (rc == 0 && (rc = storage_sync(ch->env->storage, ch->keys, ch->n_puts)) != 0)
        xlog_error("cannot sync the uploads of %s: %s", ch->rec_id, err_str(rc));
    return rc;
}

/* On a pool thread: writes the uploads and makes them durable, then hands over. */
static void write_job(void *arg)
{
    struct api_files_change *ch = arg;
    ch->done(ch->done_arg, api__files_write_now(ch));
}

int api__files_write_async(struct api_files_change *ch, void (*done)(void *arg, int rc), void *arg)
{
    ch->done = done;
    ch->done_arg = arg;
    return storage_pool_submit(ch->env->files_pool, write_job, ch);
}

/* Whether rc says the store refused the write before any commit (then its uploads can go). */
static bool refused(int rc)
{
    return rc == ERR_INVALID || rc == ERR_DENIED || rc == ERR_NOTFOUND || rc == ERR_CONFLICT ||
           rc == ERR_LIMIT;
}

void api__files_settle(struct api_files_change *ch, int rc, const json_t *rec)
{
    if (!ch || ch->settled)
        return;
    ch->settled = true;
    if (ch->inflight) {
        ch->inflight = false;
        inflight_add(ch->c->id, ch->rec_id, -1);
    }
    struct storage *st = ch->env->storage;
    const struct store_collection *c = ch->c;
    if (rc != 0) {
        if (!refused(rc))
            return; /* maybe committed: the sweep at start decides */
        const char *field;
        json_t *names;
        json_object_foreach(ch->uploaded, field, names)
        {
            for (size_t i = 0; i < json_array_size(names); i++)
                remove_file(st, c->id, ch->rec_id, json_string_value(json_array_get(names, i)));
        }
        return;
    }
    /* committed: what the write held or uploaded and the record no longer names goes */
    for (size_t i = 0; i < c->n_fields; i++) {
        const struct store_field *fd = &c->fields[i];
        if (fd->type != STORE_FIELD_FILE)
            continue;
        const json_t *now = json_object_get(rec, fd->name);
        const json_t *lists[2] = {ch->old ? json_object_get(ch->old, fd->name) : NULL,
                                  json_object_get(ch->uploaded, fd->name)};
        for (int k = 0; k < 2; k++) {
            const json_t *l = lists[k];
            size_t n = json_is_array(l) ? json_array_size(l) : l ? 1 : 0;
            for (size_t j = 0; j < n; j++) {
                const char *s = json_string_value(json_is_array(l) ? json_array_get(l, j) : l);
                if (s && *s && !list_has(now, s))
                    remove_file(st, c->id, ch->rec_id, s);
            }
        }
    }
}

static void empty_check(void *arg, const char *name, bool is_dir)
{
    UNUSED(name);
    UNUSED(is_dir);
    *(bool *)arg = true;
}

/* The store's hook after a COMMIT that deleted record id of c (directly, by a cascade, in a
 * batch, a truncation or the SQL console): the files it named go, with their thumbnails, then
 * its directory if nothing else is left in it. Only named files: an upload in flight for a new
 * record that reuses the id keeps its file. */
static void record_gone(void *arg, const struct store_collection *c, const char *id,
                        const json_t *rec)
{
    struct api_env *env = arg;
    if (!env->storage || !id_safe(id) || !id_safe(c->id))
        return;
    for (size_t i = 0; i < c->n_fields; i++) {
        if (c->fields[i].type != STORE_FIELD_FILE)
            continue;
        const json_t *v = json_object_get(rec, c->fields[i].name);
        size_t n = json_is_array(v) ? json_array_size(v) : json_is_string(v) ? 1 : 0;
        for (size_t j = 0; j < n; j++) {
            const char *s = json_string_value(json_is_array(v) ? json_array_get(v, j) : v);
            if (s && *s)
                remove_file(env->storage, c->id, id, s);
        }
    }
    char key[300];
    snprintf(key, sizeof(key), "%s/%s", c->id, id);
    bool any = false;
    pthread_mutex_lock(&inflight_mu); /* no upload for this id starts in between */
    if (!(inflight && json_object_get(inflight, key)) &&
        storage_list(env->storage, key, empty_check, &any) == 0 && !any)
        (void)storage_remove(env->storage, key);
    pthread_mutex_unlock(&inflight_mu);
}

/* ---- the sweep ---- */

struct names {
    char **v;
    size_t n, cap;
};

static void collect(void *arg, const char *name, bool is_dir)
{
    struct names *ns = arg;
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? ns->cap * 2 : 16;
        ns->v = realloc(ns->v, ns->cap * sizeof(char *));
        if (!ns->v)
            PANIC("out of memory");
    }
    /* a trailing '/' marks directories */
    size_t l = strlen(name);
    char *s = xmalloc(l + 2);
    memcpy(s, name, l);
    s[l] = is_dir ? '/' : '\0';
    s[l + 1] = '\0';
    ns->v[ns->n++] = s;
}

static void names_free(struct names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
    memset(ns, 0, sizeof(*ns));
}

static bool referenced(const struct store_collection *c, const json_t *rec, const char *name)
{
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type == STORE_FIELD_FILE &&
            list_has(json_object_get(rec, c->fields[i].name), name))
            return true;
    return false;
}

/* Removes the files of record directory rid of c that the record does not name (all of them
 * when the record does not exist); returns how many. Under inflight_mu, so that no upload of
 * this record starts or settles between the look at the record and the removals; a record
 * with uploads in flight is left alone. */
static size_t sweep_record(struct api_env *env, const struct store_collection *c, const char *rid,
                           const char *key)
{
    size_t removed = 0;
    pthread_mutex_lock(&inflight_mu);
    char ikey[256];
    snprintf(ikey, sizeof(ikey), "%s/%s", c->id, rid);
    if (inflight && json_object_get(inflight, ikey)) {
        pthread_mutex_unlock(&inflight_mu);
        return 0;
    }
    json_t *rec = NULL;
    int rc = store_record_get_if(env->store, c, rid, NULL, &rec);
    if (rc == ERR_NOTFOUND || (rc == 0 && !has_file_fields(c))) {
        (void)storage_remove(env->storage, key);
        removed++;
    } else if (rc == 0) {
        struct names files = {0};
        if (storage_list(env->storage, key, collect, &files) == 0) {
            for (size_t k = 0; k < files.n; k++) {
                char *fn = files.v[k];
                size_t fl = strlen(fn);
                bool dir = fl && fn[fl - 1] == '/';
                if (dir)
                    fn[fl - 1] = '\0';
                const char *name = dir && strncmp(fn, "thumbs_", 7) == 0 ? fn + 7 : fn;
                bool keep = (dir ? strncmp(fn, "thumbs_", 7) == 0 : true) && !strstr(fn, ".tmp-") &&
                            referenced(c, rec, name);
                if (!keep) {
                    char fkey[900];
                    snprintf(fkey, sizeof(fkey), "%s/%s", key, fn);
                    (void)storage_remove(env->storage, fkey);
                    removed++;
                }
            }
        }
        names_free(&files);
    } /* else: cannot tell, keep */
    pthread_mutex_unlock(&inflight_mu);
    json_decref(rec);
    return removed;
}

/* Removes what no record of c names; returns the files removed. */
static size_t sweep_collection(struct api_env *env, const struct store_collection *c)
{
    struct names recs = {0};
    size_t removed = 0;
    char key[700];
    if (storage_list(env->storage, c->id, collect, &recs) != 0)
        return 0;
    for (size_t i = 0; i < recs.n; i++) {
        char *rid = recs.v[i];
        size_t rl = strlen(rid);
        snprintf(key, sizeof(key), "%s/%.*s", c->id, (int)(rl ? rl - 1 : 0), rid);
        if (rl == 0 || rid[rl - 1] != '/') {
            (void)storage_remove(env->storage, key); /* a stray file */
            removed++;
            continue;
        }
        rid[rl - 1] = '\0';
        removed += sweep_record(env, c, rid, key);
    }
    names_free(&recs);
    return removed;
}

void api__files_collection_changed(struct api_env *env, const char *coll_id)
{
    if (!env->storage || !id_safe(coll_id))
        return;
    struct store_collection *c = NULL;
    if (store_collection_get(env->store, coll_id, &c) != 0 || strcmp(c->id, coll_id) != 0) {
        (void)storage_remove(env->storage, coll_id); /* deleted: all of it goes */
    } else {
        size_t n = sweep_collection(env, c);
        if (n)
            xlog_info("removed %zu files no record of %s names", n, c->name);
    }
    store_collection_unref(c);
}

static size_t sweep_all(struct api_env *env)
{
    struct names colls = {0};
    size_t removed = 0;
    if (storage_list(env->storage, "", collect, &colls) != 0)
        return 0;
    for (size_t i = 0; i < colls.n; i++) {
        char *cid = colls.v[i];
        size_t l = strlen(cid);
        if (l && cid[l - 1] == '/')
            cid[l - 1] = '\0';
        struct store_collection *c = NULL;
        if (!id_safe(cid) || store_collection_get(env->store, cid, &c) != 0 ||
            strcmp(c->id, cid) != 0) {
            if (storage_key_valid(cid))
                (void)storage_remove(env->storage, cid);
            removed++;
        } else {
            removed += sweep_collection(env, c);
        }
        store_collection_unref(c);
    }
    names_free(&colls);
    return removed;
}

int api_files_start(struct api_env *env, const char *dir)
{
    int rc = storage_open("local", dir, &env->storage);
    if (rc)
        return rc;
    if ((rc = storage_thumb_init()) != 0 ||
        (rc = storage_pool_new(FILES_POOL_THREADS, FILES_POOL_QUEUE, &env->files_pool)) != 0 ||
        (rc = storage_pool_new(THUMBS_POOL_THREADS, THUMBS_POOL_QUEUE, &env->thumbs_pool)) != 0) {
        api_files_free(env);
        return rc;
    }
    if (env->store) {
        size_t n = sweep_all(env);
        if (n)
            xlog_info("file sweep: removed %zu orphaned files or directories", n);
        store_on_deleted(env->store, record_gone, env);
    }
    return 0;
}

void api_files_stop(struct api_env *env)
{
    storage_pool_stop(env->thumbs_pool);
    storage_pool_stop(env->files_pool);
}

void api_files_free(struct api_env *env)
{
    if (env->store && env->store->deleted_fn == record_gone)
        store_on_deleted(env->store, NULL, NULL);
    storage_pool_free(env->thumbs_pool);
    env->thumbs_pool = NULL;
    storage_pool_free(env->files_pool);
    env->files_pool = NULL;
    storage_close(env->storage);
    env->storage = NULL;
}

/* ---- serving ---- */

/* Parses a Range header ("bytes=a-b", "bytes=a-", "bytes=-n") against size. 1: a range in
 * offset and length out; 0: no usable Range (serve everything); -1: unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    const char *p = h + 6;
    char *end;
    if (*p == '-') {
        unsigned long long n = strtoull(p + 1, &end, 10);
        if (end == p + 1 || *end)
            return 0;
        if (n == 0 || size == 0)
            return -1;
        if (n > size)
            n = size;
        *off = size - n;
        *len = n;
        return 1;
    }
    if (*p < '0' || *p > '9')
        return 0;
    unsigned long long a = strtoull(p, &end, 10);
    if (*end != '-')
        return 0;
    p = end + 1;
    unsigned long long b = size ? size - 1 : 0;
    if (*p) {
        if (*p < '0' || *p > '9')
            return 0;
        b = strtoull(p, &end, 10);
        if (*end || b < a)
            return 0;
        if (b >= size)
            b = size - 1;
    }
    if (a >= size)
        return -1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

/* The sniffed types of served files, by identity (inode, size, modification time: a stored
 * file is never rewritten in place, a replacement or a new thumbnail is a new inode), so that
 * a hot file (a cached thumbnail) is read for its type once, not on every GET. Direct-mapped;
 * the types are storage_sniff's static strings. */
#define TYPE_CACHE_SLOTS 4096

struct type_slot {
    uint64_t ino, size;
    int64_t mtime_ns;
    const char *type;
};

static struct type_slot type_cache[TYPE_CACHE_SLOTS];
static pthread_mutex_t type_mu = PTHREAD_MUTEX_INITIALIZER; /* leaf: guards type_cache */

static const char *file_type(int fd, const struct storage_stat *st)
{
    struct type_slot *slot = NULL;
    const char *type = NULL;
    if (st->ino) { /* a backend without inodes reads the bytes every time */
        uint64_t h = (st->ino * UINT64_C(0x9E3779B97F4A7C15)) ^ (uint64_t)st->mtime_ns;
        slot = &type_cache[(h >> 20) % TYPE_CACHE_SLOTS];
        pthread_mutex_lock(&type_mu);
        if (slot->type && slot->ino == st->ino && slot->size == st->size &&
            slot->mtime_ns == st->mtime_ns)
            type = slot->type;
        pthread_mutex_unlock(&type_mu);
    }
    if (type)
        return type;
    char head[512];
    ssize_t got = pread(fd, head, sizeof(head), 0);
    type = storage_sniff(head, got > 0 ? (size_t)got : 0);
    if (slot && got >= 0) {
        pthread_mutex_lock(&type_mu);
        *slot = (struct type_slot){st->ino, st->size, st->mtime_ns, type};
        pthread_mutex_unlock(&type_mu);
    }
    return type;
}

/* Sends the open file fd (TAKES it) as name with the answer headers of user files. */
static void send_open(struct http_req *req, int fd, const struct storage_stat *stp,
                      const char *name, bool download, bool protected_file)
{
    struct storage_stat st = *stp;
    const char *type = file_type(fd, &st);
    char etag[96], disp[400];
    snprintf(etag, sizeof(etag), "\"%llx-%llx-%llx\"", (unsigned long long)st.size,
             (unsigned long long)st.mtime_ns, (unsigned long long)st.ino);
    /* the name is ours ([a-z0-9_] and a cleaned extension): no quoting needed beyond "" */
    snprintf(disp, sizeof(disp), "%s; filename=\"%s\"",
             download || !storage_inline_type(type) ? "attachment" : "inline", name);
    http_set_header(req, "ETag", etag);
    http_set_header(req, "Content-Disposition", disp);
    http_set_header(req, "Content-Security-Policy",
                    "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox");
    http_set_header(req, "X-Content-Type-Options", "nosniff");
    http_set_header(req, "Accept-Ranges", "bytes");
    http_set_header(req, "Cache-Control",
                    protected_file ? "private, no-store"
                                   : "max-age=2592000, "
                                     "stale-while-revalidate=86400");
    const char *inm = http_req_header(req, "If-None-Match");
    if (inm && api__etag_matches(inm, etag)) {
        http_reply_fd(req, 304, NULL, fd, st.size);
        return;
    }
    uint64_t off = 0, len = st.size;
    int r = parse_range(http_req_header(req, "Range"), st.size, &off, &len);
    if (r < 0) {
        char cr[64];
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)st.size);
        http_set_header(req, "Content-Range", cr);
        close(fd);
        http_reply_error(req, 416, "The requested range is not satisfiable.", NULL);
        return;
    }
    if (r > 0) {
        char cr[96];
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1), (unsigned long long)st.size);
        http_set_header(req, "Content-Range", cr);
        http_reply_fd_at(req, 206, type, fd, off, len);
        return;
    }
    if (st.size <= SMALL_FILE_MAX) {
        /* a small file (a thumbnail, an avatar) goes out with its headers in one send: read
         * once (from the page cache when it is hot), where sendfile would cost a second
         * segment and its splice */
        char *body = xmalloc(st.size ? st.size : 1);
        ssize_t got = pread(fd, body, st.size, 0);
        if (got == (ssize_t)st.size) {
            close(fd);
            http_reply_owned(req, 200, type, body, st.size);
            return;
        }
        free(body); /* changed under us: sendfile sends what is there */
    }
    http_reply_fd(req, 200, type, fd, st.size);
}

/* Sends the file at key (as name). */
static void send_file(struct http_req *req, struct api_env *env, const char *key, const char *name,
                      bool download, bool protected_file)
{
    int fd;
    struct storage_stat st;
    int rc = storage_open_read(env->storage, key, &fd, &st);
    if (rc) {
        http_reply_error(req, rc == ERR_NOTFOUND ? 404 : 503, NULL, NULL);
        return;
    }
    send_open(req, fd, &st, name, download, protected_file);
}

struct thumb_job {
    struct http_req *req;
    struct api_env *env;
    const char *src, *dst, *spec, *name, *thumb_name;
    bool download, protected_file;
};

/* On a pool thread: makes the thumbnail (or falls back to the original), answers, resumes. */
static void thumb_run(void *arg)
{
    struct thumb_job *j = arg;
    int rc = storage_thumb(j->env->storage, j->src, j->spec, j->dst);
    if (rc == 0)
        send_file(j->req, j->env, j->dst, j->thumb_name, j->download, j->protected_file);
    else
        send_file(j->req, j->env, j->src, j->name, j->download, j->protected_file);
    http_req_resume(j->req);
}

static bool thumb_allowed(const struct store_field *f, const char *spec)
{
    if (!store_thumb_parse(spec, NULL, NULL, NULL))
        return false;
    if (strcmp(spec, "100x100") == 0)
        return true;
    for (size_t i = 0; i < f->n_thumbs; i++)
        if (strcmp(f->thumbs[i], spec) == 0)
            return true;
    return false;
}

static void file_route(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    struct arena *a = http_req_arena(req);
    const char *coll = http_req_param(req, "collection");
    const char *rid = http_req_param(req, "recordId");
    const char *name = http_req_param(req, "filename");
    struct store_collection *c = NULL;
    json_t *rec = NULL;
    if (!env->store || !env->storage || !coll || !rid || !name || !name_safe(name) ||
        !id_safe(rid) || store_collection_get(env->store, coll, &c) != 0) {
        http_reply_error(req, 404, NULL, NULL);
        return;
    }
    arena_on_release(a, coll_unref, c);
    int64_t deadline = api__deadline_start(env);
    int rc = store_record_get_if(env->store, c, rid, NULL, &rec);
    if (rc) {
        api__deadline_lift(env);
        http_reply_error(req, rc == ERR_NOTFOUND ? 404 : 503, NULL, NULL);
        return;
    }
    api__arena_json(a, rec);
    const struct store_field *f = NULL;
    for (size_t i = 0; i < c->n_fields && !f; i++)
        if (c->fields[i].type == STORE_FIELD_FILE &&
            list_has(json_object_get(rec, c->fields[i].name), name))
            f = &c->fields[i];
    if (!f) {
        api__deadline_lift(env);
        http_reply_error(req, 404, NULL, NULL);
        return;
    }
    if (f->protected_files) {
        /* the file token's auth record must pass the viewRule for this record */
        const struct api_identity *who =
            api__file_token_identity(req, env, http_req_query(req, "token"));
        struct api_rules *ar = arena_zalloc(a, sizeof(*ar));
        api__rules_init_bare(ar, env, a, who, "protectedFile", NULL, NULL);
        ar->deadline_us = deadline;
        struct store_cond cond;
        json_t *chk = NULL;
        bool ok = api__rule_compile(ar, c, STORE_RULE_VIEW, &cond) == 0 &&
                  (!cond.sql || store_record_get_if(env->store, c, rid, &cond, &chk) == 0);
        json_decref(chk);
        if (!ok) {
            api__deadline_lift(env);
            http_reply_error(req, 404, NULL, NULL);
            return;
        }
    }
    /* a view's file is the file of the record it comes from (the view's field options and
     * rules apply, as in PocketBase) */
    const char *scoll = c->id, *srec = rid;
    if (c->type == STORE_COLLECTION_VIEW) {
        char *oc = arena_alloc(a, 128), *orid = arena_alloc(a, 128);
        rc = store_view_file_origin(env->store, c, f->name, name, oc, 128, orid, 128);
        if (rc || !id_safe(oc) || !id_safe(orid)) {
            api__deadline_lift(env);
            http_reply_error(req, rc == ERR_NOTFOUND || rc == 0 ? 404 : 503, NULL, NULL);
            return;
        }
        scoll = oc;
        srec = orid;
    }
    api__deadline_lift(env);
    bool download = false;
    const char *dl = http_req_query(req, "download");
    if (dl && api__parse_bool(dl, &download) != 0)
        download = false;
    char key[600];
    key_of(key, sizeof(key), scoll, srec, name);
    const char *spec = http_req_query(req, "thumb");
    if (spec && thumb_allowed(f, spec)) {
        int fd;
        struct storage_stat st;
        char head[16], tkey[800], tname[400];
        snprintf(tname, sizeof(tname), "%s_%s", spec, name);
        snprintf(tkey, sizeof(tkey), "%s/%s/thumbs_%s/%s", scoll, srec, name, tname);
        if (storage_open_read(env->storage, tkey, &fd, &st) == 0) { /* made before */
            send_open(req, fd, &st, tname, download, f->protected_files);
            return;
        }
        if (storage_open_read(env->storage, key, &fd, &st) == 0) {
            ssize_t got = pread(fd, head, sizeof(head), 0);
            close(fd);
            if (storage_thumbable(storage_sniff(head, got > 0 ? (size_t)got : 0))) {
                struct thumb_job *j = arena_zalloc(a, sizeof(*j));
                *j = (struct thumb_job){req,
                                        env,
                                        arena_strdup(a, key),
                                        arena_strdup(a, tkey),
                                        arena_strdup(a, spec),
                                        arena_strdup(a, name),
                                        arena_strdup(a, tname),
                                        download,
                                        f->protected_files};
                http_req_suspend(req);
                if (storage_pool_submit(env->thumbs_pool, thumb_run, j) == 0)
                    return;
                http_req_resume(req); /* the pool is full: the original, now */
            }
        }
    }
    send_file(req, env, key, name, download, f->protected_files);
}

static void token_route(struct http_req *req, void *ctx)
{
    struct api_env *env = ctx;
    const struct api_identity *who = api__identity(req, env);
    if (!who->record_id || !env->store || !env->secret) {
        http_reply_error(req, 401, "The request requires valid record authorization token.", NULL);
        return;
    }
    struct store_collection *c = NULL;
    char tk[AUTH_TOKEN_KEY_MAX + 1];
    char *token = NULL;
    int rc = store_collection_get(env->store, who->collection_id, &c);
    if (rc == 0)
        rc = store_auth_token_key(env->store, c, who->record_id, tk, sizeof(tk));
    store_collection_unref(c);
    struct auth_token_claims claims = {.file = true};
    snprintf(claims.collection_id, sizeof(claims.collection_id), "%s", who->collection_id);
    snprintf(claims.record_id, sizeof(claims.record_id), "%s", who->record_id);
    claims.exp = time_now_us() / 1000000 + FILE_TOKEN_DURATION;
    if (rc || auth_token_issue(env->secret, &claims, tk, &token) != 0) {
        http_reply_error(req, 400, "Failed to generate file token.", NULL);
        return;
    }
    http_reply_json(req, 200, json_pack("{s:s}", "token", token));
    free(token);
}

void api__register_files(struct http_router *r, struct api_env *env)
{
    http_route(r, "GET", "/api/files/{collection}/{recordId}/{filename}", file_route, env);
    http_route(r, "POST", "/api/files/token", token_route, env);
}
