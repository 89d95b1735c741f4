/* store_bench.c - the store's record writes and reads against raw SQLite doing the same
 * work with the same settings, measured in the same run and printed as ratios.
 *
 *   store create   store_record_create (validation, relation check, insert, read back,
 *                  outbox row, one transaction each)
 *   raw insert     a prepared INSERT of the same values in its own BEGIN IMMEDIATE/COMMIT
 *   store get      store_record_get by id (cached statement, row to JSON)
 *   raw select     a prepared SELECT of the same row by id, columns read, no JSON
 *   store list     store_record_list, 30 rows, sorted, with a bound filter, total counted
 *   token key      store_auth_token_key (vs store_auth_get, the whole auth record)
 *
 * Build and run (from the repository root, after cmake --build build):
 *   cc -O2 -std=gnu11 -Isrc bench/store_bench.c build/libtandem_lib.a \
 *     -ljansson -lsqlite3 -lsodium -ljwt -lz -lmicrohttpd -lpthread -lm -o store_bench
 *   ./store_bench [N]        (default N = 5000; uses $TMPDIR) */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

static double now_s(void)
{
    return (double)time_mono_us() / 1e6;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "store_bench: %s: %s\n", what, detail);
    exit(1);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5000;
    if (n < 100)
        n = 100;
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/store_benchXXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        die("mkdtemp", dir);
    struct store *st;
    char err[256];
    struct store_cfg cfg = {.dir = dir};
    if (store_open(&cfg, &st, err, sizeof(err)) != 0)
        die("open", err);
    json_t *spec = json_loads(
        "{\"name\":\"posts\",\"fields\":[{\"name\":\"title\",\"type\":\"text\",\"required\":true},"
        "{\"name\":\"views\",\"type\":\"number\"},{\"name\":\"published\",\"type\":\"bool\"},"
        "{\"name\":\"tags\",\"type\":\"select\",\"values\":[\"a\",\"b\",\"c\"],\"maxSelect\":3},"
        "{\"name\":\"created\",\"type\":\"autodate\",\"onCreate\":true}],"
        "\"indexes\":[\"CREATE INDEX idx_views ON posts (views)\"]}",
        0, NULL);
    struct store_collection *c;
    json_t *errors = NULL;
    if (store_collection_create(st, spec, &errors, &c) != 0)
        die("collection", store_errmsg(st));
    json_decref(spec);

    char **ids = calloc((size_t)n, sizeof(char *));
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        json_t *body = json_pack("{s:s, s:i, s:b, s:[s,s]}", "title", "hello world", "views",
                                 i % 1000, "published", i % 2, "tags", "a", "b");
        json_t *rec;
        if (store_record_create(st, c, body, NULL, &errors, &rec) != 0)
            die("create", store_errmsg(st));
        ids[i] = strdup(json_string_value(json_object_get(rec, "id")));
        json_decref(rec);
        json_decref(body);
    }
    double store_create = n / (now_s() - t0);

    /* raw SQLite: same file, same settings, a table of the same shape */
    char path[600];
    snprintf(path, sizeof(path), "%s/app.db", dir);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("raw open", path);
    sqlite3_exec(db,
                 "PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 "CREATE TABLE raw (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL DEFAULT '',"
                 " views NUMERIC NOT NULL DEFAULT 0, published BOOLEAN NOT NULL DEFAULT 0,"
                 " tags JSON NOT NULL DEFAULT '[]', created TEXT NOT NULL DEFAULT '');"
                 "CREATE INDEX raw_views ON raw (views);",
                 NULL, NULL, NULL);
    sqlite3_stmt *ins;
    sqlite3_prepare_v2(db, "INSERT INTO raw VALUES (?1, ?2, ?3, ?4, ?5, ?6)", -1, &ins, NULL);
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        char id[ID_LEN + 1], date[TIME_PB_LEN];
        id_random(id);
        time_format_pb(time_now_us(), date);
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 2, "hello world", -1, SQLITE_STATIC);
        sqlite3_bind_int(ins, 3, i % 1000);
        sqlite3_bind_int(ins, 4, i % 2);
        sqlite3_bind_text(ins, 5, "[\"a\",\"b\"]", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 6, date, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(ins) != SQLITE_DONE)
            die("raw insert", sqlite3_errmsg(db));
        sqlite3_reset(ins);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    double raw_insert = n / (now_s() - t0);
    sqlite3_finalize(ins);

    t0 = now_s();
    for (int i = 0; i < n; i++) {
        json_t *rec;
        if (store_record_get(st, c, ids[(i * 7919) % n], &rec) != 0)
            die("get", store_errmsg(st));
        json_decref(rec);
    }
    double store_get = n / (now_s() - t0);

    sqlite3_stmt *sel;
    sqlite3_prepare_v2(db,
                       "SELECT id, title, views, published, tags, created FROM posts WHERE "
                       "id = ?1",
                       -1, &sel, NULL);
    t0 = now_s();
    long sink = 0;
    for (int i = 0; i < n; i++) {
        sqlite3_bind_text(sel, 1, ids[(i * 7919) % n], -1, SQLITE_STATIC);
        if (sqlite3_step(sel) != SQLITE_ROW)
            die("raw select", sqlite3_errmsg(db));
        for (int k = 0; k < 6; k++)
            sink += sqlite3_column_bytes(sel, k);
        sqlite3_reset(sel);
    }
    double raw_select = n / (now_s() - t0);
    sqlite3_finalize(sel);

    int n_list = n / 10;
    json_t *params = json_pack("[i]", 500);
    struct store_sort sort = {"views", true};
    struct store_list_query q = {.page = 1, .per_page = 30, .sort = &sort, .n_sort = 1};
    q.where_sql = "\"r\".\"views\" < ?";
    q.where_params = params;
    t0 = now_s();
    for (int i = 0; i < n_list; i++) {
        struct store_list_result res;
        if (store_record_list(st, c, &q, &res) != 0)
            die("list", store_errmsg(st));
        json_decref(res.items);
    }
    double store_list = n_list / (now_s() - t0);
    json_decref(params);

    /* what a token check needs per request: the whole auth record, or the tokenKey alone */
    char su_id[ID_LEN + 1];
    if (store_superuser_upsert(st, "bench@example.com", "hash", su_id) != 0)
        die("superuser", store_errmsg(st));
    struct store_collection *su;
    if (store_collection_get(st, "_superusers", &su) != 0)
        die("_superusers", store_errmsg(st));
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        struct store_auth_record ar;
        if (store_auth_get(st, su, su_id, &ar) != 0)
            die("auth get", store_errmsg(st));
        store_auth_record_release(&ar);
    }
    double auth_get = n / (now_s() - t0);
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        char key[64];
        if (store_auth_token_key(st, su, su_id, key, sizeof(key)) != 0)
            die("token key", store_errmsg(st));
        sink += key[0];
    }
    double token_key = n / (now_s() - t0);
    store_collection_unref(su);

    printf("records: %d (sink %ld)\n", n, sink % 7);
    printf("store create   %9.0f /s   %5.1f%% of raw insert (%.0f /s)\n", store_create,
           100 * store_create / raw_insert, raw_insert);
    printf("store get      %9.0f /s   %5.1f%% of raw select (%.0f /s)\n", store_get,
           100 * store_get / raw_select, raw_select);
    printf("store list     %9.0f /s   (30 rows, filter, sort, count)\n", store_list);
    printf("token key      %9.0f /s   %5.1f%% of raw select; auth get %.0f /s\n", token_key,
           100 * token_key / raw_select, auth_get);

    sqlite3_close(db);
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    store_collection_unref(c);
    store_close(st);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
