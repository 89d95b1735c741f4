/* Warehouse on DuckDB: schema, event loading, offsets committed with rows, rejects,
 * checkpoints. Against a real DuckDB file under $TMPDIR. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sys/stat.h>

#include "warehouse/duckdb/whd_int.h"
#include "wh_test_util.h"

struct fx {
    char path[1024];
    struct wh *wh;
    struct wh_conn *c;
};

static void fx_open(struct fx *f)
{
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = f->path;
    cfg.threads = 1;
    assert_int_equal(wh_open(&cfg, &f->wh), 0);
    assert_int_equal(wh_conn_open(f->wh, &f->c), 0);
    assert_int_equal(wh_ensure_schema(f->c), 0);
}

static void fx_close(struct fx *f)
{
    wh_conn_close(f->c);
    wh_close(f->wh);
    f->c = NULL;
    f->wh = NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    wht_path(f->path, sizeof(f->path), "wh");
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fx_close(f);
    wht_unlink(f->path);
    free(f);
    return 0;
}

/* A raw connection to the same database, for injecting concurrent writers (white box). */
static duckdb_connection raw_conn(struct fx *f)
{
    duckdb_connection con;
    assert_int_equal(duckdb_connect(((struct whd *)f->wh)->db, &con), DuckDBSuccess);
    return con;
}

static void raw_exec(duckdb_connection con, const char *sql)
{
    duckdb_result res;
    assert_int_equal(duckdb_query(con, sql, &res), DuckDBSuccess);
    duckdb_destroy_result(&res);
}

static struct wh_event mkev(uint64_t off, const char *id)
{
    struct wh_event e = {
        .log_offset = off,
        .id = id,
        .type = "track",
        .event = "Signed Up",
        .user_id = "u1",
        .anonymous_id = "a1",
        .group_id = NULL,
        .previous_id = NULL,
        .timestamp_us = 1763750918123000, /* 2025-11-21T18:48:38.123Z */
        .original_timestamp_us = 1763750918000000,
        .sent_at_us = WH_NO_TIME,
        .received_at_us = 1763750918456789,
        .properties = "{\"plan\":\"pro\",\"n\":3}",
        .traits = NULL,
        .context = "{\"ip\":\"1.2.3.4\",\"library\":{\"name\":\"x\"}}",
        .source = "web",
    };
    return e;
}

static void test_schema_tables(void **state)
{
    struct fx *f = *state;
    assert_rows(f->c, "SELECT table_name FROM duckdb_tables() WHERE schema_name='main' ORDER BY 1",
                "[[\"_did_first\"],[\"_mirror_fields\"],[\"_mirrors\"],[\"_model_runs\"],"
                "[\"_model_state\"],[\"_model_tests\"],[\"_models\"],[\"_offsets\"],"
                "[\"_person_links\"],[\"_persons_state\"],[\"_rejects\"],[\"audit\"],[\"changes\"],"
                "[\"events\"],[\"predictions\"],[\"requests\"]]");
    /* idempotent */
    assert_int_equal(wh_ensure_schema(f->c), 0);
    assert_rows(f->c,
                "SELECT data_type FROM duckdb_columns() WHERE table_name='events' "
                "AND column_name IN ('properties','timestamp','log_offset') ORDER BY column_name",
                "[[\"UBIGINT\"],[\"JSON\"],[\"TIMESTAMP\"]]");
}

/* A warehouse from before person keys: events without did_key/person_key and identity tables
 * without keys. Opening it adds and fills the keys and replaces the identity tables with empty
 * ones that have keys; the next refresh rebuilds them, correcting the person of the anonymous
 * event. */
