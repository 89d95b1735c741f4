/* capture_int.h - shared by the files of src/capture/ only. */
#ifndef TANDEM_CAPTURE_CAPTURE_INT_H
#define TANDEM_CAPTURE_CAPTURE_INT_H

#include <jansson.h>

#include "capture/capture.h"

/* ---- the fast path: scan.c, fast.c ---- */

enum capture__tok_type {
    CAPTURE__TOK_OBJECT,
    CAPTURE__TOK_ARRAY,
    CAPTURE__TOK_STRING,
    CAPTURE__TOK_NUMBER,
    CAPTURE__TOK_TRUE,
    CAPTURE__TOK_FALSE,
    CAPTURE__TOK_NULL,
};

/* One value of the body. An object's tokens are its keys (strings), each followed by its
 * value's tokens; an array's are its elements. next skips the value with all it contains. */
struct capture__tok {
    uint32_t start;  /* byte offset in the body (a string's opening quote) */
    uint32_t len;    /* bytes of the value's text, quotes included */
    uint32_t next;   /* index of the first token after this value */
    uint8_t type;    /* enum capture__tok_type */
    uint8_t escaped; /* strings: holds a backslash escape */
};

/* The body as tokens, in document order; token 0 is the root. Owned by one request. */
struct capture__tape {
    struct capture__tok *toks;
    size_t n, cap;
    bool spaced; /* whitespace somewhere between tokens */
};

/* Everything a result owns; freed by capture_result_release(). */
/* A write key and the source name it resolved to. */
struct capture__source {
    struct str key;
    struct str name;
};

struct capture__state {
    json_t *root;
    struct buf inflated;
    struct buf records;
    struct arena arena;
    unsigned char id_seed[16]; /* random per request; assigned ids = seed + counter */
    bool seeded;
    uint32_t n_assigned;
    struct capture__source *sources; /* resolved keys of this request (arena) */
    size_t n_sources, cap_sources;
    struct capture__tape tape;
    size_t *offsets; /* record offsets of the events, until the records buffer stops growing */
};

/* A message on its way to a canonical record. Strings are borrowed from the parsed tree or
 * the result's arena; ptr NULL means absent. Objects are borrowed; NULL means {}. */
struct capture__msg {
    enum capture_type type;
    struct str event;
    struct str user_id;
    struct str anonymous_id;
    struct str group_id;
    struct str previous_id;
    struct str message_id;
    struct str write_key;
    struct str source; /* the write key's name, written as the record's "source" */
    int64_t timestamp_us;
    int64_t original_us; /* valid when has_original */
    int64_t sent_us;     /* valid when has_sent */
    bool has_original;
    bool has_sent;
    json_t *properties;
    json_t *traits;
    json_t *context;
    /* the fast path's objects: raw JSON text from the body, used instead of the json_t
     * above when ptr is set; raw_spaced when the body has whitespace between tokens */
    struct str raw_properties;
    struct str raw_traits;
    struct str raw_context;
    bool raw_spaced;
};

/* Per-request parsing context. */
struct capture__ctx {
    const struct capture_input *in;
    const struct capture_limits *lim;
    struct capture_result *res;
    struct capture__state *st;
    long item; /* index of the batch item being read, -1 for none (single body, envelope) */
    /* envelope */
    struct str env_write_key;
    int64_t env_sent_us;
    bool env_has_sent;
    json_t *env_context; /* Segment batch-level context, or NULL */
};

/* Sets res->status and a message "batch[3].<fmt...>" (or just "<fmt...>" outside a batch
 * item); returns ERR_INVALID for chaining. The first failure wins. */
