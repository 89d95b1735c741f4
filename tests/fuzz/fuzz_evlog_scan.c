/* fuzz_evlog_scan.c - libFuzzer target for the event log's frame decoder and segment scanner:
 * any bytes given as a segment file must scan without a crash, leak or out-of-bounds read,
 * and the result must be self-consistent (the intact prefix re-decodes frame by frame).
 *
 * Build (from the repository root; libFuzzer needs clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_evlog_scan.c \
 *     src/evlog/evlog.c src/evlog/local/[a-z]*.c src/core/[a-z]*.c src/metrics/metrics.c -lpthread
 * -lm Seeds: any segment file written by tandem, prefixed by 8 bytes (the base offset). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "evlog/local/local_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    /* the first 8 bytes choose the segment's base offset */
    uint64_t base = le_get64(data) % 1000;
    data += 8;
    size -= 8;
    int fd = memfd_create("seg", 0);
    if (fd < 0 || (size && evlog__pwrite_all(fd, data, size, 0) != 0))
        abort();
    struct evlog__scan sc;
    struct evlog__idx idx = {0};
    if (evlog__scan_segment(fd, base, 1u << 16, &sc, &idx) != 0)
        abort();
    close(fd);
    if (sc.good_bytes > size || sc.damaged != (sc.good_bytes < size))
        abort();
    if (sc.intact_after && (sc.intact_at <= sc.good_bytes || sc.intact_at >= size))
        abort();
    /* the intact prefix decodes frame by frame with dense offsets */
    size_t pos = 0;
    for (uint64_t i = 0; i < sc.n_records; i++) {
        struct evlog_rec_view v;
        if (evlog__frame_get(data + pos, size - pos, 1u << 16, base + i, &v) != EVLOG_FRAME_OK)
            abort();
        pos += EVLOG_FRAME_HDR + v.len;
    }
    if (pos != sc.good_bytes)
        abort();
    evlog__idx_release(&idx);
    return 0;
}
