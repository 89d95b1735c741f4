/* API rules over real HTTP against a real store, with real tokens (a secret from fixed bytes,
 * the auth pool at libsodium's minimum cost) and the identity hooks main wires: null rules,
 * "" rules, rules compiled into the list query, view/update/delete 404, create 400 with
 * nothing written, rule and client filter kept apart, broken rules failing closed, client
 * filter limits, @request.headers/query/method, hidden fields, bad tokens as guests. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "api/api.h"
#include "api/records_int.h"
#include "store_fixture.h"

static struct fx fx;
static struct http_server *srv;
static struct http_router *router;
static struct api_env env;
static struct auth_secret *secret;
static struct auth_pool *pool;
static struct store_collection *users, *notes;
static char uid_a[16], uid_b[16];
static char *tok_a, *tok_b, *tok_su;

static const struct auth_hash_params cheap = {1, 8192};

static char *token_for(struct store_collection *c, const char *id)
{
    struct store_auth_record r = {0};
    assert_int_equal(store_auth_get(fx.st, c, id, &r), 0);
    struct auth_token_claims cl = {0};
    snprintf(cl.collection_id, sizeof(cl.collection_id), "%s", c->id);
    snprintf(cl.record_id, sizeof(cl.record_id), "%s", id);
    cl.exp = time_now_us() / 1000000 + 3600;
    cl.refreshable = true;
    char *t = NULL;
    assert_int_equal(auth_token_issue(secret, &cl, r.token_key, &t), 0);
    store_auth_record_release(&r);
    return t;
}

static void new_user(const char *email, char id_out[16])
{
    char hash[AUTH_HASH_LEN];
    assert_int_equal(auth_password_hash_with("passw0rd-x", &cheap, hash), 0);
    json_t *body = json_pack("{s:s}", "email", email), *rec = NULL, *errs = NULL;
    assert_int_equal(store_record_create(fx.st, users, body, hash, &errs, &rec), 0);
    snprintf(id_out, 16, "%s", json_string_value(json_object_get(rec, "id")));
    json_decref(body);
    json_decref(rec);
}

static void set_rules(const char *list, const char *view, const char *create, const char *update,
                      const char *del)
{
    json_t *patch = json_object();
    const char *v[] = {list, view, create, update, del};
    const char *k[] = {"listRule", "viewRule", "createRule", "updateRule", "deleteRule"};
    for (int i = 0; i < 5; i++)
        json_object_set_new(patch, k[i], v[i] ? json_string(v[i]) : json_null());
    json_t *errs = NULL;
    struct store_collection *c = NULL;
    assert_int_equal(store_collection_update(fx.st, "notes", patch, &errs, &c), 0);
    store_collection_unref(notes);
    notes = c;
    json_decref(patch);
}

static int setup(void **state)
{
    UNUSED(state);
    xlog_set_level(XLOG_OFF);
    fx_open(&fx);
    uint8_t key[64];
    for (int i = 0; i < 64; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(auth_secret_from_bytes(key, sizeof(key), &secret), 0);
    struct auth_pool_cfg pc = {1, 1, 16, cheap};
    assert_int_equal(auth_pool_new(&pc, &pool), 0);
    env = (struct api_env){.store = fx.st,
                           .secret = secret,
                           .pool = pool,
                           .is_superuser = api__is_superuser,
                           .hash_password = api__hash_password};
    env.auth_arg = &env;
    assert_int_equal(api_records_start(&env), 0); /* creates go through the group commit */
    router = http_router_new();
    api_register(router, &env);
    struct http_opts o = {
        .addr = "127.0.0.1:0", .threads = 2, .max_body = 1 << 20, .idle_timeout_s = 5};
    char err[256];
    assert_int_equal(http_server_open(&o, router, &srv, err, sizeof(err)), 0);

    assert_int_equal(store_collection_get(fx.st, "users", &users), 0);
    new_user("a@example.com", uid_a);
    new_user("b@example.com", uid_b);
    tok_a = token_for(users, uid_a);
    tok_b = token_for(users, uid_b);
    char su_id[16];
    assert_int_equal(store_superuser_upsert(fx.st, "root@example.com", "x", su_id), 0);
    struct store_collection *sus = NULL;
    assert_int_equal(store_collection_get(fx.st, "_superusers", &sus), 0);
    tok_su = token_for(sus, su_id);
    store_collection_unref(sus);

    char spec[1024];
    snprintf(spec, sizeof(spec),
             "{\"name\":\"notes\",\"fields\":[{\"name\":\"title\",\"type\":\"text\"},"
             "{\"name\":\"public\",\"type\":\"bool\"},"
             "{\"name\":\"secret\",\"type\":\"text\",\"hidden\":true},"
             "{\"name\":\"owner\",\"type\":\"relation\",\"collectionId\":\"%s\",\"maxSelect\":1}]}",
             users->id);
    json_t *js = J(spec), *errs = NULL;
    assert_int_equal(store_collection_create(fx.st, js, &errs, &notes), 0);
    json_decref(js);
    const char *rows[][3] = {
        {"a1", "a", "1"}, {"a2", "a", "0"}, {"b1", "b", "1"}, {"b2", "b", "0"}};
    for (size_t i = 0; i < 4; i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"id\":\"note%s000000000\",\"title\":\"%s\",\"owner\":\"%s\",\"public\":%s,"
                 "\"secret\":\"s-%s\"}",
                 rows[i][0], rows[i][0], rows[i][1][0] == 'a' ? uid_a : uid_b,
                 rows[i][2][0] == '1' ? "true" : "false", rows[i][0]);
        json_t *b = J(body), *rec = NULL;
        assert_int_equal(store_record_create(fx.st, notes, b, NULL, &errs, &rec), 0);
        json_decref(b);
        json_decref(rec);
    }
    return 0;
}

