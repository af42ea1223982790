#include "kafka_redact.h"

#include <string.h>

int kafka_property_is_sensitive(const char *name)
{
    static const char *const marks[] = {"password", "secret", "sasl.oauthbearer", "ssl.key",
                                        "ssl_key"};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        if (strcasestr(name, marks[i]) != NULL)
            return 1;
    }
    return 0;
}

/* Whether text ends with a (proper, non-empty) beginning of secret. */
static size_t kafka_partial_secret_at_end(const char *text, const char *secret)
{
    size_t len = strlen(text);
    size_t secret_len = strlen(secret);
    for (size_t n = secret_len - 1; n > 0; n--) {
        if (n <= len && memcmp(text + len - n, secret, n) == 0)
            return n;
    }
    return 0;
}

void kafka_redact(char *text, size_t size, const char *secret)
{
    static const char mark[] = "[redacted]";
    size_t secret_len = strlen(secret);
    if (secret_len == 0 || size == 0)
        return;
    int truncated = 0;
    char *p = text;
    while ((p = strstr(p, secret)) != NULL) {
        size_t at = (size_t)(p - text);
        size_t tail = strlen(p + secret_len);
        size_t room = size - 1 - at;
        size_t mark_len = sizeof mark - 1 < room ? sizeof mark - 1 : room;
        size_t keep = tail < room - mark_len ? tail : room - mark_len;
        truncated |= keep < tail || mark_len < sizeof mark - 1;
        memmove(p + mark_len, p + secret_len, keep);
        memcpy(p, mark, mark_len);
        p[mark_len + keep] = '\0';
        p += mark_len;
    }
    /* Cutting the text short may have left the start of a secret at its end. */
    if (truncated) {
        size_t partial = kafka_partial_secret_at_end(text, secret);
        text[strlen(text) - partial] = '\0';
    }
}
