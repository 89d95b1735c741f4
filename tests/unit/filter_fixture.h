/* filter_fixture.h - a small schema (users, orgs, tags, posts, comments, likes) shared by the
 * filter tests, and an in-memory SQLite database built from it with schema.h's storage
 * conventions. Header-only: each test binary includes it once. */
#ifndef TANDEM_TESTS_FILTER_FIXTURE_H
#define TANDEM_TESTS_FILTER_FIXTURE_H

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "filter/filter.h"

#define FX_F(n, t)                                                                                 \
    {                                                                                              \
        .id = n, .name = n, .type = t                                                              \
    }
#define FX_REL(n, coll, maxs)                                                                      \
    {                                                                                              \
        .id = n, .name = n, .type = STORE_FIELD_RELATION, .collection_id = coll,                   \
        .max_select = maxs                                                                         \
    }
#define FX_SEL(n, maxs)                                                                            \
    {                                                                                              \
        .id = n, .name = n, .type = STORE_FIELD_SELECT, .max_select = maxs                         \
    }

static struct store_field fx_users_fields[] = {
    FX_F("id", STORE_FIELD_TEXT),
    FX_F("name", STORE_FIELD_TEXT),
    FX_F("email", STORE_FIELD_EMAIL),
    FX_F("emailVisibility", STORE_FIELD_BOOL),
    FX_F("verified", STORE_FIELD_BOOL),
    FX_SEL("role", 1),
    {.id = "password", .name = "password", .type = STORE_FIELD_PASSWORD, .hidden = true},
    FX_REL("org", "pbc_orgs", 1),
    FX_F("created", STORE_FIELD_AUTODATE),
};
static struct store_field fx_orgs_fields[] = {
    FX_F("id", STORE_FIELD_TEXT),
    FX_F("name", STORE_FIELD_TEXT),
};
static struct store_field fx_tags_fields[] = {
    FX_F("id", STORE_FIELD_TEXT),
    FX_F("name", STORE_FIELD_TEXT),
    FX_F("color", STORE_FIELD_TEXT),
};
static struct store_field fx_posts_fields[] = {
    FX_F("id", STORE_FIELD_TEXT),
    FX_F("title", STORE_FIELD_TEXT),
    FX_F("views", STORE_FIELD_NUMBER),
    FX_F("published", STORE_FIELD_BOOL),
    FX_REL("author", "_pb_users_auth_", 1),
    FX_REL("tags", "pbc_tags", 5),
    FX_SEL("cats", 3),
    FX_SEL("status", 1),
    FX_F("data", STORE_FIELD_JSON),
    FX_F("due", STORE_FIELD_DATE),
    FX_F("created", STORE_FIELD_AUTODATE),
    FX_F("loc", STORE_FIELD_GEO_POINT),
    {.id = "secret", .name = "secret", .type = STORE_FIELD_TEXT, .hidden = true},
};
static struct store_field fx_comments_fields[] = {
    FX_F("id", STORE_FIELD_TEXT),
    FX_REL("post", "pbc_posts", 1),
    FX_REL("user", "_pb_users_auth_", 1),
    FX_F("message", STORE_FIELD_TEXT),
};
static struct store_field fx_likes_fields[] = {
    FX_F("id", STORE_FIELD_TEXT),
    FX_REL("posts", "pbc_posts", 9),
    FX_REL("user", "_pb_users_auth_", 1),
};

/* list rules: users visible when verified, orgs and likes locked, the others open */
#define FX_COLL(i, n, f, t, lr)                                                                    \
    {                                                                                              \
        .id = i, .name = n, .type = t, .fields = f, .n_fields = ARRAY_LEN(f), .rules = {           \
            [STORE_RULE_LIST] = lr                                                                 \
        }                                                                                          \
    }
static struct store_collection fx_colls[] = {
    FX_COLL("_pb_users_auth_", "users", fx_users_fields, STORE_COLLECTION_AUTH, "verified = true"),
    FX_COLL("pbc_orgs", "orgs", fx_orgs_fields, STORE_COLLECTION_BASE, NULL),
    FX_COLL("pbc_tags", "tags", fx_tags_fields, STORE_COLLECTION_BASE, ""),
    FX_COLL("pbc_posts", "posts", fx_posts_fields, STORE_COLLECTION_BASE, ""),
    FX_COLL("pbc_comments", "comments", fx_comments_fields, STORE_COLLECTION_BASE, ""),
    FX_COLL("pbc_likes", "likes", fx_likes_fields, STORE_COLLECTION_BASE, NULL),
};
#define FX_USERS (&fx_colls[0])
#define FX_POSTS (&fx_colls[3])

static inline const struct store_collection *fx_find(void *ud, const char *name_or_id)
{
    (void)ud;
    for (size_t i = 0; i < ARRAY_LEN(fx_colls); i++)
        if (!strcmp(fx_colls[i].id, name_or_id) || !strcmp(fx_colls[i].name, name_or_id))
            return &fx_colls[i];
    return NULL;
}

/* 2026-11-21 12:30:45.123Z, a Saturday */
#define FX_NOW_US 1795264245123000LL

static inline struct filter_ctx fx_ctx(const struct store_collection *c)
{
    return (struct filter_ctx){
        .collection = c, .alias = "r", .find_collection = fx_find, .now_us = FX_NOW_US};
}

