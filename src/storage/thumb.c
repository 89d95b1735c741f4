/* thumb.c - thumbnails with libvips. Each operation runs on the calling thread only
 * (vips_concurrency_set(1)) and libvips keeps no operation cache, so the pool's size bounds
 * the threads and memory thumbnails take. */
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <vips/vips.h>

#include "storage/storage.h"
#include "store/schema.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_rc;

static void init_vips(void)
{
    if (VIPS_INIT("tandem") != 0) {
        init_rc = ERR_INTERNAL;
        return;
    }
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
}

int storage_thumb_init(void)
{
    pthread_once(&once, init_vips);
    return init_rc;
}

/* The saver's suffix for the source's type; NULL when libvips should not try. */
static const char *suffix_of(const char *type)
{
    if (strcmp(type, "image/png") == 0)
        return ".png";
    if (strcmp(type, "image/jpeg") == 0)
        return ".jpg";
    if (strcmp(type, "image/webp") == 0)
        return ".webp";
    if (strcmp(type, "image/gif") == 0)
        return ".gif";
    return NULL;
}

int storage_thumb(struct storage *s, const char *src_key, const char *spec, const char *dst_key)
{
    int w, h;
    char mode;
    char path[PATH_MAX], head[16];
    if (!store_thumb_parse(spec, &w, &h, &mode))
        return ERR_INVALID;
    int rc = storage_thumb_init();
    if (rc)
        return rc;
    if ((rc = storage_local_path(s, src_key, path, sizeof(path))) != 0)
        return rc;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ERR_NOTFOUND;
    size_t got = fread(head, 1, sizeof(head), f);
    fclose(f);
    const char *suffix = suffix_of(storage_sniff(head, got));
    if (!suffix)
        return ERR_INVALID;
    VipsInteresting crop = mode == 't'   ? VIPS_INTERESTING_LOW
                           : mode == 'b' ? VIPS_INTERESTING_HIGH
                           : mode == 'f' ? VIPS_INTERESTING_NONE
                                         : VIPS_INTERESTING_CENTRE;
    if (w == 0 || h == 0)
        crop = VIPS_INTERESTING_NONE; /* one side given: the aspect ratio decides the other */
    VipsImage *img = NULL;
    void *buf = NULL;
    size_t len = 0;
    if (vips_thumbnail(path, &img, w ? w : VIPS_MAX_COORD, "height", h ? h : VIPS_MAX_COORD, "crop",
                       crop, "size", VIPS_SIZE_BOTH, NULL) != 0 ||
        vips_image_write_to_buffer(img, suffix, &buf, &len, NULL) != 0) {
        xlog_warn("cannot make thumb %s of %s: %s", spec, src_key, vips_error_buffer());
        vips_error_clear();
        rc = ERR_INVALID;
    } else {
        rc = storage_put(s, dst_key, buf, len);
    }
    g_free(buf);
    if (img)
        g_object_unref(img);
    vips_thread_shutdown();
    return rc;
}
