/* collection.c - collections to and from PocketBase's JSON, with validation and the default
 * system collections. Backend-independent; the backend checks what needs the database
 * (unique names, relation targets). */
#include <math.h>
#include <regex.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "store/store_int.h"

#define COLLECTION_NAME_MAX 255
#define FIELD_NAME_MAX 100

json_t *store__verr(const char *code, const char *message, json_t *params)
{
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", message);
    if (params)
        json_object_set_new(e, "params", params);
    return e;
}

void store__verr_set(json_t *errors, const char *key, const char *code, const char *message)
{
    if (!json_object_get(errors, key))
        json_object_set_new(errors, key, store__verr(code, message, NULL));
}

void store__field_default_id(enum store_field_type t, const char *name, char *out, size_t len)
{
    uLong crc = crc32(0L, (const Bytef *)name, (uInt)strlen(name));
    snprintf(out, len, "%s%lu", store_field_type_name(t), (unsigned long)crc);
}

struct store_collection *store__collection_alloc(void)
{
    struct store_collection *c = xcalloc(1, sizeof(*c));
    c->refs = 1;
    return c;
}

static const char *const rule_keys[STORE_N_RULES] = {
    "listRule", "viewRule", "createRule", "updateRule", "deleteRule", "authRule", "manageRule",
};

/* Keys of auth options kept verbatim. */
static const char *const auth_option_keys[] = {
    "authAlert",
    "oauth2",
    "mfa",
    "otp",
    "passwordResetToken",
    "emailChangeToken",
    "verificationToken",
    "fileToken",
    "verificationTemplate",
    "resetPasswordTemplate",
    "confirmEmailChangeTemplate",
};

/* PocketBase's checks of the sign-in options: an enabled otp or mfa needs a duration of 10 to
 * 86400 s (when given), and MFA needs a second method besides the password (OTP or OAuth2),
 * else enabling it would lock every record out. */
static int check_auth_methods(const json_t *opts, json_t *errors)
{
    int rc = 0;
    static const char *const timed[] = {"otp", "mfa"};
    for (size_t i = 0; i < ARRAY_LEN(timed); i++) {
        const json_t *o = json_object_get(opts, timed[i]);
        const json_t *d = json_object_get(o, "duration");
        if (json_is_true(json_object_get(o, "enabled")) && d &&
            (!json_is_integer(d) || json_integer_value(d) < 10 || json_integer_value(d) > 86400)) {
            store__verr_set(errors, timed[i], "validation_invalid_duration",
                            "The duration must be a whole number of seconds from 10 to 86400.");
            rc = ERR_INVALID;
        }
    }
    const json_t *mfa = json_object_get(opts, "mfa");
    bool otp = json_is_true(json_object_get(json_object_get(opts, "otp"), "enabled"));
    bool oauth2 = json_is_true(json_object_get(json_object_get(opts, "oauth2"), "enabled"));
    if (json_is_true(json_object_get(mfa, "enabled")) && !otp && !oauth2) {
        store__verr_set(errors, "mfa", "validation_mfa_not_enough_auths",
                        "MFA requires at least 2 auth methods to be enabled.");
        rc = ERR_INVALID;
    }
    return rc;
}