static void test_migrates_person_keys(void **state)
{
    struct fx *f = *state;
    duckdb_connection con = raw_conn(f);
    raw_exec(con, "DROP TABLE events");
    raw_exec(con, "CREATE TABLE events (id VARCHAR, type VARCHAR, event VARCHAR, user_id VARCHAR, "
                  "anonymous_id VARCHAR, group_id VARCHAR, previous_id VARCHAR, \"timestamp\" "
                  "TIMESTAMP, original_timestamp TIMESTAMP, sent_at TIMESTAMP, received_at "
                  "TIMESTAMP, properties JSON, traits JSON, context JSON, source VARCHAR, "
                  "log_offset UBIGINT)");
    raw_exec(con, "INSERT INTO events (id, user_id, anonymous_id, \"timestamp\", log_offset) "
                  "VALUES ('e0', NULL, 'a1', '2024-01-01', 0), ('e1', 'u1', 'a1', '2024-01-02', "
                  "1), ('e2', NULL, NULL, '2024-01-03', 2)");
    raw_exec(con,
             "CREATE OR REPLACE TABLE _person_links (did VARCHAR, person VARCHAR, \"timestamp\" "
             "TIMESTAMP, log_offset UBIGINT)");
    raw_exec(con, "CREATE OR REPLACE TABLE _persons_state (next_offset UBIGINT)");
    raw_exec(con, "INSERT INTO _persons_state VALUES (3)");
    duckdb_disconnect(&con);
    fx_close(f);
    fx_open(f);
    assert_rows(f->c,
                "SELECT id, did_key = tandem_key(coalesce(user_id, anonymous_id)), person_key = "
                "did_key FROM events ORDER BY id",
                "[[\"e0\",true,true],[\"e1\",true,true],[\"e2\",null,null]]");
    assert_rows(f->c,
                "SELECT (SELECT count(*) FROM _person_links), (SELECT count(*) FROM "
                "_persons_state), (SELECT count(*) FROM duckdb_columns() WHERE table_name = "
                "'_person_links' AND column_name = 'did_key')",
                "[[0,0,1]]");
    /* idempotent */
    assert_int_equal(wh_ensure_schema(f->c), 0);
    uint64_t next = 0;
    assert_int_equal(wh_persons_refresh(f->c, &next), 0);
    assert_int_equal(next, 3);
    assert_rows(f->c,
                "SELECT id, person_key = tandem_key('u1') FROM events WHERE person_key IS NOT "
                "NULL ORDER BY id",
                "[[\"e0\",true],[\"e1\",true]]");
    assert_rows(f->c, "SELECT did, person, did_key = tandem_key('a1') FROM _person_links",
                "[[\"a1\",\"u1\",true]]");
}

/* tandem_key and tandem_bits, the scalar functions the insights use */
static void test_person_functions(void **state)
{
    struct fx *f = *state;
    assert_rows(f->c,
                "SELECT tandem_bits(0), tandem_bits(5), tandem_bits(NULL), "
                "tandem_bits(9223372036854775808), len(tandem_bits(18446744073709551615))",
                "[[[],[0,2],null,[63],64]]");
    /* more rows than one vector, NULLs among them */
    assert_rows(
        f->c,
        "SELECT sum(len(tandem_bits(CASE WHEN i % 7 = 0 THEN NULL ELSE i::UBIGINT END))) = "
        "sum(bit_count(i)) FILTER (WHERE i % 7 <> 0), count(*) FILTER (WHERE "
        "list_sum(list_transform(tandem_bits(i::UBIGINT), p -> 1::UBIGINT << p)) <> i) FROM "
        "range(1, 10000) t(i)",
        "[[true,0]]");
    /* the aggregate against bit tests, per group, over many vectors and NULLs */
    assert_rows(f->c,
                "WITH v AS (SELECT i % 3 AS g, CASE WHEN i % 11 = 0 THEN NULL ELSE "
                "hash(i) END AS m FROM range(50000) t(i)), a AS (SELECT g, "
                "tandem_bitcount(m) AS c FROM v GROUP BY g), b AS (SELECT g, list((SELECT "
                "count(*) FROM v v2 WHERE v2.g = x.g AND (v2.m >> p) & 1 = 1) ORDER BY p) AS c "
                "FROM (SELECT DISTINCT g FROM v) x, range(64) r(p) GROUP BY g) SELECT "
                "count(*) FILTER (WHERE a.c = b.c), count(*), min(len(a.c)), "
                "max(list_sum(a.c)) > 0 FROM a JOIN b USING (g)",
                "[[3,3,64,true]]");
    /* like count(): NULLs only give zeros */
    assert_rows(f->c,
                "SELECT list_sum(tandem_bitcount(NULL::UBIGINT)), "
                "len(tandem_bitcount(NULL::UBIGINT)), tandem_bitcount(5::UBIGINT)[1:4]",
                "[[0,64,[1,0,1,0]]]");
    assert_rows(f->c,
                "SELECT tandem_key(NULL), tandem_key('a') = tandem_key('a'), tandem_key('a') <> "
                "tandem_key('b'), tandem_key('') <> tandem_key('a'), count(DISTINCT tandem_key("
                "'id-' || i)) FROM range(100000) t(i)",
                "[[null,true,true,true,100000]]");
}

