/* keys.c - write keys (the sources of captured events; only key hashes are stored), named
 * parameters (the application settings, as JSON in _params), the outbox backlog count, and
 * syncing committed transactions for the outbox relay. */
#include <string.h>

#include "store/sqlite/sqlite_int.h"

/* Runs one write statement with text parameters in its own transaction; the number of rows
 * it changed goes to *changes_out. */
int sq__write_one(struct sq_store *s, const char *sql, const char *const *params, size_t n,
                  int *changes_out)
{
    struct sq_conn *cn = sq__conn(s);
    if (!cn)
        return ERR_INTERNAL;
    int rc = sq__begin(s, cn);
    if (rc)
        return rc;
    struct sq_stmt stt;
    rc = sq__prep(cn, sql, &stt);
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            sqlite3_bind_text(stt.stmt, (int)i + 1, params[i], -1, SQLITE_TRANSIENT);
        int step = sqlite3_step(stt.stmt);
        if (step == SQLITE_CONSTRAINT)
            rc = sq__fail(cn, ERR_CONFLICT, "a write key with that name already exists");
        else if (step != SQLITE_DONE)
            rc = sq__fail_db(cn, "cannot change write keys");
        else
            *changes_out = sqlite3_changes(cn->db);
        sq__done(&stt);
    }
    if (rc) {
        sq__rollback(s, cn);
        return rc;
    }
    return sq__commit(s, cn);
}

int sq__writekey_create(struct store *st, const char *name, const char *key_hash,
                        const char *prefix)
{
    char now[TIME_PB_LEN];
    sq__now(now);
    const char *p[] = {name, key_hash, prefix, now};
    int changes = 0;
    return sq__write_one(
        (struct sq_store *)st,
        "INSERT INTO \"_writekeys\" (\"name\", \"key_hash\", \"prefix\", \"created\") "
        "VALUES (?1, ?2, ?3, ?4)",
        p, 4, &changes);
}

int sq__writekey_revoke(struct store *st, const char *name)
{
    char now[TIME_PB_LEN];
    sq__now(now);
    const char *p[] = {name, now};
    int changes = 0;
    int rc = sq__write_one((struct sq_store *)st,
                           "UPDATE \"_writekeys\" SET \"revoked\" = ?2 "
                           "WHERE \"name\" = ?1 AND \"revoked\" = ''",
                           p, 2, &changes);
    if (rc == 0 && changes == 0)
        return ERR_NOTFOUND;
    return rc;
}

int sq__writekey_list(struct store *st, json_t **out)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    struct sq_stmt stt;
    int rc = sq__prep(cn,
                      "SELECT \"name\", \"prefix\", \"created\", \"revoked\", \"key_hash\" "
                      "FROM \"_writekeys\" "
                      "ORDER BY \"created\", \"name\"",
                      &stt);
    if (rc)
        return rc;
    json_t *arr = json_array();
    int step;
    while ((step = sqlite3_step(stt.stmt)) == SQLITE_ROW) {
        json_array_append_new(arr,
                              json_pack("{s:s, s:s, s:s, s:s, s:s}", "name",
                                        (const char *)sqlite3_column_text(stt.stmt, 0), "prefix",
                                        (const char *)sqlite3_column_text(stt.stmt, 1), "created",
                                        (const char *)sqlite3_column_text(stt.stmt, 2), "revoked",
                                        (const char *)sqlite3_column_text(stt.stmt, 3), "hash",
                                        (const char *)sqlite3_column_text(stt.stmt, 4)));
    }
    if (step != SQLITE_DONE) {
        rc = sq__fail_db(cn, "cannot list write keys");
        json_decref(arr);
    } else {
        *out = arr;
    }
    sq__done(&stt);
    return rc;
}

int sq__writekey_find(struct store *st, const char *key_hash, char *name_out, size_t cap)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    struct sq_stmt stt;
    int rc = sq__prep(cn,
                      "SELECT \"name\" FROM \"_writekeys\" WHERE \"key_hash\" = ?1 "
                      "AND \"revoked\" = ''",
                      &stt);
    if (rc)
        return rc;
    sqlite3_bind_text(stt.stmt, 1, key_hash, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(stt.stmt);
    if (step == SQLITE_ROW) {
        snprintf(name_out, cap, "%s", (const char *)sqlite3_column_text(stt.stmt, 0));
    } else if (step == SQLITE_DONE) {
        rc = ERR_NOTFOUND;
    } else {
        rc = sq__fail_db(cn, "cannot look up a write key");
    }
    sq__done(&stt);
    return rc;
}

int sq__outbox_pending(struct store *st, int64_t *n_out)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    struct sq_stmt stt;
    int rc = sq__prep(cn, "SELECT count(*) FROM \"_outbox\"", &stt);
    if (rc)
        return rc;
    if (sqlite3_step(stt.stmt) == SQLITE_ROW)
        *n_out = sqlite3_column_int64(stt.stmt, 0);
    else
        rc = sq__fail_db(cn, "cannot count the outbox");
    sq__done(&stt);
    return rc;
}

