/* The collections and records API over real HTTP against a real store: superuser gate,
 * collection CRUD, record CRUD, list (paging, perPage cap, skipTotal, filter, sort),
 * expand (relations and back-relations), fields, error envelopes, auth passwords. The
 * superuser hook trusts a test header here; the auth module provides the real one. */
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "api/api.h"
#include "api/records_int.h"
#include "store_fixture.h"

static struct fx fx;
static struct http_server *srv;
static struct http_router *router;
static struct api_env env;

static bool test_is_superuser(struct http_req *req, void *arg)
{
    UNUSED(arg);
    const char *h = http_req_header(req, "X-Test-Superuser");
    return h && strcmp(h, "1") == 0;
}

struct hash_job {
    char pw[256];
    api_hash_done_cb done;
    void *done_arg;
};

static void *hash_thread(void *p)
{
    struct hash_job *j = p;
    usleep(1000);
    char out[300];
    snprintf(out, sizeof(out), "hashed:%s", j->pw);
    j->done(j->done_arg, 0, out);
    free(j);
    return NULL;
}

/* Completes on another thread, as the auth module's pool does. */
static int test_hash(const char *pw, api_hash_done_cb done, void *done_arg, void *arg)
{
    UNUSED(arg);
    if (strcmp(pw, "refusedpw") == 0)
        return ERR_BUSY;
    struct hash_job *j = calloc(1, sizeof(*j));
    snprintf(j->pw, sizeof(j->pw), "%s", pw);
    j->done = done;
    j->done_arg = done_arg;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hash_thread, j), 0);
    pthread_detach(t);
    return 0;
}

static int setup(void **state)
{
    UNUSED(state);
    xlog_set_level(XLOG_OFF);
    fx_open(&fx);
    env = (struct api_env){
        .store = fx.st, .is_superuser = test_is_superuser, .hash_password = test_hash};
    router = http_router_new();
    api_register(router, &env);
    struct http_opts o = {
        .addr = "127.0.0.1:0", .threads = 2, .max_body = 1 << 20, .idle_timeout_s = 5};
    char err[256];
    assert_int_equal(http_server_open(&o, router, &srv, err, sizeof(err)), 0);
    return 0;
}

static int teardown(void **state)
{
    UNUSED(state);
    http_server_close(srv, 2000);
    http_router_free(router);
    fx_close(&fx);
    return 0;
}

/* One request on a fresh connection; returns the status and the parsed JSON body (or NULL
 * for an empty body) in *body_out. */
static int call_ct(const char *method, const char *path, const char *ctype, const char *body,
                   bool su, json_t **body_out);

static int call(const char *method, const char *path, const char *body, bool su, json_t **body_out)
{
    return call_ct(method, path, "application/json", body, su, body_out);
}

static int call_ct(const char *method, const char *path, const char *ctype, const char *body,
                   bool su, json_t **body_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)http_server_port(srv));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct buf req;
    buf_init(&req);
    buf_printf(&req,
               "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Type: "
               "%s\r\nContent-Length: %zu\r\n\r\n%s",
               method, path, su ? "X-Test-Superuser: 1\r\n" : "", ctype, body ? strlen(body) : 0,
               body ? body : "");
    assert_int_equal(write(fd, req.ptr, req.len), (ssize_t)req.len);
    buf_release(&req);
    struct buf resp;
    buf_init(&resp);
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        buf_append(&resp, chunk, (size_t)n);
    close(fd);
    int status = 0;
    assert_int_equal(sscanf(buf_cstr(&resp), "HTTP/1.1 %d", &status), 1);
    const char *sep = strstr(buf_cstr(&resp), "\r\n\r\n");
    assert_non_null(sep);
    *body_out = NULL;
    if (sep[4]) {
        json_error_t e;
        *body_out = json_loads(sep + 4, JSON_DECODE_ANY, &e);
        if (!*body_out)
            fail_msg("bad JSON reply to %s %s: %s", method, path, sep + 4);
    }
    buf_release(&resp);
    return status;
}