static void test_load_events_all_columns(void **state)
{
    struct fx *f = *state;
    struct wh_event ev[3] = {mkev(0, "m0"), mkev(1, "m1"), mkev(2, "m2")};
    ev[2].user_id = NULL;
    ev[2].anonymous_id = NULL;
    ev[1].type = "identify";
    ev[1].event = NULL;
    ev[1].group_id = "g1";
    ev[1].previous_id = "p1";
    ev[1].traits = "{\"email\":\"a@b.c\"}";
    ev[1].properties = NULL;
    struct wh_load ld = {.consumer = "c-events", .topic = "events", .next_offset = 3};
    struct wh_load_stats st;
    assert_int_equal(wh_load_events(f->c, &ld, ev, 3, &st), 0);
    assert_int_equal(st.rows, 3);
    /* the keys: of user_id when there is one, none without any id */
    assert_rows(f->c,
                "SELECT id, did_key = tandem_key('u1'), person_key = did_key FROM events ORDER "
                "BY log_offset",
                "[[\"m0\",true,true],[\"m1\",true,true],[\"m2\",null,null]]");
    assert_rows(f->c,
                "SELECT id, type, event, user_id, anonymous_id, group_id, previous_id, "
                "\"timestamp\", original_timestamp, sent_at, received_at, properties, traits, "
                "context, source, log_offset FROM events WHERE log_offset < 2 ORDER BY log_offset",
                "[[\"m0\",\"track\",\"Signed Up\",\"u1\",\"a1\",null,null,"
                "\"2025-11-21T18:48:38.123Z\",\"2025-11-21T18:48:38.000Z\",null,"
                "\"2025-11-21T18:48:38.456789Z\",{\"plan\":\"pro\",\"n\":3},null,"
                "{\"ip\":\"1.2.3.4\",\"library\":{\"name\":\"x\"}},\"web\",0],"
                "[\"m1\",\"identify\",null,\"u1\",\"a1\",\"g1\",\"p1\","
                "\"2025-11-21T18:48:38.123Z\",\"2025-11-21T18:48:38.000Z\",null,"
                "\"2025-11-21T18:48:38.456789Z\",null,{\"email\":\"a@b.c\"},"
                "{\"ip\":\"1.2.3.4\",\"library\":{\"name\":\"x\"}},\"web\",1]]");
    /* JSON columns are queryable with the json functions */
    assert_rows(f->c,
                "SELECT json_extract_string(properties, '$.plan'), "
                "json_extract(context, '$.library.name')::VARCHAR, traits->>'email' "
                "FROM events WHERE log_offset < 2 ORDER BY log_offset",
                "[[\"pro\",\"\\\"x\\\"\",null],[null,\"\\\"x\\\"\",\"a@b.c\"]]");
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(f->c, "c-events", &next), 0);
    assert_int_equal(next, 3);
    assert_int_equal(wh_offset_get(f->c, "nobody", &next), ERR_NOTFOUND);
}

