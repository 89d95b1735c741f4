/* whd_persons.c - the identity links of docs/analytics.md, kept up to date incrementally so an
 * insight never has to rebuild them from every event, and the person of every event stored on
 * the event itself so an insight never joins to find it.
 *
 * Keys: a distinct id or person is counted by its 64-bit key, SipHash-2-4 of its text under a
 * fixed key (whd__key, and tandem_key() in SQL). events.did_key is the key of the event's
 * distinct id, written by the loader; events.person_key the key of its person, written by the
 * loader as the distinct id's own key and corrected by the refresh once the id has a link.
 *
 * _person_links (did, person, did_key, person_key, timestamp, log_offset): for each distinct
 * id that links to a user, the earliest link (by timestamp, then log_offset) among the events
 * loaded so far; _did_first (did, did_key, timestamp): each distinct id's earliest event (a
 * person's first seen time is the minimum over its ids); _persons_state (next_offset): every
 * event with a lower log_offset is reflected in both, and its person_key is its person's. A
 * refresh reads only the events loaded since (log_offset ranges skip whole row groups) plus the
 * earlier events of ids whose link changed, in one transaction, so the tables always describe
 * a prefix of the log. Refreshes are serialized within the process. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "warehouse/duckdb/whd_int.h"

/* Never changes: keys are stored in the warehouse file. */
static const unsigned char key_key[crypto_shorthash_siphash24_KEYBYTES] = "tandem.person.k1";

uint64_t whd__key(const char *s, size_t n)
{
    unsigned char out[crypto_shorthash_siphash24_BYTES];
    crypto_shorthash_siphash24(out, (const unsigned char *)s, n, key_key);
    return le_get64(out);
}

/* tandem_key(VARCHAR) -> UBIGINT: the key of a distinct id or person; NULL for NULL */
static void key_fn(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output)
{
    (void)info;
    idx_t n = duckdb_data_chunk_get_size(input);
    duckdb_vector in = duckdb_data_chunk_get_vector(input, 0);
    duckdb_string_t *v = duckdb_vector_get_data(in);
    uint64_t *val = duckdb_vector_get_validity(in);
    uint64_t *out = duckdb_vector_get_data(output);
    if (val) {
        duckdb_vector_ensure_validity_writable(output);
        uint64_t *ov = duckdb_vector_get_validity(output);
        for (idx_t i = 0; i < n; i++)
            if (!duckdb_validity_row_is_valid(val, i))
                duckdb_validity_set_row_invalid(ov, i);
    }
    for (idx_t i = 0; i < n; i++) {
        if (val && !duckdb_validity_row_is_valid(val, i))
            continue;
        const char *p =
            duckdb_string_is_inlined(v[i]) ? v[i].value.inlined.inlined : v[i].value.pointer.ptr;
        out[i] = whd__key(p, duckdb_string_t_length(v[i]));
    }
}

/* tandem_bits(UBIGINT) -> UTINYINT[]: the positions of the set bits, lowest first (NULL for
 * NULL); unnested and counted it turns per-person bucket masks into per-bucket counts */
static void bits_fn(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output)
{
    idx_t n = duckdb_data_chunk_get_size(input);
    duckdb_vector in = duckdb_data_chunk_get_vector(input, 0);
    const uint64_t *v = duckdb_vector_get_data(in);
    uint64_t *val = duckdb_vector_get_validity(in);
    duckdb_list_entry *ent = duckdb_vector_get_data(output);
    duckdb_vector child = duckdb_list_vector_get_child(output);
    idx_t total = duckdb_list_vector_get_size(output);
    idx_t need = total;
    for (idx_t i = 0; i < n; i++)
        if (!val || duckdb_validity_row_is_valid(val, i))
            need += (idx_t)__builtin_popcountll(v[i]);
    if (duckdb_list_vector_reserve(output, need) != DuckDBSuccess) {
        duckdb_scalar_function_set_error(info, "tandem_bits: out of memory");
        return;
    }
    uint8_t *pos = duckdb_vector_get_data(child);
    if (val)
        duckdb_vector_ensure_validity_writable(output);
    for (idx_t i = 0; i < n; i++) {
        if (val && !duckdb_validity_row_is_valid(val, i)) {
            duckdb_validity_set_row_invalid(duckdb_vector_get_validity(output), i);
            ent[i].offset = total;
            ent[i].length = 0;
            continue;
        }
        ent[i].offset = total;
        for (uint64_t m = v[i]; m; m &= m - 1)
            pos[total++] = (uint8_t)__builtin_ctzll(m);
        ent[i].length = total - ent[i].offset;
    }
    duckdb_list_vector_set_size(output, total);
}

