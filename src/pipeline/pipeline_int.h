/* pipeline_int.h - shared by the pipeline's files only. */
#ifndef TANDEM_PIPELINE_PIPELINE_INT_H
#define TANDEM_PIPELINE_PIPELINE_INT_H

#include "pipeline/pipeline.h"

/* One member of a top-level JSON object, as spans of the original text. */
struct pipeline__member {
    const char *key; /* raw key bytes between the quotes (escapes not decoded) */
    size_t key_len;
    const char *val; /* the value's text: for strings the bytes between the quotes */
    size_t val_len;
    char type;        /* 's' string, 'o' object, 'a' array, 'n' number, 't', 'f', 'z' (null) */
    bool escaped;     /* the string value holds backslash escapes */
    bool key_escaped; /* the key holds backslash escapes */
};

/* Validates that text is exactly one JSON object (RFC 8259, UTF-8, nesting <= 64) and lists
 * its members in order, at most max of them. Returns 0, ERR_INVALID with reason filled, or
 * ERR_LIMIT when there are more than max members. */
int pipeline__scan_object(const char *text, size_t len, struct pipeline__member *out, size_t max,
                          size_t *n_out, char *reason, size_t reason_len) MUST_USE;

/* Decodes the escapes of a string span into a NUL-terminated copy in a. ERR_INVALID when it
 * decodes to a NUL character. */
int pipeline__unescape(const char *s, size_t len, struct arena *a, char **out) MUST_USE;

#endif