static int teardown(void **state)
{
    UNUSED(state);
    api_records_stop(&env);
    http_server_close(srv, 2000);
    api_records_free(&env);
    http_router_free(router);
    store_collection_unref(users);
    store_collection_unref(notes);
    free(tok_a);
    free(tok_b);
    free(tok_su);
    auth_pool_free(pool);
    auth_secret_free(secret);
    fx_close(&fx);
    return 0;
}

/* One request; extra: more header lines ("Name: v\r\n"). Returns the status and the JSON. */
static int call(const char *method, const char *path, const char *token, const char *extra,
                const char *body, json_t **out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)http_server_port(srv));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct buf req;
    buf_init(&req);
    buf_printf(&req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", method, path);
    if (token)
        buf_printf(&req, "Authorization: %s\r\n", token);
    buf_printf(&req, "%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
               extra ? extra : "", body ? strlen(body) : 0, body ? body : "");
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
    *out = NULL;
    if (sep[4]) {
        json_error_t e;
        *out = json_loads(sep + 4, JSON_DECODE_ANY, &e);
        if (!*out)
            fail_msg("bad JSON reply to %s %s: %s", method, path, sep + 4);
    }
    buf_release(&resp);
    return status;
}

/* The titles a list returns, sorted by title, joined with ','; "" for none; "!<status>" on
 * a failure. */
static char titles_buf[256];
static const char *titles(const char *token, const char *query, const char *extra)
{
    char path[512];
    snprintf(path, sizeof(path), "/api/collections/notes/records?sort=title%s%s", query ? "&" : "",
             query ? query : "");
    json_t *b = NULL;
    int st = call("GET", path, token, extra, NULL, &b);
    if (st != 200) {
        snprintf(titles_buf, sizeof(titles_buf), "!%d", st);
        json_decref(b);
        return titles_buf;
    }
    titles_buf[0] = '\0';
    json_t *items = json_object_get(b, "items");
    for (size_t i = 0; i < json_array_size(items); i++) {
        if (i)
            strcat(titles_buf, ",");
        strcat(titles_buf, json_string_value(json_object_get(json_array_get(items, i), "title")));
    }
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")),
                     (json_int_t)json_array_size(items));
    json_decref(b);
    return titles_buf;
}

static int status_of(const char *method, const char *path, const char *token, const char *body)
{
    json_t *b = NULL;
    int st = call(method, path, token, NULL, body, &b);
    json_decref(b);
    return st;
}

