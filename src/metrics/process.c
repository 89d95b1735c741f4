/* process.c - process-wide gauges read when scraped: memory, CPU time, build info. */
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics/metrics.h"

static void collect_rss(struct buf *out, const char *name, void *arg)
{
    UNUSED(arg);
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    metrics_write_sample(out, name, NULL, NULL, (double)resident * (double)sysconf(_SC_PAGESIZE));
}

static void collect_cpu(struct buf *out, const char *name, void *arg)
{
    UNUSED(arg);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    metrics_write_sample(out, name, NULL, NULL, s);
}

void metrics_register_process(const char *version)
{
    metrics_collector(METRICS_GAUGE, "tandem_process_resident_memory_bytes",
                      "Resident memory size in bytes.", collect_rss, NULL);
    metrics_collector(METRICS_COUNTER, "tandem_process_cpu_seconds_total",
                      "User and system CPU time spent, in seconds.", collect_cpu, NULL);
    const char *v[1] = {version};
    metrics_set(
        metrics_series(metrics_family(METRICS_GAUGE, "tandem_build_info",
                                      "Build information; the value is always 1.", "version"),
                       v),
        1);
}
