/* fuzz_form_body.c - libFuzzer target for the multipart/form-data record body parser.
 *
 * The input is a body sent with the boundary "XyZ". Invariants: no crash or sanitizer
 * report; at most 64 keys; on success every value is a string, number, bool, an array of those, or
 * whatever
 * "@jsonPayload" held; on failure the function says so (ERR_INVALID) and nothing else.
 *
 * Build and run (from the repository root, after cmake --build build):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -Isrc \
 *     tests/fuzz/fuzz_form_body.c src/api/formbody.c build/libtandem_lib.a \
 *     -ljansson -lmicrohttpd -lsqlite3 -lsodium -ljwt -lz -lpthread -lm -o fuzz_form_body
 *   ./fuzz_form_body -max_total_time=60 -max_len=4096 */
#include <stdint.h>
#include <stdlib.h>

#include "api/records_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *out = json_object();
    struct str body = {(const char *)data, size};
    int rc = api__parse_multipart("multipart/form-data; boundary=XyZ", body, 64, out, NULL);
    if (rc != 0 && rc != ERR_INVALID && rc != ERR_LIMIT)
        abort();
    if (!json_is_object(out))
        abort();
    json_decref(out);
    return 0;
}