static int64_t count_notes(void)
{
    struct store_list_query q = {.page = 1, .per_page = 100};
    struct store_list_result r;
    assert_int_equal(store_record_list(fx.st, notes, &q, &r), 0);
    int64_t n = r.total_items;
    json_decref(r.items);
    return n;
}

static void test_null_rules_are_superusers_only(void **state)
{
    UNUSED(state);
    set_rules(NULL, NULL, NULL, NULL, NULL);
    assert_string_equal(titles(NULL, NULL, NULL), "!403");
    assert_string_equal(titles(tok_a, NULL, NULL), "!403");
    assert_string_equal(titles(tok_su, NULL, NULL), "a1,a2,b1,b2");
    const char *p = "/api/collections/notes/records/notea1000000000";
    assert_int_equal(status_of("GET", p, tok_a, NULL), 403);
    assert_int_equal(status_of("PATCH", p, tok_a, "{\"title\":\"x\"}"), 403);
    assert_int_equal(status_of("DELETE", p, tok_a, NULL), 403);
    assert_int_equal(status_of("POST", "/api/collections/notes/records", tok_a, "{}"), 403);
    assert_int_equal(status_of("GET", p, tok_su, NULL), 200);
}

static void test_empty_rules_are_open(void **state)
{
    UNUSED(state);
    set_rules("", "", NULL, NULL, NULL);
    assert_string_equal(titles(NULL, NULL, NULL), "a1,a2,b1,b2");
    assert_int_equal(status_of("GET", "/api/collections/notes/records/noteb2000000000", NULL, NULL),
                     200);
}

static void test_list_rule_is_part_of_the_query(void **state)
{
    UNUSED(state);
    set_rules("owner = @request.auth.id", NULL, NULL, NULL, NULL);
    assert_string_equal(titles(tok_a, NULL, NULL), "a1,a2");
    assert_string_equal(titles(tok_b, NULL, NULL), "b1,b2");
    assert_string_equal(titles(NULL, NULL, NULL), "");
    assert_string_equal(titles(tok_su, NULL, NULL), "a1,a2,b1,b2");
    /* a client's `||` cannot widen the rule: each is its own parenthesised group */
    assert_string_equal(titles(tok_a, "filter=id%3D%22x%22%7C%7Cid!%3D%22%22", NULL), "a1,a2");
    set_rules("owner = @request.auth.id || public = true", NULL, NULL, NULL, NULL);
    assert_string_equal(titles(tok_a, NULL, NULL), "a1,a2,b1");
    assert_string_equal(titles(tok_a, "filter=public%3Dfalse", NULL), "a2");
    assert_string_equal(titles(NULL, NULL, NULL), "a1,b1");
    /* the requester's plain fields: from the token (id, collection) or its record */
    set_rules("@request.auth.collectionName = \"users\" && @request.auth.collectionId = "
              "\"_pb_users_auth_\" && owner = @request.auth.id",
              NULL, NULL, NULL, NULL);
    assert_string_equal(titles(tok_a, NULL, NULL), "a1,a2");
    assert_string_equal(titles(tok_su, NULL, NULL), "a1,a2,b1,b2");
    set_rules("@request.auth.email = \"b@example.com\" && @request.auth.verified = false", NULL,
              NULL, NULL, NULL);
    assert_string_equal(titles(tok_a, NULL, NULL), "");
    assert_string_equal(titles(tok_b, NULL, NULL), "a1,a2,b1,b2");
    set_rules("@request.auth.emailVisibility = false && owner.email = @request.auth.email", NULL,
              NULL, NULL, NULL);
    assert_string_equal(titles(tok_b, NULL, NULL), "b1,b2");
    set_rules("owner = @request.auth.id", NULL, NULL, NULL, NULL);
    /* a relation path in the client's filter: the users list rule needs the requester */
    assert_string_equal(titles(tok_b, "filter=owner.created!%3D%22%22", NULL), "b1,b2");
    set_rules("owner = @request.auth.id || public = true", NULL, NULL, NULL, NULL);
    /* paging counts only the rows the rule admits */
    json_t *b = NULL;
    assert_int_equal(call("GET", "/api/collections/notes/records?perPage=1", tok_a, NULL, NULL, &b),
                     200);
    assert_int_equal(json_integer_value(json_object_get(b, "totalItems")), 3);
    assert_int_equal(json_integer_value(json_object_get(b, "totalPages")), 3);
    json_decref(b);
}