/* tandem_bitcount(UBIGINT) -> UBIGINT[64], an aggregate: for each bit position, how many of
 * the group's values have it set (NULLs ignored: like count(), a group of only NULLs gives 64
 * zeros). Over per-person bucket masks it gives the
 * persons of every bucket in one pass. The state is the 64 counts; a zeroed state is empty. */
struct bc_state {
    uint64_t n[64];
};

static idx_t bc_size(duckdb_function_info info)
{
    (void)info;
    return sizeof(struct bc_state);
}

static void bc_init(duckdb_function_info info, duckdb_aggregate_state state)
{
    (void)info;
    memset((void *)state, 0, sizeof(struct bc_state));
}

static void bc_update(duckdb_function_info info, duckdb_data_chunk input,
                      duckdb_aggregate_state *states)
{
    (void)info;
    idx_t rows = duckdb_data_chunk_get_size(input);
    duckdb_vector in = duckdb_data_chunk_get_vector(input, 0);
    const uint64_t *v = duckdb_vector_get_data(in);
    uint64_t *val = duckdb_vector_get_validity(in);
    for (idx_t r = 0; r < rows; r++) {
        if (val && !duckdb_validity_row_is_valid(val, r))
            continue;
        struct bc_state *s = (struct bc_state *)states[r];
        for (uint64_t m = v[r]; m; m &= m - 1)
            s->n[__builtin_ctzll(m)]++;
    }
}

static void bc_combine(duckdb_function_info info, duckdb_aggregate_state *source,
                       duckdb_aggregate_state *target, idx_t count)
{
    (void)info;
    for (idx_t i = 0; i < count; i++) {
        const struct bc_state *src = (const struct bc_state *)source[i];
        struct bc_state *dst = (struct bc_state *)target[i];
        for (int b = 0; b < 64; b++)
            dst->n[b] += src->n[b];
    }
}

static void bc_finalize(duckdb_function_info info, duckdb_aggregate_state *source,
                        duckdb_vector result, idx_t count, idx_t offset)
{
    duckdb_list_entry *ent = duckdb_vector_get_data(result);
    idx_t base = duckdb_list_vector_get_size(result);
    if (duckdb_list_vector_reserve(result, base + 64 * count) != DuckDBSuccess ||
        duckdb_list_vector_set_size(result, base + 64 * count) != DuckDBSuccess) {
        duckdb_aggregate_function_set_error(info, "tandem_bitcount: out of memory");
        return;
    }
    uint64_t *out = duckdb_vector_get_data(duckdb_list_vector_get_child(result));
    for (idx_t i = 0; i < count; i++) {
        const struct bc_state *s = (const struct bc_state *)source[i];
        ent[offset + i].offset = base + 64 * i;
        ent[offset + i].length = 64;
        memcpy(out + base + 64 * i, s->n, sizeof(s->n));
    }
}

static int register_bitcount(duckdb_connection con)
{
    duckdb_aggregate_function f = duckdb_create_aggregate_function();
    if (!f)
        return ERR_INTERNAL;
    duckdb_aggregate_function_set_name(f, "tandem_bitcount");
    duckdb_logical_type u64 = duckdb_create_logical_type(DUCKDB_TYPE_UBIGINT);
    duckdb_logical_type list = duckdb_create_list_type(u64);
    duckdb_aggregate_function_add_parameter(f, u64);
    duckdb_aggregate_function_set_return_type(f, list);
    duckdb_destroy_logical_type(&list);
    duckdb_destroy_logical_type(&u64);
    duckdb_aggregate_function_set_functions(f, bc_size, bc_init, bc_update, bc_combine,
                                            bc_finalize);
    int rc = duckdb_register_aggregate_function(con, f) == DuckDBSuccess ? 0 : ERR_INTERNAL;
    duckdb_destroy_aggregate_function(&f);
    return rc;
}