static bool reserved_collection_name(const char *name)
{
    static const char *const names[] = {"_collections", "_outbox", "_params",
                                        "_migrations",  "_logs",   "_meta"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (strcasecmp(names[i], name) == 0)
            return true;
    return strncasecmp(name, "sqlite_", 7) == 0 || strstr(name, "_via_") != NULL;
}

static bool reserved_field_name(const char *name)
{
    static const char *const names[] = {"expand",          "collectionId", "collectionName",
                                        "passwordConfirm", "oldPassword",  "_rowid_",
                                        "rowid",           "oid"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (strcasecmp(names[i], name) == 0)
            return true;
    return strstr(name, "_via_") != NULL;
}

/* ---- to JSON ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *store__sorted_object(json_t *o)
{
    size_t n = json_object_size(o);
    const char **keys = xcalloc(n ? n : 1, sizeof(char *));
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) keys[i++] = key;
    qsort(keys, n, sizeof(char *), cmp_str);
    json_t *out = json_object();
    for (i = 0; i < n; i++)
        json_object_set(out, keys[i], json_object_get(o, keys[i]));
    free(keys);
    json_decref(o);
    return out;
}

static json_t *strv_json(char **v, size_t n, bool null_when_empty)
{
    if (n == 0 && null_when_empty)
        return json_null();
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *num_or_null(bool has, double v)
{
    if (!has)
        return json_null();
    if (v == floor(v) && fabs(v) < 9e15)
        return json_integer((json_int_t)v);
    return json_real(v);
}

json_t *store__field_to_json(const struct store_field *f)
{
    json_t *o = json_object();
    json_object_set_new(o, "hidden", json_boolean(f->hidden));
    json_object_set_new(o, "id", json_string(f->id));
    json_object_set_new(o, "name", json_string(f->name));
    json_object_set_new(o, "presentable", json_boolean(f->presentable));
    json_object_set_new(o, "system", json_boolean(f->system));
    json_object_set_new(o, "type", json_string(store_field_type_name(f->type)));
    if (f->type != STORE_FIELD_AUTODATE) {
        json_object_set_new(o, "help", json_string(f->help ? f->help : ""));
        json_object_set_new(o, "required", json_boolean(f->required));
    }
    switch (f->type) {
    case STORE_FIELD_TEXT:
    case STORE_FIELD_PASSWORD:
        json_object_set_new(o, "min", json_integer(f->has_min ? (json_int_t)f->min : 0));
        json_object_set_new(o, "max", json_integer(f->has_max ? (json_int_t)f->max : 0));
        json_object_set_new(o, "pattern", json_string(f->pattern ? f->pattern : ""));
        if (f->type == STORE_FIELD_TEXT) {
            json_object_set_new(
                o, "autogeneratePattern",
                json_string(f->autogenerate_pattern ? f->autogenerate_pattern : ""));
            json_object_set_new(o, "primaryKey", json_boolean(f->primary_key));
        } else {
            json_object_set_new(o, "cost", json_integer(f->cost));
        }
        break;
    case STORE_FIELD_NUMBER:
        json_object_set_new(o, "min", num_or_null(f->has_min, f->min));
        json_object_set_new(o, "max", num_or_null(f->has_max, f->max));
        json_object_set_new(o, "onlyInt", json_boolean(f->only_int));
        break;
    case STORE_FIELD_EMAIL:
    case STORE_FIELD_URL:
        json_object_set_new(o, "onlyDomains", strv_json(f->only_domains, f->n_only_domains, true));
        json_object_set_new(o, "exceptDomains",
                            strv_json(f->except_domains, f->n_except_domains, true));
        break;
    case STORE_FIELD_DATE:
        json_object_set_new(o, "min", json_string(f->date_min ? f->date_min : ""));
        json_object_set_new(o, "max", json_string(f->date_max ? f->date_max : ""));
        break;
    case STORE_FIELD_AUTODATE:
        json_object_set_new(o, "onCreate", json_boolean(f->on_create));
        json_object_set_new(o, "onUpdate", json_boolean(f->on_update));
        break;
    case STORE_FIELD_SELECT:
        json_object_set_new(o, "values", strv_json(f->values, f->n_values, false));
        json_object_set_new(o, "maxSelect", json_integer(f->max_select));
        break;
    case STORE_FIELD_JSON: json_object_set_new(o, "maxSize", json_integer(f->max_size)); break;
    case STORE_FIELD_EDITOR:
        json_object_set_new(o, "maxSize", json_integer(f->max_size));
        json_object_set_new(o, "convertURLs", json_boolean(f->convert_urls));
        break;
    case STORE_FIELD_RELATION:
        json_object_set_new(o, "collectionId", json_string(f->collection_id));
        json_object_set_new(o, "cascadeDelete", json_boolean(f->cascade_delete));
        json_object_set_new(o, "minSelect", json_integer(f->min_select));
        json_object_set_new(o, "maxSelect", json_integer(f->max_select));
        break;
    case STORE_FIELD_FILE:
        json_object_set_new(o, "maxSelect", json_integer(f->max_select));
        json_object_set_new(o, "maxSize", json_integer(f->max_size));
        json_object_set_new(o, "mimeTypes", strv_json(f->mime_types, f->n_mime_types, false));
        json_object_set_new(o, "thumbs", strv_json(f->thumbs, f->n_thumbs, false));
        json_object_set_new(o, "protected", json_boolean(f->protected_files));
        break;
    case STORE_FIELD_BOOL:
    case STORE_FIELD_GEO_POINT: break;
    }
    return store__sorted_object(o);
}

static json_t *rule_json(const char *r)
{
    return r ? json_string(r) : json_null();
}

json_t *store_collection_to_json(const struct store_collection *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(c->id));
    for (int i = 0; i <= STORE_RULE_DELETE; i++)
        json_object_set_new(o, rule_keys[i], rule_json(c->rules[i]));
    json_object_set_new(o, "name", json_string(c->name));
    json_object_set_new(o, "type", json_string(store_collection_type_name(c->type)));
    if (c->type == STORE_COLLECTION_VIEW)
        json_object_set_new(o, "viewQuery", json_string(c->view_query ? c->view_query : ""));
    json_t *fields = json_array();
    for (size_t i = 0; i < c->n_fields; i++)
        json_array_append_new(fields, store__field_to_json(&c->fields[i]));
    json_object_set_new(o, "fields", fields);
    json_object_set_new(o, "indexes", strv_json(c->indexes, c->n_indexes, false));
    json_object_set_new(o, "created", json_string(c->created ? c->created : ""));
    json_object_set_new(o, "updated", json_string(c->updated ? c->updated : ""));
    json_object_set_new(o, "system", json_boolean(c->system));
    if (c->type == STORE_COLLECTION_AUTH) {
        json_object_set_new(o, "authRule", rule_json(c->rules[STORE_RULE_AUTH]));
        json_object_set_new(o, "manageRule", rule_json(c->rules[STORE_RULE_MANAGE]));
        json_object_set_new(o, "passwordAuth",
                            json_pack("{s:b, s:o}", "enabled", 1, "identityFields",
                                      strv_json(c->identity_fields, c->n_identity_fields, false)));
        json_object_set_new(o, "authToken",
                            json_pack("{s:I}", "duration", (json_int_t)c->auth_token_duration_s));
        for (size_t i = 0; i < ARRAY_LEN(auth_option_keys); i++) {
            json_t *v =
                c->auth_options ? json_object_get(c->auth_options, auth_option_keys[i]) : NULL;
            if (v)
                json_object_set(o, auth_option_keys[i], v);
        }
    }
    return o;
}

/* ---- from JSON ---- */

struct parse {
    const struct store_collection *base;
    bool trusted; /* loading our own JSON: keep system flags, ids and dates as they are */
    json_t *errors;
    bool auth;
    bool view;
};

static void ferr(json_t *ferrs, const char *key, const char *code, const char *msg)
{
    store__verr_set(ferrs, key, code, msg);
}

static bool get_bool(const json_t *o, const char *key, bool dflt)
{
    json_t *v = json_object_get(o, key);
    return v ? json_is_true(v) : dflt;
}

static int get_strv(const json_t *o, const char *key, char ***out, size_t *n_out, json_t *ferrs)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    *n_out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v)) {
        ferr(ferrs, key, "validation_invalid_value", "Must be a list of strings.");
        return ERR_INVALID;
    }
    size_t n = json_array_size(v);
    char **arr = xcalloc(n ? n : 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) {
            ferr(ferrs, key, "validation_invalid_value", "Must be a list of strings.");
            for (size_t j = 0; j < k; j++)
                free(arr[j]);
            free(arr);
            return ERR_INVALID;
        }
        arr[k++] = xstrdup(json_string_value(s));
    }
    *out = arr;
    *n_out = k;
    return 0;
}

static int get_int(const json_t *o, const char *key, int64_t dflt, int64_t lo, int64_t hi,
                   int64_t *out, json_t *ferrs)
{
    json_t *v = json_object_get(o, key);
    *out = dflt;
    if (!v || json_is_null(v))
        return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || d != floor(d) || d < (double)lo || d > (double)hi) {
        ferr(ferrs, key, "validation_invalid_value", "Must be a valid non-negative integer.");
        return ERR_INVALID;
    }
    *out = (int64_t)d;
    return 0;
}

static char *get_str(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return NULL;
    return xstrdup(json_string_value(v));
}