static void test_load_many_rows_reuses_chunk(void **state)
{
    struct fx *f = *state;
    enum { N = 5000 }; /* more than two data chunks */
    struct wh_event *ev = calloc(N, sizeof(*ev));
    char(*ids)[16] = calloc(N, 16);
    for (size_t i = 0; i < N; i++) {
        snprintf(ids[i], 16, "m%zu", i);
        ev[i] = mkev(i, ids[i]);
        if (i % 3 == 0)
            ev[i].user_id = NULL;
    }
    struct wh_load ld = {.consumer = "c", .topic = "events", .next_offset = N / 2};
    assert_int_equal(wh_load_events(f->c, &ld, ev, N / 2, NULL), 0);
    ld.next_offset = N;
    assert_int_equal(wh_load_events(f->c, &ld, ev + N / 2, N - N / 2, NULL), 0);
    assert_rows(f->c,
                "SELECT count(*), count(DISTINCT id), count(user_id), sum(log_offset) FROM events",
                "[[5000,5000,3333,12497500]]");
    free(ev);
    free(ids);
}

static void test_crash_between_batches(void **state)
{
    struct fx *f = *state;
    struct wh_event ev[4] = {mkev(0, "a"), mkev(1, "b"), mkev(2, "c"), mkev(3, "d")};
    struct wh_load ld = {.consumer = "c", .topic = "events", .next_offset = 2};
    assert_int_equal(wh_load_events(f->c, &ld, ev, 2, NULL), 0);
    /* a batch in flight when the process dies: rows appended, never committed */
    duckdb_connection other = raw_conn(f);
    raw_exec(other, "BEGIN");
    raw_exec(other, "INSERT INTO events (id, log_offset) VALUES ('c', 2)");
    duckdb_disconnect(&other); /* the connection goes away with its transaction open */
    fx_close(f);
    fx_open(f);
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(f->c, "c", &next), 0);
    assert_int_equal(next, 2);
    /* the loader resumes from next and loads the rest */
    ld.next_offset = 4;
    assert_int_equal(wh_load_events(f->c, &ld, ev + next, 4 - next, NULL), 0);
    fx_close(f);
    fx_open(f);
    assert_rows(f->c, "SELECT string_agg(id, ',' ORDER BY log_offset), count(*) FROM events",
                "[[\"a,b,c,d\",4]]");
    assert_int_equal(wh_offset_get(f->c, "c", &next), 0);
    assert_int_equal(next, 4);
}

static void test_failed_batch_leaves_nothing(void **state)
{
    struct fx *f = *state;
    struct wh_event ev[4] = {mkev(0, "a"), mkev(1, "b"), mkev(2, "c"), mkev(3, "d")};
    struct wh_load ld = {.consumer = "c", .topic = "events", .next_offset = 2};
    assert_int_equal(wh_load_events(f->c, &ld, ev, 2, NULL), 0);
    /* another transaction holds the consumer's offset row: the batch's offset update
     * conflicts after its rows were appended; nothing of the batch may remain */
    duckdb_connection other = raw_conn(f);
    raw_exec(other, "BEGIN");
    raw_exec(other, "UPDATE _offsets SET next_offset = 99 WHERE consumer = 'c'");
    ld.next_offset = 4;
    assert_int_equal(wh_load_events(f->c, &ld, ev + 2, 2, NULL), ERR_BUSY);
    assert_non_null(strstr(wh_errmsg(f->c), "onflict"));
    raw_exec(other, "ROLLBACK");
    duckdb_disconnect(&other);
    assert_rows(f->c, "SELECT count(*) FROM events", "[[2]]");
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(f->c, "c", &next), 0);
    assert_int_equal(next, 2);
    /* the retry succeeds and nothing is doubled */
    assert_int_equal(wh_load_events(f->c, &ld, ev + 2, 2, NULL), 0);
    assert_rows(f->c, "SELECT count(*), count(DISTINCT id) FROM events", "[[4,4]]");
}

/* Batches joined with `more`: nothing is visible or stored until the last one commits them
 * all with its offset; meanwhile the connection refuses everything else. */
