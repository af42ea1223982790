/*
 * Kafka's redaction of secrets from librdkafka's text: once kafka_redact is done the secret
 * stands nowhere in the text but inside a mark; once kafka_redact_property is done, nowhere if
 * the text names the property, else nowhere between quotes. The text stays within its buffer.
 *
 * Input: the NUL-separated fields control, text, secret, property name, where control is the
 * room left in the buffer after the text ("ROOM", 0 to 255), which the marks grow into and are
 * cut at.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kafka_redact.h"

#define MARK "[redacted]"

/* A copy of text in a buffer of size bytes. */
static char *buffer(const char *text, size_t size)
{
    char *buf = malloc(size);
    FUZZ_CHECK(buf != NULL, "out of memory");
    memcpy(buf, text, strlen(text) + 1);
    return buf;
}

static void check_gone(const char *redacted, size_t size, const char *secret, char q)
{
    FUZZ_CHECK(memchr(redacted, '\0', size) != NULL, "the text overran its buffer");
    const char *left = fuzz_find_unredacted(redacted, secret, MARK, q);
    FUZZ_CHECK(left == NULL, "the secret \"%s\" is still at offset %zu of \"%s\"", secret,
               (size_t)(left - redacted), redacted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in;
    fuzz_input_init(&in, data, size);
    fuzz_field control = fuzz_input_next(&in), text = fuzz_input_next(&in);
    fuzz_field secret = fuzz_input_next(&in), name = fuzz_input_next(&in);
    size_t room = text.len + 1 + (size_t)(fuzz_field_int(control, 0) & 0xff);

    char *buf = buffer(text.text, room);
    kafka_redact(buf, room, secret.text);
    if (secret.len > 0)
        check_gone(buf, room, secret.text, '\0');
    free(buf);

    (void)kafka_property_is_sensitive(name.text);
    buf = buffer(text.text, room);
    kafka_redact_property(buf, room, name.text, secret.text);
    if (secret.len > 0 && strcasestr(text.text, name.text) != NULL) {
        check_gone(buf, room, secret.text, '\0');
    } else if (secret.len > 0) {
        check_gone(buf, room, secret.text, '"');
        check_gone(buf, room, secret.text, '\'');
    }
    free(buf);
    fuzz_input_free(&in);
    return 0;
}