bool whd__has_function(duckdb_connection con, const char *name)
{
    duckdb_prepared_statement ps = NULL;
    duckdb_result res;
    bool found = false;
    if (duckdb_prepare(con, "SELECT count(*) FROM duckdb_functions() WHERE function_name = $1",
                       &ps) == DuckDBSuccess &&
        duckdb_bind_varchar(ps, 1, name) == DuckDBSuccess) {
        if (duckdb_execute_prepared(ps, &res) == DuckDBSuccess)
            found = duckdb_value_int64(&res, 0, 0) > 0;
        duckdb_destroy_result(&res);
    }
    duckdb_destroy_prepare(&ps);
    return found;
}

static int register_scalar(duckdb_connection con, const char *name, duckdb_type arg,
                           duckdb_logical_type ret, duckdb_scalar_function_t fn)
{
    duckdb_scalar_function f = duckdb_create_scalar_function();
    if (!f)
        return ERR_INTERNAL;
    duckdb_scalar_function_set_name(f, name);
    duckdb_logical_type t = duckdb_create_logical_type(arg);
    duckdb_scalar_function_add_parameter(f, t);
    duckdb_destroy_logical_type(&t);
    duckdb_scalar_function_set_return_type(f, ret);
    duckdb_scalar_function_set_function(f, fn);
    int rc = duckdb_register_scalar_function(con, f) == DuckDBSuccess ? 0 : ERR_INTERNAL;
    duckdb_destroy_scalar_function(&f);
    return rc;
}

int whd__persons_register(duckdb_connection con)
{
    if (whd__has_function(con, "tandem_key"))
        return 0; /* DuckDB keeps functions per database: registered by another connection */
    duckdb_logical_type u64 = duckdb_create_logical_type(DUCKDB_TYPE_UBIGINT);
    duckdb_logical_type u8 = duckdb_create_logical_type(DUCKDB_TYPE_UTINYINT);
    duckdb_logical_type list = duckdb_create_list_type(u8);
    int rc = register_scalar(con, "tandem_key", DUCKDB_TYPE_VARCHAR, u64, key_fn);
    if (rc == 0)
        rc = register_scalar(con, "tandem_bits", DUCKDB_TYPE_UBIGINT, list, bits_fn);
    if (rc == 0)
        rc = register_bitcount(con);
    duckdb_destroy_logical_type(&list);
    duckdb_destroy_logical_type(&u8);
    duckdb_destroy_logical_type(&u64);
    return rc;
}

static pthread_mutex_t refresh_mu = PTHREAD_MUTEX_INITIALIZER;

static int query_u64x2(struct whd_conn *c, const char *sql, uint64_t *a, uint64_t *b)
{
    duckdb_result res;
    if (duckdb_query(c->con, sql, &res) != DuckDBSuccess)
        return whd__result_fail(c, &res, "cannot read the persons state");
    *a = duckdb_value_uint64(&res, 0, 0);
    *b = duckdb_value_uint64(&res, 1, 0);
    duckdb_destroy_result(&res);
    return 0;
}

int whd__persons_schema(struct whd_conn *c)
{
    static const char *const sql[] = {
        "CREATE TABLE IF NOT EXISTS _person_links (did VARCHAR, person VARCHAR, did_key UBIGINT, "
        "person_key UBIGINT, \"timestamp\" TIMESTAMP, log_offset UBIGINT)",
        "CREATE TABLE IF NOT EXISTS _did_first (did VARCHAR, did_key UBIGINT, \"timestamp\" "
        "TIMESTAMP)",
        "CREATE TABLE IF NOT EXISTS _persons_state (next_offset UBIGINT)",
    };
    int rc = 0;
    for (size_t i = 0; i < ARRAY_LEN(sql) && rc == 0; i++)
        rc = whd__exec(c, sql[i]);
    return rc;
}

