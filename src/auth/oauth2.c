/* oauth2.c - OAuth2 and OpenID Connect providers: configuration and presets, discovery, the
 * code exchange, the id token check (jwks.c) and the user info, plus the worker threads that
 * make these calls off the HTTP threads.
 *
 * HTTP calls go through libcurl's easy interface, one handle per call, on a worker thread:
 * no redirects are followed, only http(s) is spoken, each call is bounded in time
 * (AUTH_OAUTH2_TIMEOUT_MS) and in bytes (AUTH_OAUTH2_RESPONSE_MAX). Discovery documents and
 * JWKS are cached per URL for an hour in a small table under a leaf lock; a JWKS is fetched
 * again once when an id token names a key it does not hold (the provider rotated keys). */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_int.h"

#define CACHE_SLOTS 32
#define CACHE_TTL_US (3600LL * 1000000)
#define CACHE_FAIL_TTL_US (60LL * 1000000) /* a failed fetch is not tried again sooner */
#define DEFAULT_THREADS 4
#define DEFAULT_QUEUE 256

struct cache_entry {
    char *url;
    json_t *doc;
    int64_t fetched_us; /* time_mono_us */
};

struct job {
    auth_oauth2_job_cb fn;
    void *arg;
};

struct auth_oauth2 {
    pthread_mutex_t mu; /* leaf: the queue and the cache */
    pthread_cond_t cv;
    struct job *queue; /* ring of queue_cap */
    size_t queue_cap, head, n_queued;
    bool stopping;
    bool abort; /* atomic: calls in flight stop (set by auth_oauth2_stop) */
    pthread_t *threads;
    unsigned n_threads;
    struct cache_entry cache[CACHE_SLOTS];
};

int auth__fail(char *err, size_t err_len, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && err_len)
        vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- providers ---- */

struct preset {
    const char *name, *display, *auth, *token, *userinfo, *jwks, *issuer, *scopes;
    bool pkce, oidc;
};

/* Endpoints as the providers document them. Google is an OpenID provider (its id token is
 * checked); GitHub is plain OAuth2; Microsoft's "common" tenant issues id tokens whose iss
 * names each user's tenant, so its user comes from Graph's /me, as PocketBase does. */
static const struct preset presets[] = {
    {"google", "Google", "https://accounts.google.com/o/oauth2/v2/auth",
     "https://oauth2.googleapis.com/token", "https://openidconnect.googleapis.com/v1/userinfo",
     "https://www.googleapis.com/oauth2/v3/certs", "https://accounts.google.com",
     "openid email profile", true, true},
    {"github", "GitHub", "https://github.com/login/oauth/authorize",
     "https://github.com/login/oauth/access_token", "https://api.github.com/user", NULL, NULL,
     "read:user user:email", true, false},
    {"microsoft", "Microsoft", "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
     "https://login.microsoftonline.com/common/oauth2/v2.0/token",
     "https://graph.microsoft.com/v1.0/me", NULL, NULL, "User.Read", true, false},
    {"oidc", "OIDC", NULL, NULL, NULL, NULL, NULL, "openid email profile", true, true},
    {"oidc2", "OIDC2", NULL, NULL, NULL, NULL, NULL, "openid email profile", true, true},
    {"oidc3", "OIDC3", NULL, NULL, NULL, NULL, NULL, "openid email profile", true, true},
};

static char *opt_str(const json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (v && *v)
        return xstrdup(v);
    return dflt ? xstrdup(dflt) : NULL;
}

/* A URL we may call: https anywhere, http only to a loopback address. */
static bool url_allowed(const char *url)
{
    if (!url || strlen(url) > 2048)
        return false;
    if (strncasecmp(url, "https://", 8) == 0)
        return url[8] != '\0';
    if (strncasecmp(url, "http://", 7) != 0)
        return false;
    static const char *const loop[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < ARRAY_LEN(loop); i++) {
        size_t n = strlen(loop[i]);
        char next = url[7 + n];
        if (strncasecmp(url + 7, loop[i], n) == 0 &&
            (next == ':' || next == '/' || next == '\0' || next == '?'))
            return true;
    }
    return false;
}

