/* check.c - offline verification and repair of a local event log directory, for
 * `tandem log check` and `tandem log repair`. Runs while no server has the log open (the
 * directory's LOCK file says so). Repair never deletes data: whatever it cuts away is moved
 * into files ending in ".damaged" next to the segment. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evlog/local/local_int.h"

/* The largest record the offline tools accept: they do not know the server's setting. */
#define CHECK_MAX_RECORD EVLOG_HARD_MAX_RECORD

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *seg_path_of(const char *dir, uint64_t base)
{
    char name[EVLOG_SEG_NAME_LEN + 1];
    snprintf(name, sizeof(name), "%020" PRIu64 EVLOG_SEG_SUFFIX, base);
    return path_join(dir, name);
}

/* A name for moved-aside data that does not exist yet: "<path><suffix>", then
 * "<path><suffix>.1", ... */
static char *aside_name(const char *path, const char *suffix)
{
    struct buf b;
    buf_init(&b);
    for (int i = 0;; i++) {
        buf_reset(&b);
        buf_printf(&b, "%s%s", path, suffix);
        if (i)
            buf_printf(&b, ".%d", i);
        struct stat st;
        if (stat(buf_cstr(&b), &st) < 0 && errno == ENOENT)
            break;
    }
    size_t len;
    return buf_detach(&b, &len);
}

static void describe_damage(struct buf *report, const char *path, uint64_t base,
                            const struct evlog__scan *sc, bool last)
{
    buf_printf(report,
               "  segment %s: %s at byte %" PRIu64 " (offset %" PRIu64 "), %" PRIu64
               " bytes from there to the end; ",
               path, evlog__frame_rc_str(sc->why), sc->good_bytes, base + sc->n_records,
               sc->file_bytes - sc->good_bytes);
    if (sc->intact_after)
        buf_printf(report,
                   "intact records follow at byte %" PRIu64 " (offset %" PRIu64
                   "): damage inside the log\n",
                   sc->intact_at, sc->intact_offset);
    else if (last)
        buf_puts(report, "nothing intact follows: a torn tail, cut back when the log opens\n");
    else
        buf_puts(report, "nothing intact follows, but later segments exist\n");
}

/* Checks (repair = false) or repairs one topic directory. *problems_out counts damage
 * found; with repair, damage is also cut away. */
