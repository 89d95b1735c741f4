/* keys.c - write keys: random secrets that identify a capture source. Only their hash is
 * stored; the key itself is shown once, when it is made. */
#include <sodium.h>
#include <string.h>

#include "capture/capture.h"

bool capture_key_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CAPTURE_KEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

void capture_key_hash(const char *key, char hash_out[CAPTURE_KEY_HASH_LEN + 1])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof(h), (const unsigned char *)key, strlen(key), NULL, 0);
    sodium_bin2hex(hash_out, CAPTURE_KEY_HASH_LEN + 1, h, sizeof(h));
}

void capture_key_new(char key_out[CAPTURE_KEY_LEN + 1], char hash_out[CAPTURE_KEY_HASH_LEN + 1],
                     char prefix_out[CAPTURE_KEY_PREFIX_LEN + 1])
{
    char a[ID_LEN + 1], b[ID_LEN + 1];
    id_random(a);
    id_random(b);
    /* "tk_" + 30 characters of [a-z0-9]: about 155 bits */
    snprintf(key_out, CAPTURE_KEY_LEN + 1, "tk_%s%s", a, b);
    capture_key_hash(key_out, hash_out);
    memcpy(prefix_out, key_out, CAPTURE_KEY_PREFIX_LEN);
    prefix_out[CAPTURE_KEY_PREFIX_LEN] = '\0';
}