static const char *sget(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void test_superuser_gate(void **state)
{
    UNUSED(state);
    json_t *b;
    assert_int_equal(call("GET", "/api/collections", NULL, false, &b), 401);
    assert_int_equal(json_integer_value(json_object_get(b, "status")), 401);
    assert_true(json_is_object(json_object_get(b, "data")));
    json_decref(b);
    /* null rules: superusers only */
    assert_int_equal(call("GET", "/api/collections/_superusers/records", NULL, false, &b), 403);
    assert_string_equal(sget(b, "message"), "Only superusers can perform this action.");
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections/_superusers/records", "{}", false, &b), 403);
    json_decref(b);
    /* users' list rule (id = @request.auth.id) leaves a guest nothing: 200, empty */
    assert_int_equal(call("GET", "/api/collections/users/records", NULL, false, &b), 200);
    assert_int_equal(json_array_size(json_object_get(b, "items")), 0);
    json_decref(b);
    assert_int_equal(call("GET", "/api/collections/nope/records", NULL, true, &b), 404);
    json_decref(b);
}

static void test_collections_api(void **state)
{
    UNUSED(state);
    json_t *b;
    assert_int_equal(call("GET", "/api/collections", NULL, true, &b), 200);
    /* _superusers, users, _externalAuths */
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), 3);
    assert_int_equal(json_integer_value(json_object_get(b, "perPage")), 30);
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections",
                          "{\"name\":\"tmp1\",\"fields\":[{\"name\":\"a\",\"type\":\"text\"}]}",
                          true, &b),
                     200);
    assert_string_equal(sget(b, "name"), "tmp1");
    assert_string_equal(sget(b, "type"), "base");
    assert_true(json_is_null(json_object_get(b, "listRule")));
    assert_int_equal(json_array_size(json_object_get(b, "fields")), 2);
    json_decref(b);
    /* validation errors in the envelope */
    assert_int_equal(call("POST", "/api/collections", "{\"name\":\"bad name\"}", true, &b), 400);
    assert_string_equal(sget(b, "message"), "Failed to create collection.");
    assert_non_null(json_object_get(json_object_get(b, "data"), "name"));
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections", "{not json", true, &b), 400);
    json_decref(b);
    assert_int_equal(call("PATCH", "/api/collections/tmp1", "{\"listRule\":\"\"}", true, &b), 200);
    assert_string_equal(sget(b, "listRule"), "");
    json_decref(b);
    assert_int_equal(call("GET", "/api/collections/tmp1?fields=name,id", NULL, true, &b), 200);
    assert_int_equal(json_object_size(b), 2);
    json_decref(b);
    assert_int_equal(call("GET", "/api/collections?perPage=1&page=2&skipTotal=1", NULL, true, &b),
                     200);
    assert_int_equal(json_array_size(json_object_get(b, "items")), 1);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), -1);
    json_decref(b);
    assert_int_equal(call("GET", "/api/collections/meta/scaffolds", NULL, true, &b), 200);
    json_t *auth = json_object_get(b, "auth");
    assert_string_equal(sget(auth, "type"), "auth");
    assert_string_equal(sget(auth, "name"), "");
    assert_int_equal(json_array_size(json_object_get(auth, "fields")), 6);
    assert_int_equal(json_array_size(json_object_get(json_object_get(b, "base"), "fields")), 1);
    json_decref(b);
    assert_int_equal(call("GET", "/api/collections/meta/scaffolds", NULL, false, &b), 401);
    json_decref(b);
    assert_int_equal(call("PUT", "/api/collections/import",
                          "{\"collections\":[{\"name\":\"imp1\"}],\"deleteMissing\":false}", true,
                          &b),
                     204);
    assert_int_equal(
        call("PUT", "/api/collections/import", "{\"collections\":[{\"name\":\"1bad\"}]}", true, &b),
        400);
    assert_string_equal(sget(b, "message"), "Failed to import collections.");
    json_decref(b);
    assert_int_equal(call("DELETE", "/api/collections/imp1", NULL, true, &b), 204);
    /* filter and sort over id, name, type, system, created, updated */
    assert_int_equal(
        call("GET", "/api/collections?filter=system%3Dtrue&sort=-name", NULL, true, &b), 200);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), 2); /* _externalAuths */
    assert_string_equal(sget(json_array_get(json_object_get(b, "items"), 0), "name"),
                        "_superusers");
    json_decref(b);
    assert_int_equal(
        call("GET", "/api/collections?filter=type%3D'auth'&sort=-name", NULL, true, &b), 200);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), 2);
    assert_string_equal(sget(json_array_get(json_object_get(b, "items"), 0), "name"), "users");
    json_decref(b);
    assert_int_equal(call("GET", "/api/collections?filter=fields%3D1", NULL, true, &b), 400);
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections/tmp1/records", "{\"a\":\"x\"}", true, &b), 200);
    json_decref(b);
    assert_int_equal(call("DELETE", "/api/collections/tmp1/truncate", NULL, true, &b), 204);
    assert_null(b);
    assert_int_equal(call("GET", "/api/collections/tmp1/records", NULL, true, &b), 200);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), 0);
    json_decref(b);
    assert_int_equal(call("DELETE", "/api/collections/nope/truncate", NULL, true, &b), 404);
    json_decref(b);
    assert_int_equal(call("DELETE", "/api/collections/tmp1", NULL, true, &b), 204);
    assert_null(b);
    assert_int_equal(call("GET", "/api/collections/tmp1", NULL, true, &b), 404);
    json_decref(b);
    assert_int_equal(call("DELETE", "/api/collections/_superusers", NULL, true, &b), 400);
    json_decref(b);
}