static int topic_pass(const char *dir, const char *topic, bool repair, struct buf *report,
                      int *problems_out)
{
    char *tdir = path_join(dir, topic);
    uint64_t *bases = NULL;
    size_t n = 0;
    uint64_t records = 0, expect = 0;
    bool cut = false, dir_changed = false;
    int rc = evlog__seg_list(tdir, &bases, &n);
    if (rc < 0) {
        evlog__errf("cannot list %s: %s", tdir, err_str(rc));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char *path = seg_path_of(tdir, bases[i]);
        int fd = -1;
        if (!cut && i > 0 && bases[i] != expect) {
            buf_printf(report,
                       "  segment %s starts at offset %" PRIu64
                       " but the one before ends at %" PRIu64 ": a gap or overlap\n",
                       path, bases[i], expect);
            (*problems_out)++;
            cut = true;
        }
        if (cut) {
            if (repair) {
                char *to = aside_name(path, ".damaged");
                if (rename(path, to) < 0) {
                    rc = -errno;
                    evlog__errf("cannot move %s aside: %s", path, strerror(errno));
                    free(to);
                    free(path);
                    goto out;
                }
                buf_printf(report, "  moved %s to %s\n", path, to);
                dir_changed = true;
                free(to);
            }
            free(path);
            continue;
        }
        fd = open(path, repair ? O_RDWR | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
        struct evlog__scan sc;
        rc = fd < 0 ? -errno : evlog__scan_segment(fd, bases[i], CHECK_MAX_RECORD, &sc, NULL);
        if (rc < 0) {
            evlog__errf("cannot read segment %s: %s", path, err_str(rc));
            goto seg_fail;
        }
        records += sc.n_records;
        expect = bases[i] + sc.n_records;
        if (sc.damaged) {
            (*problems_out)++;
            describe_damage(report, path, bases[i], &sc, i + 1 == n);
            cut = true;
        }
        if (sc.damaged && repair) {
            /* copy the damaged rest aside, make that durable, then cut */
            char suffix[48];
            snprintf(suffix, sizeof(suffix), ".damaged-%" PRIu64, sc.good_bytes);
            char *to = aside_name(path, suffix);
            int out_fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            uint64_t left = sc.file_bytes - sc.good_bytes, pos = sc.good_bytes;
            uint8_t *chunk = xmalloc(1 << 16);
            rc = out_fd < 0 ? -errno : 0;
            while (rc == 0 && left) {
                size_t want = left < (1 << 16) ? (size_t)left : (1 << 16);
                ssize_t r = pread(fd, chunk, want, (off_t)pos);
                if (r <= 0) {
                    rc = r < 0 ? -errno : -EIO;
                    break;
                }
                rc = evlog__pwrite_all(out_fd, chunk, (size_t)r, pos - sc.good_bytes);
                pos += (uint64_t)r;
                left -= (uint64_t)r;
            }
            free(chunk);
            if (rc == 0 && fsync(out_fd) < 0)
                rc = -errno;
            if (out_fd >= 0)
                close(out_fd);
            if (rc == 0 && (ftruncate(fd, (off_t)sc.good_bytes) < 0 || fsync(fd) < 0))
                rc = -errno;
            if (rc < 0) {
                evlog__errf("cannot cut segment %s: %s", path, err_str(rc));
                free(to);
                goto seg_fail;
            }
            buf_printf(report,
                       "  cut %s at byte %" PRIu64 "; the %" PRIu64 " bytes after it are in %s\n",
                       path, sc.good_bytes, sc.file_bytes - sc.good_bytes, to);
            dir_changed = true;
            free(to);
        }
        close(fd);
        free(path);
        continue;
    seg_fail:
        if (fd >= 0)
            close(fd);
        free(path);
        goto out;
    }
    if (dir_changed) {
        rc = evlog__fsync_dir(tdir);
        if (rc < 0) {
            evlog__errf("cannot sync directory %s: %s", tdir, err_str(rc));
            goto out;
        }
    }
    if (n)
        buf_printf(report,
                   "topic %s: %zu segments, offsets %" PRIu64 "..%" PRIu64 ", %" PRIu64
                   " records%s\n",
                   topic, n, bases[0], expect, records, cut && !repair ? ", DAMAGED" : "");
    else
        buf_printf(report, "topic %s: no segments\n", topic);
    rc = 0;
out:
    free(bases);
    free(tdir);
    return rc;
}

static int pass(const char *dir, bool repair, struct buf *report)
{
    char **names = NULL;
    size_t n = 0;
    int lock_fd = -1, problems = 0;
    int rc = evlog__lock_dir(dir, repair, &lock_fd);
    if (rc < 0)
        return rc;
    rc = evlog__topic_list(dir, &names, &n);
    if (rc < 0) {
        evlog__errf("cannot list %s: %s", dir, err_str(rc));
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = topic_pass(dir, names[i], repair, report, &problems);
    if (rc < 0)
        goto out;
    rc = evlog__cons_check(dir);
    if (rc == ERR_CORRUPT) {
        buf_printf(report, "%s\n", evlog__errmsg());
        problems++;
        rc = 0;
        if (repair) {
            /* consumers start over from their own records (e.g. the warehouse's offsets) */
            char *path = path_join(dir, EVLOG_CONSUMERS_FILE);
            char *to = aside_name(path, ".damaged");
            if (rename(path, to) < 0 || evlog__fsync_dir(dir) < 0) {
                rc = -errno;
                evlog__errf("cannot move %s aside: %s", path, strerror(errno));
            } else {
                buf_printf(report, "  moved %s to %s\n", path, to);
            }
            free(path);
            free(to);
        }
    }
    if (rc < 0) {
        buf_printf(report, "%s\n", evlog__errmsg());
        goto out;
    }
    if (problems && !repair) {
        evlog__errf("%d problem(s) found in %s", problems, dir);
        buf_printf(report, "%d problem(s) found\n", problems);
        rc = ERR_CORRUPT;
    } else if (repair) {
        buf_printf(report, "%d problem(s) repaired\n", problems);
    } else {
        buf_puts(report, "no problems found\n");
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}

int evlog_check(const char *dir, struct buf *report)
{
    return pass(dir, false, report);
}

int evlog_repair(const char *dir, struct buf *report)
{
    return pass(dir, true, report);
}
