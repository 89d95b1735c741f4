/* pbimport.c - `tandem import pocketbase PATH`: moves a PocketBase (0.23 to 0.28) app's schema
 * and records into tandem's store.
 *
 * Reads PocketBase's data.db read-only: the `_collections` table (its fields, indexes and
 * options columns are JSON; the options are merged into the collection as PocketBase's API
 * shows them) goes through store_collection_import, as `PUT /api/collections/import` would;
 * then the rows of every imported table (and of `_superusers`) are created through the store
 * in batches (store_record_create_batch), ids, dates and password hashes kept as they are:
 * PocketBase's bcrypt hashes are verified at sign-in and moved to argon2id on the first
 * success (auth/password.c). Views get no rows: they read their tables.
 *
 * Files: PocketBase keeps a record's files under pb_data/storage/<collectionId>/<recordId>/
 * (tandem's layout, docs/files.md). Before a record is created, each file its file fields
 * name is copied into tandem's storage (durably, as an upload is) and declared as this
 * write's upload; a name whose file is missing is dropped from the record and said on err, so
 * that no imported record names a missing file. Thumbnails are not copied (made on demand).
 * A record that then fails leaves its copies as orphans for the sweep at the next start. */
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "storage/storage.h"
#include "store/store.h"

#define PBI_BATCH 500
#define PBI_FILE_MAX (INT64_C(1) << 30) /* one file read whole into memory */

struct pbi {
    sqlite3 *db;
    struct store *st;
    struct storage *fs;  /* tandem's file storage */
    const char *pb_root; /* PocketBase's storage directory */
    FILE *out, *err;
    size_t n_records, n_failed, n_kept, n_files, n_missing;
};

/* Reads the whole file at path (at most PBI_FILE_MAX bytes). RETURNS malloc'd bytes or NULL. */
static char *read_all(const char *path, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= PBI_FILE_MAX) {
        size_t n = (size_t)st.st_size, got = 0;
        data = xmalloc(n ? n : 1);
        while (got < n) {
            ssize_t r = read(fd, data + got, n - got);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got != n) {
            free(data);
            data = NULL;
        }
        *len_out = n;
    }
    close(fd);
    return data;
}

/* Copies the files the file fields of body name into tandem's storage and declares them as
 * this write's uploads; names without a file leave the record. */
static void copy_files(struct pbi *x, const struct store_collection *c, json_t *body)
{
    const char *rid = json_string_value(json_object_get(body, "id"));
    json_t *uploads = json_object();
    for (size_t i = 0; rid && i < c->n_fields; i++) {
        const struct store_field *f = &c->fields[i];
        json_t *v = json_object_get(body, f->name);
        if (f->type != STORE_FIELD_FILE || !v)
            continue;
        json_t *names = json_is_array(v) ? json_incref(v) : json_pack("[O]", v);
        json_t *kept = json_array();
        for (size_t k = 0; k < json_array_size(names); k++) {
            const char *name = json_string_value(json_array_get(names, k));
            if (!name || !*name)
                continue;
            char key[1024], path[PATH_MAX];
            int kl = snprintf(key, sizeof(key), "%s/%s/%s", c->id, rid, name);
            int pl = snprintf(path, sizeof(path), "%s/%.1023s", x->pb_root, key);
            size_t len = 0;
            char *data = NULL;
            if (kl > 0 && (size_t)kl < sizeof(key) && pl > 0 && (size_t)pl < sizeof(path) &&
                !strchr(name, '/') && storage_key_valid(key))
                data = read_all(path, &len);
            if (!data || storage_put(x->fs, key, data, len) != 0) {
                x->n_missing++;
                fprintf(x->err, "tandem: %s/%s: the file %s of %s is not in %s: left out\n",
                        c->name, rid, name, f->name, x->pb_root);
            } else {
                x->n_files++;
                json_array_append_new(kept, json_string(name));
            }
            free(data);
        }
        json_decref(names);
        json_object_set(uploads, f->name, kept);
        if (json_is_array(v))
            json_object_set_new(body, f->name, kept);
        else {
            json_object_set_new(body, f->name,
                                json_string(json_array_size(kept)
                                                ? json_string_value(json_array_get(kept, 0))
                                                : ""));
            json_decref(kept);
        }
    }
    if (json_object_size(uploads))
        json_object_set(body, STORE_BODY_UPLOADS, uploads);
    json_decref(uploads);
}

/* The value of column i as JSON, or NULL for SQL NULL. */
static json_t *column_value(sqlite3_stmt *s, int i)
{
    switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(s, i));
    case SQLITE_FLOAT: return json_real(sqlite3_column_double(s, i));
    case SQLITE_NULL: return NULL;
    default: {
        const char *t = (const char *)sqlite3_column_text(s, i);
        return json_stringn(t ? t : "", (size_t)sqlite3_column_bytes(s, i));
    }
    }
}