int auth_oauth2_provider_parse(const json_t *cfg, struct auth_oauth2_provider *p, char *err,
                               size_t err_len)
{
    memset(p, 0, sizeof(*p));
    const char *name = json_string_value(json_object_get(cfg, "name"));
    const struct preset *pre = NULL;
    for (size_t i = 0; name && i < ARRAY_LEN(presets) && !pre; i++)
        if (strcmp(presets[i].name, name) == 0)
            pre = &presets[i];
    if (!pre)
        return auth__fail(err, err_len, ERR_INVALID, "unknown OAuth2 provider %.100s",
                          name ? name : "(none)");
    const json_t *extra = json_object_get(cfg, "extra");
    p->name = xstrdup(name);
    p->display_name = opt_str(cfg, "displayName", pre->display);
    p->client_id = opt_str(cfg, "clientId", NULL);
    p->client_secret = opt_str(cfg, "clientSecret", "");
    p->auth_url = opt_str(cfg, "authURL", pre->auth);
    p->token_url = opt_str(cfg, "tokenURL", pre->token);
    p->userinfo_url = opt_str(cfg, "userInfoURL", pre->userinfo);
    p->jwks_url = opt_str(extra, "jwksURL", pre->jwks);
    p->issuer = opt_str(extra, "issuer", pre->issuer);
    p->scopes = opt_str(extra, "scopes", pre->scopes);
    json_t *pk = json_object_get(cfg, "pkce");
    p->pkce = json_is_boolean(pk) ? json_is_true(pk) : pre->pkce;
    p->oidc = pre->oidc;
    const json_t *iss = json_object_get(extra, "issuers");
    size_t n = json_array_size(iss), i;
    const json_t *v;
    p->issuers = xcalloc(n + 1, sizeof(char *));
    json_array_foreach(iss, i, v) if (json_is_string(v)) p->issuers[p->n_issuers++] =
        xstrdup(json_string_value(v));
    /* Google's id tokens may name their issuer without the scheme (its documentation) */
    if (n == 0 && strcmp(name, "google") == 0)
        p->issuers[p->n_issuers++] = xstrdup("accounts.google.com");
    int rc = 0;
    if (!p->client_id)
        rc = auth__fail(err, err_len, ERR_INVALID, "provider %s has no clientId", name);
    else if ((!p->auth_url || !p->token_url || (p->oidc && !p->jwks_url)) && !p->issuer)
        rc = auth__fail(err, err_len, ERR_INVALID,
                        "provider %s needs authURL, tokenURL and extra.jwksURL, or extra.issuer to "
                        "discover them",
                        name);
    if (rc)
        auth_oauth2_provider_release(p);
    return rc;
}

