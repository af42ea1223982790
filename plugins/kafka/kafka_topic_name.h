/*
 * Kafka's rules for topic names. A topic template can render a name the brokers refuse; checked
 * here, such an event is refused at once rather than retried until it times out, and a constant
 * topic is checked once, at init, so that `outbox-relay check` says so. Pure C, free of
 * librdkafka, so that the unit tests drive it directly.
 */
#ifndef KAFKA_TOPIC_NAME_H
#define KAFKA_TOPIC_NAME_H

#include <stddef.h>

/* Checks a topic name against Kafka's rules (1..249 characters of [A-Za-z0-9._-], not "." or
 * ".."). Returns 0, or -1 with the reason in err. */
int kafka_topic_name_check(const char *name, size_t len, char *err, size_t errlen);

#endif