static json_t *parse_json_text(const json_t *v)
{
    if (!json_is_string(v))
        return json_incref((json_t *)v);
    json_t *p = json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
    return p ? p : json_incref((json_t *)v);
}

/* ---- the schema ---- */

static int read_collections(struct pbi *x, json_t **out)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(x->db, "SELECT * FROM \"_collections\" ORDER BY rowid", -1, &s, NULL) !=
        SQLITE_OK) {
        fprintf(x->err, "tandem: not a PocketBase 0.23+ database: %s\n", sqlite3_errmsg(x->db));
        return 1;
    }
    json_t *list = json_array();
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *c = json_object();
        for (int i = 0; i < sqlite3_column_count(s); i++) {
            const char *col = sqlite3_column_name(s, i);
            json_t *v = column_value(s, i);
            if (strcmp(col, "fields") == 0 || strcmp(col, "indexes") == 0 ||
                strcmp(col, "options") == 0) {
                json_t *p = parse_json_text(v);
                json_decref(v);
                v = p;
            } else if (strcmp(col, "system") == 0) {
                json_t *b = json_boolean(json_integer_value(v) != 0);
                json_decref(v);
                v = b;
            }
            if (strcmp(col, "options") == 0 && json_is_object(v))
                json_object_update_missing(c, v); /* viewQuery, authRule, passwordAuth, ... */
            else
                json_object_set_new(c, col, v ? v : json_null());
            if (strcmp(col, "options") == 0)
                json_decref(v);
        }
        json_object_del(c, "options");
        if (!json_is_array(json_object_get(c, "fields"))) {
            /* PocketBase before 0.23 kept a `schema` column and `_admins` */
            fprintf(x->err, "tandem: %s: no fields column: only PocketBase 0.23 and later\n",
                    json_string_value(json_object_get(c, "name")));
            json_decref(c);
            json_decref(list);
            sqlite3_finalize(s);
            return 1;
        }
        json_array_append_new(list, c);
    }
    sqlite3_finalize(s);
    if (step != SQLITE_DONE) {
        fprintf(x->err, "tandem: cannot read _collections: %s\n", sqlite3_errmsg(x->db));
        json_decref(list);
        return 1;
    }
    *out = list;
    return 0;
}

/* ---- the records ---- */

static json_t *field_value(const struct store_field *f, json_t *v)
{
    if (store_field_multiple(f) || f->type == STORE_FIELD_JSON ||
        f->type == STORE_FIELD_GEO_POINT) {
        json_t *p = parse_json_text(v);
        json_decref(v);
        return p;
    }
    if (f->type == STORE_FIELD_BOOL && !json_is_boolean(v)) {
        bool b = json_is_integer(v)  ? json_integer_value(v) != 0
                 : json_is_string(v) ? strcmp(json_string_value(v), "true") == 0 ||
                                           strcmp(json_string_value(v), "1") == 0
                                     : false;
        json_decref(v);
        return json_boolean(b);
    }
    return v;
}

static void flush(struct pbi *x, struct store_create_item *items, char **hashes, size_t n)
{
    if (!n)
        return;
    int rc = store_record_create_batch(x->st, items, n);
    for (size_t i = 0; i < n; i++) {
        struct store_create_item *it = &items[i];
        json_t *email_err = json_object_get(it->errors, "email");
        bool taken = email_err && strcmp(json_string_value(json_object_get(email_err, "code")),
                                         "validation_not_unique") == 0;
        if (it->rc == 0) {
            x->n_records++;
        } else if (taken && strcmp(it->c->name, "_superusers") == 0) {
            /* this data directory has a superuser of that email already: it stays */
            x->n_kept++;
            fprintf(x->out, "_superusers: %s kept as it is here\n",
                    json_string_value(json_object_get(it->body, "email")));
        } else {
            x->n_failed++;
            char *e = it->errors ? json_dumps(it->errors, JSON_COMPACT) : NULL;
            fprintf(x->err, "tandem: %s/%s not imported: %s %s\n", it->c->name,
                    json_string_value(json_object_get(it->body, "id")), err_str(it->rc),
                    e ? e : (rc ? store_errmsg(x->st) : ""));
            free(e);
        }
        json_decref(it->errors);
        json_decref(it->record);
        json_decref((json_t *)it->body);
        free(hashes[i]);
        hashes[i] = NULL;
    }
}

