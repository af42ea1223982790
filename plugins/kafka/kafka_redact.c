#include "kafka_redact.h"

#include <stdio.h>
#include <stdlib.h>
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

/* Replaces every needle in text with mark, truncating at size; a cut never leaves the start of
 * a needle at the end. The next needle may begin with the last `shared` bytes of a whole mark:
 * the closing quote of "value" is also the opening one of "value" after it. */
static void kafka_replace_all(char *text, size_t size, const char *needle, const char *mark,
                              size_t shared)
{
    size_t needle_len = strlen(needle), mark_full = strlen(mark);
    if (needle_len == 0 || size == 0)
        return;
    int truncated = 0;
    char *p = text;
    while ((p = strstr(p, needle)) != NULL) {
        size_t at = (size_t)(p - text);
        size_t tail = strlen(p + needle_len);
        size_t room = size - 1 - at;
        size_t mark_len = mark_full < room ? mark_full : room;
        size_t keep = tail < room - mark_len ? tail : room - mark_len;
        truncated |= keep < tail || mark_len < mark_full;
        memmove(p + mark_len, p + needle_len, keep);
        memcpy(p, mark, mark_len);
        p[mark_len + keep] = '\0';
        /* A needle consumes more than it shares, so that the search moves on. */
        p += mark_len == mark_full && shared < needle_len ? mark_len - shared : mark_len;
    }
    /* Cutting the text short may have left the start of a needle at its end. */
    if (truncated) {
        size_t partial = kafka_partial_secret_at_end(text, needle);
        text[strlen(text) - partial] = '\0';
    }
}

void kafka_redact(char *text, size_t size, const char *secret)
{
    kafka_replace_all(text, size, secret, "[redacted]", 0);
}

/* Replaces value in text where it stands between two quote characters q. */
static void kafka_redact_quoted(char *text, size_t size, const char *value, char q)
{
    size_t len = strlen(value) + 3;
    char *quoted = malloc(len), mark[16];
    /* Out of memory: no quoted needle, so the whole value goes, wherever it stands. */
    if (quoted == NULL) {
        kafka_redact(text, size, value);
        return;
    }
    snprintf(quoted, len, "%c%s%c", q, value, q);
    snprintf(mark, sizeof mark, "%c[redacted]%c", q, q);
    kafka_replace_all(text, size, quoted, mark, 1);
    free(quoted);
}

void kafka_redact_property(char *text, size_t size, const char *name, const char *value)
{
    if (strcasestr(text, name) != NULL) {
        kafka_redact(text, size, value);
        return;
    }
    kafka_redact_quoted(text, size, value, '"');
    kafka_redact_quoted(text, size, value, '\'');
}
