/* gzip.c - bounded gzip inflation of request bodies.
 *
 * The output is capped before it is produced, so a small body that inflates to gigabytes
 * (a zip bomb) stops at max_out with -ERR_LIMIT instead of exhausting memory. */
#include <errno.h>
#include <zlib.h>

#include "capture/capture.h"

bool capture_is_gzip(const void *data, size_t len)
{
    const unsigned char *p = data;
    return len >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

int capture_gunzip(const void *in, size_t in_len, size_t max_out, struct buf *out)
{
    if (!capture_is_gzip(in, in_len))
        return ERR_INVALID;
    z_stream zs = {0};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) /* gzip wrapper only */
        return -ENOMEM;
    int rc = 0;
    size_t start = out->len;
    zs.next_in = (Bytef *)in;
    size_t left_in = in_len;
    for (;;) {
        if (zs.avail_in == 0 && left_in > 0) {
            uInt chunk = left_in > (1u << 30) ? (1u << 30) : (uInt)left_in;
            zs.avail_in = chunk;
            left_in -= chunk;
        }
        size_t produced = out->len - start;
        if (produced >= max_out) {
            /* full: one more byte of output would be over the cap */
            unsigned char probe;
            zs.next_out = &probe;
            zs.avail_out = 1;
            int zr = inflate(&zs, Z_NO_FLUSH);
            if (zs.avail_out == 0) {
                rc = ERR_LIMIT;
                goto out;
            }
            if (zr == Z_STREAM_END)
                goto member_end;
            rc = ERR_INVALID; /* no progress possible: truncated or corrupt */
            goto out;
        }
        size_t room = max_out - produced;
        if (room > 64 * 1024)
            room = 64 * 1024;
        if (buf_try_reserve(out, room) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        zs.next_out = (Bytef *)out->ptr + out->len;
        zs.avail_out = (uInt)room;
        int zr = inflate(&zs, Z_NO_FLUSH);
        out->len += room - zs.avail_out;
        if (zr == Z_STREAM_END)
            goto member_end;
        if (zr == Z_BUF_ERROR && zs.avail_in == 0 && left_in == 0) {
            rc = ERR_INVALID; /* truncated */
            goto out;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = zr == Z_MEM_ERROR ? -ENOMEM : ERR_INVALID;
            goto out;
        }
        continue;
    member_end:
        /* another gzip member may follow (concatenated gzip is valid) */
        if (zs.avail_in == 0 && left_in == 0)
            break;
        if (zs.avail_in == 0) {
            uInt chunk = left_in > (1u << 30) ? (1u << 30) : (uInt)left_in;
            zs.avail_in = chunk;
            left_in -= chunk;
        }
        if (!capture_is_gzip(zs.next_in, zs.avail_in)) {
            rc = ERR_INVALID; /* trailing garbage */
            goto out;
        }
        if (inflateReset(&zs) != Z_OK) {
            rc = ERR_INVALID;
            goto out;
        }
    }
out:
    inflateEnd(&zs);
    if (out->ptr)
        out->ptr[out->len] = '\0';
    return rc;
}