static int import_rows(struct pbi *x, const struct store_collection *c)
{
    struct buf q;
    buf_init(&q);
    buf_puts(&q, "SELECT * FROM \"");
    for (const char *p = c->name; *p; p++) { /* a validated name; quotes doubled all the same */
        if (*p == '"')
            buf_putc(&q, '"');
        buf_putc(&q, *p);
    }
    buf_putc(&q, '"');
    sqlite3_stmt *s = NULL;
    int prc = sqlite3_prepare_v2(x->db, buf_cstr(&q), -1, &s, NULL);
    buf_release(&q);
    if (prc != SQLITE_OK) {
        fprintf(x->err, "tandem: %s: no rows read: %s\n", c->name, sqlite3_errmsg(x->db));
        return 1;
    }
    struct store_create_item *items = xcalloc(PBI_BATCH, sizeof(*items));
    char **hashes = xcalloc(PBI_BATCH, sizeof(char *));
    size_t n = 0;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *body = json_object();
        for (int i = 0; i < sqlite3_column_count(s); i++) {
            const struct store_field *f = store_collection_field(c, sqlite3_column_name(s, i));
            json_t *v = f ? column_value(s, i) : NULL;
            if (!v)
                continue;
            if (f->type == STORE_FIELD_PASSWORD) {
                if (json_is_string(v) && json_string_length(v))
                    hashes[n] = xstrdup(json_string_value(v));
                json_decref(v);
                continue;
            }
            json_object_set_new(body, f->name, field_value(f, v));
        }
        copy_files(x, c, body);
        items[n] = (struct store_create_item){
            .c = c, .body = body, .password_hash = hashes[n], .restore = true};
        if (++n == PBI_BATCH) {
            flush(x, items, hashes, n);
            n = 0;
        }
    }
    flush(x, items, hashes, n);
    int rc = step == SQLITE_DONE ? 0 : 1;
    if (rc)
        fprintf(x->err, "tandem: %s: cannot read the rows: %s\n", c->name, sqlite3_errmsg(x->db));
    sqlite3_finalize(s);
    free(items);
    free(hashes);
    return rc;
}

int cli_import_pocketbase(const char *path, struct store *st, const char *dir, FILE *out, FILE *err)
{
    struct pbi x = {.st = st, .out = out, .err = err};
    struct buf p, root;
    buf_init(&p);
    buf_init(&root);
    size_t l = strlen(path);
    buf_puts(&p, path);
    if (l < 3 || strcmp(path + l - 3, ".db") != 0) {
        buf_puts(&p, "/data.db"); /* the pb_data directory */
        buf_puts(&root, path);
    } else {
        const char *slash = strrchr(path, '/');
        if (slash)
            buf_append(&root, path, (size_t)(slash - path));
        else
            buf_puts(&root, ".");
    }
    buf_puts(&root, "/storage");
    x.pb_root = buf_cstr(&root);
    int rc = 1;
    json_t *cols = NULL, *errors = NULL;
    if (storage_open("local", dir, &x.fs) != 0) {
        fprintf(err, "tandem: cannot open the file storage in %s/storage\n", dir);
        goto out;
    }
    if (sqlite3_open_v2(buf_cstr(&p), &x.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(err, "tandem: cannot open %s: %s\n", buf_cstr(&p),
                x.db ? sqlite3_errmsg(x.db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(x.db, 10000);
    if (read_collections(&x, &cols) != 0)
        goto out;
    /* PocketBase's own system collections stay tandem's; their schema is not imported */
    json_t *app = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(cols, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        if (name && name[0] != '_')
            json_array_append(app, c);
    }
    int irc = store_collection_import(st, app, false, &errors);
    if (irc) {
        char *e = errors ? json_dumps(errors, JSON_COMPACT) : NULL;
        fprintf(err, "tandem: the collections cannot be imported: %s %s\n", e ? e : err_str(irc),
                store_errmsg(st));
        free(e);
        json_decref(app);
        goto out;
    }
    fprintf(out, "%zu collections imported\n", json_array_size(app));
    json_decref(app);
    rc = 0;
    json_array_foreach(cols, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        if (!name || (name[0] == '_' && strcmp(name, "_superusers") != 0))
            continue;
        struct store_collection *tc = NULL;
        if (store_collection_get(st, name, &tc) != 0)
            continue;
        size_t before = x.n_records;
        if (tc->type != STORE_COLLECTION_VIEW && import_rows(&x, tc) != 0)
            rc = 1;
        if (tc->type != STORE_COLLECTION_VIEW)
            fprintf(out, "%s: %zu records\n", name, x.n_records - before);
        store_collection_unref(tc);
    }
    fprintf(out, "%zu records imported, %zu not imported\n", x.n_records, x.n_failed);
    fprintf(out, "%zu files copied, %zu missing\n", x.n_files, x.n_missing);
    if (x.n_failed)
        rc = 1;
out:
    json_decref(errors);
    json_decref(cols);
    if (x.db)
        sqlite3_close(x.db);
    storage_close(x.fs);
    buf_release(&p);
    buf_release(&root);
    return rc;
}
