/* fuzz_store_schema.c - libFuzzer target for the client-facing parsers of the store: CREATE
 * INDEX statements, collection JSON, and record bodies.
 *
 * The first input byte picks the parser, the rest is its input:
 *   0: store__index_parse. Invariant: a parsed index renders to a canonical form that parses
 *      again to the same rendering.
 *   1: store__collection_from_json (create, and update of a fixed base). Invariant: a valid
 *      collection survives store_collection_to_json -> store__collection_load -> to_json.
 *   2: store__record_prepare against a fixed collection with every field type. Invariants:
 *      on success every stored field has the JSON type its field type says; on failure the
 *      errors object is not empty.
 * No crash and no sanitizer report in any case.
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -Isrc \
 *     tests/fuzz/fuzz_store_schema.c src/store/schema.c src/store/collection.c \
 *     src/store/index.c src/store/record.c src/core/arena.c src/core/cfg.c src/core/err.c \
 *     src/core/str.c src/core/util.c src/core/xlog.c -ljansson -lz -lpthread -lm \
 *     -o fuzz_store_schema
 *   ./fuzz_store_schema -max_total_time=60 -max_len=4096 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

static const char base_spec[] =
    "{\"id\":\"pbc_1\",\"name\":\"posts\",\"type\":\"base\",\"fields\":["
    "{\"id\":\"text3208210256\",\"name\":\"id\",\"type\":\"text\",\"system\":true,"
    "\"primaryKey\":true,\"required\":true,\"min\":15,\"max\":15,\"pattern\":\"^[a-z0-9]+$\","
    "\"autogeneratePattern\":\"[a-z0-9]{15}\"},"
    "{\"id\":\"t1\",\"name\":\"title\",\"type\":\"text\",\"min\":1,\"max\":20,"
    "\"pattern\":\"^[a-z ]*$\"},"
    "{\"id\":\"n1\",\"name\":\"views\",\"type\":\"number\",\"min\":0,\"max\":100,"
    "\"onlyInt\":true},"
    "{\"id\":\"b1\",\"name\":\"ok\",\"type\":\"bool\"},"
    "{\"id\":\"e1\",\"name\":\"mail\",\"type\":\"email\",\"onlyDomains\":[\"a.com\"]},"
    "{\"id\":\"u1\",\"name\":\"site\",\"type\":\"url\"},"
    "{\"id\":\"d1\",\"name\":\"when\",\"type\":\"date\"},"
    "{\"id\":\"a1\",\"name\":\"created\",\"type\":\"autodate\",\"onCreate\":true},"
    "{\"id\":\"s1\",\"name\":\"one\",\"type\":\"select\",\"values\":[\"x\",\"y\"],"
    "\"maxSelect\":1},"
    "{\"id\":\"s2\",\"name\":\"many\",\"type\":\"select\",\"values\":[\"x\",\"y\",\"z\"],"
    "\"maxSelect\":2},"
    "{\"id\":\"j1\",\"name\":\"meta\",\"type\":\"json\",\"maxSize\":100},"
    "{\"id\":\"r1\",\"name\":\"rel\",\"type\":\"relation\",\"collectionId\":\"pbc_1\","
    "\"maxSelect\":3}],"
    "\"indexes\":[\"CREATE INDEX idx_t ON posts (title)\"]}";

static struct store_collection *base;

static void check_index(const char *sql)
{
    struct store__index ix;
    if (store__index_parse(sql, &ix) != 0)
        return;
    char *r1 = store__index_render(&ix);
    store__index_release(&ix);
    if (store__index_parse(r1, &ix) != 0)
        abort();
    char *r2 = store__index_render(&ix);
    store__index_release(&ix);
    if (strcmp(r1, r2) != 0)
        abort();
    free(r1);
    free(r2);
}

static void check_collection(const json_t *in)
{
    for (int pass = 0; pass < 2; pass++) {
        json_t *errors = json_object();
        struct store_collection *c = NULL;
        int rc = store__collection_from_json(in, pass ? base : NULL, "2026-01-01 00:00:00.000Z",
                                             errors, &c);
        if (rc == 0) {
            json_t *j = store_collection_to_json(c);
            char *text = json_dumps(j, JSON_COMPACT);
            struct store_collection *back = NULL;
            if (!text || store__collection_load(text, &back) != 0)
                abort();
            json_t *j2 = store_collection_to_json(back);
            if (!json_equal(j, j2))
                abort();
            json_decref(j2);
            store_collection_unref(back);
            free(text);
            json_decref(j);
            store_collection_unref(c);
        } else if (json_object_size(errors) == 0 || c) {
            abort();
        }
        json_decref(errors);
    }
}

static void check_record(const json_t *body)
{
    json_t *errors = json_object();
    json_t *out = NULL;
    int rc =
        store__record_prepare(base, NULL, body, "2026-01-01 00:00:00.000Z", errors, &out, NULL);
    if (rc == 0) {
        for (size_t i = 0; i < base->n_fields; i++) {
            const struct store_field *f = &base->fields[i];
            json_t *v = json_object_get(out, f->name);
            bool ok;
            if (store_field_multiple(f))
                ok = json_is_array(v);
            else if (f->type == STORE_FIELD_NUMBER)
                ok = json_is_number(v);
            else if (f->type == STORE_FIELD_BOOL)
                ok = json_is_boolean(v);
            else if (f->type == STORE_FIELD_JSON)
                ok = v != NULL;
            else
                ok = json_is_string(v);
            if (!ok)
                abort();
        }
        json_decref(out);
    } else if (json_object_size(errors) == 0 || out) {
        abort();
    }
    json_decref(errors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base && store__collection_load(base_spec, &base) != 0)
        abort();
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 3;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (mode == 0) {
        char *s = malloc(len + 1);
        memcpy(s, text, len);
        s[len] = '\0';
        check_index(s);
        free(s);
        return 0;
    }
    json_t *in = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    if (!in)
        return 0;
    if (mode == 1)
        check_collection(in);
    else
        check_record(in);
    json_decref(in);
    return 0;
}