void auth_oauth2_provider_release(struct auth_oauth2_provider *p)
{
    char **strs[] = {&p->name,     &p->display_name, &p->client_id,    &p->client_secret,
                     &p->auth_url, &p->token_url,    &p->userinfo_url, &p->jwks_url,
                     &p->issuer,   &p->scopes};
    for (size_t i = 0; i < ARRAY_LEN(strs); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    for (size_t i = 0; i < p->n_issuers; i++)
        free(p->issuers[i]);
    free(p->issuers);
    p->issuers = NULL;
    p->n_issuers = 0;
}

void auth_oauth2_user_release(struct auth_oauth2_user *u)
{
    free(u->id);
    free(u->name);
    free(u->username);
    free(u->email);
    free(u->avatar_url);
    free(u->access_token);
    free(u->refresh_token);
    json_decref(u->raw);
    memset(u, 0, sizeof(*u));
}

static void url_param(struct buf *b, const char *key, const char *val)
{
    char *esc = curl_easy_escape(NULL, val, 0);
    buf_printf(b, "%s%s=%s", b->len ? "&" : "", key, esc ? esc : "");
    curl_free(esc);
}

char *auth_oauth2_auth_url(const struct auth_oauth2_provider *p, const char *state,
                           const char *challenge, const char *nonce)
{
    struct buf q;
    buf_init(&q);
    url_param(&q, "client_id", p->client_id);
    url_param(&q, "response_type", "code");
    if (p->scopes && *p->scopes)
        url_param(&q, "scope", p->scopes);
    url_param(&q, "state", state);
    if (challenge) {
        url_param(&q, "code_challenge", challenge);
        url_param(&q, "code_challenge_method", "S256");
    }
    if (nonce)
        url_param(&q, "nonce", nonce);
    struct buf out;
    buf_init(&out);
    buf_printf(&out, "%s%c%s&redirect_uri=", p->auth_url ? p->auth_url : "",
               p->auth_url && strchr(p->auth_url, '?') ? '&' : '?', buf_cstr(&q));
    buf_release(&q);
    return buf_detach(&out, NULL);
}

/* ---- HTTP ---- */

struct sink {
    struct buf body;
    bool too_big;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;
    if (s->body.len + n > AUTH_OAUTH2_RESPONSE_MAX) {
        s->too_big = true;
        return 0; /* aborts the transfer */
    }
    buf_append(&s->body, ptr, n);
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return arg && __atomic_load_n((const bool *)arg, __ATOMIC_RELAXED) ? 1 : 0;
}

/* One call: GET (form NULL) or POST of an urlencoded form. bearer: an access token for the
 * Authorization header; basic_user/basic_pass: client credentials (HTTP Basic). On 0 *out is
 * the JSON document of a 2xx answer (the caller's). */
static int http_json(struct auth_oauth2 *o, const char *url, const char *form, const char *bearer,
                     const char *basic_user, const char *basic_pass, json_t **out, char *err,
                     size_t err_len)
{
    *out = NULL;
    if (!url_allowed(url))
        return auth__fail(err, err_len, ERR_INVALID,
                          "refusing to call %.200s (https only, or http to "
                          "a loopback address)",
                          url ? url : "(no URL)");
    CURL *h = curl_easy_init();
    if (!h)
        return auth__fail(err, err_len, -ENOMEM, "cannot start an HTTP call");
    struct sink s = {0};
    buf_init(&s.body);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    char *auth = NULL;
    if (bearer) {
        size_t n = strlen(bearer) + 32;
        auth = xmalloc(n);
        snprintf(auth, n, "Authorization: Bearer %s", bearer);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)AUTH_OAUTH2_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)AUTH_OAUTH2_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "tandem");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, o ? &o->abort : NULL);
    char *user_esc = NULL, *pass_esc = NULL;
    if (basic_user) {
        /* RFC 6749 2.3.1: the client id and secret are form-urlencoded before Basic */
        user_esc = curl_easy_escape(h, basic_user, 0);
        pass_esc = curl_easy_escape(h, basic_pass ? basic_pass : "", 0);
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, user_esc ? user_esc : "");
        curl_easy_setopt(h, CURLOPT_PASSWORD, pass_esc ? pass_esc : "");
    }
    if (form)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    int rc = 0;
    if (s.too_big)
        rc = auth__fail(err, err_len, ERR_LIMIT, "%.200s answered more than %d bytes", url,
                        AUTH_OAUTH2_RESPONSE_MAX);
    else if (cc != CURLE_OK)
        rc = auth__fail(err, err_len, ERR_IO, "%.200s: %s", url, curl_easy_strerror(cc));
    else if (status < 200 || status > 299)
        rc = auth__fail(err, err_len, ERR_DENIED, "%.200s answered %ld: %.200s", url, status,
                        buf_cstr(&s.body));
    else if (!(*out = json_loadb(s.body.ptr ? s.body.ptr : "", s.body.len, 0, NULL)))
        rc = auth__fail(err, err_len, ERR_INVALID, "%.200s answered no JSON", url);
    curl_free(user_esc);
    curl_free(pass_esc);
    curl_slist_free_all(hdrs);
    free(auth);
    curl_easy_cleanup(h);
    buf_release(&s.body);
    return rc;
}

