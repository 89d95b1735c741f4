/* whd_erase.c - a person's events, and the history of deleted app records, out of the
 * warehouse, bytes included (docs/governance.md "Person deletion").
 *
 * DuckDB's DELETE only marks rows deleted: the row group keeps their bytes until it is
 * rewritten, and a checkpoint may leave a partly deleted row group as it is. So the events
 * table is rewritten whole, in one transaction: the rows to keep are copied aside, every row
 * is deleted and the kept ones are inserted again. Every old row group is then fully deleted,
 * the checkpoint that follows drops them and hands their blocks back (DuckDB trims freed
 * blocks of its file), and the checkpoint empties the WAL. The identity tables lose the
 * person's ids the same way. Time and space: about one copy of the events table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCRUB_BLOCK 262144u /* DuckDB's block size (filler rows are sized by it) */
#define SCRUB_ROUNDS 3

#include "warehouse/duckdb/whd_int.h"

/* 'a','b',... as SQL literals (a quote doubled; the caller refuses NUL bytes). */
static void id_list(struct buf *b, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",'" : "'");
        for (const char *p = ids[i]; *p; p++) {
            if (*p == '\'')
                buf_putc(b, '\'');
            buf_putc(b, *p);
        }
        buf_putc(b, '\'');
    }
}

