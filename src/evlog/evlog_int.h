/* evlog_int.h - shared by the evlog facade and its backends only. */
#ifndef TANDEM_EVLOG_EVLOG_INT_H
#define TANDEM_EVLOG_EVLOG_INT_H

#include "evlog/evlog.h"

/* Sets the calling thread's evlog error message (what evlog_errmsg returns). */
void evlog__errf(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* The calling thread's message buffer. */
const char *evlog__errmsg(void);

/* Grows a batch so it can hold n_recs records and mem_len bytes; -ENOMEM on failure. */
int evlog__batch_reserve(struct evlog_batch *b, size_t n_recs, size_t mem_len) MUST_USE;

#define EVLOG_TAIL_MAX_BYTES (1u << 20)

extern const struct evlog_ops evlog_local_ops;
extern const struct evlog_ops evlog_kafka_ops;

#endif