static void test_view_update_delete_rules_answer_404(void **state)
{
    UNUSED(state);
    const char *own = "owner = @request.auth.id";
    set_rules(own, own, NULL, own, own);
    const char *pb = "/api/collections/notes/records/noteb1000000000";
    assert_int_equal(status_of("GET", pb, tok_a, NULL), 404);
    assert_int_equal(status_of("PATCH", pb, tok_a, "{\"title\":\"pwned\"}"), 404);
    assert_int_equal(status_of("DELETE", pb, tok_a, NULL), 404);
    assert_int_equal(status_of("GET", pb, tok_b, NULL), 200);
    json_t *rec = NULL;
    assert_int_equal(store_record_get(fx.st, notes, "noteb1000000000", &rec), 0);
    assert_string_equal(json_string_value(json_object_get(rec, "title")), "b1");
    json_decref(rec);
    /* the same answer as a missing record */
    json_t *x = NULL, *y = NULL;
    assert_int_equal(call("GET", pb, tok_a, NULL, NULL, &x), 404);
    assert_int_equal(
        call("GET", "/api/collections/notes/records/nosuch000000000", tok_a, NULL, NULL, &y), 404);
    assert_true(json_equal(x, y));
    json_decref(x);
    json_decref(y);
}

static void test_create_rule_400_and_nothing_written(void **state)
{
    UNUSED(state);
    set_rules(NULL, NULL, "owner = @request.auth.id && @request.body.public:isset = false", NULL,
              NULL);
    int64_t before = count_notes();
    char body[256];
    snprintf(body, sizeof(body), "{\"title\":\"forB\",\"owner\":\"%s\"}", uid_b);
    json_t *b = NULL;
    assert_int_equal(call("POST", "/api/collections/notes/records", tok_a, NULL, body, &b), 400);
    assert_string_equal(json_string_value(json_object_get(b, "message")),
                        "Failed to create record.");
    json_decref(b);
    snprintf(body, sizeof(body), "{\"title\":\"pub\",\"owner\":\"%s\",\"public\":true}", uid_a);
    assert_int_equal(status_of("POST", "/api/collections/notes/records", tok_a, body), 400);
    assert_int_equal(count_notes(), before);
    snprintf(body, sizeof(body), "{\"id\":\"notea3000000000\",\"title\":\"a3\",\"owner\":\"%s\"}",
             uid_a);
    assert_int_equal(status_of("POST", "/api/collections/notes/records", tok_a, body), 200);
    assert_int_equal(count_notes(), before + 1);
    assert_int_equal(store_record_delete(fx.st, notes, "notea3000000000"), 0);
}

static void test_broken_rule_fails_closed(void **state)
{
    UNUSED(state);
    set_rules("nosuchfield = 1", "nosuchfield = 1", "(", NULL, NULL);
    assert_string_equal(titles(tok_a, NULL, NULL), "!403");
    assert_int_equal(
        status_of("GET", "/api/collections/notes/records/notea1000000000", tok_a, NULL), 403);
    assert_int_equal(status_of("POST", "/api/collections/notes/records", tok_a, "{}"), 403);
    assert_string_equal(titles(tok_su, NULL, NULL), "a1,a2,b1,b2");
}

