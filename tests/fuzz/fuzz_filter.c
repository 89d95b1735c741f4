/* fuzz_filter.c - libFuzzer target for the filter and sort compilers.
 *
 * The first input byte picks the mode (bit 0: sort instead of filter, bit 1: a client's
 * filter, bit 2: a guest instead of an authenticated user); the rest is the text. Whatever
 * compiles is run against the in-memory fixture database and must prepare as one statement
 * and run to the end; whatever fails must carry a code and a position inside the input.
 *
 * Build and run (not part of ctest):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Itests/unit \
 *     tests/fuzz/fuzz_filter.c src/filter/?*.c src/core/?*.c src/store/schema.c \
 *     $(pkg-config --cflags --libs jansson sqlite3) -lm -o build/fuzz_filter
 *   build/fuzz_filter -max_total_time=60 -max_len=4000
 */
#include <stdint.h>

#include "filter_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sqlite3 *db;
static json_t *auth, *body;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!db) {
        db = fx_db_open();
        auth = json_pack("{s:s}", "id", "u1");
        body = json_pack("{s:s, s:[s,s]}", "title", "x", "tags", "t1", "t2");
        if (!db || !auth || !body)
            abort();
    }
    uint8_t mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct filter_request rq = {.method = "GET",
                                .auth = (mode & 4) ? NULL : auth,
                                .auth_collection = FX_USERS,
                                .body = body};
    struct filter_ctx ctx = fx_ctx(FX_POSTS);
    ctx.request = &rq;
    ctx.client = (mode & 2) != 0;
    struct arena a;
    arena_init(&a, 4096);
    struct filter_sql q;
    struct filter_error err;
    bool sort = mode & 1;
    int rc = sort ? filter_compile_sort(&ctx, text, len, &a, &q, &err)
                  : filter_compile(&ctx, text, len, &a, &q, &err);
    if (rc == 0) {
        char ids[256];
        int src = fx_query(db, "posts", sort ? NULL : &q, sort ? &q : NULL, ids, sizeof(ids));
        if (src != SQLITE_DONE) {
            fprintf(stderr, "sqlite %d: %s\n%s\n", src, sqlite3_errmsg(db), q.sql);
            abort();
        }
    } else if (err.code != rc || err.pos > len + 1 ||
               (rc != ERR_INVALID && rc != ERR_LIMIT && rc != ERR_DENIED)) {
        abort();
    }
    arena_release(&a);
    return 0;
}
