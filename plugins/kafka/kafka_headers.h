/*
 * The headers of a message: the event's id (its public one), type, version, created_at, the late
 * and redelivered flags, the columns of source.columns.headers, and the metadata fields the
 * operator listed (parsed with json-c, only when some are listed).
 */
#ifndef KAFKA_HEADERS_H
#define KAFKA_HEADERS_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>
#include <outbox_relay/sink.h>

struct json_tokener;

typedef struct kafka_headers {
    char **metadata_names; /* owned */
    size_t n_metadata_names;
    struct json_tokener *tokener; /* reused for every event; NULL without metadata names */
} kafka_headers;

/* Takes ownership of names (from kafka_header_names_parse), also on failure. Returns 0, or -1
 * with the reason in err. */
int kafka_headers_init(kafka_headers *h, char **names, size_t n_names, char *err, size_t errlen);

/* The headers for an event, owned by the caller until rd_kafka_producev succeeds with them. */
rd_kafka_headers_t *kafka_headers_build(kafka_headers *h, const relay_sink_event *e);

void kafka_headers_free(kafka_headers *h);

#endif