int capture__fail(struct capture__ctx *cx, int status, const char *fmt, ...) PRINTF_LIKE(3, 4);
/* The same about the item as a whole: "batch[3]: <fmt...>" or "message: <fmt...>". */
int capture__fail_item(struct capture__ctx *cx, int status, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Field readers: absent or null gives ptr NULL / false and 0. Wrong type fails the request
 * (400) naming the field. */
int capture__get_id(struct capture__ctx *cx, json_t *obj, const char *key,
                    struct str *out) MUST_USE;
int capture__get_object(struct capture__ctx *cx, json_t *obj, const char *key,
                        json_t **out) MUST_USE;
int capture__get_time(struct capture__ctx *cx, json_t *obj, const char *key, int64_t *us_out,
                      bool *has_out) MUST_USE;
/* The string of a json string value as a view (NULL ptr when not a non-empty string). */
struct str capture__json_str(json_t *v);

/* messageId: validates a given one (string, <= 100 chars) or assigns a fresh one. */
int capture__message_id(struct capture__ctx *cx, json_t *v, const char *field,
                        struct str *out) MUST_USE;
/* timestamp = received - (sent - original) when both known, else original or received;
 * clamped: more than 23 h in the future becomes received; years stay in 0000..9999. */
int64_t capture__skew_correct(int64_t received, bool has_original, int64_t original, bool has_sent,
                              int64_t sent);
/* Segment's times: originalTimestamp falls back to timestamp (ts when has_ts), sentAt to the
 * batch envelope's, then m->timestamp_us is skew-corrected from them. */
void capture__segment_times(const struct capture__ctx *cx, struct capture__msg *m, bool has_ts,
                            int64_t ts);
/* Applies the verified tandem user to the message context (and strips any client-sent
 * "tandem" key): item is where a new context object is attached when needed. */
void capture__context_tandem(struct capture__ctx *cx, json_t *item, struct capture__msg *m);

/* Appends the canonical record for m to the records buffer; ERR_INVALID when a value cannot
 * be serialised (the caller truncates the buffer back). */
int capture__write_record(struct buf *b, const struct capture__msg *m,
                          int64_t received_us) MUST_USE;

/* Dialects: fill m from one item. */
int capture__segment_item(struct capture__ctx *cx, json_t *item, int type_from_path,
                          struct capture__msg *m) MUST_USE;
int capture__posthog_item(struct capture__ctx *cx, json_t *item, struct capture__msg *m) MUST_USE;

/* ---- the fast path (scan.c, fast.c) ---- */

/* Validates s as JSON and fills the tape: 0, or ERR_INVALID when the body is not one the
 * fast path takes. ERR_INVALID is not a verdict on the body (it also covers duplicate or
 * escaped keys, nesting past 64, integers of 19+ digits, reals with large exponents, objects
 * of 64+ keys): the caller then parses with jansson. Whatever this accepts, json_loadb()
 * accepts with the same values. */
int capture__scan(const char *s, size_t len, struct capture__tape *tp) MUST_USE;
void capture__tape_release(struct capture__tape *tp);
/* The token index of key's value in the object at token obj, or 0 when absent. */
size_t capture__tok_get(const struct capture__tape *tp, const char *s, size_t obj, const char *key);

/* The fast path declined the request: parse it again with jansson. */
#define CAPTURE__SLOW 1

/* Segment requests from the tape: 0 with the result filled, CAPTURE__SLOW when anything is
 * not the plain case (an error, an object the server must change, an escaped id...), or
 * -ENOMEM. The result does not borrow the body: ids, keys and names are copied into the
 * result's arena, and the objects into its records. */
int capture__segment_fast(struct capture__ctx *cx, const char *body, size_t len,
                          int path_type) MUST_USE;

/* Shared by both paths (capture.c). */
int capture__resolve_source(struct capture__ctx *cx, struct capture__msg *m) MUST_USE;
/* Writes m as event i of the result: its record, limits, the event fields. Fails (status
 * set) past the limits. */
/* Whether any rule of p for this source acts inside the record's object ("properties",
 * "traits" or "context"). */
bool capture__pii_touches(const struct capture_pii *p, struct str source, const char *object);
/* Applies p's rules for this source to obj, the record's object of that name (changed in
 * place: pass a copy of anything shared). */
void capture__pii_apply(const struct capture_pii *p, struct str source, const char *object,
                        json_t *obj);

int capture__add_event(struct capture__ctx *cx, struct capture__msg *m, size_t i,
                       size_t max_total) MUST_USE;

#endif
