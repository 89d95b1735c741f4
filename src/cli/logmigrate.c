/* logmigrate.c - `tandem log migrate --to kafka` (docs/cli.md, docs/scale-out.md "Switching"):
 * moves a stopped data directory from the local log to Kafka so that no event or record
 * change is lost or loaded twice.
 *
 * The local log stays where it is and becomes the Kafka mirror, so the loader's positions
 * (mirror offsets, stored in the warehouse with the rows) and the records not loaded yet are
 * right as they are. Two positions do change meaning and are set here:
 *   1. the outbox relay's: on the local log it finds where it left off from the last record
 *      of "changes" in the local log; on Kafka it resends the whole outbox and the mirror
 *      drops what it copied from Kafka before. Outbox rows that reached the local log but were
 *      not deleted yet (a crash between the two) would be published again; they are deleted
 *      now, as the relay would have on its next local start;
 *   2. the mirror's, per partition of every shared topic: evlog_kafka_migrate.
 * Each step is idempotent, so a migration killed half way is finished by running it again.
 * The local log's lock refuses the migration while a server runs on the directory. */
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"
#include "evlog/evlog.h"
#include "store/store.h"

/* The outbox id of the newest record change in the local log (0: none). */
static int last_change_id(struct evlog *log, int64_t *id)
{
    *id = 0;
    struct evlog_batch b;
    evlog_batch_init(&b);
    int rc = evlog_tail(log, "changes", &b);
    for (size_t i = 0; rc == 0 && i < b.n; i++) {
        json_t *j = json_loadb((const char *)b.recs[i].data, b.recs[i].len, 0, NULL);
        json_t *v = json_object_get(j, "id");
        if (json_is_integer(v))
            *id = json_integer_value(v);
        else
            rc = ERR_CORRUPT;
        json_decref(j);
    }
    evlog_batch_release(&b);
    return rc;
}

int cli_log_migrate(const char *to, const struct evlog_cfg *kcfg, const char *data_dir, FILE *out,
                    FILE *err)
{
    if (!to || strcmp(to, "kafka") != 0) {
        fprintf(err, "usage: tandem log migrate --to kafka --kafka-brokers HOST:PORT,... "
                     "[--kafka-topic-prefix P] [--kafka-config FILE]\n");
        return 2;
    }
    if (!kcfg->kafka_brokers || !kcfg->kafka_brokers[0]) {
        fprintf(err, "tandem: log migrate --to kafka needs --kafka-brokers\n");
        return 2;
    }
    struct evlog_cfg lc = *kcfg;
    lc.backend = "local";
    lc.kafka_mirror_topics = NULL;
    struct evlog *log = NULL;
    int rc = evlog_open(&lc, &log);
    if (rc == ERR_BUSY) {
        fprintf(err, "tandem: a server is running on %s (%s): stop it before migrating\n", data_dir,
                evlog_errmsg(NULL));
        return 2;
    }
    if (rc != 0) {
        fprintf(err, "tandem: cannot open the local log: %s\n", evlog_errmsg(NULL));
        return 1;
    }
    uint64_t events = 0, changes = 0;
    int64_t last_id = 0;
    if ((rc = evlog_end_offset(log, "events", &events)) == 0 &&
        (rc = evlog_end_offset(log, "changes", &changes)) == 0)
        rc = last_change_id(log, &last_id);
    if (rc != 0)
        fprintf(err, "tandem: cannot read the local log: %s\n", evlog_errmsg(log));
    if (rc == 0) {
        fprintf(out,
                "local log: %llu events, %llu record changes; they stay and are loaded "
                "from here\n",
                (unsigned long long)events, (unsigned long long)changes);
        fflush(out);
    }
    struct store *st = NULL;
    char msg[512];
    struct store_cfg sc = {.backend = NULL, .dir = data_dir, .busy_timeout_ms = 0};
    if (rc == 0 && (rc = store_open(&sc, &st, msg, sizeof(msg))) != 0)
        fprintf(err, "tandem: %s\n", msg);
    if (rc == 0 && last_id > 0 && (rc = store_outbox_delete(st, last_id)) != 0)
        fprintf(err, "tandem: cannot clear the outbox: %s\n", store_errmsg(st));
    if (rc == 0) {
        fprintf(out, "outbox: rows up to id %lld are in the local log (none left to resend)\n",
                (long long)last_id);
        fflush(out);
    }
    store_close(st);
    if (rc == 0) {
        rc = evlog_kafka_migrate(log, kcfg, out);
        if (rc != 0)
            fprintf(err, "tandem: the migration stopped: %s\n", err_str(rc));
    }
    evlog_close(log);
    if (rc == 0)
        fprintf(out, "switched: start tandem on this directory with --log kafka and the same "
                     "--kafka-* options\n");
    return rc == 0 ? 0 : 1;
}