static void test_records_api(void **state)
{
    UNUSED(state);
    json_t *b;
    assert_int_equal(
        call("POST", "/api/collections",
             "{\"name\":\"authors\",\"fields\":[{\"name\":\"name\",\"type\":\"text\"}]}", true, &b),
        200);
    char spec[512];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"posts\",\"fields\":[{\"name\":\"title\",\"type\":\"text\","
             "\"required\":true},{\"name\":\"views\",\"type\":\"number\"},"
             "{\"name\":\"body\",\"type\":\"text\"},"
             "{\"name\":\"author\",\"type\":\"relation\",\"collectionId\":\"%s\"}]}",
             sget(b, "id"));
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections", spec, true, &b), 200);
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections/authors/records",
                          "{\"id\":\"author000000001\",\"name\":\"Ann\"}", true, &b),
                     200);
    assert_string_equal(sget(b, "collectionName"), "authors");
    json_decref(b);
    for (int i = 0; i < 5; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"title\":\"post %d\",\"views\":%d,\"author\":\"author000000001\","
                 "\"body\":\"<p>Hello   <b>big</b> world %d</p>\"}",
                 i, i * 10, i);
        assert_int_equal(call("POST", "/api/collections/posts/records", body, true, &b), 200);
        json_decref(b);
    }
    /* validation */
    assert_int_equal(call("POST", "/api/collections/posts/records", "{\"views\":1}", true, &b),
                     400);
    assert_string_equal(sget(b, "message"), "Failed to create record.");
    json_t *te = json_object_get(json_object_get(b, "data"), "title");
    assert_string_equal(sget(te, "code"), "validation_required");
    assert_string_equal(sget(te, "message"), "Cannot be blank.");
    assert_int_equal(json_integer_value(json_object_get(b, "status")), 400);
    json_decref(b);
    /* list: paging, sort, filter, perPage cap */
    assert_int_equal(
        call("GET", "/api/collections/posts/records?perPage=2&page=1&sort=-views", NULL, true, &b),
        200);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), 5);
    assert_int_equal(json_integer_value(json_object_get(b, "totalPages")), 3);
    assert_int_equal(json_integer_value(json_object_get(b, "perPage")), 2);
    assert_int_equal(json_integer_value(
                         json_object_get(json_array_get(json_object_get(b, "items"), 0), "views")),
                     40);
    json_decref(b);
    assert_int_equal(call("GET",
                          "/api/collections/posts/records?perPage=5000&skipTotal=true&filter="
                          "views%3E%3D20%20%26%26%20title~'post'&sort=views",
                          NULL, true, &b),
                     200);
    assert_int_equal(json_integer_value(json_object_get(b, "perPage")), 1000);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), -1);
    json_t *items = json_object_get(b, "items");
    assert_int_equal(json_array_size(items), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "views")), 20);
    json_decref(b);
    assert_int_equal(
        call("GET", "/api/collections/posts/records?filter=nosuch%3D1", NULL, true, &b), 400);
    json_decref(b);
    assert_int_equal(call("GET", "/api/collections/posts/records?page=x", NULL, true, &b), 400);
    json_decref(b);
    assert_int_equal(
        call("GET", "/api/collections/posts/records?page=9223372036854775807", NULL, true, &b),
        200);
    assert_int_equal(json_array_size(json_object_get(b, "items")), 0);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), 5);
    json_decref(b);
    assert_int_equal(
        call("GET", "/api/collections/posts/records?page=99999999999999999999", NULL, true, &b),
        400);
    json_decref(b);
    /* expand + fields */
    assert_int_equal(call("GET",
                          "/api/collections/posts/records?sort=views&perPage=1&expand=author&"
                          "fields=id,title,expand.author.name,body:excerpt(9,true)",
                          NULL, true, &b),
                     200);
    json_t *it = json_array_get(json_object_get(b, "items"), 0);
    assert_int_equal(json_object_size(it), 4);
    assert_string_equal(sget(it, "title"), "post 0");
    assert_string_equal(sget(it, "body"), "Hello big...");
    json_t *ea = json_object_get(json_object_get(it, "expand"), "author");
    assert_int_equal(json_object_size(ea), 1);
    assert_string_equal(sget(ea, "name"), "Ann");
    const char *pid = sget(it, "id");
    char path[256];
    snprintf(path, sizeof(path), "/api/collections/posts/records/%s", pid);
    json_t *b2;
    /* view, update with a modifier, back-relation expand */
    assert_int_equal(call("PATCH", path, "{\"views+\":7}", true, &b2), 200);
    assert_int_equal(json_integer_value(json_object_get(b2, "views")), 7);
    json_decref(b2);
    assert_int_equal(call("GET",
                          "/api/collections/authors/records/author000000001?expand=posts_via_"
                          "author",
                          NULL, true, &b2),
                     200);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(b2, "expand"), "posts_via_author")), 5);
    json_decref(b2);
    assert_int_equal(call("DELETE", path, NULL, true, &b2), 204);
    assert_int_equal(call("GET", path, NULL, true, &b2), 404);
    assert_string_equal(sget(b2, "message"), "The requested resource wasn't found.");
    json_decref(b2);
    assert_int_equal(call("PATCH", path, "{}", true, &b2), 404);
    json_decref(b2);
    assert_int_equal(call("DELETE", path, NULL, true, &b2), 404);
    json_decref(b2);
    json_decref(b);
}

