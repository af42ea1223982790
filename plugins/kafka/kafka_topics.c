#include "kafka_topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Past this many names (a template over ids?) the list starts over rather than grow for ever. */
#define KAFKA_TOPICS_MAX 1024

static int kafka_topics_is(const kafka_topic_entry *entry, const char *name, size_t len)
{
    return entry->len == len && memcmp(entry->name, name, len) == 0;
}

rd_kafka_topic_t *kafka_topics_get(kafka_topics *topics, rd_kafka_t *rk, const char *name,
                                   size_t len, char *err, size_t errlen)
{
    if (topics->last < topics->n && kafka_topics_is(&topics->entries[topics->last], name, len))
        return topics->entries[topics->last].rkt;
    for (size_t i = 0; i < topics->n; i++) {
        if (kafka_topics_is(&topics->entries[i], name, len)) {
            topics->last = i;
            return topics->entries[i].rkt;
        }
    }

    if (topics->n == KAFKA_TOPICS_MAX)
        kafka_topics_clear(topics);
    if (topics->n == topics->cap) {
        size_t cap = topics->cap > 0 ? topics->cap * 2 : 8;
        kafka_topic_entry *grown = realloc(topics->entries, cap * sizeof *grown);
        if (grown == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        topics->entries = grown;
        topics->cap = cap;
    }
    char *copy = strndup(name, len);
    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* No topic conf of our own: the topic-level properties given to the producer apply. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, copy, NULL);
    if (rkt == NULL) {
        snprintf(err, errlen, "cannot create a handle for topic '%s': %s", copy,
                 rd_kafka_err2str(rd_kafka_last_error()));
        free(copy);
        return NULL;
    }
    topics->entries[topics->n] = (kafka_topic_entry){.name = copy, .len = len, .rkt = rkt};
    topics->last = topics->n++;
    return rkt;
}

void kafka_topics_clear(kafka_topics *topics)
{
    for (size_t i = 0; i < topics->n; i++) {
        rd_kafka_topic_destroy(topics->entries[i].rkt);
        free(topics->entries[i].name);
    }
    topics->n = 0;
    topics->last = 0;
}

void kafka_topics_free(kafka_topics *topics)
{
    kafka_topics_clear(topics);
    free(topics->entries);
    *topics = (kafka_topics){0};
}
