/* datadir.h - the data directory is private: created with mode 0700, and made so when an
 * existing one lets group or others in.
 *
 * Everything tandem writes there (app.db and its -wal/-shm, the event log, warehouse.duckdb
 * and its .wal, the secret) is readable by whoever can enter the directory, so the process
 * runs with umask DATADIR_UMASK (set first thing in main: every file SQLite, DuckDB and the
 * event log create is then 0600 and every directory 0700) and datadir_prepare takes the
 * group and other bits off what an older version or an operator left behind. Call from one
 * thread, before the stores open the directory. */
#ifndef TANDEM_CORE_DATADIR_H
#define TANDEM_CORE_DATADIR_H

#include <stddef.h>

#include "core/err.h"

#define DATADIR_UMASK 077

struct datadir_report {
    unsigned dir_mode;  /* the directory's mode before (0 when it was created now) */
    size_t n_fixed;     /* entries below it whose group/other bits were removed */
    size_t n_unfixable; /* entries below it that could not be opened or changed */
};

/* Creates dir and missing parents with mode 0700. When dir exists and group or others have
 * any permission on it, it becomes mode & 0700; then every file and directory below it (not
 * following symbolic links; top-level names listed in keep, NULL-terminated, are left alone)
 * loses its group and other bits. Logs one warning per kind of fix. Returns 0, or -errno with
 * one line in err when dir cannot be created, is not a directory, or its own mode cannot be
 * fixed: the caller must then refuse to start. Entries below that cannot be fixed are only
 * warned about (the directory itself already keeps others out). report may be NULL. */
int datadir_prepare(const char *dir, const char *const *keep, struct datadir_report *report,
                    char *err, size_t err_len) MUST_USE;

struct buf;

/* Replaces dir/name with len bytes of data so that a crash leaves either the old file or the
 * new one, whole: writes dir/name.tmp (mode 0600), fsyncs it, renames it over dir/name and
 * fsyncs dir. Returns 0 or -errno (the temporary file removed). */
int datadir_write_file(const char *dir, const char *name, const void *data, size_t len) MUST_USE;

/* Reads dir/name into out (appending). ERR_NOTFOUND when it does not exist, ERR_LIMIT when it
 * is larger than max bytes, -errno on other failures. */
int datadir_read_file(const char *dir, const char *name, size_t max, struct buf *out) MUST_USE;

#endif