static void test_load_spanning_batches(void **state)
{
    struct fx *f = *state;
    struct wh_event ev[5] = {mkev(0, "a"), mkev(1, "b"), mkev(2, "c"), mkev(3, "d"), mkev(4, "e")};
    const char bad[] = "x";
    struct wh_reject rej = {.log_offset = 5, .reason = "no", .payload = bad, .payload_len = 1};
    struct wh_load ld = {.consumer = "c", .topic = "events", .next_offset = 2, .more = true};
    struct wh_load_stats st;
    assert_int_equal(wh_load_events(f->c, &ld, ev, 2, &st), 0);
    assert_int_equal(st.rows, 2);
    ld.next_offset = 6;
    ld.rejects = &rej;
    ld.n_rejects = 1;
    assert_int_equal(wh_load_events(f->c, &ld, ev + 2, 3, &st), 0);
    assert_int_equal(st.rejects, 1);
    /* open: other connections see nothing, this one takes nothing but loads */
    struct wh_conn *other;
    assert_int_equal(wh_conn_open(f->wh, &other), 0);
    assert_rows(other, "SELECT count(*) FROM events", "[[0]]");
    assert_rows(other, "SELECT count(*) FROM _rejects", "[[0]]");
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(other, "c", &next), ERR_NOTFOUND);
    assert_int_equal(wh_offset_get(f->c, "c", &next), ERR_BUSY);
    assert_int_equal(wh_checkpoint(f->c, false), ERR_BUSY);
    struct wh_query q = {.sql = "SELECT 1"};
    struct wh_result r;
    assert_int_equal(wh_query(f->c, &q, &r), ERR_BUSY);
    assert_null(r.rows);
    wh_result_release(&r);
    /* the last batch (here only an offset) commits everything */
    ld.more = false;
    ld.next_offset = 7;
    ld.n_rejects = 0;
    assert_int_equal(wh_load_events(f->c, &ld, NULL, 0, &st), 0);
    assert_rows(other, "SELECT string_agg(id, ',' ORDER BY log_offset) FROM events",
                "[[\"a,b,c,d,e\"]]");
    assert_rows(other, "SELECT log_offset, reason FROM _rejects", "[[5,\"no\"]]");
    assert_int_equal(wh_offset_get(other, "c", &next), 0);
    assert_int_equal(next, 7);
    assert_int_equal(wh_checkpoint(f->c, false), 0);
    /* a connection closed with a load open rolls it back */
    ld.more = true;
    ld.next_offset = 8;
    struct wh_event late = mkev(7, "f");
    assert_int_equal(wh_load_events(other, &ld, &late, 1, NULL), 0);
    wh_conn_close(other);
    assert_rows(f->c, "SELECT count(*) FROM events", "[[5]]");
    assert_int_equal(wh_offset_get(f->c, "c", &next), 0);
    assert_int_equal(next, 7);
}

/* A failure in the last batch of a joined transaction leaves nothing of any of its batches. */
static void test_failed_spanning_load_leaves_nothing(void **state)
{
    struct fx *f = *state;
    struct wh_event ev[6] = {mkev(0, "a"), mkev(1, "b"), mkev(2, "c"),
                             mkev(3, "d"), mkev(4, "e"), mkev(5, "f")};
    struct wh_load ld = {.consumer = "c", .topic = "events", .next_offset = 1};
    assert_int_equal(wh_load_events(f->c, &ld, ev, 1, NULL), 0);
    ld.more = true;
    ld.next_offset = 3;
    assert_int_equal(wh_load_events(f->c, &ld, ev + 1, 2, NULL), 0);
    ld.next_offset = 5;
    assert_int_equal(wh_load_events(f->c, &ld, ev + 3, 2, NULL), 0);
    /* another writer holds the offset row: the closing batch conflicts */
    duckdb_connection other = raw_conn(f);
    raw_exec(other, "BEGIN");
    raw_exec(other, "UPDATE _offsets SET next_offset = 99 WHERE consumer = 'c'");
    ld.more = false;
    ld.next_offset = 6;
    assert_int_equal(wh_load_events(f->c, &ld, ev + 5, 1, NULL), ERR_BUSY);
    raw_exec(other, "ROLLBACK");
    duckdb_disconnect(&other);
    /* the connection is usable again, and holds only the first, separately committed batch */
    assert_rows(f->c, "SELECT string_agg(id, ',') FROM events", "[[\"a\"]]");
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(f->c, "c", &next), 0);
    assert_int_equal(next, 1);
    /* the loader reads from `next` again: every record once */
    ld.more = true;
    ld.next_offset = 4;
    assert_int_equal(wh_load_events(f->c, &ld, ev + 1, 3, NULL), 0);
    ld.more = false;
    ld.next_offset = 6;
    assert_int_equal(wh_load_events(f->c, &ld, ev + 4, 2, NULL), 0);
    assert_rows(f->c, "SELECT count(*), count(DISTINCT id) FROM events", "[[6,6]]");
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while (in && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    if (in)
        fclose(in);
    fclose(out);
}

