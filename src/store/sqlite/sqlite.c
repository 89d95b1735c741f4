/* sqlite.c - the sqlite store backend: opening the database, per-thread connections with
 * cached prepared statements, serialised write transactions and the collection snapshot. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics/metrics.h"
#include "store/sqlite/sqlite_int.h"

static uint64_t next_gen = 1; /* atomic */

static __thread struct {
    struct sq_store *store;
    uint64_t gen;
    struct sq_conn *conn;
} tl_conn;

/* Why this thread could not open its connection (store_errmsg still has something to say). */
static __thread char conn_open_error[256];

static int conn_setup(struct sq_store *s, sqlite3 *db, char *err, size_t err_len)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "PRAGMA busy_timeout=%d", s->busy_ms);
    const char *pragmas[] = {sql, "PRAGMA journal_mode=WAL", "PRAGMA journal_size_limit=200000000",
                             "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
                             "PRAGMA temp_store=MEMORY", "PRAGMA cache_size=-32000",
                             /* a deleted record's bytes are overwritten, not left in free
                              * pages (person deletion, docs/governance.md) */
                             "PRAGMA secure_delete=ON"};
    for (size_t i = 0; i < ARRAY_LEN(pragmas); i++) {
        char *msg = NULL;
        if (sqlite3_exec(db, pragmas[i], NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, err_len, "cannot set %s: %s", pragmas[i], msg ? msg : "?");
            sqlite3_free(msg);
            return ERR_INTERNAL;
        }
    }
    return 0;
}

static int conn_open(struct sq_store *s, struct sq_conn **out, char *err, size_t err_len)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(s->path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "cannot open %s: %s", s->path, db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return ERR_IO;
    }
    sqlite3_extended_result_codes(db, 1);
    int rc = conn_setup(s, db, err, err_len);
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    struct sq_conn *cn = xcalloc(1, sizeof(*cn));
    cn->db = db;
    cn->owner = pthread_self();
    *out = cn;
    return 0;
}

static void conn_close(struct sq_conn *cn)
{
    for (size_t i = 0; i < SQ_STMT_SLOTS; i++) {
        if (cn->slots[i].stmt)
            sqlite3_finalize(cn->slots[i].stmt);
        free(cn->slots[i].sql);
    }
    sqlite3_close(cn->db);
    free(cn->gone);
    free(cn);
}

/* Connections of exiting threads are closed by a thread-specific-data destructor. Each thread
 * keeps the list of (store generation, connection) it opened; the destructor closes those
 * whose store is still open, found in the registry of open stores. A store being closed
 * leaves the registry first, so a connection is closed exactly once: by its thread's exit
 * or by store_close. */
