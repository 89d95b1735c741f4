/* persons.c - `tandem persons delete | export` against a running server (docs/cli.md,
 * docs/governance.md): the deletion runs on the server's worker; the CLI sends the request,
 * optionally waits for the job, and prints it. */
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli_int.h"

static int fail(FILE *err, const char *what, int status, struct buf *resp)
{
    json_t *j = json_loadb(resp->ptr, resp->len, 0, NULL);
    const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
    json_t *data = j ? json_object_get(j, "data") : NULL;
    char *d = data && json_object_size(data) ? json_dumps(data, JSON_COMPACT) : NULL;
    if (status < 0)
        fprintf(err, "tandem: %s: cannot reach the server: %s\n", what, err_str(status));
    else
        fprintf(err, "tandem: %s: %d %s%s%s\n", what, status, msg ? msg : "", d ? " " : "",
                d ? d : "");
    free(d);
    json_decref(j);
    return 1;
}

static void url_escape(struct buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            buf_putc(b, (char)*p);
        else
            buf_printf(b, "%%%02X", *p);
    }
}

int cli_persons(const struct cli_persons_opts *o, FILE *out, FILE *err)
{
    struct url u;
    char *token = NULL;
    struct buf resp, path;
    int rc = 1;
    buf_init(&resp);
    buf_init(&path);
    if (cli__parse_url(o->url, &u) != 0) {
        fprintf(err, "tandem: invalid value '%s' for --url (expected http://HOST:PORT)\n", o->url);
        return 2;
    }
    int t = cli__token(&u, o->url, o->token, o->email, o->password, &token, err);
    if (t != 0)
        return t;
    if (o->export_id) {
        buf_puts(&path, "/api/persons/export?distinctId=");
        url_escape(&path, o->export_id);
        int st = cli__http(&u, "GET", buf_cstr(&path), token, NULL, &resp);
        if (st != 200) {
            rc = fail(err, "persons export", st, &resp);
            goto out;
        }
        fwrite(resp.ptr, 1, resp.len, out);
        rc = 0;
        goto out;
    }
    json_t *req = json_object();
    if (o->user_id) {
        json_object_set_new(req, "userId", json_string(o->user_id));
    } else {
        json_t *ids = json_array();
        for (size_t i = 0; i < o->n_ids; i++)
            json_array_append_new(ids, json_string(o->ids[i]));
        json_object_set_new(req, "distinctIds", ids);
    }
    json_object_set_new(req, "deleteUser", json_boolean(o->delete_user));
    if (o->relations) {
        json_t *rels = json_array();
        for (const char *p = o->relations; *p;) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n > 0)
                json_array_append_new(rels, json_stringn(p, n));
            p += n + (e ? 1 : 0);
        }
        json_object_set_new(req, "relations", rels);
    }
    json_object_set_new(req, "suppress", json_boolean(o->suppress));
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int st = cli__http(&u, "POST", "/api/persons/delete", token, body, &resp);
    free(body);
    if (st != 202) {
        rc = fail(err, "persons delete", st, &resp);
        goto out;
    }
    json_t *job = json_loadb(resp.ptr, resp.len, 0, NULL);
    const char *id = job ? json_string_value(json_object_get(job, "id")) : NULL;
    if (!id) {
        fprintf(err, "tandem: persons delete: the server answered without a job id\n");
        json_decref(job);
        goto out;
    }
    buf_printf(&path, "/api/persons/deletions/%s", id);
    int64_t deadline = time_now_us() + o->wait_s * 1000000;
    const char *status = json_string_value(json_object_get(job, "status"));
    while (o->wait_s > 0 && status &&
           (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0) &&
           time_now_us() < deadline) {
        struct timespec ts = {.tv_nsec = 200 * 1000000};
        nanosleep(&ts, NULL);
        buf_reset(&resp);
        st = cli__http(&u, "GET", buf_cstr(&path), token, NULL, &resp);
        if (st != 200) {
            json_decref(job);
            rc = fail(err, "persons delete", st, &resp);
            goto out;
        }
        json_t *next = json_loadb(resp.ptr, resp.len, 0, NULL);
        if (!next)
            break;
        json_decref(job);
        job = next;
        status = json_string_value(json_object_get(job, "status"));
    }
    char *s = json_dumps(job, JSON_COMPACT);
    fprintf(out, "%s\n", s ? s : "null");
    free(s);
    /* without --wait the job is queued: that is success; with it, only "done" is */
    rc = o->wait_s == 0 || (status && strcmp(status, "done") == 0) ? 0 : 1;
    if (rc != 0)
        fprintf(err, "tandem: persons delete: the job is %s\n", status ? status : "unknown");
    json_decref(job);
out:
    free(token);
    buf_release(&resp);
    buf_release(&path);
    return rc;
}