/* A transaction of more than one DuckDB row group (122,880 rows): DuckDB writes its rows
 * compressed into the database file and logs only their place in the WAL. The files as they
 * are right after the commit (what a process killed then leaves) hold every row. */
static void test_bulk_load_survives_a_crash(void **state)
{
    struct fx *f = *state;
    enum { N = 2 * 122880 + 1000, B = 50000 };
    struct wh_event *ev = calloc(N, sizeof(*ev));
    char(*ids)[16] = calloc(N, 16);
    for (size_t i = 0; i < N; i++) {
        snprintf(ids[i], 16, "m%zu", i);
        ev[i] = mkev(i, ids[i]);
    }
    struct wh_load ld = {.consumer = "c", .topic = "events"};
    for (size_t base = 0; base < N; base += B) {
        size_t m = N - base < B ? N - base : B;
        ld.next_offset = base + m;
        ld.more = base + m < N;
        assert_int_equal(wh_load_events(f->c, &ld, ev + base, m, NULL), 0);
    }
    free(ev);
    free(ids);
    char wal[1100], copy[1040], copy_wal[1100];
    snprintf(wal, sizeof(wal), "%s.wal", f->path);
    snprintf(copy, sizeof(copy), "%s.crash", f->path);
    snprintf(copy_wal, sizeof(copy_wal), "%s.crash.wal", f->path);
    /* the rows (about 150 bytes of strings each, 37 MB) went compressed to the database file;
     * the WAL only says where (8 KB here) */
    assert_true(file_size(wal) < 64 << 10);
    copy_file(f->path, copy);
    copy_file(wal, copy_wal);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = copy;
    cfg.threads = 1;
    struct wh *wh;
    struct wh_conn *c;
    assert_int_equal(wh_open(&cfg, &wh), 0);
    assert_int_equal(wh_conn_open(wh, &c), 0);
    assert_rows(c,
                "SELECT count(*), count(DISTINCT id), sum(log_offset), "
                "count(*) FILTER (WHERE properties::VARCHAR = '{\"plan\":\"pro\",\"n\":3}' AND "
                "context::VARCHAR LIKE '%1.2.3.4%') FROM events",
                "[[246760,246760,30445125420,246760]]");
    uint64_t next = 0;
    assert_int_equal(wh_offset_get(c, "c", &next), 0);
    assert_int_equal(next, N);
    wh_conn_close(c);
    wh_close(wh);
    wht_unlink(copy);
}

static void test_rejects_do_not_block(void **state)
{
    struct fx *f = *state;
    struct wh_event ev[2] = {mkev(0, "a"), mkev(2, "c")};
    const char bad[] = "{\"timestamp\":\"not a date\"}";
    struct wh_reject rej = {.log_offset = 1,
                            .reason = "timestamp: not a date",
                            .payload = bad,
                            .payload_len = sizeof(bad) - 1};
    struct wh_load ld = {
        .consumer = "c", .topic = "events", .next_offset = 3, .rejects = &rej, .n_rejects = 1};
    struct wh_load_stats st;
    assert_int_equal(wh_load_events(f->c, &ld, ev, 2, &st), 0);
    assert_int_equal(st.rows, 2);
    assert_int_equal(st.rejects, 1);
    assert_rows(f->c, "SELECT consumer, topic, log_offset, reason, decode(payload) FROM _rejects",
                "[[\"c\",\"events\",1,\"timestamp: not a date\","
                "\"{\\\"timestamp\\\":\\\"not a date\\\"}\"]]");
    assert_rows(f->c, "SELECT count(*) FROM events", "[[2]]");
    /* a batch of nothing but rejects still moves the offset */
    ld.next_offset = 4;
    rej.log_offset = 3;
    assert_int_equal(wh_load_events(f->c, &ld, NULL, 0, &st), 0);
    uint64_t next;
    assert_int_equal(wh_offset_get(f->c, "c", &next), 0);
    assert_int_equal(next, 4);
    assert_rows(f->c, "SELECT list(log_offset ORDER BY log_offset) FROM _rejects", "[[[1,3]]]");
}

