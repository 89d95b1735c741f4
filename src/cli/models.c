/* models.c - `tandem models list | run | export | import`: the SQL models of a running server
 * (docs/models.md), over its HTTP API, since models run on the server's runner thread.
 *
 * export writes one <name>.sql file per model: a header of two comment lines, then the SQL:
 *
 *     -- tandem model
 *     -- {"materialized":"incremental","uniqueKey":"user",...}
 *     SELECT ...
 *
 * The JSON line holds the definition except its name (the file's name) and its SQL (the rest
 * of the file), so a folder of models can live in git. import saves every such file of a
 * folder (created, or replaced when the model exists), retrying the ones that read a model
 * not imported yet, so files need no order. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_int.h"

#define HEADER "-- tandem model\n"
#define MAX_FILE (1 << 20)

/* METHOD url+path with a JSON body (or NULL); the status or a negative error, and the parsed
 * answer (the caller's; NULL when empty or not JSON). */
static int cli_http(const char *url, const char *method, const char *path, const char *token,
                    const char *body, json_t **resp_out)
{
    struct url u;
    struct buf b;
    *resp_out = NULL;
    if (cli__parse_url(url, &u) != 0)
        return ERR_INVALID;
    buf_init(&b);
    int st = cli__http(&u, method, path, token, body, &b);
    if (st > 0 && b.len)
        *resp_out = json_loads(buf_cstr(&b), 0, NULL);
    buf_release(&b);
    return st;
}

/* keys of a model that are derived by the server, not part of a definition */
static const char *const derived[] = {"name", "sql", "columns", "dependsOn", "lastRun"};

static void print_error(FILE *err, int st, const json_t *j, const char *what)
{
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (st < 0)
        fprintf(err, "tandem: %s: %s\n", what, err_str(st));
    else
        fprintf(err, "tandem: %s: %d %s\n", what, st, msg ? msg : "error");
}

/* GET path; the 200 answer (the caller's), or NULL after saying why on err. */
static json_t *get_ok(const char *url, const char *path, const char *token, const char *what,
                      FILE *err)
{
    json_t *j = NULL;
    int st = cli_http(url, "GET", path, token, NULL, &j);
    if (st != 200) {
        print_error(err, st, j, what);
        json_decref(j);
        return NULL;
    }
    return j;
}

static int do_list(const char *url, const char *token, FILE *out, FILE *err)
{
    json_t *j = get_ok(url, "/api/models", token, "cannot list the models", err);
    if (!j)
        return 1;
    size_t i;
    json_t *m;
    fprintf(out, "%-32s %-12s %-20s %s\n", "name", "materialized", "last run", "depends on");
    json_array_foreach(json_object_get(j, "items"), i, m)
    {
        const json_t *lr = json_object_get(m, "lastRun");
        struct buf deps;
        buf_init(&deps);
        size_t k;
        json_t *d;
        json_array_foreach(json_object_get(m, "dependsOn"), k, d)
        {
            buf_printf(&deps, "%s%s", k ? ", " : "", json_string_value(d));
        }
        fprintf(out, "%-32s %-12s %-20s %s\n", json_string_value(json_object_get(m, "name")),
                json_string_value(json_object_get(m, "materialized")),
                json_is_object(lr) ? json_string_value(json_object_get(lr, "status")) : "never",
                buf_cstr(&deps));
        buf_release(&deps);
    }
    json_decref(j);
    return 0;
}

static int do_run(const struct cli_models_opts *o, const char *token, const char *name, FILE *out,
                  FILE *err)
{
    json_t *body = json_pack("{s:b,s:b}", "fullRefresh", o->full, "confirm", o->confirm);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char path[300];
    snprintf(path, sizeof(path), "/api/models/%s/run", name);
    json_t *j = NULL;
    int st = cli_http(o->url, "POST", path, token, text, &j);
    free(text);
    if (st != 202) {
        print_error(err, st, j, "cannot run the model");
        json_decref(j);
        return 1;
    }
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    if (o->wait_s <= 0) {
        fprintf(out, "%s queued\n", id);
        return 0;
    }
    snprintf(path, sizeof(path), "/api/models/%s/runs?limit=100", name);
    int64_t deadline = time_mono_us() + o->wait_s * 1000000;
    for (;;) {
        if (time_mono_us() > deadline) {
            fprintf(err, "tandem: the run %s of %s did not finish within %lld s\n", id, name,
                    (long long)o->wait_s);
            return 1;
        }
        if (!(j = get_ok(o->url, path, token, "cannot read the runs", err)))
            return 1;
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(j, "items"), i, r)
        {
            const char *rs = json_string_value(json_object_get(r, "status"));
            if (strcmp(json_string_value(json_object_get(r, "id")), id) != 0 ||
                strcmp(rs, "queued") == 0 || strcmp(rs, "running") == 0)
                continue;
            char *dump = json_dumps(r, JSON_COMPACT);
            fprintf(out, "%s\n", dump);
            free(dump);
            int code = strcmp(rs, "success") == 0 || strcmp(rs, "warn") == 0 ? 0 : 1;
            json_decref(j);
            return code;
        }
        json_decref(j);
        usleep(200000);
    }
}