/* ---- cache of discovery documents and key sets ---- */

/* RETURNS a new reference, or NULL when url is not cached (or stale). A JSON null: the last
 * fetch failed, less than CACHE_FAIL_TTL_US ago. */
static json_t *cache_get(struct auth_oauth2 *o, const char *url, int64_t max_age_us)
{
    json_t *doc = NULL;
    int64_t now = time_mono_us();
    pthread_mutex_lock(&o->mu);
    for (size_t i = 0; i < CACHE_SLOTS && !doc; i++)
        if (o->cache[i].url && strcmp(o->cache[i].url, url) == 0 &&
            now - o->cache[i].fetched_us <
                (json_is_null(o->cache[i].doc) ? CACHE_FAIL_TTL_US : max_age_us))
            doc = json_incref(o->cache[i].doc);
    pthread_mutex_unlock(&o->mu);
    return doc;
}

static void cache_put(struct auth_oauth2 *o, const char *url, json_t *doc)
{
    pthread_mutex_lock(&o->mu);
    size_t slot = 0;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (o->cache[i].url && strcmp(o->cache[i].url, url) == 0) {
            slot = i;
            break;
        }
        if (!o->cache[i].url || o->cache[i].fetched_us < o->cache[slot].fetched_us)
            slot = i;
    }
    struct cache_entry *e = &o->cache[slot];
    json_t *old = e->doc;
    char *old_url = e->url;
    e->url = xstrdup(url);
    e->doc = json_incref(doc);
    e->fetched_us = time_mono_us();
    pthread_mutex_unlock(&o->mu);
    json_decref(old);
    free(old_url);
}

/* The document at url, from the cache or fetched. fresh: only a copy younger than a minute
 * is taken (a key set fetched again for an unknown kid: a client sending made-up kids cannot
 * make us call the provider more than once a minute). RETURNS a new reference. */
static int fetch_doc(struct auth_oauth2 *o, const char *url, bool fresh, json_t **out, char *err,
                     size_t err_len)
{
    if ((*out = cache_get(o, url, fresh ? CACHE_FAIL_TTL_US : CACHE_TTL_US))) {
        if (!json_is_null(*out))
            return 0;
        json_decref(*out);
        *out = NULL;
        return auth__fail(err, err_len, ERR_IO, "%.200s failed less than a minute ago", url);
    }
    int rc = http_json(o, url, NULL, NULL, NULL, NULL, out, err, err_len);
    if (rc == 0 && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        rc = auth__fail(err, err_len, ERR_INVALID, "%.200s answered no JSON object", url);
    }
    json_t *null = json_null();
    cache_put(o, url, rc == 0 ? *out : null);
    json_decref(null);
    return rc;
}

static char *discovery_url(const char *issuer)
{
    struct buf b;
    buf_init(&b);
    size_t n = strlen(issuer);
    while (n > 0 && issuer[n - 1] == '/')
        n--;
    buf_printf(&b, "%.*s/.well-known/openid-configuration", (int)n, issuer);
    return buf_detach(&b, NULL);
}

static bool needs_discovery(const struct auth_oauth2_provider *p)
{
    return p->issuer && (!p->auth_url || !p->token_url || (p->oidc && !p->jwks_url));
}

