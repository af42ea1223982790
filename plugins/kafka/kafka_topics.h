/*
 * Topic handles by name. Producing by handle spares librdkafka a lookup of the name for every
 * message; a template like events.${type} renders few distinct names, so a short list will do.
 */
#ifndef KAFKA_TOPICS_H
#define KAFKA_TOPICS_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

typedef struct kafka_topic_entry {
    char *name;
    size_t len;
    rd_kafka_topic_t *rkt;
} kafka_topic_entry;

typedef struct kafka_topics {
    kafka_topic_entry *entries;
    size_t n;
    size_t cap;
    size_t last; /* the entry found last: consecutive events mostly share a topic */
} kafka_topics;

/* The handle for name (len bytes, NUL-terminated), created in rk when new. Owned by topics.
 * Returns NULL with the reason in err. */
rd_kafka_topic_t *kafka_topics_get(kafka_topics *topics, rd_kafka_t *rk, const char *name,
                                   size_t len, char *err, size_t errlen);

/* Releases every handle: before rd_kafka_destroy of the producer they belong to. */
void kafka_topics_clear(kafka_topics *topics);

/* Releases every handle and the list itself. */
void kafka_topics_free(kafka_topics *topics);

#endif