static void test_client_filter_limits(void **state)
{
    UNUSED(state);
    set_rules("", "", NULL, NULL, NULL);
    assert_string_equal(titles(tok_a, "filter=%40request.auth.id%3D%22%22", NULL), "!403");
    assert_string_equal(titles(tok_a, "filter=%40collection.notes.id%3D%22%22", NULL), "!403");
    assert_string_equal(titles(tok_a, "filter=secret%3D%22s-a1%22", NULL), "!400");
    assert_int_equal(status_of("GET", "/api/collections/notes/records?sort=secret", NULL, NULL),
                     400);
    assert_int_equal(status_of("GET", "/api/collections/notes/records?sort=-secret", tok_su, NULL),
                     200);
    assert_string_equal(titles(tok_su, "filter=secret%3D%22s-a1%22", NULL), "a1");
    /* through a relation into users (list rule id = @request.auth.id): only A's own row */
    assert_string_equal(titles(tok_a, "filter=owner.created!%3D%22%22", NULL), "a1,a2");
    /* emails count only where emailVisibility is set, even one's own */
    assert_string_equal(titles(tok_a, "filter=owner.email!%3D%22%22", NULL), "");
    assert_string_equal(titles(tok_su, "filter=owner.email%3D%22b%40example.com%22", NULL),
                        "b1,b2");
    /* hidden fields are not returned to users, and their values are not written by them */
    json_t *b = NULL;
    assert_int_equal(
        call("GET", "/api/collections/notes/records/notea1000000000", tok_a, NULL, NULL, &b), 200);
    assert_null(json_object_get(b, "secret"));
    json_decref(b);
    assert_int_equal(
        call("GET", "/api/collections/notes/records/notea1000000000", tok_su, NULL, NULL, &b), 200);
    assert_string_equal(json_string_value(json_object_get(b, "secret")), "s-a1");
    json_decref(b);
}

static void test_request_headers_query_method(void **state)
{
    UNUSED(state);
    set_rules("@request.headers.x_api_key = \"k1\" || @request.query.open = \"yes\"",
              "@request.method = \"POST\"", NULL, NULL, NULL);
    assert_string_equal(titles(NULL, NULL, NULL), "");
    assert_string_equal(titles(NULL, NULL, "X-Api-Key: k1\r\n"), "a1,a2,b1,b2");
    assert_string_equal(titles(NULL, NULL, "X-Api-Key: k2\r\n"), "");
    assert_string_equal(titles(NULL, "open=yes", NULL), "a1,a2,b1,b2");
    assert_int_equal(status_of("GET", "/api/collections/notes/records/notea1000000000", NULL, NULL),
                     404);
}

static void test_bad_tokens_are_guests(void **state)
{
    UNUSED(state);
    set_rules("owner = @request.auth.id", NULL, NULL, NULL, NULL);
    char tampered[2048];
    snprintf(tampered, sizeof(tampered), "%s", tok_a);
    char *q = tampered + strlen(tampered) - 2;
    *q = *q == 'A' ? 'B' : 'A'; /* one character of the signature */
    assert_string_equal(titles(tampered, NULL, NULL), "");
    assert_string_equal(titles("garbage", NULL, NULL), "");
    assert_string_equal(titles("Bearer", NULL, NULL), "");
    char bearer[2048];
    snprintf(bearer, sizeof(bearer), "Bearer %s", tok_a);
    assert_string_equal(titles(bearer, NULL, NULL), "a1,a2");
}

static void test_users_rules_and_hidden_auth_fields(void **state)
{
    UNUSED(state);
    json_t *b = NULL;
    assert_int_equal(call("GET", "/api/collections/users/records", tok_a, NULL, NULL, &b), 200);
    json_t *items = json_object_get(b, "items");
    assert_int_equal(json_array_size(items), 1);
    json_t *me = json_array_get(items, 0);
    assert_string_equal(json_string_value(json_object_get(me, "id")), uid_a);
    assert_string_equal(json_string_value(json_object_get(me, "email")), "a@example.com");
    assert_null(json_object_get(me, "tokenKey"));
    assert_null(json_object_get(me, "password"));
    json_decref(b);
    /* a tokenKey in the body is dropped: the token stays valid */
    char path[128];
    snprintf(path, sizeof(path), "/api/collections/users/records/%s", uid_a);
    assert_int_equal(status_of("PATCH", path, tok_a,
                               "{\"tokenKey\":\"KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK\","
                               "\"tokenKey:autogenerate\":\"x\"}"),
                     200);
    assert_int_equal(status_of("GET", path, tok_a, NULL), 200);
    assert_int_equal(status_of("PATCH", path, tok_a, "{\"verified\":true}"), 400);
    snprintf(path, sizeof(path), "/api/collections/users/records/%s", uid_b);
    assert_int_equal(status_of("GET", path, tok_a, NULL), 404);
}