/* In WAL mode with synchronous=NORMAL a commit is not synced; a checkpoint syncs the WAL
 * first (and the database after copying pages), so every transaction committed before it is
 * durable once it returns. PASSIVE never waits for readers or writers. */
int sq__sync(struct store *st)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    int log_frames = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(cn->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &done);
    if (rc == SQLITE_BUSY) /* another checkpoint is running: the caller tries again */
        return sq__fail(cn, ERR_BUSY, "a checkpoint is already running");
    if (rc != SQLITE_OK)
        return sq__fail_db(cn, "cannot sync the database");
    return 0;
}

/* An fdatasync of the write-ahead log through this connection's handle of it: every commit
 * in it is durable then (a checkpoint syncs the log before it copies pages and the database
 * file after, so frames it dropped were durable already). Without a handle (the connection has
 * not read the WAL yet, or another journal mode): a checkpoint, as store_sync. */
int sq__sync_commits(struct store *st)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(cn->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) != SQLITE_OK ||
        !wal || !wal->pMethods)
        return sq__sync(st);
    int rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
    if (rc != SQLITE_OK)
        return sq__fail(cn, ERR_IO, "cannot sync the write-ahead log (%d)", rc);
    return 0;
}

int sq__wal_truncate(struct store *st)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    int log_frames = 0, done = 0;
    int rc =
        sqlite3_wal_checkpoint_v2(cn->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &done);
    if (rc == SQLITE_BUSY || (rc == SQLITE_OK && log_frames != 0 && done != log_frames))
        return sq__fail(cn, ERR_BUSY, "the WAL is in use");
    if (rc != SQLITE_OK)
        return sq__fail_db(cn, "cannot checkpoint the database");
    return 0;
}

/* One step copies every page under one read transaction (a snapshot of the WAL database),
 * so writers on other connections go on and the copy is consistent. */
int sq__backup(struct store *st, const char *dest_path)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    sqlite3 *dst = NULL;
    int rc = 0;
    if (sqlite3_open_v2(dest_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = sq__fail(cn, ERR_INTERNAL, "cannot create %s: %s", dest_path,
                      dst ? sqlite3_errmsg(dst) : "out of memory");
        goto out;
    }
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", cn->db, "main");
    if (!b) {
        rc = sq__fail(cn, ERR_INTERNAL, "cannot back up the store: %s", sqlite3_errmsg(dst));
        goto out;
    }
    int step;
    while ((step = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || step == SQLITE_LOCKED)
        sqlite3_sleep(5);
    sqlite3_backup_finish(b);
    if (step != SQLITE_DONE) {
        rc = sq__fail(cn, ERR_INTERNAL, "cannot back up the store: %s", sqlite3_errstr(step));
        goto out;
    }
    /* the copy is a plain rollback-journal file, synced by the close below */
    if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK)
        rc = sq__fail(cn, ERR_INTERNAL, "cannot back up the store: %s", sqlite3_errmsg(dst));
out:
    if (dst && sqlite3_close(dst) != SQLITE_OK && rc == 0)
        rc = sq__fail(cn, ERR_INTERNAL, "cannot close %s", dest_path);
    return rc;
}

int sq__param_get(struct store *st, const char *id, json_t **out)
{
    struct sq_conn *cn = sq__conn((struct sq_store *)st);
    if (!cn)
        return ERR_INTERNAL;
    struct sq_stmt stt;
    int rc = sq__prep(cn, "SELECT \"value\" FROM \"_params\" WHERE \"id\" = ?1", &stt);
    if (rc)
        return rc;
    sqlite3_bind_text(stt.stmt, 1, id, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(stt.stmt);
    if (step == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(stt.stmt, 0);
        *out = text ? json_loads(text, 0, NULL) : NULL;
        if (!*out)
            rc = sq__fail(cn, ERR_CORRUPT, "the stored parameter %s is not JSON", id);
    } else if (step == SQLITE_DONE) {
        rc = ERR_NOTFOUND;
    } else {
        rc = sq__fail_db(cn, "cannot read a parameter");
    }
    sq__done(&stt);
    return rc;
}

int sq__param_put(struct store *st, const char *id, const json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text)
        return ERR_INVALID;
    char now[TIME_PB_LEN];
    sq__now(now);
    const char *p[] = {id, text, now};
    int changes = 0;
    int rc = sq__write_one((struct sq_store *)st,
                           "INSERT INTO \"_params\" (\"id\", \"value\", \"created\", \"updated\") "
                           "VALUES (?1, ?2, ?3, ?3) ON CONFLICT (\"id\") DO UPDATE SET "
                           "\"value\" = excluded.\"value\", \"updated\" = excluded.\"updated\"",
                           p, 3, &changes);
    free(text);
    return rc;
}