int whd__persons_refresh(struct wh_conn *wc, uint64_t *next_out)
{
    struct whd_conn *c = whd__conn(wc);
    uint64_t next = 0, hi = 0;
    char sql[4096];
    int rc;
    pthread_mutex_lock(&refresh_mu);
    if ((rc = whd__begin(c)) < 0)
        goto out;
    if ((rc = query_u64x2(c,
                          "SELECT coalesce((SELECT max(log_offset) + 1 FROM events), 0), "
                          "coalesce((SELECT max(next_offset) FROM _persons_state), 0)",
                          &hi, &next)) < 0)
        goto fail;
    if (hi <= next) {
        whd__rollback(c);
        hi = next;
        goto out;
    }
    snprintf(sql, sizeof(sql),
             "CREATE OR REPLACE TEMP TABLE _pl_delta AS "
             "WITH cand AS (SELECT anonymous_id AS did, user_id AS person, \"timestamp\" AS ts, "
             "log_offset AS lo FROM events WHERE log_offset >= %" PRIu64
             " AND log_offset < %" PRIu64
             " AND user_id IS NOT NULL AND anonymous_id IS NOT NULL AND anonymous_id <> user_id "
             "UNION ALL SELECT previous_id, user_id, \"timestamp\", log_offset FROM events "
             "WHERE log_offset >= %" PRIu64 " AND log_offset < %" PRIu64 " AND type = 'alias' AND "
             "previous_id IS NOT NULL AND user_id IS NOT NULL AND previous_id <> user_id), "
             "best AS (SELECT did, arg_min(person, (ts, lo)) AS person, min(ts) AS ts, "
             "arg_min(lo, (ts, lo)) AS lo FROM cand GROUP BY did) "
             "SELECT did, person, tandem_key(did) AS did_key, tandem_key(person) AS person_key, "
             "ts AS \"timestamp\", lo AS log_offset FROM best",
             next, hi, next, hi);
    if ((rc = whd__exec(c, sql)) < 0)
        goto fail;
    /* grouped by the stored key of the distinct id (an integer) rather than its text; ids and
     * their keys correspond one to one (the keys' premise everywhere) */
    snprintf(sql, sizeof(sql),
             "CREATE OR REPLACE TEMP TABLE _df_delta AS SELECT any_value(coalesce(user_id, "
             "anonymous_id)) AS did, did_key, min(\"timestamp\") AS \"timestamp\" FROM events "
             "WHERE log_offset >= %" PRIu64 " AND log_offset < %" PRIu64
             " AND did_key IS NOT NULL GROUP BY did_key",
             next, hi);
    uint64_t n_old = 0, unused = 0;
    if ((rc = whd__exec(c, sql)) < 0 ||
        /* the linked ids with events before this refresh (their first event is stored): only
         * those can have earlier events whose person changes */
        (rc = whd__exec(c, "CREATE OR REPLACE TEMP TABLE _pl_old AS SELECT d.did_key FROM "
                           "_pl_delta d SEMI JOIN _did_first f ON f.did_key = d.did_key")) < 0 ||
        (rc = query_u64x2(c, "SELECT count(*), 0 FROM _pl_old", &n_old, &unused)) < 0 ||
        /* an earlier link or first event replaces the stored one */
        (rc = whd__exec(c, "DELETE FROM _person_links p USING _pl_delta d WHERE p.did_key = "
                           "d.did_key AND (d.\"timestamp\" < p.\"timestamp\" OR "
                           "(d.\"timestamp\" = p.\"timestamp\" AND d.log_offset < "
                           "p.log_offset))")) < 0 ||
        (rc = whd__exec(c, "INSERT INTO _person_links SELECT d.* FROM _pl_delta d ANTI JOIN "
                           "_person_links p ON p.did_key = d.did_key")) < 0 ||
        (rc = whd__exec(c, "DELETE FROM _did_first f USING _df_delta d WHERE f.did_key = "
                           "d.did_key AND d.\"timestamp\" < f.\"timestamp\"")) < 0 ||
        (rc = whd__exec(c, "INSERT INTO _did_first SELECT d.* FROM _df_delta d ANTI JOIN "
                           "_did_first f ON f.did_key = d.did_key")) < 0)
        goto fail;
    /* the persons of the events: the earlier events of ids whose link is new or changed (a
     * scan of every earlier event, skipped when no such id has any), then the new events of
     * every linked id */
    snprintf(sql, sizeof(sql),
             "UPDATE events SET person_key = l.person_key FROM _person_links l WHERE "
             "l.did_key = events.did_key AND l.did_key IN (SELECT did_key FROM _pl_old) AND "
             "events.log_offset < %" PRIu64 " AND events.person_key IS DISTINCT FROM l.person_key",
             next);
    if (n_old > 0 && (rc = whd__exec(c, sql)) < 0)
        goto fail;
    snprintf(sql, sizeof(sql),
             "UPDATE events SET person_key = l.person_key FROM _person_links l WHERE "
             "l.did_key = events.did_key AND events.log_offset >= %" PRIu64
             " AND events.log_offset < %" PRIu64
             " AND events.person_key IS DISTINCT FROM l.person_key",
             next, hi);
    if ((rc = whd__exec(c, sql)) < 0 || (rc = whd__exec(c, "DELETE FROM _persons_state")) < 0)
        goto fail;
    snprintf(sql, sizeof(sql), "INSERT INTO _persons_state VALUES (%" PRIu64 ")", hi);
    if ((rc = whd__exec(c, sql)) < 0 || (rc = whd__exec(c, "DROP TABLE _pl_delta")) < 0 ||
        (rc = whd__exec(c, "DROP TABLE _df_delta")) < 0 ||
        (rc = whd__exec(c, "DROP TABLE _pl_old")) < 0)
        goto fail;
    rc = whd__commit(c);
    goto out;
fail:
    whd__rollback(c);
out:
    pthread_mutex_unlock(&refresh_mu);
    if (rc == 0 && next_out)
        *next_out = hi;
    return rc;
}

