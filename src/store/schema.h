/* schema.h - the application data model: collections and their fields (PocketBase's model).
 *
 * Shared by the store (which keeps collections in a system table and gives each one a real
 * SQLite table), the filter compiler (which resolves identifiers against it) and the API.
 *
 * Storage conventions every backend and the filter compiler follow:
 *   - one table per collection, named exactly as the collection, always quoted;
 *   - one column per field, named exactly as the field, always quoted; `id` TEXT PRIMARY KEY;
 *   - text, editor, email, url, date, autodate, password, single select and single relation: TEXT,
 *     NOT NULL DEFAULT '' (dates as "YYYY-MM-DD HH:MM:SS.sssZ", so they compare as text);
 *   - number: NUMERIC NOT NULL DEFAULT 0; bool: BOOLEAN (0/1) NOT NULL DEFAULT 0;
 *   - multiple select and multiple relation (max_select > 1): TEXT holding a JSON array,
 *     NOT NULL DEFAULT '[]';
 *   - json: JSON text, nullable, DEFAULT NULL;
 *   - geoPoint: JSON text {"lon":x,"lat":y}, NOT NULL DEFAULT '{"lon":0,"lat":0}';
 *   - file: the stored file name(s), as single and multiple select (the bytes are storage/'s).
 *
 * A struct store_collection is an immutable snapshot: the store builds a new one on every
 * schema change and hands out references (store_collection_ref/unref, atomic, any thread);
 * readers never see it change under them. */
#ifndef TANDEM_STORE_SCHEMA_H
#define TANDEM_STORE_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum store_field_type {
    STORE_FIELD_TEXT,
    STORE_FIELD_NUMBER,
    STORE_FIELD_BOOL,
    STORE_FIELD_EMAIL,
    STORE_FIELD_URL,
    STORE_FIELD_DATE,
    STORE_FIELD_AUTODATE,
    STORE_FIELD_SELECT,
    STORE_FIELD_JSON,
    STORE_FIELD_RELATION,
    STORE_FIELD_PASSWORD,
    STORE_FIELD_EDITOR,
    STORE_FIELD_GEO_POINT,
    STORE_FIELD_FILE,
};

enum store_collection_type {
    STORE_COLLECTION_BASE,
    STORE_COLLECTION_AUTH,
    STORE_COLLECTION_VIEW, /* read-only: an SQL view over viewQuery, its fields inferred */
};

/* The API rules of a collection, in this order. */
enum store_rule {
    STORE_RULE_LIST,
    STORE_RULE_VIEW,
    STORE_RULE_CREATE,
    STORE_RULE_UPDATE,
    STORE_RULE_DELETE,
    STORE_RULE_AUTH,   /* auth collections only */
    STORE_RULE_MANAGE, /* auth collections only */
    STORE_N_RULES,
};

struct store_field {
    char *id;   /* stable across renames, e.g. "text3208210256" */
    char *name; /* ^[a-zA-Z_][a-zA-Z0-9_]*$, not reserved */
    enum store_field_type type;
    bool system;
    bool hidden;
    bool presentable;
    bool required;
    /* text: min/max length in characters (max 0 = 5000); number: min/max value;
     * password: min/max length. has_min/has_max say whether they are set. */
    bool has_min, has_max;
    double min, max;
    bool only_int;              /* number */
    char *pattern;              /* text, password: a POSIX extended regular expression, or NULL */
    bool primary_key;           /* the `id` text field */
    char *autogenerate_pattern; /* text */
    char **values;              /* select: allowed values */
    size_t n_values;
    int max_select;                        /* select, relation: <= 1 single, > 1 multiple */
    int min_select;                        /* relation */
    char *collection_id;                   /* relation: the target collection's id */
    bool cascade_delete;                   /* relation */
    int64_t max_size;                      /* json: bytes (0 = 1 MiB); editor: bytes (0 = 5 MiB) */
    bool convert_urls;                     /* editor: kept for PocketBase's admin UI */
    bool on_create, on_update;             /* autodate */
    char **only_domains, **except_domains; /* email, url */
    size_t n_only_domains, n_except_domains;
    char *date_min, *date_max; /* date: "" or a PocketBase date string */
    char *help;
    int cost; /* password: kept for compatibility, the hash is the auth module's */
    /* file: max_select (<= 1 single, > 1 multiple), max_size (bytes, 0 = 5 MiB), and: */
    char **mime_types; /* allowed types, sniffed from the bytes; none = any */
    size_t n_mime_types;
    char **thumbs; /* thumb sizes served ("100x100", "0x50", "80x80f", ...) */
    size_t n_thumbs;
    bool protected_files; /* files need ?token= and the viewRule */
};

struct store_collection {
    char *id;   /* "pbc_<crc32>" or a client-chosen id */
    char *name; /* the table name */
    enum store_collection_type type;
    bool system;
    struct store_field *fields;
    size_t n_fields;
    char **indexes; /* CREATE [UNIQUE] INDEX statements, canonical form (see store_index_*) */
    size_t n_indexes;
    char *rules[STORE_N_RULES]; /* NULL = superusers only; "" = anyone; else a filter */
    char *created, *updated;    /* PocketBase date strings */
    /* auth collections */
    int64_t auth_token_duration_s;
    char **identity_fields; /* for auth-with-password; default {"email"} */
    size_t n_identity_fields;
    json_t *auth_options; /* other auth options kept as given (oauth2, mfa, otp, ...), or NULL */
    char *view_query;     /* view collections: the SELECT, trimmed of blanks and ';' */
    int refs;             /* atomic */
};

/* true for select, relation and file fields that hold several values (a JSON array) */
static inline bool store_field_multiple(const struct store_field *f)
{
    return (f->type == STORE_FIELD_SELECT || f->type == STORE_FIELD_RELATION ||
            f->type == STORE_FIELD_FILE) &&
           f->max_select > 1;
}

/* The field named name, or NULL. */
const struct store_field *store_collection_field(const struct store_collection *c,
                                                 const char *name);
/* The field with this id, or NULL. */
const struct store_field *store_collection_field_by_id(const struct store_collection *c,
                                                       const char *id);

/* "text", "number", ...; store_field_type_parse returns -1 for an unknown name. */
const char *store_field_type_name(enum store_field_type t);
int store_field_type_parse(const char *name);

/* "base", "auth", "view"; store_collection_type_parse returns -1 for an unknown name. */
const char *store_collection_type_name(enum store_collection_type t);
int store_collection_type_parse(const char *name);

/* Collection and field names: ^[a-zA-Z_][a-zA-Z0-9_]*$, 1..max_len characters. */
bool store_name_valid(const char *name, size_t max_len);

/* A thumb size "WxH", "WxHt", "WxHb", "WxHf", "0xH" or "Wx0" (not 0x0, each side at most
 * 10000): its width, height and mode ('\0', 't', 'b', 'f'); any out-pointer may be NULL. */
bool store_thumb_parse(const char *spec, int *w_out, int *h_out, char *mode_out);

/* Reference counting; unref frees the snapshot when the last reference goes. NULL is ok. */
struct store_collection *store_collection_ref(struct store_collection *c);
void store_collection_unref(struct store_collection *c);

/* Frees every member of a field (not the field itself). */
void store_field_release(struct store_field *f);

#endif