struct thread_conns {
    size_t n, cap;
    struct {
        uint64_t gen;
        struct sq_conn *conn;
    } * e;
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sq_store *registry;
static pthread_key_t conns_key;
static pthread_once_t conns_key_once = PTHREAD_ONCE_INIT;

static void conn_close(struct sq_conn *cn);

static void thread_conns_free(void *arg)
{
    struct thread_conns *tc = arg;
    for (size_t i = 0; i < tc->n; i++) {
        struct sq_conn *found = NULL;
        pthread_mutex_lock(&registry_mu);
        for (struct sq_store *s = registry; s; s = s->reg_next) {
            if (s->gen != tc->e[i].gen)
                continue;
            pthread_mutex_lock(&s->conns_mu);
            for (struct sq_conn **pp = &s->conns; *pp; pp = &(*pp)->next)
                if (*pp == tc->e[i].conn) {
                    found = *pp;
                    *pp = found->next;
                    break;
                }
            pthread_mutex_unlock(&s->conns_mu);
            break;
        }
        pthread_mutex_unlock(&registry_mu);
        if (found)
            conn_close(found);
    }
    free(tc->e);
    free(tc);
}

static void conns_key_init(void)
{
    if (pthread_key_create(&conns_key, thread_conns_free) != 0)
        PANIC("cannot create a thread-specific key");
}

static void remember_conn(struct sq_store *s, struct sq_conn *cn)
{
    pthread_once(&conns_key_once, conns_key_init);
    struct thread_conns *tc = pthread_getspecific(conns_key);
    if (!tc) {
        tc = xcalloc(1, sizeof(*tc));
        if (pthread_setspecific(conns_key, tc) != 0)
            PANIC("cannot set thread-specific data");
    }
    if (tc->n == tc->cap) {
        tc->cap = tc->cap ? tc->cap * 2 : 4;
        tc->e = xrealloc(tc->e, tc->cap * sizeof(tc->e[0]));
    }
    tc->e[tc->n].gen = s->gen;
    tc->e[tc->n].conn = cn;
    tc->n++;
}

struct sq_conn *sq__conn(struct sq_store *s)
{
    if (tl_conn.store == s && tl_conn.gen == s->gen)
        return tl_conn.conn;
    pthread_t self = pthread_self();
    struct sq_conn *cn;
    pthread_mutex_lock(&s->conns_mu);
    for (cn = s->conns; cn; cn = cn->next)
        if (pthread_equal(cn->owner, self))
            break;
    pthread_mutex_unlock(&s->conns_mu);
    if (!cn) {
        char err[256];
        if (conn_open(s, &cn, err, sizeof(err)) != 0) {
            xlog_error("cannot open a store connection: %s", err);
            snprintf(conn_open_error, sizeof(conn_open_error), "%s", err);
            return NULL;
        }
        pthread_mutex_lock(&s->conns_mu);
        cn->next = s->conns;
        s->conns = cn;
        pthread_mutex_unlock(&s->conns_mu);
        remember_conn(s, cn);
    }
    tl_conn.store = s;
    tl_conn.gen = s->gen;
    tl_conn.conn = cn;
    return cn;
}

/* VM steps between two looks at the clock while a deadline is set: a few microseconds of
 * work, so a statement stops within a few microseconds past its deadline and the clock costs
 * nothing measurable. */
#define SQ_PROGRESS_STEPS 1000

static int progress_cb(void *arg)
{
    struct sq_conn *cn = arg;
    if (!cn->deadline_us || time_mono_us() < cn->deadline_us)
        return 0;
    if (cn->spare_writes) /* only past the deadline: the walk costs nothing on the way there */
        for (sqlite3_stmt *st = sqlite3_next_stmt(cn->db, NULL); st;
             st = sqlite3_next_stmt(cn->db, st))
            if (sqlite3_stmt_busy(st) && !sqlite3_stmt_readonly(st))
                return 0;
    return 1; /* the statement stops with SQLITE_INTERRUPT */
}

void sq__deadline(struct sq_conn *cn, int64_t deadline_us, bool spare_writes)
{
    cn->deadline_us = deadline_us;
    cn->spare_writes = spare_writes;
    if (deadline_us)
        sqlite3_progress_handler(cn->db, SQ_PROGRESS_STEPS, progress_cb, cn);
    else
        sqlite3_progress_handler(cn->db, 0, NULL, NULL);
}

static void sq_deadline(struct store *st, int64_t deadline_us)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (cn)
        sq__deadline(cn, deadline_us, false);
}

int sq__fail(struct sq_conn *cn, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cn->errmsg, sizeof(cn->errmsg), fmt, ap);
    va_end(ap);
    return rc;
}

int sq__fail_db(struct sq_conn *cn, const char *what)
{
    int code = sqlite3_extended_errcode(cn->db);
    int rc = ERR_INTERNAL;
    if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED)
        rc = ERR_BUSY;
    else if ((code & 0xff) == SQLITE_CONSTRAINT)
        rc = ERR_CONFLICT;
    else if ((code & 0xff) == SQLITE_FULL)
        rc = ERR_BUSY; /* disk full: transient, the client may retry (503), as in evlog */
    else if ((code & 0xff) == SQLITE_IOERR)
        rc = ERR_IO;
    else if ((code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB)
        rc = ERR_CORRUPT;
    else if ((code & 0xff) == SQLITE_INTERRUPT) /* only the deadline interrupts */
        rc = ERR_TIMEOUT;
    return sq__fail(cn, rc, "%s: %s", what, sqlite3_errmsg(cn->db));
}