static void test_auth_record_passwords(void **state)
{
    UNUSED(state);
    json_t *b;
    assert_int_equal(call("POST", "/api/collections/users/records",
                          "{\"email\":\"p@example.com\",\"password\":\"short\","
                          "\"passwordConfirm\":\"other\"}",
                          true, &b),
                     400);
    json_t *d = json_object_get(b, "data");
    assert_string_equal(sget(json_object_get(d, "password"), "code"),
                        "validation_min_text_constraint");
    assert_string_equal(sget(json_object_get(d, "passwordConfirm"), "code"),
                        "validation_values_mismatch");
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections/users/records",
                          "{\"email\":\"p@example.com\",\"password\":\"longenough\","
                          "\"passwordConfirm\":\"longenough\"}",
                          true, &b),
                     200);
    assert_null(json_object_get(b, "password"));
    assert_null(json_object_get(b, "tokenKey"));
    json_t *b2;
    assert_int_equal(call("POST", "/api/collections/users/records",
                          "{\"email\":\"q@example.com\",\"password\":\"refusedpw\","
                          "\"passwordConfirm\":\"refusedpw\"}",
                          true, &b2),
                     503);
    json_decref(b2);
    /* a password change through PATCH */
    char path[128];
    snprintf(path, sizeof(path), "/api/collections/users/records/%s", sget(b, "id"));
    assert_int_equal(call("PATCH", path,
                          "{\"password\":\"newpassword\",\"passwordConfirm\":\"newpassword\"}",
                          true, &b2),
                     200);
    json_decref(b2);
    struct store_collection *users = NULL;
    assert_int_equal(store_collection_get(fx.st, "users", &users), 0);
    struct store_auth_record ar;
    assert_int_equal(store_auth_find(fx.st, users, "email", "P@example.com", &ar), 0);
    assert_string_equal(ar.password_hash, "hashed:newpassword");
    store_auth_record_release(&ar);
    store_collection_unref(users);
    json_decref(b);
}