/* Completes p from a discovery document; ERR_INVALID when it is not the issuer's. */
static int apply_discovery(struct auth_oauth2_provider *p, const json_t *doc, char *err,
                           size_t err_len)
{
    const char *iss = json_string_value(json_object_get(doc, "issuer"));
    if (!iss || strcmp(iss, p->issuer) != 0)
        return auth__fail(err, err_len, ERR_INVALID,
                          "discovery document of %.200s names another issuer", p->issuer);
    struct {
        char **dst;
        const char *key;
    } map[] = {{&p->auth_url, "authorization_endpoint"},
               {&p->token_url, "token_endpoint"},
               {&p->userinfo_url, "userinfo_endpoint"},
               {&p->jwks_url, "jwks_uri"}};
    for (size_t i = 0; i < ARRAY_LEN(map); i++) {
        const char *v = json_string_value(json_object_get(doc, map[i].key));
        if (!*map[i].dst && v && *v)
            *map[i].dst = xstrdup(v);
    }
    if (!p->auth_url || !p->token_url || (p->oidc && !p->jwks_url))
        return auth__fail(err, err_len, ERR_INVALID, "discovery document of %.200s lacks endpoints",
                          p->issuer);
    return 0;
}

int auth_oauth2_discover_cached(struct auth_oauth2 *o, struct auth_oauth2_provider *p)
{
    if (!needs_discovery(p))
        return 0;
    char *url = discovery_url(p->issuer);
    json_t *doc = cache_get(o, url, CACHE_TTL_US);
    free(url);
    int rc = !doc ? ERR_NOTFOUND : json_is_null(doc) ? ERR_IO : apply_discovery(p, doc, NULL, 0);
    json_decref(doc);
    return rc;
}

int auth_oauth2_discover(struct auth_oauth2 *o, struct auth_oauth2_provider *p, char *err,
                         size_t err_len)
{
    if (!needs_discovery(p))
        return 0;
    char *url = discovery_url(p->issuer);
    json_t *doc = NULL;
    int rc = fetch_doc(o, url, false, &doc, err, err_len);
    free(url);
    if (rc == 0)
        rc = apply_discovery(p, doc, err, err_len);
    json_decref(doc);
    return rc;
}

/* ---- the exchange ---- */

static char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v)) {
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return xstrdup(tmp);
    }
    return xstrdup("");
}

static bool verified_flag(const json_t *v)
{
    /* some providers send "true" as a string */
    return json_is_true(v) || (json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
}

/* Fills u from the user info (or id token claims) of p's kind. */
static void map_user(struct auth_oauth2_user *u, const struct auth_oauth2_provider *p,
                     const json_t *info)
{
    if (strcmp(p->name, "github") == 0) {
        u->id = jstr(info, "id");
        u->name = jstr(info, "name");
        u->username = jstr(info, "login");
        u->avatar_url = jstr(info, "avatar_url");
        u->email = xstrdup(""); /* from /user/emails: only a primary verified one */
    } else if (strcmp(p->name, "microsoft") == 0) {
        u->id = jstr(info, "id");
        u->name = jstr(info, "displayName");
        u->username = xstrdup("");
        u->avatar_url = xstrdup("");
        u->email = jstr(info, "mail"); /* Graph: the mailbox of the work account */
    } else {
        u->id = jstr(info, "sub");
        u->name = jstr(info, "name");
        u->username = jstr(info, "preferred_username");
        u->avatar_url = jstr(info, "picture");
        u->email = verified_flag(json_object_get(info, "email_verified")) ? jstr(info, "email")
                                                                          : xstrdup("");
    }
}

/* GitHub's primary verified email, from the emails endpoint beside the user endpoint. No
 * email is not a failure: the account then simply has none. */
static void github_email(struct auth_oauth2 *o, const struct auth_oauth2_provider *p,
                         struct auth_oauth2_user *u)
{
    const char *slash = strrchr(p->userinfo_url, '/');
    if (!slash)
        return;
    struct buf url;
    buf_init(&url);
    buf_printf(&url, "%.*s/user/emails", (int)(slash - p->userinfo_url), p->userinfo_url);
    json_t *list = NULL;
    char err[256];
    if (http_json(o, buf_cstr(&url), NULL, u->access_token, NULL, NULL, &list, err, sizeof(err)))
        xlog_warn("cannot read the GitHub emails: %s", err);
    buf_release(&url);
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e) if (json_is_true(json_object_get(e, "primary")) &&
                                       json_is_true(json_object_get(e, "verified")))
    {
        free(u->email);
        u->email = jstr(e, "email");
        break;
    }
    json_decref(list);
}

