/* wh_test_util.h - helpers for the warehouse and pipeline tests (included, not linked). */
#ifndef TANDEM_TESTS_WH_TEST_UTIL_H
#define TANDEM_TESTS_WH_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "warehouse/warehouse.h"

/* A fresh database path under $TMPDIR (files of a previous run removed). */
static inline void wht_path(char *out, size_t len, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(out, len, "%s/%s-%d.duckdb", tmp ? tmp : "/tmp", name, (int)getpid());
    unlink(out);
    char wal[1100];
    snprintf(wal, sizeof(wal), "%s.wal", out);
    unlink(wal);
}

static inline void wht_unlink(const char *path)
{
    char wal[1100];
    snprintf(wal, sizeof(wal), "%s.wal", path);
    unlink(path);
    unlink(wal);
}

/* A fresh one-thread warehouse at a new path under $TMPDIR (name as for wht_path), with a
 * connection and the schema; 0 or the failing call's error. */
static inline int wht_open(char *path, size_t len, const char *name, struct wh **wh_out,
                           struct wh_conn **c_out)
{
    wht_path(path, len, name);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = path;
    cfg.threads = 1;
    int rc;
    if ((rc = wh_open(&cfg, wh_out)) != 0)
        return rc;
    if ((rc = wh_conn_open(*wh_out, c_out)) != 0 || (rc = wh_ensure_schema(*c_out)) != 0)
        return rc;
    return 0;
}

/* Closes what wht_open opened and removes its files. */
static inline void wht_close(const char *path, struct wh *wh, struct wh_conn *c)
{
    wh_conn_close(c);
    wh_close(wh);
    wht_unlink(path);
}

/* Runs sql through the read-only API and returns the rows array as compact JSON text
 * (caller frees), or NULL with the error printed. */
static inline char *wht_rows(struct wh_conn *c, const char *sql)
{
    struct wh_query q = {.sql = sql};
    struct wh_result r;
    if (wh_query(c, &q, &r) < 0) {
        fprintf(stderr, "query failed: %s: %s\n", sql, wh_errmsg(c));
        return NULL;
    }
    char *s = json_dumps(r.rows, JSON_COMPACT | JSON_REAL_PRECISION(17));
    wh_result_release(&r);
    return s;
}

#define assert_rows(c, sql, expect)                                                                \
    do {                                                                                           \
        char *got_ = wht_rows((c), (sql));                                                         \
        assert_non_null(got_);                                                                     \
        assert_string_equal(got_, (expect));                                                       \
        free(got_);                                                                                \
    } while (0)

#endif
