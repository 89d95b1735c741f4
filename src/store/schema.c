/* schema.c - helpers over the collection model. */
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "store/schema.h"

const struct store_field *store_collection_field(const struct store_collection *c, const char *name)
{
    for (size_t i = 0; i < c->n_fields; i++)
        if (strcmp(c->fields[i].name, name) == 0)
            return &c->fields[i];
    return NULL;
}

const struct store_field *store_collection_field_by_id(const struct store_collection *c,
                                                       const char *id)
{
    for (size_t i = 0; i < c->n_fields; i++)
        if (strcmp(c->fields[i].id, id) == 0)
            return &c->fields[i];
    return NULL;
}

static const char *const type_names[] = {
    [STORE_FIELD_TEXT] = "text",
    [STORE_FIELD_NUMBER] = "number",
    [STORE_FIELD_BOOL] = "bool",
    [STORE_FIELD_EMAIL] = "email",
    [STORE_FIELD_URL] = "url",
    [STORE_FIELD_DATE] = "date",
    [STORE_FIELD_AUTODATE] = "autodate",
    [STORE_FIELD_SELECT] = "select",
    [STORE_FIELD_JSON] = "json",
    [STORE_FIELD_RELATION] = "relation",
    [STORE_FIELD_PASSWORD] = "password",
    [STORE_FIELD_EDITOR] = "editor",
    [STORE_FIELD_GEO_POINT] = "geoPoint",
    [STORE_FIELD_FILE] = "file",
};

/* A name of an enum-indexed table, and back. */
static const char *name_of(const char *const *names, size_t n, size_t i)
{
    return i < n ? names[i] : "unknown";
}

static int index_of(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

const char *store_field_type_name(enum store_field_type t)
{
    return name_of(type_names, ARRAY_LEN(type_names), (size_t)t);
}

int store_field_type_parse(const char *name)
{
    return index_of(type_names, ARRAY_LEN(type_names), name);
}

static const char *const collection_type_names[] = {
    [STORE_COLLECTION_BASE] = "base",
    [STORE_COLLECTION_AUTH] = "auth",
    [STORE_COLLECTION_VIEW] = "view",
};

const char *store_collection_type_name(enum store_collection_type t)
{
    return name_of(collection_type_names, ARRAY_LEN(collection_type_names), (size_t)t);
}

int store_collection_type_parse(const char *name)
{
    return index_of(collection_type_names, ARRAY_LEN(collection_type_names), name);
}

bool store_name_valid(const char *name, size_t max_len)
{
    size_t n = strlen(name);
    if (n == 0 || n > max_len)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                  (i > 0 && ch >= '0' && ch <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool read_side(const char **p, int *out)
{
    long v = 0;
    const char *s = *p;
    while (*s >= '0' && *s <= '9' && s - *p < 6)
        v = v * 10 + (*s++ - '0');
    if (s == *p || v > 10000)
        return false;
    *out = (int)v;
    *p = s;
    return true;
}

bool store_thumb_parse(const char *spec, int *w_out, int *h_out, char *mode_out)
{
    int w, h;
    char mode = '\0';
    const char *p = spec;
    if (!read_side(&p, &w) || *p++ != 'x' || !read_side(&p, &h))
        return false;
    if (*p == 't' || *p == 'b' || *p == 'f')
        mode = *p++;
    if (*p || (w == 0 && h == 0) || (mode && (w == 0 || h == 0)))
        return false;
    if (w_out)
        *w_out = w;
    if (h_out)
        *h_out = h;
    if (mode_out)
        *mode_out = mode;
    return true;
}

struct store_collection *store_collection_ref(struct store_collection *c)
{
    if (c)
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void store_field_release(struct store_field *f)
{
    free(f->id);
    free(f->name);
    free(f->pattern);
    free(f->autogenerate_pattern);
    free_strv(f->values, f->n_values);
    free(f->collection_id);
    free_strv(f->only_domains, f->n_only_domains);
    free_strv(f->except_domains, f->n_except_domains);
    free(f->date_min);
    free(f->date_max);
    free(f->help);
    free_strv(f->mime_types, f->n_mime_types);
    free_strv(f->thumbs, f->n_thumbs);
    memset(f, 0, sizeof(*f));
}

void store_collection_unref(struct store_collection *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free(c->id);
    free(c->name);
    for (size_t i = 0; i < c->n_fields; i++)
        store_field_release(&c->fields[i]);
    free(c->fields);
    free_strv(c->indexes, c->n_indexes);
    for (int i = 0; i < STORE_N_RULES; i++)
        free(c->rules[i]);
    free(c->created);
    free(c->updated);
    free_strv(c->identity_fields, c->n_identity_fields);
    json_decref(c->auth_options);
    free(c->view_query);
    free(c);
}
