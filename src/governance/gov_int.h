/* gov_int.h - shared by the files of the governance module only. */
#ifndef TANDEM_GOVERNANCE_GOV_INT_H
#define TANDEM_GOVERNANCE_GOV_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "governance/governance.h"

struct wh_conn;
struct buf;

/* The suppression list in memory: an open-addressing set of distinct ids. */
struct gov__sset {
    pthread_rwlock_t lock;
    char **slots; /* [lock] NULL = empty */
    size_t cap, n;
    atomic_size_t count; /* n, read without the lock for the fast path */
};

struct gov {
    struct gov_cfg cfg;
    struct gov__sset supp;
    pthread_mutex_t mu; /* leaf: the fields below */
    pthread_cond_t cv;  /* a job was queued, an export ended, or stop */
    bool stop;
    bool worker_started;
    pthread_t worker;
    int n_exports;    /* [mu] export threads running */
    int64_t pause_ms; /* tests: a pause after each stored phase (TANDEM_TEST_DELETE_PAUSE_MS) */
};

/* Adds id to the set (a copy). */
void gov__sset_add(struct gov__sset *s, const char *id);

/* Appends 'a','b',... as SQL string literals (a quote doubled). */
void gov__sql_list(struct buf *b, const json_t *ids);
/* The distinct ids linked to the seeds through the warehouse's events (identify and alias:
 * the user ids an anonymous id or a previous id was linked to, and every anonymous and
 * previous id linked to those users), the seeds included, as a new JSON array of strings.
 * ERR_LIMIT when more than GOV_MAX_IDS. */
int gov__resolve(struct wh_conn *c, const json_t *seeds, json_t **ids_out, char *err,
                 size_t err_len) MUST_USE;
/* Whether an id may be used: 1..GOV_MAX_ID_BYTES bytes, no NUL. */
bool gov__id_valid(const char *s, size_t len);

#endif
