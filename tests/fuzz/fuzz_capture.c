/* fuzz_capture.c - libFuzzer target: arbitrary bytes through capture_parse().
 *
 * The first input byte picks the endpoint and request facts (Content-Encoding header, a
 * Basic-auth key, a verified user); the rest is the body. Whatever the bytes, the parser must
 * not crash, leak or overrun, and every event it accepts must be a canonical record: a JSON
 * object with exactly the 15 warehouse keys, within the message limit, that the dedup set can
 * read back. See README.md. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture/capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    struct capture_limits lim;
    capture_limits_default(&lim);
    struct capture_input in = {
        .api = (enum capture_api)(sel % 8),
        .body = data + 1,
        .body_len = size - 1,
        .content_encoding = (sel & 0x08) ? "gzip" : NULL,
        .auth_key = (sel & 0x10) ? "fuzz-key" : NULL,
        .verified_user_id = (sel & 0x20) ? "usr_fuzz" : NULL,
        .received_us = 1777636810000000LL,
        .sent_at_us = (sel & 0x40) ? 1777636800000000LL : 0,
        .limits = &lim,
    };
    static struct capture_dedup *dd;
    if (!dd)
        dd = capture_dedup_new(NULL);
    if (sel & 0x80) /* arbitrary bytes into the log-record scanner */
        (void)capture_dedup_add_record(dd, (const char *)data + 1, size - 1, in.received_us);
    struct capture_result r;
    if (capture_parse(&in, &r) == 0 && r.status == 0) {
        if (r.n_events == 0 || r.n_write_keys == 0 || r.n_write_keys > r.n_events)
            abort();
        for (size_t i = 0; i < r.n_events; i++) {
            const struct capture_event *e = &r.events[i];
            if (e->record_len > lim.max_message || !e->message_id || !*e->message_id ||
                !e->write_key || !*e->write_key)
                abort();
            json_t *j = json_loadb(e->record, e->record_len, 0, NULL);
            if (!j || !json_is_object(j) || json_object_size(j) != 15)
                abort();
            json_decref(j);
            /* a record read back must make its own pair a duplicate */
            if (capture_dedup_add_record(dd, e->record, e->record_len, in.received_us) != 0 ||
                !capture_dedup_check_insert(dd, e->write_key, e->write_key_len, e->message_id,
                                            e->message_id_len, in.received_us))
                abort();
        }
    }
    capture_result_release(&r);
    return 0;
}
