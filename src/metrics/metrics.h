/* metrics.h - counters, gauges and histograms with labels; Prometheus text exposition.
 *
 * A family (name, help, type, label names) is registered once at start-up. Series are found
 * by their label values: lookup is lock-free (an open-addressing table of atomic pointers);
 * only the first use of a label combination takes the family's lock to insert it. Series
 * are never removed, so a pointer returned by metrics_series() may be cached for the life
 * of the process. Updates are relaxed atomics; exposition reads a snapshot. Any thread. */
#ifndef TANDEM_METRICS_METRICS_H
#define TANDEM_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics_family;
struct metrics_series;

/* Registers a family in the process-wide registry. labels: comma-separated label names, or
 * NULL. buckets: histogram upper bounds in increasing order (NULL: the default latency
 * buckets in seconds). Registering the same name twice returns the first family. */
struct metrics_family *metrics_family(enum metrics_type type, const char *name, const char *help,
                                      const char *labels);
struct metrics_family *metrics_histogram(const char *name, const char *help, const char *labels,
                                         const double *buckets, size_t n_buckets);

/* The series for these label values (as many as the family has labels). Never NULL: once a
 * family holds METRICS_MAX_SERIES series, further combinations share one series whose
 * labels all read "overflow". */
#define METRICS_MAX_SERIES 2048
struct metrics_series *metrics_series(struct metrics_family *f, const char *const *values);
/* Shorthand for a family without labels. */
struct metrics_series *metrics_series0(struct metrics_family *f);

void metrics_inc(struct metrics_series *s, uint64_t n);   /* counter */
void metrics_set(struct metrics_series *s, double v);     /* gauge */
void metrics_add(struct metrics_series *s, double delta); /* gauge */
void metrics_observe(struct metrics_series *s, double v); /* histogram */
double metrics_value(const struct metrics_series *s);     /* counter or gauge, for tests */
uint64_t metrics_hist_count(const struct metrics_series *s);

/* A gauge or counter computed when scraped (process memory, log end offsets...). The
 * callback appends full sample lines for the family; it may be called from any thread. */
typedef void (*metrics_collect_cb)(struct buf *out, const char *name, void *arg);
void metrics_collector(enum metrics_type type, const char *name, const char *help,
                       metrics_collect_cb fn, void *arg);

/* Appends the whole registry in the Prometheus text format 0.0.4. */
void metrics_render(struct buf *out);
/* Appends `name{labels} value` with label values escaped; for collectors. */
void metrics_write_sample(struct buf *out, const char *name, const char *labels_fmt_names,
                          const char *const *values, double v);

/* Registers tandem_process_resident_memory_bytes, tandem_process_cpu_seconds_total and
 * tandem_build_info{version}. */
void metrics_register_process(const char *version);

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