static int check_id_token(struct auth_oauth2 *o, const struct auth_oauth2_provider *p,
                          const char *id_token, const char *nonce, json_t **claims, char *err,
                          size_t err_len)
{
    const char *iss[16];
    size_t n = 0;
    if (p->issuer)
        iss[n++] = p->issuer;
    for (size_t i = 0; i < p->n_issuers && n < ARRAY_LEN(iss); i++)
        iss[n++] = p->issuers[i];
    struct auth_oidc_expect want = {
        .issuers = iss,
        .n_issuers = n,
        .audience = p->client_id,
        .nonce = nonce,
        .now_s = time_now_us() / 1000000,
    };
    int rc = ERR_NOTFOUND;
    for (int attempt = 0; attempt < 2 && rc == ERR_NOTFOUND; attempt++) {
        json_t *jwks = NULL;
        rc = fetch_doc(o, p->jwks_url, attempt > 0, &jwks, err, err_len);
        if (rc == 0)
            rc = auth_oidc_verify(id_token, jwks, &want, claims, err, err_len);
        else
            rc = rc == ERR_NOTFOUND ? ERR_IO : rc;
        json_decref(jwks);
    }
    return rc;
}

int auth_oauth2_exchange(struct auth_oauth2 *o, struct auth_oauth2_provider *p, const char *code,
                         const char *verifier, const char *redirect_url, const char *nonce,
                         struct auth_oauth2_user *out, enum auth_oauth2_stage *stage_out, char *err,
                         size_t err_len)
{
    memset(out, 0, sizeof(*out));
    *stage_out = AUTH_OAUTH2_STAGE_TOKEN;
    int rc = auth_oauth2_discover(o, p, err, err_len);
    if (rc)
        return rc;
    struct buf form;
    buf_init(&form);
    url_param(&form, "grant_type", "authorization_code");
    url_param(&form, "code", code);
    url_param(&form, "redirect_uri", redirect_url);
    if (p->pkce && verifier && *verifier)
        url_param(&form, "code_verifier", verifier);
    json_t *tok = NULL, *claims = NULL, *info = NULL;
    rc = http_json(o, p->token_url, buf_cstr(&form), NULL, p->client_id, p->client_secret, &tok,
                   err, err_len);
    buf_release(&form);
    const char *access = json_string_value(json_object_get(tok, "access_token"));
    if (rc == 0 && (!access || !*access))
        rc = auth__fail(err, err_len, ERR_DENIED, "the token response has no access_token");
    if (rc)
        goto out;
    *stage_out = AUTH_OAUTH2_STAGE_USER;
    out->access_token = xstrdup(access);
    out->refresh_token = jstr(tok, "refresh_token");
    json_t *ein = json_object_get(tok, "expires_in");
    if (json_is_integer(ein) && json_integer_value(ein) > 0)
        out->expiry_s = time_now_us() / 1000000 + json_integer_value(ein);
    if (p->oidc) {
        const char *idt = json_string_value(json_object_get(tok, "id_token"));
        if (!idt) {
            rc = auth__fail(err, err_len, ERR_DENIED, "the token response has no id_token");
            goto out;
        }
        rc = check_id_token(o, p, idt, nonce, &claims, err, err_len);
        if (rc)
            goto out;
    }
    if (p->userinfo_url) {
        rc =
            http_json(o, p->userinfo_url, NULL, out->access_token, NULL, NULL, &info, err, err_len);
        if (rc == 0 && !json_is_object(info))
            rc = auth__fail(err, err_len, ERR_INVALID, "the user info is not a JSON object");
        if (rc)
            goto out;
        /* OpenID Core 5.3.2: the user info must be about the id token's subject */
        const char *sub = json_string_value(json_object_get(info, "sub"));
        if (claims && (!sub || strcmp(sub, json_string_value(json_object_get(claims, "sub"))))) {
            rc = auth__fail(err, err_len, ERR_DENIED, "the user info is about another subject");
            goto out;
        }
    } else if (claims) {
        info = json_incref(claims);
    } else {
        rc = auth__fail(err, err_len, ERR_INVALID, "provider %s has no userInfoURL", p->name);
        goto out;
    }
    map_user(out, p, info);
    if (strcmp(p->name, "github") == 0)
        github_email(o, p, out);
    if (!*out->id)
        rc = auth__fail(err, err_len, ERR_INVALID, "the provider gave no user id");
    out->raw = json_incref(info);
out:
    json_decref(tok);
    json_decref(claims);
    json_decref(info);
    if (rc)
        auth_oauth2_user_release(out);
    return rc;
}