/* Retention: the identity rows of distinct ids with no event left, whose link or first event
 * is older than before_us (an id that comes back later gets a new first event from the next
 * refresh; an anonymous id's link to a user is learnt again only from a new linking event).
 * Under refresh_mu, so it never conflicts with a refresh; one transaction. */
int whd__persons_forget(struct wh_conn *wc, int64_t before_us, uint64_t *links_out,
                        uint64_t *firsts_out)
{
    struct whd_conn *c = whd__conn(wc);
    char sql[1024];
    uint64_t n[2] = {0, 0};
    static const char *const tables[] = {"_person_links", "_did_first"};
    int rc;
    pthread_mutex_lock(&refresh_mu);
    if ((rc = whd__begin(c)) < 0)
        goto out;
    for (size_t i = 0; i < ARRAY_LEN(tables); i++) {
        snprintf(sql, sizeof(sql),
                 "DELETE FROM %s WHERE \"timestamp\" < make_timestamp(%" PRId64 ") AND did_key "
                 "NOT IN (SELECT did_key FROM events WHERE did_key IS NOT NULL)",
                 tables[i], before_us);
        duckdb_result res;
        if (duckdb_query(c->con, sql, &res) != DuckDBSuccess) {
            rc = whd__result_fail(c, &res, "cannot forget identities past retention");
            whd__rollback(c);
            goto out;
        }
        n[i] = duckdb_rows_changed(&res);
        duckdb_destroy_result(&res);
    }
    rc = whd__commit(c);
out:
    pthread_mutex_unlock(&refresh_mu);
    if (rc == 0) {
        *links_out += n[0];
        *firsts_out += n[1];
    }
    return rc;
}