static uint32_t sql_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void cache_clear(struct sq_conn *cn)
{
    for (size_t i = 0; i < SQ_STMT_SLOTS; i++) {
        if (cn->slots[i].stmt && !sqlite3_stmt_busy(cn->slots[i].stmt)) {
            sqlite3_finalize(cn->slots[i].stmt);
            free(cn->slots[i].sql);
            cn->slots[i].stmt = NULL;
            cn->slots[i].sql = NULL;
            cn->n_slots_used--;
        }
    }
}

int sq__prep(struct sq_conn *cn, const char *sql, struct sq_stmt *out)
{
    uint32_t h = sql_hash(sql) % SQ_STMT_SLOTS;
    size_t free_slot = SQ_STMT_SLOTS;
    out->stmt = NULL;
    out->owned = false;
    for (size_t k = 0; k < SQ_STMT_SLOTS; k++) {
        size_t i = (h + k) % SQ_STMT_SLOTS;
        struct sq_stmt_slot *sl = &cn->slots[i];
        if (!sl->sql) {
            free_slot = i;
            break;
        }
        if (strcmp(sl->sql, sql) == 0) {
            if (sqlite3_stmt_busy(sl->stmt))
                break; /* in use further up the stack: use a private one */
            sqlite3_clear_bindings(sl->stmt);
            out->stmt = sl->stmt;
            return 0;
        }
    }
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(cn->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        int rc = sq__fail_db(cn, "cannot prepare statement");
        return rc == ERR_INTERNAL ? ERR_INVALID : rc;
    }
    out->stmt = stmt;
    if (free_slot == SQ_STMT_SLOTS || cn->n_slots_used >= SQ_STMT_SLOTS * 3 / 4) {
        if (cn->n_slots_used >= SQ_STMT_SLOTS * 3 / 4)
            cache_clear(cn);
        out->owned = true;
        return 0;
    }
    cn->slots[free_slot].sql = xstrdup(sql);
    cn->slots[free_slot].stmt = stmt;
    cn->n_slots_used++;
    return 0;
}

void sq__done(struct sq_stmt *st)
{
    if (!st->stmt)
        return;
    if (st->owned)
        sqlite3_finalize(st->stmt);
    else
        sqlite3_reset(st->stmt);
    st->stmt = NULL;
}