static bool pattern_ok(const char *p)
{
    regex_t re;
    if (regcomp(&re, p, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    regfree(&re);
    return true;
}

/* Parses the options of one field; f->type, f->name and f->id are set. */
static void field_options(const json_t *jf, struct store_field *f, json_t *ferrs)
{
    int64_t iv;
    f->hidden = get_bool(jf, "hidden", false);
    f->presentable = get_bool(jf, "presentable", false);
    f->required = get_bool(jf, "required", false);
    f->help = get_str(jf, "help");
    switch (f->type) {
    case STORE_FIELD_TEXT:
    case STORE_FIELD_PASSWORD:
        if (get_int(jf, "min", 0, 0, INT32_MAX, &iv, ferrs) == 0 && iv > 0) {
            f->has_min = true;
            f->min = (double)iv;
        }
        if (get_int(jf, "max", 0, 0, INT32_MAX, &iv, ferrs) == 0 && iv > 0) {
            f->has_max = true;
            f->max = (double)iv;
        }
        if (f->has_min && f->has_max && f->min > f->max)
            ferr(ferrs, "max", "validation_min_greater_equal_than_required",
                 "Must be no less than the min value.");
        f->pattern = get_str(jf, "pattern");
        if (f->pattern && !pattern_ok(f->pattern))
            ferr(ferrs, "pattern", "validation_invalid_regex", "Invalid regular expression.");
        if (f->type == STORE_FIELD_TEXT) {
            f->autogenerate_pattern = get_str(jf, "autogeneratePattern");
            f->primary_key = strcmp(f->name, "id") == 0;
        } else {
            if (get_int(jf, "cost", 0, 0, 31, &iv, ferrs) == 0)
                f->cost = (int)iv;
        }
        break;
    case STORE_FIELD_NUMBER: {
        json_t *v = json_object_get(jf, "min");
        if (json_is_number(v)) {
            f->has_min = true;
            f->min = json_number_value(v);
        } else if (v && !json_is_null(v)) {
            ferr(ferrs, "min", "validation_invalid_value", "Must be a number.");
        }
        v = json_object_get(jf, "max");
        if (json_is_number(v)) {
            f->has_max = true;
            f->max = json_number_value(v);
        } else if (v && !json_is_null(v)) {
            ferr(ferrs, "max", "validation_invalid_value", "Must be a number.");
        }
        if (f->has_min && f->has_max && f->min > f->max)
            ferr(ferrs, "max", "validation_min_greater_equal_than_required",
                 "Must be no less than the min value.");
        f->only_int = get_bool(jf, "onlyInt", false);
        break;
    }
    case STORE_FIELD_EMAIL:
    case STORE_FIELD_URL:
        (void)get_strv(jf, "onlyDomains", &f->only_domains, &f->n_only_domains, ferrs);
        (void)get_strv(jf, "exceptDomains", &f->except_domains, &f->n_except_domains, ferrs);
        if (f->n_only_domains && f->n_except_domains)
            ferr(ferrs, "onlyDomains", "validation_conflict",
                 "onlyDomains and exceptDomains cannot be set at the same time.");
        break;
    case STORE_FIELD_DATE: {
        const char *keys[2] = {"min", "max"};
        char **dst[2] = {&f->date_min, &f->date_max};
        for (int i = 0; i < 2; i++) {
            char *s = get_str(jf, keys[i]);
            int64_t us;
            if (s && time_parse(s, strlen(s), &us) != 0) {
                ferr(ferrs, keys[i], "validation_invalid_date", "Must be a valid date.");
                free(s);
                continue;
            }
            if (s) {
                char buf[TIME_PB_LEN];
                time_format_pb(us, buf);
                free(s);
                s = xstrdup(buf);
            }
            *dst[i] = s;
        }
        break;
    }
    case STORE_FIELD_AUTODATE:
        f->required = false;
        f->on_create = get_bool(jf, "onCreate", false);
        f->on_update = get_bool(jf, "onUpdate", false);
        if (!f->on_create && !f->on_update)
            ferr(ferrs, "onCreate", "validation_required",
                 "At least one of onCreate and onUpdate must be set.");
        break;
    case STORE_FIELD_SELECT:
        if (get_strv(jf, "values", &f->values, &f->n_values, ferrs) == 0 && f->n_values == 0)
            ferr(ferrs, "values", "validation_required", "Cannot be blank.");
        for (size_t i = 0; i < f->n_values; i++)
            for (size_t j = 0; j < i; j++)
                if (strcmp(f->values[i], f->values[j]) == 0)
                    ferr(ferrs, "values", "validation_duplicated_values",
                         "The values must be unique.");
        if (get_int(jf, "maxSelect", 1, 0, INT32_MAX, &iv, ferrs) == 0) {
            f->max_select = iv < 1 ? 1 : (int)iv;
            if (f->n_values && (size_t)f->max_select > f->n_values)
                ferr(ferrs, "maxSelect", "validation_max_less_equal_than_required",
                     "Must be no greater than the number of values.");
        }
        break;
    case STORE_FIELD_JSON:
        if (get_int(jf, "maxSize", 0, 0, INT32_MAX, &iv, ferrs) == 0)
            f->max_size = iv;
        break;
    case STORE_FIELD_EDITOR:
        if (get_int(jf, "maxSize", 0, 0, (INT64_C(1) << 53) - 1, &iv, ferrs) == 0)
            f->max_size = iv;
        f->convert_urls = get_bool(jf, "convertURLs", false);
        break;
    case STORE_FIELD_RELATION:
        f->collection_id = get_str(jf, "collectionId");
        if (!f->collection_id)
            ferr(ferrs, "collectionId", "validation_required", "Cannot be blank.");
        f->cascade_delete = get_bool(jf, "cascadeDelete", false);
        if (get_int(jf, "maxSelect", 1, 0, INT32_MAX, &iv, ferrs) == 0)
            f->max_select = iv < 1 ? 1 : (int)iv;
        if (get_int(jf, "minSelect", 0, 0, INT32_MAX, &iv, ferrs) == 0)
            f->min_select = (int)iv;
        if (f->min_select > f->max_select)
            ferr(ferrs, "maxSelect", "validation_min_greater_equal_than_required",
                 "Must be no less than minSelect.");
        break;
    case STORE_FIELD_FILE:
        if (get_int(jf, "maxSelect", 1, 0, INT32_MAX, &iv, ferrs) == 0)
            f->max_select = iv < 1 ? 1 : (int)iv;
        if (get_int(jf, "maxSize", 0, 0, (INT64_C(1) << 53) - 1, &iv, ferrs) == 0)
            f->max_size = iv;
        (void)get_strv(jf, "mimeTypes", &f->mime_types, &f->n_mime_types, ferrs);
        if (get_strv(jf, "thumbs", &f->thumbs, &f->n_thumbs, ferrs) == 0)
            for (size_t i = 0; i < f->n_thumbs; i++)
                if (!store_thumb_parse(f->thumbs[i], NULL, NULL, NULL))
                    ferr(ferrs, "thumbs", "validation_invalid_thumb_format",
                         "Thumbs must be WxH, WxHt, WxHb, WxHf, 0xH or Wx0.");
        f->protected_files = get_bool(jf, "protected", false);
        break;
    case STORE_FIELD_BOOL:
    case STORE_FIELD_GEO_POINT: break;
    }
}

static struct store_field *find_field(struct store_field *fs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (fs[i].name && strcasecmp(fs[i].name, name) == 0)
            return &fs[i];
    return NULL;
}

/* The default JSON of a system field an auth or base collection must have. */
static json_t *system_field_json(const char *name)
{
    if (strcmp(name, "id") == 0)
        return json_pack("{s:s,s:s,s:s,s:i,s:i,s:s,s:b,s:b,s:b,s:s}", "id", "text3208210256",
                         "name", "id", "type", "text", "min", 15, "max", 15, "pattern",
                         "^[a-z0-9]+$", "required", 1, "system", 1, "primaryKey", 1,
                         "autogeneratePattern", "[a-z0-9]{15}");
    if (strcmp(name, "password") == 0)
        return json_pack("{s:s,s:s,s:s,s:i,s:b,s:b,s:b}", "id", "password901924565", "name",
                         "password", "type", "password", "min", 8, "required", 1, "system", 1,
                         "hidden", 1);
    if (strcmp(name, "tokenKey") == 0)
        return json_pack("{s:s,s:s,s:s,s:i,s:i,s:b,s:b,s:b,s:s}", "id", "text2504183744", "name",
                         "tokenKey", "type", "text", "min", 30, "max", 60, "required", 1, "system",
                         1, "hidden", 1, "autogeneratePattern", "[a-zA-Z0-9]{50}");
    if (strcmp(name, "email") == 0)
        return json_pack("{s:s,s:s,s:s,s:b,s:b}", "id", "email3885137012", "name", "email", "type",
                         "email", "required", 1, "system", 1);
    if (strcmp(name, "emailVisibility") == 0)
        return json_pack("{s:s,s:s,s:s,s:b}", "id", "bool1547992806", "name", "emailVisibility",
                         "type", "bool", "system", 1);
    if (strcmp(name, "verified") == 0)
        return json_pack("{s:s,s:s,s:s,s:b}", "id", "bool256245529", "name", "verified", "type",
                         "bool", "system", 1);
    return NULL;
}

static int parse_field(struct parse *ps, const json_t *jf, struct store_field *fs, size_t n_done,
                       struct store_field *f, json_t *ferrs)
{
    if (!json_is_object(jf)) {
        ferr(ferrs, "name", "validation_invalid_value", "Must be an object.");
        return ERR_INVALID;
    }
    const char *name = json_string_value(json_object_get(jf, "name"));
    const char *tname = json_string_value(json_object_get(jf, "type"));
    const char *id = json_string_value(json_object_get(jf, "id"));
    if (!name || !*name) {
        ferr(ferrs, "name", "validation_required", "Cannot be blank.");
        return ERR_INVALID;
    }
    if (!store_name_valid(name, FIELD_NAME_MAX)) {
        ferr(ferrs, "name", "validation_invalid_name", "Invalid field name.");
        return ERR_INVALID;
    }
    if (reserved_field_name(name)) {
        ferr(ferrs, "name", "validation_reserved_field_name", "The name is reserved.");
        return ERR_INVALID;
    }
    if (find_field(fs, n_done, name)) {
        ferr(ferrs, "name", "validation_duplicated_field_name",
             "Duplicated or invalid field name.");
        return ERR_INVALID;
    }
    int t = tname ? store_field_type_parse(tname) : -1;
    if (t < 0) {
        ferr(ferrs, "type", "validation_invalid_value", "Unsupported field type.");
        return ERR_INVALID;
    }
    const struct store_field *old = NULL;
    if (ps->base && id && *id)
        old = store_collection_field_by_id(ps->base, id);
    if (ps->base && !old && (!id || !*id)) {
        const struct store_field *byname = store_collection_field(ps->base, name);
        if (byname && byname->type == (enum store_field_type)t)
            old = byname;
    }
    f->type = (enum store_field_type)t;
    f->name = xstrdup(name);
    if (old) {
        f->id = xstrdup(old->id);
        if (old->type != f->type && !ps->trusted) {
            ferr(ferrs, "type", "validation_field_type_change",
                 "The field type cannot be changed.");
            return ERR_INVALID;
        }
    } else if (id && *id) {
        if (!store_name_valid(id, FIELD_NAME_MAX)) {
            ferr(ferrs, "id", "validation_invalid_value", "Invalid field id.");
            return ERR_INVALID;
        }
        f->id = xstrdup(id);
    } else {
        char buf[64];
        store__field_default_id(f->type, name, buf, sizeof(buf));
        f->id = xstrdup(buf);
    }
    for (size_t i = 0; i < n_done; i++)
        if (strcmp(fs[i].id, f->id) == 0) {
            if (id && *id) {
                ferr(ferrs, "id", "validation_duplicated_field_id", "Duplicated field id.");
                return ERR_INVALID;
            }
            size_t l = strlen(f->id);
            f->id = xrealloc(f->id, l + 3);
            memcpy(f->id + l, "_2", 3);
            i = (size_t)-1; /* check again */
        }
    if (ps->trusted)
        f->system = get_bool(jf, "system", false);
    else
        f->system = old ? old->system : false;
    if (old && old->system && strcmp(old->name, name) != 0 && !ps->trusted) {
        ferr(ferrs, "name", "validation_system_field_change", "System fields cannot be renamed.");
        return ERR_INVALID;
    }
    if (old && old->type == STORE_FIELD_RELATION && f->type == STORE_FIELD_RELATION) {
        const char *cid = json_string_value(json_object_get(jf, "collectionId"));
        if (cid && strcmp(cid, old->collection_id) != 0 && !ps->trusted) {
            ferr(ferrs, "collectionId", "validation_field_relation_change",
                 "The relation collection cannot be changed.");
            return ERR_INVALID;
        }
    }
    size_t before = json_object_size(ferrs);
    field_options(jf, f, ferrs);
    return json_object_size(ferrs) > before ? ERR_INVALID : 0;
}

static int parse_fields(struct parse *ps, const json_t *jfields, struct store_collection *c)
{
    json_t *fields_errs = json_object();
    json_t *list = json_array();
    int rc = 0;
    if (jfields && !json_is_array(jfields)) {
        store__verr_set(ps->errors, "fields", "validation_invalid_value", "Must be a list.");
        rc = ERR_INVALID;
        goto out;
    }
    /* Required system fields first when missing (never for our own stored JSON). */
    size_t n_in = jfields ? json_array_size(jfields) : 0;
    if (n_in > STORE__MAX_FIELDS) {
        store__verr_set(ps->errors, "fields", "validation_length_too_long", "Too many fields.");
        rc = ERR_INVALID;
        goto out;
    }
    static const char *const auth_sys[] = {"password", "tokenKey", "email", "emailVisibility",
                                           "verified"};
    bool has_id = false;
    for (size_t i = 0; i < n_in; i++) {
        const char *nm = json_string_value(json_object_get(json_array_get(jfields, i), "name"));
        if (nm && strcmp(nm, "id") == 0)
            has_id = true;
    }
    if (!has_id)
        json_array_append_new(list, system_field_json("id"));
    for (size_t i = 0; i < n_in; i++) {
        json_t *jf = json_array_get(jfields, i);
        const char *nm = json_string_value(json_object_get(jf, "name"));
        if (!ps->trusted && nm && strcmp(nm, "id") == 0) {
            /* the id field keeps its system shape; the client may tune pattern/min/max */
            json_t *d = system_field_json("id");
            const char *keep[] = {"pattern", "min",         "max", "autogeneratePattern",
                                  "hidden",  "presentable", "help"};
            for (size_t k = 0; k < ARRAY_LEN(keep); k++) {
                json_t *v = json_object_get(jf, keep[k]);
                if (v)
                    json_object_set(d, keep[k], v);
            }
            json_array_append_new(list, d);
        } else {
            json_array_append(list, jf);
        }
    }
    if (ps->auth && !ps->trusted) {
        for (size_t k = 0; k < ARRAY_LEN(auth_sys); k++) {
            bool found = false;
            for (size_t i = 0; i < json_array_size(list); i++) {
                const char *nm =
                    json_string_value(json_object_get(json_array_get(list, i), "name"));
                if (nm && strcmp(nm, auth_sys[k]) == 0)
                    found = true;
            }
            if (!found)
                json_array_append_new(list, system_field_json(auth_sys[k]));
        }
    }
    size_t n = json_array_size(list);
    c->fields = xcalloc(n, sizeof(struct store_field));
    for (size_t i = 0; i < n; i++) {
        json_t *ferrs = json_object();
        struct store_field *f = &c->fields[c->n_fields];
        int frc = parse_field(ps, json_array_get(list, i), c->fields, c->n_fields, f, ferrs);
        if (frc == 0 && !ps->trusted && ps->auth) {
            /* auth system fields keep their type */
            json_t *d = system_field_json(f->name);
            if (d && strcmp(f->name, "id") != 0) {
                if (store_field_type_parse(json_string_value(json_object_get(d, "type"))) !=
                    (int)f->type) {
                    ferr(ferrs, "type", "validation_invalid_value",
                         "The system field type cannot be changed.");
                    frc = ERR_INVALID;
                }
                f->system = true;
                if (strcmp(f->name, "password") == 0 || strcmp(f->name, "tokenKey") == 0)
                    f->hidden = true;
            }
            json_decref(d);
        }
        if (frc == 0 && strcmp(f->name, "id") == 0)
            f->system = f->required = f->primary_key = true;
        if (frc == 0) {
            c->n_fields++;
        } else {
            store_field_release(f);
            /* index the error by the client's position (the id field may have been added) */
            char key[32];
            size_t pos = has_id || ps->trusted ? i : (i > 0 ? i - 1 : 0);
            snprintf(key, sizeof(key), "%zu", pos);
            json_object_set(fields_errs, key, ferrs);
            rc = ERR_INVALID;
        }
        json_decref(ferrs);
    }
    /* the store writes one password hash per record (store_record_create's password_hash) */
    size_t n_pw = 0;
    for (size_t i = 0; i < c->n_fields; i++)
        n_pw += c->fields[i].type == STORE_FIELD_PASSWORD;
    if (n_pw > 1 && !ps->view) {
        store__verr_set(ps->errors, "fields", "validation_invalid_value",
                        "A collection can have at most one password field.");
        rc = ERR_INVALID;
    }
    /* system fields of the base must survive */
    if (ps->base && !ps->trusted) {
        for (size_t i = 0; i < ps->base->n_fields; i++) {
            const struct store_field *bf = &ps->base->fields[i];
            if (bf->system && !store_collection_field_by_id(c, bf->id) && rc == 0) {
                store__verr_set(ps->errors, "fields", "validation_system_field_removed",
                                "System fields cannot be removed.");
                rc = ERR_INVALID;
            }
        }
    }
    if (json_object_size(fields_errs))
        json_object_set(ps->errors, "fields", fields_errs);
out:
    json_decref(fields_errs);
    json_decref(list);
    return rc;
}

static int parse_rule(const json_t *in, const char *key, bool present_default_null,
                      const char *dflt, char **out, json_t *errors)
{
    json_t *v = json_object_get(in, key);
    *out = NULL;
    if (!v) {
        if (!present_default_null && dflt)
            *out = xstrdup(dflt);
        return 0;
    }
    if (json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        store__verr_set(errors, key, "validation_invalid_value", "Must be a string or null.");
        return ERR_INVALID;
    }
    if (json_string_length(v) > 10000) {
        store__verr_set(errors, key, "validation_length_too_long", "The rule is too long.");
        return ERR_INVALID;
    }
    *out = xstrdup(json_string_value(v));
    return 0;
}

/* Rewrites the index list so it names the new table and the new field names; indexes over
 * removed fields are dropped. */
static int parse_indexes(struct parse *ps, const json_t *jix, struct store_collection *c)
{
    int rc = 0;
    json_t *ierrs = json_object();
    size_t n = json_is_array(jix) ? json_array_size(jix) : 0;
    if (jix && !json_is_array(jix) && !json_is_null(jix)) {
        store__verr_set(ps->errors, "indexes", "validation_invalid_value", "Must be a list.");
        rc = ERR_INVALID;
        goto out;
    }
    c->indexes = xcalloc(n + 2, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *sql = json_string_value(json_array_get(jix, i));
        struct store__index ix;
        char key[32];
        snprintf(key, sizeof(key), "%zu", i);
        if (!sql || store__index_parse(sql, &ix) != 0) {
            json_object_set_new(ierrs, key,
                                store__verr("validation_invalid_index_expression",
                                            "Invalid CREATE INDEX expression.", NULL));
            rc = ERR_INVALID;
            continue;
        }
        bool drop = false, bad = false;
        for (size_t k = 0; k < ix.n_cols + ix.n_where; k++) {
            char **slot;
            if (k < ix.n_cols) {
                slot = &ix.cols[k];
            } else {
                if (ix.where[k - ix.n_cols][0] != '\x01')
                    continue;
                slot = &ix.where[k - ix.n_cols];
            }
            const char *col = k < ix.n_cols ? *slot : *slot + 1;
            if (store_collection_field(c, col))
                continue;
            const struct store_field *bf = ps->base ? store_collection_field(ps->base, col) : NULL;
            const struct store_field *nf = bf ? store_collection_field_by_id(c, bf->id) : NULL;
            if (nf) {
                char *nn =
                    k < ix.n_cols ? xstrdup(nf->name) : (char *)xmalloc(strlen(nf->name) + 2);
                if (k >= ix.n_cols) {
                    nn[0] = '\x01';
                    strcpy(nn + 1, nf->name);
                }
                free(*slot);
                *slot = nn;
            } else if (bf) {
                drop = true;
            } else {
                bad = true;
            }
        }
        if (bad) {
            json_object_set_new(ierrs, key,
                                store__verr("validation_invalid_index_expression",
                                            "The index refers to a field that does not exist.",
                                            NULL));
            rc = ERR_INVALID;
        } else if (!drop) {
            free(ix.table);
            ix.table = xstrdup(c->name);
            for (size_t j = 0; j < c->n_indexes; j++) {
                struct store__index other;
                if (store__index_parse(c->indexes[j], &other) == 0) {
                    if (strcasecmp(other.name, ix.name) == 0)
                        bad = true;
                    store__index_release(&other);
                }
            }
            if (bad) {
                json_object_set_new(ierrs, key,
                                    store__verr("validation_duplicated_index_name",
                                                "The index name must be unique.", NULL));
                rc = ERR_INVALID;
            } else {
                c->indexes[c->n_indexes++] = store__index_render(&ix);
            }
        }
        store__index_release(&ix);
    }
out:
    if (json_object_size(ierrs))
        json_object_set(ps->errors, "indexes", ierrs);
    json_decref(ierrs);
    return rc;
}

/* Whether ix is the kind of index auth collections need on col: unique, on col alone, and
 * for the email compared without case (Victim@Corp.com and victim@corp.com are one address:
 * both must never register, or one would sign in to the other's record). */
static bool auth_index_ok(const struct store__index *ix, const char *col)
{
    if (!ix->unique || ix->n_cols != 1 || strcmp(ix->cols[0], col) != 0)
        return false;
    return strcmp(col, "email") != 0 || strstr(ix->col_suffix[0], "COLLATE NOCASE") != NULL;
}

/* The unique indexes of an auth collection: tokenKey, and email without case (PocketBase's
 * COLLATE NOCASE for identity fields). A system email index of the old case-sensitive form
 * (databases made before, or a PocketBase export) is replaced in place; the database index
 * follows at start (sq__auth_indexes_upgrade) or with the next collection change. */
static void add_auth_indexes(struct store_collection *c)
{
    const char *cols[2] = {"tokenKey", "email"};
    for (int k = 0; k < 2; k++) {
        char name[300];
        snprintf(name, sizeof(name), "idx_%s_%s", cols[k], c->id);
        bool found = false;
        size_t slot = c->n_indexes; /* where the system index goes: its old place, or a new one */
        for (size_t i = 0; i < c->n_indexes; i++) {
            struct store__index ix;
            if (store__index_parse(c->indexes[i], &ix) != 0)
                continue;
            if (auth_index_ok(&ix, cols[k]))
                found = true;
            else if (strcasecmp(ix.name, name) == 0)
                slot = i;
            store__index_release(&ix);
        }
        if (found)
            continue;
        struct buf b;
        buf_init(&b);
        buf_printf(&b, "CREATE UNIQUE INDEX `%s` ON `%s` (`%s`%s)%s", name, c->name, cols[k],
                   k == 1 ? " COLLATE NOCASE" : "", k == 1 ? " WHERE `email` != ''" : "");
        if (slot < c->n_indexes) {
            free(c->indexes[slot]);
        } else {
            c->indexes = xrealloc(c->indexes, (c->n_indexes + 1) * sizeof(char *));
            c->n_indexes++;
        }
        c->indexes[slot] = buf_detach(&b, NULL);
    }
}

char *store__view_query_trim(const char *q)
{
    size_t n = strlen(q);
    while (n && (q[n - 1] == ';' || q[n - 1] == ' ' || q[n - 1] == '\t' || q[n - 1] == '\n' ||
                 q[n - 1] == '\r'))
        n--;
    while (n && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) {
        q++;
        n--;
    }
    char *out = xmalloc(n + 1);
    memcpy(out, q, n);
    out[n] = '\0';
    return out;
}

/* The viewQuery of a view collection: from in, else the base's. */
static int view_query(struct parse *ps, const json_t *in, struct store_collection *c)
{
    json_t *v = json_object_get(in, "viewQuery");
    const char *q = json_is_string(v) ? json_string_value(v) : NULL;
    if (!v && ps->base)
        q = ps->base->view_query;
    if (v && !json_is_string(v)) {
        store__verr_set(ps->errors, "viewQuery", "validation_invalid_value", "Must be a string.");
        return ERR_INVALID;
    }
    if (q && strlen(q) > STORE__VIEW_QUERY_MAX) {
        store__verr_set(ps->errors, "viewQuery", "validation_length_too_long",
                        "The query is too long.");
        return ERR_INVALID;
    }
    c->view_query = q ? store__view_query_trim(q) : NULL;
    if (!c->view_query || !*c->view_query) {
        store__verr_set(ps->errors, "viewQuery", "validation_required", "Cannot be blank.");
        return ERR_INVALID;
    }
    return 0;
}

static int parse_collection(struct parse *ps, const json_t *in, const char *now,
                            struct store_collection **out)
{
    struct store_collection *c = store__collection_alloc();
    const struct store_collection *base = ps->base;
    int rc = 0;
    *out = NULL;
    if (!json_is_object(in)) {
        store__verr_set(ps->errors, "name", "validation_required", "Cannot be blank.");
        rc = ERR_INVALID;
        goto fail;
    }
    /* type */
    const char *type = json_string_value(json_object_get(in, "type"));
    int tp = type ? store_collection_type_parse(type) : STORE_COLLECTION_BASE;
    if (base) {
        c->type = base->type;
        if (type && strcmp(type, store_collection_type_name(base->type)) != 0) {
            store__verr_set(ps->errors, "type", "validation_collection_type_change",
                            "Collection type cannot be changed.");
            rc = ERR_INVALID;
        }
    } else if (tp >= 0) {
        c->type = (enum store_collection_type)tp;
    } else {
        store__verr_set(ps->errors, "type", "validation_invalid_value",
                        "Unsupported collection type.");
        rc = ERR_INVALID;
    }
    ps->auth = c->type == STORE_COLLECTION_AUTH;
    ps->view = c->type == STORE_COLLECTION_VIEW;
    /* name */
    json_t *jname = json_object_get(in, "name");
    const char *name = jname ? json_string_value(jname) : (base ? base->name : NULL);
    if (!name || !*name) {
        store__verr_set(ps->errors, "name", "validation_required", "Cannot be blank.");
        rc = ERR_INVALID;
    } else if (!store_name_valid(name, COLLECTION_NAME_MAX)) {
        store__verr_set(ps->errors, "name", "validation_invalid_name", "Invalid collection name.");
        rc = ERR_INVALID;
    } else if (!ps->trusted && reserved_collection_name(name)) {
        store__verr_set(ps->errors, "name", "validation_reserved_name",
                        "The name is reserved for internal use.");
        rc = ERR_INVALID;
    } else if (base && base->system && strcmp(base->name, name) != 0 && !ps->trusted) {
        store__verr_set(ps->errors, "name", "validation_collection_system_name_change",
                        "System collection name cannot be changed.");
        rc = ERR_INVALID;
    } else if (!base && !ps->trusted && name[0] == '_') {
        store__verr_set(ps->errors, "name", "validation_reserved_name",
                        "Names starting with _ are reserved for system collections.");
        rc = ERR_INVALID;
    }
    if (rc)
        goto fail;
    c->name = xstrdup(name);
    /* id */
    const char *id = json_string_value(json_object_get(in, "id"));
    if (base) {
        c->id = xstrdup(base->id);
    } else if (id && *id) {
        if (!store_name_valid(id, 100)) {
            store__verr_set(ps->errors, "id", "validation_invalid_value", "Invalid id.");
            rc = ERR_INVALID;
            goto fail;
        }
        c->id = xstrdup(id);
    } else {
        char buf[64];
        const char *t = store_collection_type_name(c->type);
        uLong crc = crc32(0L, (const Bytef *)t, (uInt)strlen(t));
        crc = crc32(crc, (const Bytef *)name, (uInt)strlen(name));
        snprintf(buf, sizeof(buf), "pbc_%lu", (unsigned long)crc);
        c->id = xstrdup(buf);
    }
    c->system = ps->trusted ? get_bool(in, "system", false) : (base ? base->system : false);
    /* rules */
    for (int i = 0; i < STORE_N_RULES; i++) {
        if (i >= STORE_RULE_AUTH && !ps->auth)
            continue;
        json_t *v = json_object_get(in, rule_keys[i]);
        if (!v && base) {
            c->rules[i] = base->rules[i] ? xstrdup(base->rules[i]) : NULL;
            continue;
        }
        const char *dflt = i == STORE_RULE_AUTH ? "" : NULL;
        if (parse_rule(in, rule_keys[i], false, dflt, &c->rules[i], ps->errors) != 0)
            rc = ERR_INVALID;
        if (ps->view && i >= STORE_RULE_CREATE && c->rules[i]) {
            /* a view is read-only: only its list and view rules mean something */
            store__verr_set(ps->errors, rule_keys[i], "validation_nil",
                            "View collections have no create, update or delete rules.");
            rc = ERR_INVALID;
        }
    }
    if (ps->view && view_query(ps, in, c) != 0)
        rc = ERR_INVALID;
    if (ps->auth && c->rules[STORE_RULE_MANAGE] && !*c->rules[STORE_RULE_MANAGE]) {
        free(c->rules[STORE_RULE_MANAGE]);
        c->rules[STORE_RULE_MANAGE] = NULL;
    }
    /* fields */
    json_t *jfields = json_object_get(in, "fields");
    if (ps->view) {
        /* the backend inferred them from viewQuery (store__view_spec): taken as they are */
        const struct store_collection *b = ps->base;
        bool tr = ps->trusted;
        ps->base = NULL;
        ps->trusted = true;
        if (parse_fields(ps, jfields, c) != 0)
            rc = ERR_INVALID;
        ps->base = b;
        ps->trusted = tr;
    } else if (jfields || !base) {
        if (parse_fields(ps, jfields, c) != 0)
            rc = ERR_INVALID;
    } else {
        json_t *tmp = json_array();
        for (size_t i = 0; i < base->n_fields; i++)
            json_array_append_new(tmp, store__field_to_json(&base->fields[i]));
        bool tr = ps->trusted;
        ps->trusted = true;
        if (parse_fields(ps, tmp, c) != 0)
            rc = ERR_INVALID;
        ps->trusted = tr;
        json_decref(tmp);
    }
    if (rc)
        goto fail;
    /* indexes */
    json_t *jix = json_object_get(in, "indexes");
    if (ps->view) {
        if (json_array_size(jix)) {
            store__verr_set(ps->errors, "indexes", "validation_invalid_value",
                            "View collections cannot have indexes.");
            rc = ERR_INVALID;
        }
        c->indexes = xcalloc(1, sizeof(char *));
    } else if (!jix && base) {
        json_t *tmp = strv_json(base->indexes, base->n_indexes, false);
        rc = parse_indexes(ps, tmp, c);
        json_decref(tmp);
    } else {
        rc = parse_indexes(ps, jix, c);
    }
    if (rc)
        goto fail;
    /* also when loading our own JSON: a definition stored by an older version gets the
     * case-insensitive email index (the database follows, sq__auth_indexes_upgrade) */
    if (ps->auth)
        add_auth_indexes(c);
    /* auth options */
    if (ps->auth) {
        json_t *pa = json_object_get(in, "passwordAuth");
        json_t *idf = pa ? json_object_get(pa, "identityFields") : NULL;
        if (idf) {
            json_t *e = json_object();
            if (get_strv(pa, "identityFields", &c->identity_fields, &c->n_identity_fields, e))
                rc = ERR_INVALID;
            json_decref(e);
        } else if (base && base->n_identity_fields) {
            c->identity_fields = xcalloc(base->n_identity_fields, sizeof(char *));
            for (size_t i = 0; i < base->n_identity_fields; i++)
                c->identity_fields[i] = xstrdup(base->identity_fields[i]);
            c->n_identity_fields = base->n_identity_fields;
        }
        if (c->n_identity_fields == 0) {
            c->identity_fields = xcalloc(1, sizeof(char *));
            c->identity_fields[0] = xstrdup("email");
            c->n_identity_fields = 1;
        }
        for (size_t i = 0; i < c->n_identity_fields; i++)
            if (!store_collection_field(c, c->identity_fields[i])) {
                store__verr_set(ps->errors, "passwordAuth", "validation_invalid_value",
                                "Identity fields must be fields of the collection.");
                rc = ERR_INVALID;
            }
        json_t *at = json_object_get(in, "authToken");
        json_t *dur = at ? json_object_get(at, "duration") : NULL;
        if (json_is_integer(dur) && json_integer_value(dur) >= 10)
            c->auth_token_duration_s = json_integer_value(dur);
        else
            c->auth_token_duration_s = base ? base->auth_token_duration_s : 0;
        if (c->auth_token_duration_s <= 0)
            c->auth_token_duration_s = strcmp(c->name, "_superusers") == 0 ? 86400 : 432000;
        c->auth_options = json_object();
        for (size_t i = 0; i < ARRAY_LEN(auth_option_keys); i++) {
            json_t *v = json_object_get(in, auth_option_keys[i]);
            if (!v && base && base->auth_options)
                v = json_object_get(base->auth_options, auth_option_keys[i]);
            if (v)
                json_object_set(c->auth_options, auth_option_keys[i], v);
        }
        if (!ps->trusted && check_auth_methods(c->auth_options, ps->errors) != 0)
            rc = ERR_INVALID;
    }
    if (rc)
        goto fail;
    /* dates */
    if (ps->trusted) {
        c->created = get_str(in, "created");
        c->updated = get_str(in, "updated");
    }
    if (!c->created)
        c->created = xstrdup(base && base->created ? base->created : now);
    if (!c->updated || !ps->trusted) {
        free(c->updated);
        c->updated = xstrdup(now);
    }
    *out = c;
    return 0;
fail:
    store_collection_unref(c);
    return rc ? rc : ERR_INVALID;
}

int store__collection_from_json(const json_t *in, const struct store_collection *base,
                                const char *now, json_t *errors, struct store_collection **out)
{
    struct parse ps = {.base = base, .errors = errors};
    return parse_collection(&ps, in, now, out);
}

int store__collection_load(const char *json_text, struct store_collection **out)
{
    json_error_t jerr;
    json_t *in = json_loads(json_text, 0, &jerr);
    if (!in)
        return ERR_CORRUPT;
    json_t *errors = json_object();
    struct parse ps = {.trusted = true, .errors = errors};
    int rc = parse_collection(&ps, in, "", out);
    json_decref(errors);
    json_decref(in);
    return rc ? ERR_CORRUPT : 0;
}

static struct store_collection *system_collection(const char *spec, const char *now)
{
    json_t *in = json_loads(spec, 0, NULL);
    if (!in)
        PANIC("bad built-in collection spec");
    json_t *errors = json_object();
    struct store_collection *c = NULL;
    struct parse ps = {.errors = errors};
    int rc = parse_collection(&ps, in, now, &c);
    if (rc != 0) {
        char *e = json_dumps(errors, 0);
        PANIC("built-in collection is invalid: %s", e);
    }
    json_decref(errors);
    json_decref(in);
    return c;
}

/* "_" names are refused for clients: a built-in collection is parsed under another name and
 * renamed here, its indexes with it, and marked as a system collection. */
static void rename_builtin(struct store_collection *c, const char *name)
{
    free(c->name);
    c->name = xstrdup(name);
    for (size_t i = 0; i < c->n_indexes; i++) {
        struct store__index ix;
        if (store__index_parse(c->indexes[i], &ix) != 0)
            PANIC("bad built-in index");
        free(ix.table);
        ix.table = xstrdup(name);
        free(c->indexes[i]);
        c->indexes[i] = store__index_render(&ix);
        store__index_release(&ix);
    }
    c->system = true;
}

struct store_collection *store__collection_superusers(const char *now)
{
    struct store_collection *c = system_collection(
        "{\"id\":\"pbc_3142635823\",\"name\":\"superusers\",\"type\":\"auth\","
        "\"fields\":[{\"name\":\"created\",\"type\":\"autodate\",\"onCreate\":true},"
        "{\"name\":\"updated\",\"type\":\"autodate\",\"onCreate\":true,\"onUpdate\":true}]}",
        now);
    rename_builtin(c, "_superusers");
    c->auth_token_duration_s = 86400;
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type != STORE_FIELD_AUTODATE)
            c->fields[i].system = true;
    return c;
}

struct store_collection *store__collection_users(const char *now)
{
    return system_collection(
        "{\"id\":\"_pb_users_auth_\",\"name\":\"users\",\"type\":\"auth\","
        "\"listRule\":\"id = @request.auth.id\",\"viewRule\":\"id = @request.auth.id\","
        "\"createRule\":\"\",\"updateRule\":\"id = @request.auth.id\","
        "\"deleteRule\":\"id = @request.auth.id\","
        "\"fields\":[{\"name\":\"name\",\"type\":\"text\",\"max\":255},"
        "{\"name\":\"created\",\"type\":\"autodate\",\"onCreate\":true},"
        "{\"name\":\"updated\",\"type\":\"autodate\",\"onCreate\":true,\"onUpdate\":true}]}",
        now);
}

struct store_collection *store__collection_external_auths(const char *now)
{
#define EA_RULE                                                                                    \
    "@request.auth.id != '' && recordRef = @request.auth.id && "                                   \
    "collectionRef = @request.auth.collectionId"
    struct store_collection *c = system_collection(
        "{\"id\":\"" STORE_EXTERNAL_AUTHS_ID "\",\"name\":\"externalAuths\",\"type\":\"base\","
        "\"listRule\":\"" EA_RULE "\",\"viewRule\":\"" EA_RULE "\",\"deleteRule\":\"" EA_RULE "\","
        "\"fields\":[{\"name\":\"collectionRef\",\"type\":\"text\",\"required\":true},"
        "{\"name\":\"recordRef\",\"type\":\"text\",\"required\":true},"
        "{\"name\":\"provider\",\"type\":\"text\",\"required\":true},"
        "{\"name\":\"providerId\",\"type\":\"text\",\"required\":true},"
        "{\"name\":\"created\",\"type\":\"autodate\",\"onCreate\":true},"
        "{\"name\":\"updated\",\"type\":\"autodate\",\"onCreate\":true,\"onUpdate\":true}],"
        "\"indexes\":[\"CREATE UNIQUE INDEX `idx_externalAuths_record_provider` ON "
        "`externalAuths` (`collectionRef`, `recordRef`, `provider`)\","
        "\"CREATE UNIQUE INDEX `idx_externalAuths_collection_provider` ON "
        "`externalAuths` (`collectionRef`, `provider`, `providerId`)\"]}",
        now);
#undef EA_RULE
    rename_builtin(c, STORE_EXTERNAL_AUTHS);
    for (size_t i = 0; i < c->n_fields; i++)
        if (c->fields[i].type != STORE_FIELD_AUTODATE)
            c->fields[i].system = true;
    return c;
}

json_t *store_collection_scaffolds(void)
{
    json_t *out = json_object();
    const char *types[3] = {"base", "auth", "view"};
    for (int i = 0; i < 3; i++) {
        json_t *spec = json_pack("{s:s, s:s, s:s, s:[]}", "name", "scaffold", "type", types[i],
                                 "viewQuery", "SELECT 1", "fields");
        json_t *errors = json_object();
        struct store_collection *c = NULL;
        struct parse ps = {.errors = errors};
        if (parse_collection(&ps, spec, "", &c) != 0)
            PANIC("built-in scaffold is invalid");
        json_t *j = store_collection_to_json(c);
        json_object_set_new(j, "id", json_string(""));
        json_object_set_new(j, "name", json_string(""));
        json_object_set_new(j, "created", json_string(""));
        json_object_set_new(j, "updated", json_string(""));
        /* index names and tables depend on the id and name the new collection gets */
        json_object_set_new(j, "indexes", json_array());
        if (i == 2) { /* a view's fields come from its query */
            json_object_set_new(j, "viewQuery", json_string(""));
            json_object_set_new(j, "fields", json_array());
        }
        json_object_set_new(out, types[i], j);
        store_collection_unref(c);
        json_decref(errors);
        json_decref(spec);
    }
    return out;
}