static int do_export(const char *url, const char *token, const char *dir, FILE *out, FILE *err)
{
    json_t *j = get_ok(url, "/api/models", token, "cannot list the models", err);
    if (!j)
        return 1;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(err, "tandem: cannot create %s: %s\n", dir, strerror(errno));
        json_decref(j);
        return 1;
    }
    int code = 0;
    size_t i, n = 0;
    json_t *m;
    json_array_foreach(json_object_get(j, "items"), i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        json_t *def = json_deep_copy(m);
        for (size_t k = 0; k < ARRAY_LEN(derived); k++)
            json_object_del(def, derived[k]);
        char *hdr = json_dumps(def, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(def);
        char path[4200], tmp[4300];
        snprintf(path, sizeof(path), "%s/%s.sql", dir, name);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        bool ok = f && fprintf(f, HEADER "-- %s\n%s\n", hdr,
                               json_string_value(json_object_get(m, "sql"))) > 0;
        if (f && fclose(f) != 0)
            ok = false;
        if (!ok || rename(tmp, path) != 0) {
            fprintf(err, "tandem: cannot write %s: %s\n", path, strerror(errno));
            code = 1;
        } else {
            n++;
        }
        free(hdr);
    }
    json_decref(j);
    fprintf(out, "exported %zu models to %s\n", n, dir);
    return code;
}

/* Reads a model file into a definition ({"name","sql",...}); NULL with why. */
static json_t *read_model(const char *dir, const char *file, char *why, size_t why_len)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct buf b;
    buf_init(&b);
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= MAX_FILE)
        buf_append(&b, chunk, r);
    fclose(f);
    json_t *def = NULL;
    const char *text = buf_cstr(&b);
    const char *line2 = strncmp(text, HEADER, strlen(HEADER)) == 0 ? text + strlen(HEADER) : NULL;
    const char *nl = line2 ? strchr(line2, '\n') : NULL;
    if (b.len > MAX_FILE || !line2 || strncmp(line2, "-- ", 3) != 0 || !nl) {
        snprintf(why, why_len, "%s: not a tandem model file (it must start with \"%.*s\")", path,
                 (int)strlen(HEADER) - 1, HEADER);
        goto out;
    }
    def = json_loadb(line2 + 3, (size_t)(nl - line2 - 3), 0, NULL);
    if (!json_is_object(def)) {
        snprintf(why, why_len, "%s: the second line must be -- followed by a JSON object", path);
        json_decref(def);
        def = NULL;
        goto out;
    }
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)(strlen(file) - 4), file);
    json_object_set_new(def, "name", json_string(name));
    /* export ends the SQL with one newline of its own */
    size_t sql_len = strlen(nl + 1);
    if (sql_len && nl[sql_len] == '\n')
        sql_len--;
    json_object_set_new(def, "sql", json_stringn(nl + 1, sql_len));
out:
    buf_release(&b);
    return def;
}

static int save_model(const char *url, const char *token, const json_t *def, json_t **resp)
{
    char path[300];
    snprintf(path, sizeof(path), "/api/models/%s", json_string_value(json_object_get(def, "name")));
    json_t *cur = NULL;
    int st = cli_http(url, "GET", path, token, NULL, &cur);
    json_decref(cur);
    char *text = json_dumps(def, JSON_COMPACT);
    if (st == 200) {
        json_t *patch = json_deep_copy(def);
        json_object_del(patch, "name");
        free(text);
        text = json_dumps(patch, JSON_COMPACT);
        json_decref(patch);
        st = cli_http(url, "PATCH", path, token, text, resp);
    } else if (st == 404) {
        st = cli_http(url, "POST", "/api/models", token, text, resp);
    }
    free(text);
    return st;
}

static int do_import(const char *url, const char *token, const char *dir, FILE *out, FILE *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(err, "tandem: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    json_t *pending = json_array();
    struct dirent *e;
    char why[4600];
    int code = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n <= 4 || strcmp(e->d_name + n - 4, ".sql") != 0 || e->d_name[0] == '.')
            continue;
        json_t *def = read_model(dir, e->d_name, why, sizeof(why));
        if (!def) {
            fprintf(err, "tandem: %s\n", why);
            code = 1;
            continue;
        }
        json_array_append_new(pending, def);
    }
    closedir(d);
    size_t saved = 0;
    /* a model may read one that is not imported yet: retry while some succeed */
    bool progress = true;
    while (json_array_size(pending) > 0 && progress) {
        progress = false;
        for (size_t i = 0; i < json_array_size(pending);) {
            json_t *resp = NULL;
            int st = save_model(url, token, json_array_get(pending, i), &resp);
            json_decref(resp);
            if (st == 200) {
                json_array_remove(pending, i);
                saved++;
                progress = true;
            } else {
                i++;
            }
        }
    }
    size_t i;
    json_t *def;
    json_array_foreach(pending, i, def)
    {
        json_t *resp = NULL;
        int st = save_model(url, token, def, &resp);
        char what[300];
        snprintf(what, sizeof(what), "cannot import %s",
                 json_string_value(json_object_get(def, "name")));
        print_error(err, st, resp, what);
        json_decref(resp);
        code = 1;
    }
    json_decref(pending);
    fprintf(out, "imported %zu models from %s\n", saved, dir);
    return code;
}

int cli_models(const struct cli_models_opts *o, const char *verb, const char *arg, FILE *out,
               FILE *err)
{
    struct url u;
    if (cli__parse_url(o->url, &u) != 0) {
        fprintf(err, "tandem: --url must look like http://HOST:PORT\n");
        return 2;
    }
    char *token = NULL;
    int rc = cli__token(&u, o->url, o->token, o->email, o->password, &token, err);
    if (rc != 0)
        return rc;
    int code;
    if (strcmp(verb, "list") == 0)
        code = do_list(o->url, token, out, err);
    else if (strcmp(verb, "run") == 0)
        code = do_run(o, token, arg, out, err);
    else if (strcmp(verb, "export") == 0)
        code = do_export(o->url, token, arg, out, err);
    else
        code = do_import(o->url, token, arg, out, err);
    free(token);
    return code;
}
