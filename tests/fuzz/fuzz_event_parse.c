/* fuzz_event_parse.c - libFuzzer target for the loader's event parser (the validating JSON
 * scanner in src/pipeline/jscan.c): any bytes must parse or be rejected without a crash, leak
 * or out-of-bounds read; whatever it accepts jansson must accept too (the whole payload and
 * each of properties/traits/context, which go to JSON columns unchecked by DuckDB); and the
 * strings it returns must be valid UTF-8 as jansson sees them.
 *
 * Build (from the repository root; libFuzzer needs clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_event_parse.c \
 *     src/pipeline/jscan.c src/pipeline/parse.c src/core/[a-z]*.c -ljansson -lpthread -lm
 * Seeds: Segment event payloads, e.g. from bench/wh_load.c. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_load(const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j)
        abort();
    json_decref(j);
}

static void must_be_utf8(const char *s)
{
    if (!s)
        return;
    json_t *j = json_string(s); /* NULL unless valid UTF-8 */
    if (!j)
        abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena a;
    arena_init(&a, 4096);
    struct wh_event ev;
    char reason[200];
    if (pipeline_parse_event(data, size, 0, &ev, &a, reason, sizeof(reason)) == 0) {
        must_load((const char *)data, size);
        if (ev.properties)
            must_load(ev.properties, strlen(ev.properties));
        if (ev.traits)
            must_load(ev.traits, strlen(ev.traits));
        if (ev.context)
            must_load(ev.context, strlen(ev.context));
        const char *strs[] = {ev.id,           ev.type,     ev.event,       ev.user_id,
                              ev.anonymous_id, ev.group_id, ev.previous_id, ev.source};
        for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
            must_be_utf8(strs[i]);
    }
    arena_release(&a);
    return 0;
}
