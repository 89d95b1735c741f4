/* ml.c - `tandem ml train SPEC` (docs/cli.md): sends a training spec (a JSON file, "-" for
 * stdin) to the running server, which trains on its worker; with --wait S it polls the model
 * (up to S seconds) until that version is done and prints it. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_int.h"

static json_t *load_spec(const char *path, FILE *err)
{
    json_error_t je;
    json_t *j = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &je) : json_load_file(path, 0, &je);
    if (!j)
        fprintf(err, "tandem: cannot read the training spec %s: %s (line %d)\n", path, je.text,
                je.line);
    return j;
}

static void print_error(int st, const char *url, json_t *j, FILE *err)
{
    if (st < 0) {
        fprintf(err, "tandem: cannot reach %s: %s\n", url, err_str(st));
        return;
    }
    const char *msg = json_string_value(json_object_get(j, "message"));
    char *data = json_dumps(json_object_get(j, "data"), JSON_COMPACT);
    fprintf(err, "tandem: %d %s %s\n", st, msg ? msg : "error", data ? data : "");
    free(data);
}

int cli_ml_train(const struct cli_ml_opts *o, FILE *out, FILE *err)
{
    struct url u;
    if (cli__parse_url(o->url, &u) != 0) {
        fprintf(err, "tandem: --url must look like http://HOST:PORT\n");
        return 2;
    }
    json_t *spec = load_spec(o->spec_path, err);
    if (!spec)
        return 2;
    char *token = NULL;
    int rc = cli__token(&u, o->url, o->token, o->email, o->password, &token, err);
    if (rc) {
        json_decref(spec);
        return rc;
    }
    char *text = json_dumps(spec, JSON_COMPACT);
    json_decref(spec);
    struct buf body;
    buf_init(&body);
    int st = cli__http(&u, "POST", "/api/ml/models", token, text, &body);
    free(text);
    json_t *j = st > 0 ? json_loads(buf_cstr(&body), 0, NULL) : NULL;
    rc = 1;
    if (st != 202) {
        print_error(st, o->url, j, err);
        goto out;
    }
    const char *name = json_string_value(json_object_get(j, "name"));
    json_int_t version = json_integer_value(json_object_get(j, "version"));
    if (o->wait_s <= 0) {
        json_dumpf(j, out, JSON_COMPACT);
        fputc('\n', out);
        rc = 0;
        goto out;
    }
    char path[200];
    snprintf(path, sizeof(path), "/api/ml/models/%s", name);
    for (int64_t waited = 0;; waited++) {
        if (waited >= o->wait_s) {
            fprintf(err, "tandem: version %lld of %s did not finish within %lld s\n",
                    (long long)version, name, (long long)o->wait_s);
            goto out;
        }
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        buf_reset(&body);
        st = cli__http(&u, "GET", path, token, NULL, &body);
        json_t *m = st > 0 ? json_loads(buf_cstr(&body), 0, NULL) : NULL;
        if (st != 200) {
            print_error(st, o->url, m, err);
            json_decref(m);
            goto out;
        }
        json_t *ver = NULL, *v;
        size_t i;
        json_array_foreach(json_object_get(m, "versions"), i, v)
        {
            if (json_integer_value(json_object_get(v, "version")) == version)
                ver = v;
        }
        const char *status = json_string_value(json_object_get(ver, "status"));
        if (!status || (strcmp(status, "queued") != 0 && strcmp(status, "training") != 0)) {
            json_object_del(json_object_get(ver, "metrics"), "roc");
            json_dumpf(ver, out, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
            fputc('\n', out);
            rc = status && strcmp(status, "ready") == 0 ? 0 : 1;
            json_decref(m);
            goto out;
        }
        json_decref(m);
    }
out:
    json_decref(j);
    buf_release(&body);
    free(token);
    return rc;
}