static void test_collection_rules_are_checked_on_save(void **state)
{
    UNUSED(state);
    set_rules("public = true", NULL, NULL, NULL, NULL);
    json_t *b = NULL;
    assert_int_equal(call("POST", "/api/collections", tok_su, NULL,
                          "{\"name\":\"badrules\",\"fields\":[{\"name\":\"t\",\"type\":"
                          "\"text\"}],\"listRule\":\"nosuch = 1\",\"viewRule\":\"t = 1\"}",
                          &b),
                     400);
    json_t *e = json_object_get(json_object_get(b, "data"), "listRule");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "validation_invalid_rule");
    assert_null(json_object_get(json_object_get(b, "data"), "viewRule"));
    json_decref(b);
    assert_int_equal(status_of("GET", "/api/collections/badrules", tok_su, NULL), 404);
    /* a valid one is kept */
    assert_int_equal(status_of("POST", "/api/collections", tok_su,
                               "{\"name\":\"goodrules\",\"listRule\":\"id != ''\"}"),
                     200);
    assert_int_equal(status_of("DELETE", "/api/collections/goodrules", tok_su, NULL), 204);
    /* an update with a broken rule changes nothing */
    assert_int_equal(status_of("PATCH", "/api/collections/notes", tok_su, "{\"listRule\":\"(\"}"),
                     400);
    assert_int_equal(status_of("PATCH", "/api/collections/notes", tok_su,
                               "{\"listRule\":\"@collection.nosuch.id = 1\"}"),
                     400);
    assert_int_equal(
        status_of("PATCH", "/api/collections/notes", tok_su, "{\"authRule\":\"nonsense ((\"}"),
        200); /* not an auth collection: authRule does not apply */
    struct store_collection *c = NULL;
    assert_int_equal(store_collection_get(fx.st, "notes", &c), 0);
    assert_string_equal(c->rules[STORE_RULE_LIST], "public = true");
    store_collection_unref(c);
    assert_int_equal(
        status_of("PATCH", "/api/collections/notes", tok_su, "{\"listRule\":\"public = false\"}"),
        200);
    assert_int_equal(store_collection_get(fx.st, "notes", &c), 0);
    assert_string_equal(c->rules[STORE_RULE_LIST], "public = false");
    store_collection_unref(c);
    /* with new fields the rules are checked against the new schema, and put back */
    assert_int_equal(call("GET", "/api/collections/notes", tok_su, NULL, NULL, &b), 200);
    json_t *fields = json_object_get(b, "fields");
    json_array_append_new(fields, json_pack("{s:s,s:s}", "name", "extra", "type", "text"));
    json_t *patch = json_pack("{s:O,s:s}", "fields", fields, "listRule", "extra = 1 && nosuch = 2");
    char *ptext = json_dumps(patch, JSON_COMPACT);
    json_decref(patch);
    json_decref(b);
    assert_int_equal(call("PATCH", "/api/collections/notes", tok_su, NULL, ptext, &b), 400);
    assert_non_null(json_object_get(json_object_get(b, "data"), "listRule"));
    json_decref(b);
    free(ptext);
    assert_int_equal(store_collection_get(fx.st, "notes", &c), 0);
    assert_string_equal(c->rules[STORE_RULE_LIST], "public = false");
    assert_non_null(store_collection_field(c, "extra")); /* the schema change stays */
    store_collection_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_rules_are_superusers_only),
        cmocka_unit_test(test_empty_rules_are_open),
        cmocka_unit_test(test_list_rule_is_part_of_the_query),
        cmocka_unit_test(test_view_update_delete_rules_answer_404),
        cmocka_unit_test(test_create_rule_400_and_nothing_written),
        cmocka_unit_test(test_broken_rule_fails_closed),
        cmocka_unit_test(test_client_filter_limits),
        cmocka_unit_test(test_request_headers_query_method),
        cmocka_unit_test(test_bad_tokens_are_guests),
        cmocka_unit_test(test_users_rules_and_hidden_auth_fields),
        cmocka_unit_test(test_collection_rules_are_checked_on_save),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