static void test_nested_expand(void **state)
{
    UNUSED(state);
    json_t *b;
    assert_int_equal(call("POST", "/api/collections",
                          "{\"name\":\"orgs\",\"fields\":[{\"name\":\"title\",\"type\":\"text\"}]}",
                          true, &b),
                     200);
    char spec[600];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"members\",\"fields\":[{\"name\":\"nick\",\"type\":\"text\"},"
             "{\"name\":\"orgs\",\"type\":\"relation\",\"collectionId\":\"%s\","
             "\"maxSelect\":5}]}",
             sget(b, "id"));
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections", spec, true, &b), 200);
    snprintf(spec, sizeof(spec),
             "{\"name\":\"notes\",\"fields\":[{\"name\":\"member\",\"type\":\"relation\","
             "\"collectionId\":\"%s\"}]}",
             sget(b, "id"));
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections", spec, true, &b), 200);
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections/orgs/records",
                          "{\"id\":\"org000000000001\",\"title\":\"A\"}", true, &b),
                     200);
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections/orgs/records",
                          "{\"id\":\"org000000000002\",\"title\":\"B\"}", true, &b),
                     200);
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections/members/records",
                          "{\"id\":\"mem000000000001\",\"nick\":\"m\","
                          "\"orgs\":[\"org000000000002\",\"org000000000001\"]}",
                          true, &b),
                     200);
    json_decref(b);
    assert_int_equal(call("POST", "/api/collections/notes/records",
                          "{\"id\":\"note00000000001\",\"member\":\"mem000000000001\"}", true, &b),
                     200);
    json_decref(b);
    /* two levels down, multiple relation as an array in stored order */
    assert_int_equal(call("GET",
                          "/api/collections/notes/records/note00000000001?expand=member.orgs", NULL,
                          true, &b),
                     200);
    json_t *m = json_object_get(json_object_get(b, "expand"), "member");
    assert_string_equal(sget(m, "nick"), "m");
    /* record keys come in byte order, as PocketBase writes them, "expand" included */
    const char *prev = "";
    const char *k;
    json_t *v;
    size_t n_keys = 0;
    json_object_foreach(b, k, v)
    {
        assert_true(strcmp(prev, k) < 0);
        prev = k;
        n_keys++;
    }
    assert_int_equal(n_keys, 5); /* collectionId, collectionName, expand, id, member */
    json_t *orgs = json_object_get(json_object_get(m, "expand"), "orgs");
    assert_int_equal(json_array_size(orgs), 2);
    assert_string_equal(sget(json_array_get(orgs, 0), "title"), "B");
    json_decref(b);
    /* back-relation then forward again; unknown paths are ignored */
    assert_int_equal(call("GET",
                          "/api/collections/orgs/records/org000000000001?expand=members_via_orgs."
                          "orgs,nosuch,notes_via_nosuch",
                          NULL, true, &b),
                     200);
    json_t *via = json_object_get(json_object_get(b, "expand"), "members_via_orgs");
    assert_int_equal(json_array_size(via), 1);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(json_array_get(via, 0), "expand"), "orgs")),
        2);
    assert_null(json_object_get(json_object_get(b, "expand"), "nosuch"));
    json_decref(b);
    /* filter through a relation, sort by @random */
    assert_int_equal(
        call("GET", "/api/collections/members/records?filter=orgs.title%3F%3D'A'&sort=%40random",
             NULL, true, &b),
        200);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), 1);
    json_decref(b);
    assert_int_equal(call("GET", "/api/collections/members/records?sort=nosuch", NULL, true, &b),
                     400);
    json_decref(b);
    /* the expand budget: with room for 2 records, member (1) and one of its orgs are loaded */
    struct store_collection *notes = NULL;
    assert_int_equal(store_collection_get(fx.st, "notes", &notes), 0);
    json_t *rec = NULL;
    assert_int_equal(store_record_get(fx.st, notes, "note00000000001", &rec), 0);
    json_t *arr = json_pack("[o]", rec);
    assert_int_equal(api__expand_max(&env, notes, arr, "member.orgs", 2), 0);
    json_t *mem = json_object_get(json_object_get(json_array_get(arr, 0), "expand"), "member");
    assert_non_null(mem);
    assert_int_equal(json_array_size(json_object_get(json_object_get(mem, "expand"), "orgs")), 1);
    json_decref(arr);
    store_collection_unref(notes);
}