/* ---- worker threads ---- */

static CURLcode curl_init_rc;

/* libcurl's global state, once per process, before any thread of ours calls it. */
static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void *worker(void *arg)
{
    struct auth_oauth2 *o = arg;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (o->n_queued == 0 && !o->stopping)
            pthread_cond_wait(&o->cv, &o->mu);
        if (o->n_queued == 0)
            break;
        struct job j = o->queue[o->head];
        o->head = (o->head + 1) % o->queue_cap;
        o->n_queued--;
        bool cancel = o->stopping;
        pthread_mutex_unlock(&o->mu);
        j.fn(j.arg, cancel);
        pthread_mutex_lock(&o->mu);
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

int auth_oauth2_new(const struct auth_oauth2_cfg *cfg, struct auth_oauth2 **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    *out = NULL;
    pthread_once(&once, init_curl);
    if (curl_init_rc != CURLE_OK)
        return ERR_INTERNAL;
    struct auth_oauth2 *o = xcalloc(1, sizeof(*o));
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->queue_cap = cfg && cfg->queue_cap ? cfg->queue_cap : DEFAULT_QUEUE;
    o->queue = xcalloc(o->queue_cap, sizeof(*o->queue));
    unsigned n = cfg && cfg->n_threads ? cfg->n_threads : DEFAULT_THREADS;
    o->threads = xcalloc(n, sizeof(pthread_t));
    for (; o->n_threads < n; o->n_threads++) {
        int rc = pthread_create(&o->threads[o->n_threads], NULL, worker, o);
        if (rc) {
            auth_oauth2_free(o);
            return -rc;
        }
    }
    *out = o;
    return 0;
}

void auth_oauth2_stop(struct auth_oauth2 *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    o->stopping = true;
    __atomic_store_n(&o->abort, true, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    for (unsigned i = 0; i < o->n_threads; i++)
        pthread_join(o->threads[i], NULL);
    o->n_threads = 0;
    /* without threads (a failed start) queued jobs are cancelled here */
    while (o->n_queued) {
        struct job j = o->queue[o->head];
        o->head = (o->head + 1) % o->queue_cap;
        o->n_queued--;
        j.fn(j.arg, true);
    }
}

void auth_oauth2_free(struct auth_oauth2 *o)
{
    if (!o)
        return;
    auth_oauth2_stop(o);
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        free(o->cache[i].url);
        json_decref(o->cache[i].doc);
    }
    free(o->threads);
    free(o->queue);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

int auth_oauth2_submit(struct auth_oauth2 *o, auth_oauth2_job_cb fn, void *arg)
{
    int rc = 0;
    pthread_mutex_lock(&o->mu);
    if (o->stopping || o->n_queued == o->queue_cap || o->n_threads == 0) {
        rc = ERR_BUSY;
    } else {
        o->queue[(o->head + o->n_queued) % o->queue_cap] = (struct job){fn, arg};
        o->n_queued++;
        pthread_cond_signal(&o->cv);
    }
    pthread_mutex_unlock(&o->mu);
    return rc;
}