int sq__exec(struct sq_conn *cn, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(cn->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = sq__fail_db(cn, "cannot execute statement");
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

int sq__exec_cached(struct sq_conn *cn, const char *sql)
{
    struct sq_stmt st;
    int rc = sq__prep(cn, sql, &st);
    if (rc)
        return rc;
    if (sqlite3_step(st.stmt) != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot execute statement");
    sq__done(&st);
    return rc;
}

/* ---- metrics: write transactions ---- */

static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;
static struct metrics_series *m_lock_wait, *m_tx_time, *m_commit, *m_rollback, *m_busy;

static void metrics_init(void)
{
    struct metrics_family *wait =
        metrics_histogram("tandem_store_write_lock_wait_seconds",
                          "Time a store write waited for the write lock.", NULL, NULL, 0);
    struct metrics_family *tx =
        metrics_histogram("tandem_store_write_seconds",
                          "Time a store write transaction held the write lock.", NULL, NULL, 0);
    struct metrics_family *n =
        metrics_family(METRICS_COUNTER, "tandem_store_write_transactions_total",
                       "Store write transactions by outcome.", "result");
    m_lock_wait = metrics_series0(wait);
    m_tx_time = metrics_series0(tx);
    m_commit = metrics_series(n, (const char *const[]){"commit"});
    m_rollback = metrics_series(n, (const char *const[]){"rollback"});
    m_busy = metrics_series(n, (const char *const[]){"busy"});
}

int sq__begin(struct sq_store *s, struct sq_conn *cn)
{
    pthread_once(&metrics_once, metrics_init);
    int64_t t0 = time_mono_us();
    pthread_mutex_lock(&s->write_mu);
    cn->tx_start_us = time_mono_us();
    cn->auth_changed = false;
    cn->outbox_added = false;
    metrics_observe(m_lock_wait, (double)(cn->tx_start_us - t0) / 1e6);
    int rc = sq__exec_cached(cn, "BEGIN IMMEDIATE");
    if (rc) {
        metrics_inc(rc == ERR_BUSY ? m_busy : m_rollback, 1);
        pthread_mutex_unlock(&s->write_mu);
    }
    return rc;
}

static void tx_end(struct sq_conn *cn, struct metrics_series *outcome)
{
    metrics_observe(m_tx_time, (double)(time_mono_us() - cn->tx_start_us) / 1e6);
    metrics_inc(outcome, 1);
}

void sq__auth_changed(struct sq_conn *cn)
{
    cn->auth_changed = true;
}

/* After the commit (never before): a reader that sees the new epoch reads the new data. A
 * failed commit advances it too; that only costs a few full verifications. */
static void epoch_advance(struct sq_store *s, struct sq_conn *cn)
{
    if (cn->auth_changed && s->epoch)
        __atomic_fetch_add(s->epoch, 1, __ATOMIC_SEQ_CST);
    cn->auth_changed = false;
}

void sq__note_deleted(struct sq_conn *cn, const struct store_collection *c, const char *id,
                      const json_t *record)
{
    bool files = false;
    for (size_t i = 0; i < c->n_fields && !files; i++)
        files = c->fields[i].type == STORE_FIELD_FILE;
    if (!files)
        return;
    if (cn->n_gone == STORE_DELETED_MAX) {
        cn->gone_dropped++;
        return;
    }
    if (cn->n_gone == cn->cap_gone) {
        cn->cap_gone = cn->cap_gone ? cn->cap_gone * 2 : 8;
        cn->gone = xrealloc(cn->gone, cn->cap_gone * sizeof(*cn->gone));
    }
    cn->gone[cn->n_gone++] = (struct sq_gone){store_collection_ref((struct store_collection *)c),
                                              xstrdup(id), json_incref((json_t *)record)};
}

/* Hands the deleted records to the store's hook (when committed) and forgets them. */
static void gone_flush(struct sq_store *s, struct sq_conn *cn, bool committed)
{
    store_deleted_fn fn = s->base.deleted_fn;
    if (committed && cn->gone_dropped)
        xlog_warn("the files of %zu deleted records are left to the sweep at the next start",
                  cn->gone_dropped);
    for (size_t i = 0; i < cn->n_gone; i++) {
        struct sq_gone *g = &cn->gone[i];
        if (committed && fn)
            fn(s->base.deleted_arg, g->c, g->id, g->record);
        store_collection_unref(g->c);
        free(g->id);
        json_decref(g->record);
    }
    cn->n_gone = 0;
    cn->gone_dropped = 0;
    if (cn->cap_gone > 64) { /* a large cascade does not keep its array */
        free(cn->gone);
        cn->gone = NULL;
        cn->cap_gone = 0;
    }
}

int sq__commit(struct sq_store *s, struct sq_conn *cn)
{
    int rc = sq__exec_cached(cn, "COMMIT");
    epoch_advance(s, cn);
    if (rc) {
        char keep[sizeof(cn->errmsg)];
        memcpy(keep, cn->errmsg, sizeof(keep));
        if (!sqlite3_get_autocommit(cn->db))
            (void)sqlite3_exec(cn->db, "ROLLBACK", NULL, NULL, NULL);
        memcpy(cn->errmsg, keep, sizeof(keep));
    }
    tx_end(cn, rc == 0 ? m_commit : rc == ERR_BUSY ? m_busy : m_rollback);
    pthread_mutex_unlock(&s->write_mu);
    if (cn->n_gone || cn->gone_dropped)
        gone_flush(s, cn, rc == 0);
    if (rc == 0 && cn->outbox_added)
        store__outbox_committed(&s->base);
    cn->outbox_added = false;
    return rc;
}

void sq__rollback(struct sq_store *s, struct sq_conn *cn)
{
    if (!sqlite3_get_autocommit(cn->db))
        (void)sqlite3_exec(cn->db, "ROLLBACK", NULL, NULL, NULL);
    cn->auth_changed = false;
    cn->outbox_added = false;
    tx_end(cn, m_rollback);
    pthread_mutex_unlock(&s->write_mu);
    if (cn->n_gone || cn->gone_dropped)
        gone_flush(s, cn, false);
}

int sq__bind_json(sqlite3_stmt *st, int idx, const json_t *v)
{
    if (!v || json_is_null(v))
        return sqlite3_bind_null(st, idx);
    if (json_is_string(v))
        return sqlite3_bind_text(st, idx, json_string_value(v), (int)json_string_length(v),
                                 SQLITE_TRANSIENT);
    if (json_is_integer(v))
        return sqlite3_bind_int64(st, idx, json_integer_value(v));
    if (json_is_real(v))
        return sqlite3_bind_double(st, idx, json_real_value(v));
    if (json_is_boolean(v))
        return sqlite3_bind_int(st, idx, json_is_true(v));
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    if (!text)
        return SQLITE_NOMEM;
    return sqlite3_bind_text(st, idx, text, -1, free);
}

void sq__now(char out[TIME_PB_LEN])
{
    time_format_pb(time_now_us(), out);
}

/* ---- collection snapshot ---- */

struct store_collection *sq__col_find(struct sq_store *s, const char *id_or_name)
{
    struct store_collection *found = NULL;
    pthread_mutex_lock(&s->schema_mu);
    for (size_t i = 0; i < s->n_cols && !found; i++)
        if (strcmp(s->cols[i]->id, id_or_name) == 0)
            found = s->cols[i];
    for (size_t i = 0; i < s->n_cols && !found; i++)
        if (strcasecmp(s->cols[i]->name, id_or_name) == 0)
            found = s->cols[i];
    store_collection_ref(found);
    pthread_mutex_unlock(&s->schema_mu);
    return found;
}

void sq__col_put(struct sq_store *s, const char *id, struct store_collection *c)
{
    struct store_collection *old = NULL;
    pthread_mutex_lock(&s->schema_mu);
    size_t i;
    for (i = 0; i < s->n_cols; i++)
        if (strcmp(s->cols[i]->id, id) == 0)
            break;
    if (i < s->n_cols) {
        old = s->cols[i];
        if (c) {
            s->cols[i] = c;
        } else {
            memmove(&s->cols[i], &s->cols[i + 1], (s->n_cols - i - 1) * sizeof(s->cols[0]));
            s->n_cols--;
        }
    } else if (c) {
        s->cols = xrealloc(s->cols, (s->n_cols + 1) * sizeof(s->cols[0]));
        s->cols[s->n_cols++] = c;
    }
    pthread_mutex_unlock(&s->schema_mu);
    store_collection_unref(old);
}

void sq__col_replace_all(struct sq_store *s, struct store_collection **list, size_t n)
{
    pthread_mutex_lock(&s->schema_mu);
    struct store_collection **old = s->cols;
    size_t n_old = s->n_cols;
    s->cols = list;
    s->n_cols = n;
    pthread_mutex_unlock(&s->schema_mu);
    for (size_t i = 0; i < n_old; i++)
        store_collection_unref(old[i]);
    free(old);
}

void sq__col_all(struct sq_store *s, struct store_collection ***out, size_t *n_out)
{
    pthread_mutex_lock(&s->schema_mu);
    struct store_collection **list = xcalloc(s->n_cols ? s->n_cols : 1, sizeof(*list));
    for (size_t i = 0; i < s->n_cols; i++)
        list[i] = store_collection_ref(s->cols[i]);
    *n_out = s->n_cols;
    pthread_mutex_unlock(&s->schema_mu);
    *out = list;
}

/* ---- open / close ---- */

static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS \"_collections\" ("
                                 " \"id\" TEXT PRIMARY KEY NOT NULL,"
                                 " \"name\" TEXT NOT NULL UNIQUE COLLATE NOCASE,"
                                 " \"type\" TEXT NOT NULL,"
                                 " \"system\" BOOLEAN NOT NULL DEFAULT FALSE,"
                                 " \"spec\" TEXT NOT NULL,"
                                 " \"created\" TEXT NOT NULL,"
                                 " \"updated\" TEXT NOT NULL);"
                                 "CREATE TABLE IF NOT EXISTS \"_outbox\" ("
                                 " \"id\" INTEGER PRIMARY KEY AUTOINCREMENT,"
                                 " \"collection_id\" TEXT NOT NULL,"
                                 " \"collection\" TEXT NOT NULL,"
                                 " \"record_id\" TEXT NOT NULL,"
                                 " \"action\" TEXT NOT NULL,"
                                 " \"record\" TEXT,"
                                 " \"created\" TEXT NOT NULL);"
                                 "CREATE TABLE IF NOT EXISTS \"_writekeys\" ("
                                 " \"name\" TEXT PRIMARY KEY NOT NULL,"
                                 " \"key_hash\" TEXT NOT NULL UNIQUE,"
                                 " \"prefix\" TEXT NOT NULL,"
                                 " \"created\" TEXT NOT NULL,"
                                 " \"revoked\" TEXT NOT NULL DEFAULT '');"
                                 "CREATE TABLE IF NOT EXISTS \"_params\" ("
                                 " \"id\" TEXT PRIMARY KEY NOT NULL,"
                                 " \"value\" TEXT NOT NULL,"
                                 " \"created\" TEXT NOT NULL,"
                                 " \"updated\" TEXT NOT NULL);"
                                 "CREATE TABLE IF NOT EXISTS \"_sysrows\" ("
                                 " \"kind\" TEXT NOT NULL,"
                                 " \"id\" TEXT NOT NULL,"
                                 " \"ref\" TEXT NOT NULL DEFAULT '',"
                                 " \"value\" TEXT NOT NULL,"
                                 " \"created_us\" INTEGER NOT NULL,"
                                 " \"due_us\" INTEGER NOT NULL DEFAULT 0,"
                                 " PRIMARY KEY (\"kind\", \"id\"));"
                                 "CREATE INDEX IF NOT EXISTS \"_sysrows_ref\" ON \"_sysrows\""
                                 " (\"kind\", \"ref\");"
                                 "CREATE INDEX IF NOT EXISTS \"_sysrows_due\" ON \"_sysrows\""
                                 " (\"kind\", \"due_us\");";

/* The columns of _collections that the collections list may filter and sort on. */
static const char catalog_spec[] =
    "{\"id\":\"_collections\",\"name\":\"_collections\",\"type\":\"base\","
    "\"system\":true,\"fields\":["
    "{\"id\":\"text3208210256\",\"name\":\"id\",\"type\":\"text\",\"system\":true,"
    "\"primaryKey\":true},"
    "{\"id\":\"text1579384326\",\"name\":\"name\",\"type\":\"text\",\"system\":true},"
    "{\"id\":\"text2363381545\",\"name\":\"type\",\"type\":\"text\",\"system\":true},"
    "{\"id\":\"bool1466534506\",\"name\":\"system\",\"type\":\"bool\",\"system\":true},"
    "{\"id\":\"text2990389176\",\"name\":\"created\",\"type\":\"text\",\"system\":true},"
    "{\"id\":\"text3332085495\",\"name\":\"updated\",\"type\":\"text\",\"system\":true}]}";

static int load_collections(struct sq_store *s, struct sq_conn *cn)
{
    struct sq_stmt st;
    int rc = sq__prep(cn, "SELECT \"id\", \"spec\" FROM \"_collections\" ORDER BY rowid", &st);
    if (rc)
        return rc;
    int step;
    while ((step = sqlite3_step(st.stmt)) == SQLITE_ROW) {
        struct store_collection *c;
        const char *spec = (const char *)sqlite3_column_text(st.stmt, 1);
        if (store__collection_load(spec ? spec : "", &c) != 0) {
            rc = sq__fail(cn, ERR_CORRUPT, "collection %s: stored definition is invalid",
                          (const char *)sqlite3_column_text(st.stmt, 0));
            break;
        }
        sq__col_put(s, c->id, c);
    }
    if (!rc && step != SQLITE_DONE)
        rc = sq__fail_db(cn, "cannot read collections");
    sq__done(&st);
    return rc;
}

static int bootstrap(struct sq_store *s, struct sq_conn *cn)
{
    int rc = sq__begin(s, cn);
    if (rc)
        return rc;
    rc = sq__exec(cn, schema_sql);
    if (rc)
        goto fail;
    rc = load_collections(s, cn);
    if (rc)
        goto fail;
    rc = sq__auth_indexes_upgrade(s, cn);
    if (rc)
        goto fail;
    char now[TIME_PB_LEN];
    sq__now(now);
    struct store_collection *defaults[3] = {NULL, NULL, NULL};
    struct store_collection *have = sq__col_find(s, STORE__SUPERUSERS_ID);
    if (!have)
        defaults[0] = store__collection_superusers(now);
    store_collection_unref(have);
    have = sq__col_find(s, STORE__USERS_ID);
    if (!have && !defaults[0]) {
        /* only on the very first open: a deleted users collection stays deleted */
    } else if (!have) {
        defaults[1] = store__collection_users(now);
    }
    store_collection_unref(have);
    have = sq__col_find(s, STORE_EXTERNAL_AUTHS_ID);
    if (!have) /* also in data directories made before it existed */
        defaults[2] = store__collection_external_auths(now);
    store_collection_unref(have);
    for (int i = 0; i < 3 && !rc; i++)
        if (defaults[i])
            rc = sq__collection_install(s, cn, defaults[i]);
    if (rc) {
        for (int i = 0; i < 3; i++)
            store_collection_unref(defaults[i]);
        goto fail;
    }
    rc = sq__commit(s, cn);
    for (int i = 0; i < 3; i++)
        if (defaults[i]) {
            if (rc == 0)
                sq__col_put(s, defaults[i]->id, defaults[i]);
            else
                store_collection_unref(defaults[i]);
        }
    return rc;
fail:
    sq__rollback(s, cn);
    return rc;
}

static void sq_close(struct store *st);

/* Maps <db>-tokens (8 bytes, created zeroed) shared; leaves s->epoch NULL on any failure.
 * A process that writes the database without it cannot advance the epoch: servers beside it
 * keep trusting their cached tokens until their next epoch change. */
static void epoch_map(struct sq_store *s)
{
    size_t n = strlen(s->path) + sizeof("-tokens");
    char *path = xmalloc(n);
    snprintf(path, n, "%s-tokens", s->path);
    /* private like every file in the data directory, and the database's owner when we run
     * as root, so that every process that can write the database can advance it */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat sb, db;
    if (fd >= 0 && geteuid() == 0 && stat(s->path, &db) == 0 && fstat(fd, &sb) == 0 &&
        (sb.st_uid != db.st_uid || sb.st_gid != db.st_gid) && fchown(fd, db.st_uid, db.st_gid) != 0)
        xlog_warn("cannot give %s the owner of %s: %s", path, s->path, strerror(errno));
    if (fd < 0 || fstat(fd, &sb) != 0 ||
        (sb.st_size < (off_t)sizeof(uint64_t) && ftruncate(fd, sizeof(uint64_t)) != 0)) {
        xlog_warn("cannot use %s (%s): every auth token is checked against the database", path,
                  strerror(errno));
    } else {
        void *m = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            xlog_warn("cannot map %s (%s): every auth token is checked against the database", path,
                      strerror(errno));
        else
            s->epoch = m;
    }
    if (fd >= 0)
        close(fd);
    free(path);
}

static int sq_open(const struct store_cfg *cfg, struct store **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!cfg->dir || !*cfg->dir) {
        snprintf(err, err_len, "no data directory given");
        return ERR_INVALID;
    }
    if (mkdir(cfg->dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, err_len, "cannot create %s: %s", cfg->dir, strerror(e));
        return -e;
    }
    struct sq_store *s = xcalloc(1, sizeof(*s));
    s->base.ops = &store__sqlite_ops;
    size_t n = strlen(cfg->dir) + sizeof("/app.db");
    s->path = xmalloc(n);
    snprintf(s->path, n, "%s/app.db", cfg->dir);
    s->busy_ms = cfg->busy_timeout_ms > 0 ? cfg->busy_timeout_ms : 10000;
    s->gen = __atomic_fetch_add(&next_gen, 1, __ATOMIC_RELAXED);
    pthread_mutex_init(&s->conns_mu, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_mutex_init(&s->schema_mu, NULL);
    struct sq_conn *cn;
    int rc = conn_open(s, &cn, err, err_len);
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    s->conns = cn;
    tl_conn.store = s;
    tl_conn.gen = s->gen;
    tl_conn.conn = cn;
    remember_conn(s, cn);
    pthread_mutex_lock(&registry_mu);
    s->reg_next = registry;
    registry = s;
    pthread_mutex_unlock(&registry_mu);
    if (store__collection_load(catalog_spec, &s->catalog) != 0)
        PANIC("bad built-in catalog spec");
    epoch_map(s);
    rc = bootstrap(s, cn);
    if (rc) {
        snprintf(err, err_len, "cannot initialise %s: %s", s->path, cn->errmsg);
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

static void sq_close(struct store *st)
{
    struct sq_store *s = (struct sq_store *)st;
    if (tl_conn.store == s)
        memset(&tl_conn, 0, sizeof(tl_conn));
    pthread_mutex_lock(&registry_mu);
    for (struct sq_store **pp = &registry; *pp; pp = &(*pp)->reg_next)
        if (*pp == s) {
            *pp = s->reg_next;
            break;
        }
    pthread_mutex_unlock(&registry_mu);
    struct sq_conn *cn = s->conns;
    while (cn) {
        struct sq_conn *next = cn->next;
        conn_close(cn);
        cn = next;
    }
    for (size_t i = 0; i < s->n_cols; i++)
        store_collection_unref(s->cols[i]);
    free(s->cols);
    store_collection_unref(s->catalog);
    if (s->epoch)
        munmap(s->epoch, sizeof(uint64_t));
    pthread_mutex_destroy(&s->conns_mu);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->schema_mu);
    free(s->path);
    free(s);
}

static const char *sq_errmsg(struct store *st)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    return cn ? cn->errmsg : conn_open_error;
}

static int sq_collection_list(struct store *st, struct store_collection ***out, size_t *n_out)
{
    sq__col_all((struct sq_store *)st, out, n_out);
    return 0;
}

static int sq_collection_get(struct store *st, const char *id_or_name,
                             struct store_collection **out)
{
    struct sq_store *s = (struct sq_store *)st;
    *out = sq__col_find(s, id_or_name);
    if (*out)
        return 0;
    struct sq_conn *cn = sq__conn(s);
    if (cn)
        sq__fail(cn, ERR_NOTFOUND, "no collection %s", id_or_name);
    return ERR_NOTFOUND;
}

static int sq_auth_epoch(struct store *st, uint64_t *instance_out, uint64_t *epoch_out)
{
    struct sq_store *s = (struct sq_store *)st;
    if (!s->epoch)
        return ERR_INTERNAL;
    *instance_out = s->gen;
    *epoch_out = __atomic_load_n(s->epoch, __ATOMIC_SEQ_CST);
    return 0;
}

static struct store_collection *sq_catalog(struct store *st)
{
    return store_collection_ref(((struct sq_store *)st)->catalog);
}

const struct store_ops store__sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .errmsg = sq_errmsg,
    .collection_list = sq_collection_list,
    .collection_get = sq_collection_get,
    .collection_create = sq__collection_create,
    .collection_update = sq__collection_update,
    .collection_delete = sq__collection_delete,
    .collection_truncate = sq__collection_truncate,
    .collection_import = sq__collection_import,
    .view_fields = sq__view_fields_dry,
    .view_file_origin = sq__view_file_origin,
    .record_get = sq__record_get,
    .record_match = sq__record_match,
    .record_list = sq__record_list,
    .record_referencing = sq__record_referencing,
    .record_create = sq__record_create,
    .record_create_batch = sq__record_create_batch,
    .record_update = sq__record_update,
    .record_delete = sq__record_delete,
    .record_ops = sq__record_ops,
    .auth_find = sq__auth_find,
    .auth_get = sq__auth_get,
    .auth_token_key = sq__auth_token_key,
    .auth_rehash = sq__auth_rehash,
    .outbox_rows = sq__outbox_rows,
    .outbox_delete = sq__outbox_delete,
    .outbox_pending = sq__outbox_pending,
    .sync = sq__sync,
    .sync_commits = sq__sync_commits,
    .wal_truncate = sq__wal_truncate,
    .backup = sq__backup,
    .sql = sq__sql,
    .writekey_create = sq__writekey_create,
    .writekey_list = sq__writekey_list,
    .writekey_revoke = sq__writekey_revoke,
    .writekey_find = sq__writekey_find,
    .param_get = sq__param_get,
    .param_put = sq__param_put,
    .sys_put = sq__sys_put,
    .sys_take = sq__sys_take,
    .sys_list = sq__sys_list,
    .sys_count = sq__sys_count,
    .catalog = sq_catalog,
    .auth_epoch = sq_auth_epoch,
    .deadline = sq_deadline,
};