static int count_rows(struct whd_conn *c, const char *sql, uint64_t *out)
{
    duckdb_result res;
    if (duckdb_query(c->con, sql, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, NULL);
    *out = (uint64_t)duckdb_value_int64(&res, 0, 0);
    duckdb_destroy_result(&res);
    return 0;
}

/* The CREATE TABLE statement of a table, as DuckDB keeps it (a new string). */
static int table_sql(struct whd_conn *c, const char *table, char **out)
{
    char q[256];
    duckdb_result res;
    snprintf(q, sizeof(q),
             "SELECT sql FROM duckdb_tables() WHERE table_name = '%s' AND NOT temporary", table);
    if (duckdb_query(c->con, q, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, NULL);
    char *v = duckdb_row_count(&res) == 1 ? duckdb_value_varchar(&res, 0, 0) : NULL;
    duckdb_destroy_result(&res);
    if (!v)
        return whd__fail(c, ERR_INTERNAL, "no definition of table %s", table);
    *out = xstrdup(v);
    duckdb_free(v);
    return 0;
}

static int free_blocks(struct whd_conn *c, uint64_t *out)
{
    return count_rows(c, "SELECT free_blocks FROM pragma_database_size()", out);
}

/* One round: a checkpoint (with a change, so it runs) frees the blocks no transaction can see
 * any more; then every free block is overwritten by taking it for random data (a table of
 * UUIDs, which no compression shrinks) that is checkpointed and dropped again. DuckDB neither
 * zeroes nor trims the blocks it frees, so this is what removes their bytes from the file.
 * *freed_out: free blocks found before the overwrite. */
static int scrub_round(struct whd_conn *c, uint64_t *freed_out)
{
    uint64_t f = 0;
    int rc = whd__exec(c, "CREATE OR REPLACE TABLE _erase_mark AS SELECT now() AS t");
    if (rc == 0)
        rc = whd__exec(c, "FORCE CHECKPOINT");
    if (rc == 0)
        rc = free_blocks(c, &f);
    *freed_out = f;
    if (rc < 0 || f == 0)
        return rc;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "CREATE OR REPLACE TABLE _erase_scrub AS SELECT gen_random_uuid() AS u FROM "
             "range(%llu)",
             (unsigned long long)(f * (SCRUB_BLOCK / 16) + SCRUB_BLOCK / 16));
    if ((rc = whd__exec(c, sql)) == 0 && (rc = whd__exec(c, "FORCE CHECKPOINT")) == 0 &&
        (rc = whd__exec(c, "DROP TABLE _erase_scrub")) == 0)
        rc = whd__exec(c, "FORCE CHECKPOINT");
    return rc;
}

/* A read that began before the rewrite keeps the old blocks in use until it ends (DuckDB frees
 * them at the first checkpoint after), so SCRUB_ROUNDS rounds run, a second apart. */
static int scrub(struct whd_conn *c)
{
    for (int round = 0; round < SCRUB_ROUNDS; round++) {
        uint64_t f = 0;
        int rc = scrub_round(c, &f);
        if (rc < 0)
            return rc;
        xlog_debug("warehouse erase: scrub round %d overwrote %llu free blocks", round,
                   (unsigned long long)f);
        if (round + 1 < SCRUB_ROUNDS) {
            struct timespec ts = {.tv_sec = 1};
            nanosleep(&ts, NULL);
        }
    }
    int rc = whd__exec(c, "DROP TABLE IF EXISTS _erase_mark");
    if (rc == 0)
        rc = whd__exec(c, "FORCE CHECKPOINT");
    return rc;
}

/* Rewrites table without the rows matching cond (SQL over its columns) in one transaction:
 * the rows to keep are copied aside, the table is dropped and made again from its own
 * definition and the kept rows go back. Dropping hands back every block the table used (long
 * strings included), which deleting its rows does not. always: rewrite even when no row
 * matches (rows deleted earlier by a plain DELETE may still have their bytes in the old row
 * groups). *removed_out: rows that matched. */
static int rewrite_table(struct whd_conn *c, const char *table, const char *cond, bool always,
                         uint64_t *removed_out)
{
    struct buf sql, name;
    uint64_t before = 0, kept = 0;
    char *ddl = NULL;
    buf_init(&sql);
    buf_init(&name);
    whd__quote_ident(&name, table);
    const char *t = buf_cstr(&name);
    *removed_out = 0;
    buf_printf(&sql, "SELECT count(*) FROM %s WHERE %s", t, cond);
    int rc = count_rows(c, buf_cstr(&sql), &before);
    if (rc < 0 || (before == 0 && !always))
        goto out;
    if ((rc = table_sql(c, table, &ddl)) < 0 || (rc = whd__begin(c)) < 0)
        goto out;
    buf_reset(&sql);
    buf_printf(&sql,
               "CREATE OR REPLACE TEMP TABLE _erase_keep AS SELECT * FROM %s WHERE NOT "
               "coalesce(%s, false)",
               t, cond);
    if ((rc = whd__exec(c, buf_cstr(&sql))) < 0 ||
        (rc = count_rows(c, "SELECT count(*) FROM _erase_keep", &kept)) < 0) {
        whd__rollback(c);
        goto out;
    }
    buf_reset(&sql);
    buf_printf(&sql, "DROP TABLE %s", t);
    if ((rc = whd__exec(c, buf_cstr(&sql))) < 0 || (rc = whd__exec(c, ddl)) < 0) {
        whd__rollback(c);
        goto out;
    }
    buf_reset(&sql);
    buf_printf(&sql, "INSERT INTO %s SELECT * FROM _erase_keep", t);
    if ((rc = whd__exec(c, buf_cstr(&sql))) < 0) {
        whd__rollback(c);
        goto out;
    }
    if ((rc = whd__commit(c)) < 0)
        goto out;
    *removed_out = before;
    xlog_info("warehouse erase: %s rewritten, %llu rows removed, %llu kept", table,
              (unsigned long long)before, (unsigned long long)kept);
    if (whd__exec(c, "DROP TABLE IF EXISTS _erase_keep") < 0)
        xlog_debug("warehouse erase: %s", c->err);
out:
    free(ddl);
    buf_release(&sql);
    buf_release(&name);
    return rc;
}

int whd__erase_persons(struct wh_conn *wc, const char *const *ids, size_t n, uint64_t *n_out)
{
    struct whd_conn *c = whd__conn(wc);
    struct buf in, sql;
    int rc = 0;
    *n_out = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!ids[i] || !*ids[i])
            return whd__fail(c, ERR_INVALID, "empty distinct id");
    buf_init(&in);
    buf_init(&sql);
    id_list(&in, ids, n);
    const char *l = buf_cstr(&in);

    /* nothing to rewrite when the person has no row (a resumed job) */
    buf_printf(&sql, "user_id IN (%s) OR anonymous_id IN (%s) OR previous_id IN (%s)", l, l, l);
    rc = rewrite_table(c, "events", buf_cstr(&sql), false, n_out);
    if (rc < 0)
        goto out;
    /* the loader's rejects of such events (records it could not load, kept whole): matched by
     * the same members of the payload when it is JSON */
    buf_reset(&sql);
    buf_puts(&sql, "topic = 'events' AND (");
    static const char *const members[] = {"userId", "anonymousId", "previousId"};
    for (size_t m = 0; m < ARRAY_LEN(members); m++)
        buf_printf(&sql, "%stry(json_extract_string(decode(payload), '$.%s')) IN (%s)",
                   m ? " OR " : "", members[m], l);
    buf_putc(&sql, ')');
    uint64_t rejects = 0;
    if ((rc = rewrite_table(c, "_rejects", buf_cstr(&sql), false, &rejects)) < 0)
        goto out;
    /* the identity tables: a few rows each, rewritten the same way (a checkpoint rewrites a
     * row group only when enough of it is deleted) */
    static const char *const tables[] = {"_person_links", "_did_first"};
    for (size_t t = 0; t < ARRAY_LEN(tables); t++) {
        uint64_t hit = 0;
        struct buf cond;
        buf_init(&cond);
        buf_printf(&cond, "did IN (%s)", l);
        if (t == 0)
            buf_printf(&cond, " OR person IN (%s)", l);
        buf_reset(&sql);
        buf_printf(&sql, "SELECT count(*) FROM %s WHERE %s", tables[t], buf_cstr(&cond));
        rc = count_rows(c, buf_cstr(&sql), &hit);
        if (rc == ERR_INVALID)
            rc = 0; /* no identity tables yet */
        if (rc == 0 && hit > 0 && (rc = whd__begin(c)) == 0) {
            buf_reset(&sql);
            buf_printf(&sql,
                       "CREATE OR REPLACE TEMP TABLE _erase_keep AS SELECT * FROM %s WHERE NOT "
                       "(%s)",
                       tables[t], buf_cstr(&cond));
            if ((rc = whd__exec(c, buf_cstr(&sql))) == 0) {
                buf_reset(&sql);
                buf_printf(&sql, "DELETE FROM %s", tables[t]);
                rc = whd__exec(c, buf_cstr(&sql));
            }
            if (rc == 0) {
                buf_reset(&sql);
                buf_printf(&sql, "INSERT INTO %s SELECT * FROM _erase_keep", tables[t]);
                rc = whd__exec(c, buf_cstr(&sql));
            }
            if (rc == 0)
                rc = whd__commit(c);
            else
                whd__rollback(c);
            if (rc == 0 && whd__exec(c, "DROP TABLE IF EXISTS _erase_keep") < 0)
                xlog_debug("warehouse erase: %s", c->err);
        }
        buf_release(&cond);
        if (rc < 0)
            goto out;
    }
    /* the old row groups go, and the WAL with the deleted rows is emptied */
    rc = scrub(c);
out:
    buf_release(&in);
    buf_release(&sql);
    return rc;
}