static inline const char *fx_column_type(const struct store_field *f)
{
    if (!strcmp(f->name, "id"))
        return "TEXT PRIMARY KEY NOT NULL";
    switch (f->type) {
    case STORE_FIELD_NUMBER: return "NUMERIC NOT NULL DEFAULT 0";
    case STORE_FIELD_BOOL: return "BOOLEAN NOT NULL DEFAULT 0";
    case STORE_FIELD_JSON: return "JSON DEFAULT NULL";
    case STORE_FIELD_GEO_POINT: return "JSON NOT NULL DEFAULT '{\"lon\":0,\"lat\":0}'";
    case STORE_FIELD_SELECT:
    case STORE_FIELD_RELATION:
        return store_field_multiple(f) ? "TEXT NOT NULL DEFAULT '[]'" : "TEXT NOT NULL DEFAULT ''";
    default: return "TEXT NOT NULL DEFAULT ''";
    }
}

static const char *fx_rows =
    "INSERT INTO orgs(id,name) VALUES ('o1','Acme'),('o2','Beta');"
    "INSERT INTO users(id,name,email,emailVisibility,verified,role,password,org,created) VALUES"
    " ('u1','Alice','alice@example.com',1,1,'admin','h1','o1','2026-01-01 00:00:00.000Z'),"
    " ('u2','bob','bob@example.com',0,0,'member','h2','o2','2026-02-01 00:00:00.000Z'),"
    " ('u3','','',0,0,'','h3','','2026-03-01 00:00:00.000Z');"
    "INSERT INTO tags(id,name,color) VALUES ('t1','go','red'),('t2','sqlite','blue'),"
    " ('t3','c','red');"
    "INSERT INTO posts(id,title,views,published,author,tags,cats,status,data,due,created,secret)"
    " VALUES"
    " ('p1','Hello World',10,1,'u1','[\"t1\",\"t2\"]','[\"a\",\"b\"]','active',"
    "  '{\"a\":{\"b\":1},\"n\":\"x\"}','2026-11-21 10:00:00.000Z','2026-11-20 08:00:00.000Z','s1'),"
    " ('p2','Lorem ipsum 50%',5,0,'u2','[\"t1\"]','[\"a\"]','pending',NULL,"
    "  '2026-11-22 09:00:00.000Z','2026-11-21 12:00:00.000Z','s2'),"
    " ('p3','',0,0,'','[]','[]','','{\"a\":{\"b\":2}}','','2026-10-01 00:00:00.000Z','s3'),"
    " ('p4','under_score',100,1,'u1','[\"t3\",\"t1\"]','[\"c\"]','active','[1,2]',"
    "  '2025-01-01 00:00:00.000Z','2025-06-01 00:00:00.000Z','s4');"
    "INSERT INTO comments(id,post,user,message) VALUES ('c1','p1','u2','nice'),"
    " ('c2','p1','u1','hi there'),('c3','p2','u2','hi');"
    "INSERT INTO likes(id,posts,user) VALUES ('l1','[\"p1\",\"p2\"]','u1'),"
    " ('l2','[\"p1\"]','u2');";

/* An in-memory database with one table per fixture collection and the rows above. */
static inline sqlite3 *fx_db_open(void)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return NULL;
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < ARRAY_LEN(fx_colls); i++) {
        const struct store_collection *c = &fx_colls[i];
        buf_printf(&b, "CREATE TABLE \"%s\" (", c->name);
        for (size_t k = 0; k < c->n_fields; k++)
            buf_printf(&b, "%s\"%s\" %s", k ? ", " : "", c->fields[k].name,
                       fx_column_type(&c->fields[k]));
        buf_puts(&b, ");");
    }
    buf_puts(&b, fx_rows);
    char *msg = NULL;
    int rc = sqlite3_exec(db, buf_cstr(&b), NULL, NULL, &msg);
    buf_release(&b);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "fixture: %s\n", msg);
        sqlite3_free(msg);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static inline int fx_bind(sqlite3_stmt *st, int first, const struct filter_sql *q)
{
    for (size_t i = 0; i < q->n_params; i++) {
        const struct filter_param *p = &q->params[i];
        int idx = first + (int)i, rc = SQLITE_OK;
        switch (p->type) {
        case FILTER_PARAM_NULL: rc = sqlite3_bind_null(st, idx); break;
        case FILTER_PARAM_INT: rc = sqlite3_bind_int64(st, idx, p->i); break;
        case FILTER_PARAM_DOUBLE: rc = sqlite3_bind_double(st, idx, p->d); break;
        case FILTER_PARAM_TEXT:
            rc = sqlite3_bind_text(st, idx, p->text, (int)p->text_len, SQLITE_TRANSIENT);
            break;
        }
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* Runs `SELECT id FROM "<table>" r WHERE <where> [ORDER BY <order>]` and writes the ids
 * joined by ',' into out; returns the SQLite result code (SQLITE_DONE on success). */
static inline int fx_query(sqlite3 *db, const char *table, const struct filter_sql *where,
                           const struct filter_sql *order, char *out, size_t out_len)
{
    struct buf sql;
    buf_init(&sql);
    buf_printf(&sql, "SELECT id FROM \"%s\" r WHERE %s ORDER BY %s", table,
               where ? where->sql : "1", order && order->sql_len ? order->sql : "id");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, buf_cstr(&sql), -1, &st, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "prepare: %s\n  %s\n", sqlite3_errmsg(db), buf_cstr(&sql));
        buf_release(&sql);
        return rc;
    }
    buf_release(&sql);
    out[0] = '\0';
    if (where && (rc = fx_bind(st, 1, where)) != SQLITE_OK)
        goto out;
    if (order && (rc = fx_bind(st, 1 + (int)(where ? where->n_params : 0), order)) != SQLITE_OK)
        goto out;
    size_t len = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        int n = snprintf(out + len, out_len - len, "%s%s", len ? "," : "", id ? id : "?");
        if (n > 0 && (size_t)n < out_len - len)
            len += (size_t)n;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

#endif