static void test_form_bodies(void **state)
{
    UNUSED(state);
    json_t *b;
    assert_int_equal(call("POST", "/api/collections",
                          "{\"name\":\"forms\",\"fields\":[{\"name\":\"t\",\"type\":\"text\"},"
                          "{\"name\":\"n\",\"type\":\"number\"},{\"name\":\"b\",\"type\":\"bool\"},"
                          "{\"name\":\"tags\",\"type\":\"select\",\"values\":[\"a\",\"b\",\"c\"],"
                          "\"maxSelect\":3},{\"name\":\"meta\",\"type\":\"json\"}]}",
                          true, &b),
                     200);
    json_decref(b);
    const char *mp = "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"t\"\r\n\r\n"
                     "007\r\n"
                     "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"n\"\r\n\r\n"
                     "12.5\r\n"
                     "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"b\"\r\n\r\n"
                     "true\r\n"
                     "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"tags\"\r\n\r\n"
                     "a\r\n"
                     "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"tags\"\r\n\r\n"
                     "c\r\n"
                     "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"upload\"; filename=\"x.png\"\r\n"
                     "Content-Type: image/png\r\n\r\n"
                     "PNGDATA\r\n"
                     "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"@jsonPayload\"\r\n\r\n"
                     "{\"meta\":{\"k\":[1,\"true\"]}}\r\n"
                     "--XyZ--\r\n";
    assert_int_equal(call_ct("POST", "/api/collections/forms/records",
                             "multipart/form-data; boundary=XyZ", mp, true, &b),
                     200);
    assert_string_equal(sget(b, "t"), "007");
    assert_true(json_real_value(json_object_get(b, "n")) == 12.5);
    assert_true(json_is_true(json_object_get(b, "b")));
    assert_int_equal(json_array_size(json_object_get(b, "tags")), 2);
    json_t *k = json_object_get(json_object_get(b, "meta"), "k");
    assert_string_equal(json_string_value(json_array_get(k, 1)), "true"); /* not inferred */
    json_decref(b);
    /* urlencoded, with canonical-number inference only */
    assert_int_equal(call_ct("POST", "/api/collections/forms/records",
                             "application/x-www-form-urlencoded",
                             "t=3.0&n=7&b=false&tags=b&tags=a&meta=%7B%22x%22%3A2%7D", true, &b),
                     200);
    assert_string_equal(sget(b, "t"), "3.0");
    assert_int_equal(json_integer_value(json_object_get(b, "n")), 7);
    assert_true(json_is_false(json_object_get(b, "b")));
    assert_int_equal(json_array_size(json_object_get(b, "tags")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(b, "meta"), "x")), 2);
    json_decref(b);
    /* malformed multipart bodies */
    const char *bad[] = {
        "no delimiter at all",
        "--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nunterminated",
        "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--",
        "--XyZ\r\nContent-Disposition: form-data; name=\"@jsonPayload\"\r\n\r\n[1]\r\n--XyZ--",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        assert_int_equal(call_ct("POST", "/api/collections/forms/records",
                                 "multipart/form-data; boundary=XyZ", bad[i], true, &b),
                         400);
        json_decref(b);
    }
    assert_int_equal(
        call_ct("POST", "/api/collections/forms/records", "multipart/form-data", "x", true, &b),
        400);
    json_decref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_superuser_gate), cmocka_unit_test(test_collections_api),
        cmocka_unit_test(test_records_api),    cmocka_unit_test(test_auth_record_passwords),
        cmocka_unit_test(test_nested_expand),  cmocka_unit_test(test_form_bodies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
