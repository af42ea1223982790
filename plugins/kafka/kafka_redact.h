/*
 * Secrets among librdkafka properties, and keeping them out of text: librdkafka quotes property
 * values in its errors and logs, and what the sink passes on ends up in the relay's log, which is
 * read by more people than those who may know a password. Pure C, free of librdkafka, so that the
 * unit tests drive it directly.
 */
#ifndef KAFKA_REDACT_H
#define KAFKA_REDACT_H

#include <stddef.h>

/* Whether a librdkafka property holds a secret, whose value must never be shown. */
int kafka_property_is_sensitive(const char *name);

/* Replaces every occurrence of secret in text (NUL-terminated, in a buffer of size bytes) with
 * "[redacted]", truncating if the result does not fit. An empty secret changes nothing. */
void kafka_redact(char *text, size_t size, const char *secret);

/*
 * Scrubs the value of the sensitive property name from text: every occurrence where the text names
 * the property (librdkafka's "Invalid value ... for configuration property ..."), elsewhere only a
 * quoted one ("value" or 'value'). Replacing every occurrence everywhere would tell the secret:
 * with sasl.password "producer", the client id "rdkafka#producer-1" in every debug line would read
 * "rdkafka#[redacted]-1".
 */
void kafka_redact_property(char *text, size_t size, const char *name, const char *value);

#endif
