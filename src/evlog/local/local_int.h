/* local_int.h - the local backend's frame codec, segment scanner and directory helpers,
 * shared by local.c (the live log) and check.c (offline check and repair).
 *
 * Frame (all integers little-endian), see docs/evlog.md:
 *   0  u32 len        payload bytes
 *   4  u32 crc        CRC-32C of the payload, continued over bytes 0..3 and 8..23
 *   8  u64 offset     the record's offset in its topic
 *   16 i64 timestamp  microseconds since the epoch, when appended
 *   24 payload[len]
 * The payload is checksummed first so an appender can compute that part before it knows
 * its offset and finish the checksum under the lock with 20 more bytes. */
#ifndef TANDEM_EVLOG_LOCAL_INT_H
#define TANDEM_EVLOG_LOCAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evlog/evlog_int.h"

#define EVLOG_FRAME_HDR 24u
#define EVLOG_SEG_SUFFIX ".seg"
#define EVLOG_SEG_NAME_LEN 24 /* 20 digits + ".seg" */
#define EVLOG_CONSUMERS_FILE "consumers"
#define EVLOG_LOCK_FILE "LOCK"
/* No configuration may accept larger payloads. Scans and reads judge plausibility by this,
 * not by the configured maximum, so lowering the setting never makes old records look bad. */
#define EVLOG_HARD_MAX_RECORD (256u << 20)
#define EVLOG_IDX_EVERY 65536u /* one index entry per this many segment bytes */

static inline size_t evlog__frame_size(size_t payload_len)
{
    return EVLOG_FRAME_HDR + payload_len;
}

/* CRC of the payload part alone; combine with evlog__frame_seal. */
uint32_t evlog__frame_payload_crc(const void *payload, size_t len);
/* Writes the header of a frame whose payload (len bytes) already sits at frame + 24. */
void evlog__frame_seal(uint8_t *frame, uint32_t len, uint64_t offset, int64_t ts_us,
                       uint32_t payload_crc);
/* Whole frame in one call: header + payload copied to dst (evlog__frame_size(len) bytes). */
void evlog__frame_put(uint8_t *dst, uint64_t offset, int64_t ts_us, const void *payload,
                      size_t len);

enum evlog__frame_rc {
    EVLOG_FRAME_OK = 0,
    EVLOG_FRAME_SHORT = 1,  /* fewer bytes than the header or the length needs */
    EVLOG_FRAME_BADLEN = 2, /* length over the maximum */
    EVLOG_FRAME_BADCRC = 3,
    EVLOG_FRAME_BADOFF = 4, /* intact, but not the offset expected */
};
/* Decodes the frame at p (avail bytes readable). expect: the offset it must carry, or
 * UINT64_MAX for any. On OK, *out views the record inside p. */
enum evlog__frame_rc evlog__frame_get(const uint8_t *p, size_t avail, uint32_t max_len,
                                      uint64_t expect, struct evlog_rec_view *out);
const char *evlog__frame_rc_str(enum evlog__frame_rc rc);

/* A sparse index of one segment: (offset, byte position) about every EVLOG_IDX_EVERY
 * bytes, first entry (base, 0). */
struct evlog__idx {
    uint64_t *offsets;
    uint64_t *positions;
    size_t n, cap;
    uint64_t last_pos; /* position of the last entry, to space them */
};
void evlog__idx_add(struct evlog__idx *x, uint64_t offset, uint64_t pos);
/* Position of the last entry with offset <= off (and that entry's offset). */
void evlog__idx_find(const struct evlog__idx *x, uint64_t off, uint64_t *offset_out,
                     uint64_t *pos_out);
void evlog__idx_release(struct evlog__idx *x);

/* What a scan of one segment file found. */
struct evlog__scan {
    uint64_t file_bytes;
    uint64_t n_records;  /* intact records from the start */
    uint64_t good_bytes; /* byte position just after the last intact record */
    int64_t max_ts_us;   /* newest timestamp among them (0 if none) */
    bool damaged;        /* good_bytes < file_bytes */
    enum evlog__frame_rc why;
    bool intact_after;  /* an intact record follows the damage */
    uint64_t intact_at; /* its byte position */
    uint64_t intact_offset;
};
/* Reads the whole segment (base offset base) from fd. idx, if not NULL, receives index
 * entries for the intact records. -errno on a read error or out of memory. */
int evlog__scan_segment(int fd, uint64_t base, uint32_t max_len, struct evlog__scan *out,
                        struct evlog__idx *idx) MUST_USE;

/* "<20 digits>.seg" -> base. */
bool evlog__seg_name_parse(const char *name, uint64_t *base_out);
/* Sorted bases of the segment files in dir. *bases_out is malloc'd (may be NULL if none). */
int evlog__seg_list(const char *dir, uint64_t **bases_out, size_t *n_out) MUST_USE;
/* Subdirectories of dir whose names are valid topic names, sorted; free each and the array. */
int evlog__topic_list(const char *dir, char ***names_out, size_t *n_out) MUST_USE;
/* fsync of a directory by path. */
int evlog__fsync_dir(const char *dir) MUST_USE;
/* pwrite all of it, retrying on EINTR and short writes. */
int evlog__pwrite_all(int fd, const void *p, size_t len, uint64_t pos) MUST_USE;

/* The data sync the live log uses for segments: fdatasync. Tests swap it to inject a failed
 * sync; nothing else may change it, and only while no log is open. */
extern int (*evlog__sync_fn)(int fd);

/* Takes the directory's LOCK file: exclusive for the live log and repair, shared for check.
 * ERR_BUSY when another process holds it. *fd_out keeps the lock until closed. */
int evlog__lock_dir(const char *dir, bool exclusive, int *fd_out) MUST_USE;
/* Verifies the consumer positions file in dir (a missing file is fine). */
int evlog__cons_check(const char *dir) MUST_USE;

#endif
