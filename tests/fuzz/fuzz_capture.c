/* fuzz_capture.c - libFuzzer target: arbitrary bytes through capture_parse().
 *
 * The first input byte picks the endpoint and request facts (Content-Encoding header, a
 * Basic-auth key, a verified user); the rest is the body. Whatever the bytes, the parser must
 * not crash, leak or overrun, and every event it accepts must be a canonical record: a JSON
 * object with exactly the 15 warehouse keys, within the message limit, that the dedup set can
 * read back. And the fast path's scanner never accepts a body that jansson rejects. See
 * README.md. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture/capture.h"
#include "capture/capture_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void compare_with_slow(const struct capture_input *in, const struct capture_result *fast,
                              const uint8_t *rest, size_t rest_len)
{
    static const char head[] = "{\"_slow\":0,\"_slow\":0,";
    size_t len = sizeof(head) - 1 + rest_len;
    char *body = malloc(len);
    memcpy(body, head, sizeof(head) - 1);
    memcpy(body + sizeof(head) - 1, rest, rest_len);
    /* an empty object becomes {"_slow":0,"_slow":0,} - not JSON: skip those */
    struct capture_input in2 = *in;
    in2.body = body;
    in2.body_len = len;
    struct capture_result slow;
    int rc = capture_parse(&in2, &slow);
    bool big = false;
    for (size_t i = 0; i < fast->n_events; i++)
        big |= fast->events[i].record_len > in->limits->max_message / 4;
    if (rc == 0 && slow.status != 0 && !big && !(rest_len > 0 && rest[0] == '}'))
        abort(); /* the jansson path refused what the fast path took */
    if (rc == 0 && slow.status == 0) {
        if (slow.n_events != fast->n_events)
            abort();
        for (size_t i = 0; i < fast->n_events; i++) {
            const struct capture_event *a = &fast->events[i], *b = &slow.events[i];
            if (a->type != b->type || a->timestamp_us != b->timestamp_us ||
                strcmp(a->write_key, b->write_key) != 0 || strcmp(a->source, b->source) != 0 ||
                !a->user_id != !b->user_id || (a->user_id && strcmp(a->user_id, b->user_id)) ||
                !a->anonymous_id != !b->anonymous_id ||
                (a->anonymous_id && strcmp(a->anonymous_id, b->anonymous_id)))
                abort();
            json_t *ja = json_loadb(a->record, a->record_len, 0, NULL);
            json_t *jb = json_loadb(b->record, b->record_len, 0, NULL);
            if (!ja || !jb)
                abort();
            if (strcmp(a->message_id, b->message_id) != 0) { /* both assigned at random */
                if (a->message_id_len != 36 || b->message_id_len != 36)
                    abort();
                json_object_del(ja, "messageId");
                json_object_del(jb, "messageId");
            }
            if (!json_equal(ja, jb))
                abort();
            json_decref(ja);
            json_decref(jb);
        }
    }
    capture_result_release(&slow);
    free(body);
}

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
    struct capture__tape tape = {0};
    if (capture__scan((const char *)data + 1, size - 1, &tape) == 0) {
        json_t *j = json_loadb((const char *)data + 1, size - 1, 0, NULL);
        if (!j)
            abort();
        json_decref(j);
    }
    capture__tape_release(&tape);
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
    /* Segment bodies the fast path took must give the events the jansson path gives: a
     * duplicate key in front sends the same body there (the scanner declines duplicates) */
    if (r.status == 0 && r.n_events > 0 && in.api != CAPTURE_API_POSTHOG && !(sel & 0x08) &&
        size > 2 && data[1] == '{' && size < lim.max_body - 64 &&
        !capture_is_gzip(data + 1, size - 1))
        compare_with_slow(&in, &r, data + 2, size - 2);
    capture_result_release(&r);
    return 0;
}