int whd__erase_records(struct wh_conn *wc, const char *const *coll_ids, const char *const *rec_ids,
                       size_t n, uint64_t *n_out)
{
    struct whd_conn *c = whd__conn(wc);
    struct buf keys, sql, in;
    int rc = 0;
    *n_out = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!coll_ids[i] || !*coll_ids[i] || !rec_ids[i] || !*rec_ids[i] ||
            strchr(coll_ids[i], '/'))
            return whd__fail(c, ERR_INVALID, "empty collection or record id");
    buf_init(&keys);
    buf_init(&sql);
    buf_init(&in);
    char **k = xcalloc(n, sizeof(*k));
    for (size_t i = 0; i < n; i++) {
        struct buf one;
        buf_init(&one);
        buf_printf(&one, "%s/%s", coll_ids[i], rec_ids[i]);
        k[i] = xstrdup(buf_cstr(&one));
        buf_release(&one);
    }
    id_list(&keys, (const char *const *)k, n);
    /* the history: every change event of the records */
    buf_printf(&sql, "concat(collection_id, '/', record_id) IN (%s)", buf_cstr(&keys));
    rc = rewrite_table(c, "changes", buf_cstr(&sql), false, n_out);
    /* the loader's rejects of their change events */
    buf_reset(&sql);
    buf_printf(&sql,
               "topic = 'changes' AND concat(try(json_extract_string(decode(payload), "
               "'$.collectionId')), '/', try(json_extract_string(decode(payload), "
               "'$.recordId'))) IN (%s)",
               buf_cstr(&keys));
    uint64_t rejects = 0;
    if (rc >= 0)
        rc = rewrite_table(c, "_rejects", buf_cstr(&sql), false, &rejects);
    /* the mirrors: the loader deleted the rows, the old row groups may still hold them */
    for (size_t i = 0; i < n && rc >= 0; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(coll_ids[j], coll_ids[i]) == 0;
        if (seen)
            continue;
        buf_reset(&in);
        for (size_t j = i; j < n; j++) {
            if (strcmp(coll_ids[j], coll_ids[i]) != 0)
                continue;
            if (in.len)
                buf_putc(&in, ',');
            id_list(&in, &rec_ids[j], 1);
        }
        buf_reset(&sql);
        id_list(&sql, &coll_ids[i], 1);
        struct buf q;
        buf_init(&q);
        buf_printf(&q, "SELECT table_name FROM _mirrors WHERE collection_id = %s", buf_cstr(&sql));
        duckdb_result res;
        char *table = NULL;
        if (duckdb_query(c->con, buf_cstr(&q), &res) != DuckDBSuccess) {
            rc = whd__result_fail(c, &res, NULL);
        } else {
            char *v = duckdb_row_count(&res) >= 1 ? duckdb_value_varchar(&res, 0, 0) : NULL;
            duckdb_destroy_result(&res);
            if (v) {
                table = xstrdup(v);
                duckdb_free(v);
            }
        }
        buf_release(&q);
        if (rc < 0 || !table)
            continue; /* no mirror of that collection */
        buf_reset(&sql);
        buf_printf(&sql, "id IN (%s)", buf_cstr(&in));
        uint64_t gone = 0;
        rc = rewrite_table(c, table, buf_cstr(&sql), true, &gone);
        free(table);
    }
    for (size_t i = 0; i < n; i++)
        free(k[i]);
    free(k);
    /* the old row groups go, and the WAL with the deleted rows is emptied */
    if (rc >= 0)
        rc = scrub(c);
    buf_release(&keys);
    buf_release(&sql);
    buf_release(&in);
    return rc;
}