static void test_checkpoint(void **state)
{
    struct fx *f = *state;
    struct wh_event ev[1] = {mkev(0, "a")};
    struct wh_load ld = {.consumer = "c", .topic = "events", .next_offset = 1};
    assert_int_equal(wh_load_events(f->c, &ld, ev, 1, NULL), 0);
    assert_int_equal(wh_checkpoint(f->c, false), 0);
    char wal[1100];
    snprintf(wal, sizeof(wal), "%s.wal", f->path);
    /* after a checkpoint the WAL is empty or gone */
    FILE *fp = fopen(wal, "rb");
    if (fp) {
        fseek(fp, 0, SEEK_END);
        assert_true(ftell(fp) == 0);
        fclose(fp);
    }
    /* a plain checkpoint while another connection holds a write transaction is refused */
    duckdb_connection other = raw_conn(f);
    raw_exec(other, "BEGIN");
    raw_exec(other, "INSERT INTO events (id) VALUES ('x')");
    assert_int_equal(wh_checkpoint(f->c, false), ERR_BUSY);
    raw_exec(other, "COMMIT");
    duckdb_disconnect(&other);
    assert_int_equal(wh_checkpoint(f->c, true), 0);
}

static void *commit_later(void *arg)
{
    duckdb_connection con = arg;
    usleep(200000);
    raw_exec(con, "COMMIT");
    return NULL;
}

static void test_checkpoint_forced_by_wal_size(void **state)
{
    struct fx *f = *state;
    fx_close(f);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    cfg.path = f->path;
    cfg.wal_force_bytes = 1; /* any WAL forces */
    assert_int_equal(wh_open(&cfg, &f->wh), 0);
    assert_int_equal(wh_conn_open(f->wh, &f->c), 0);
    struct wh_event ev[1] = {mkev(0, "a")};
    struct wh_load ld = {.consumer = "c", .topic = "events", .next_offset = 1};
    assert_int_equal(wh_load_events(f->c, &ld, ev, 1, NULL), 0);
    /* a writer holds a transaction for 200 ms: the forced checkpoint waits for it instead of
     * failing with ERR_BUSY like a plain one */
    duckdb_connection other = raw_conn(f);
    raw_exec(other, "BEGIN");
    raw_exec(other, "INSERT INTO events (id) VALUES ('x')");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, commit_later, other), 0);
    int64_t t0 = time_mono_us();
    assert_int_equal(wh_checkpoint(f->c, false), 0);
    assert_true(time_mono_us() - t0 >= 150000);
    pthread_join(th, NULL);
    duckdb_disconnect(&other);
    assert_rows(f->c, "SELECT count(*) FROM events", "[[2]]");
}

static void test_open_errors(void **state)
{
    UNUSED(state);
    struct wh_cfg cfg;
    wh_cfg_defaults(&cfg);
    struct wh *wh = (struct wh *)1;
    cfg.path = "";
    assert_int_equal(wh_open(&cfg, &wh), ERR_INVALID);
    assert_null(wh);
    assert_non_null(strstr(wh_errmsg(NULL), "empty"));
    cfg.path = "/nonexistent-dir/x/y.duckdb";
    assert_true(wh_open(&cfg, &wh) < 0);
    assert_non_null(strstr(wh_errmsg(NULL), "cannot open warehouse"));
    cfg.backend = "clickhouse";
    assert_int_equal(wh_open(&cfg, &wh), ERR_INVALID);
    assert_non_null(strstr(wh_errmsg(NULL), "unknown warehouse backend"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_person_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_person_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_events_all_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_many_rows_reuses_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_between_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_batch_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_spanning_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_spanning_load_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_load_survives_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejects_do_not_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_forced_by_wal_size, setup, teardown),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
