/* pipeline.h - the data path: the outbox relay (store -> log), later the warehouse loader.
 *
 * Threads: each relay owns one thread. pipeline_relay_kick may be called from any thread;
 * start and stop from the owner only. */
#ifndef TANDEM_PIPELINE_PIPELINE_H
#define TANDEM_PIPELINE_PIPELINE_H

#include "core/core.h"
#include "evlog/evlog.h"
#include "store/store.h"

#define PIPELINE_TOPIC_EVENTS "events"
#define PIPELINE_TOPIC_CHANGES "changes"

struct pipeline_relay;

/* Moves committed outbox rows of st into the "changes" topic of log, in commit order, each
 * exactly once: rows leave the outbox only after the log holds them durably, and a start
 * first drops the rows the log already has. Records are the outbox rows as JSON:
 * {"id","collectionId","collection","recordId","action","record","changedAt"} with changedAt
 * the commit time in ISO 8601. */
int pipeline_relay_start(struct store *st, struct evlog *log, struct pipeline_relay **out) MUST_USE;
/* Wakes the relay now (after a record write) instead of at its next poll. NULL is fine. */
void pipeline_relay_kick(struct pipeline_relay *r);
/* Moves what is left, then stops the thread and frees. NULL is fine. */
void pipeline_relay_stop(struct pipeline_relay *r);

#endif
