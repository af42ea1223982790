/*
 * The sink's options, as the relay hands them over (flattened key/value text), checked and sorted
 * into what the rest of the sink needs. Pure C, free of librdkafka and json-c.
 */
#ifndef KAFKA_OPTIONS_H
#define KAFKA_OPTIONS_H

#include <stddef.h>

#include <outbox_relay/sink.h>

/* A librdkafka property; both strings borrowed from the relay's options (valid during init). */
typedef struct kafka_property {
    const char *name;
    const char *value;
} kafka_property;

typedef struct kafka_options {
    const char *topic;       /* a template; borrowed */
    const char *key;         /* a template; borrowed */
    char **metadata_headers; /* owned, with the strings; NULL when n_metadata_headers is 0 */
    size_t n_metadata_headers;
    kafka_property *properties; /* owned array of borrowed strings, in the order given */
    size_t n_properties;
    int queue_full_timeout_ms;
    int shutdown_timeout_ms;
} kafka_options;

/* Fills *out (free with kafka_options_free, also after a failure). Returns 0, or -1 with the
 * reason in err: a missing topic, an unknown option key, a bad number, a bad header list. */
int kafka_options_parse(const relay_sink_option *options, size_t n_options, kafka_options *out,
                        char *err, size_t errlen);

void kafka_options_free(kafka_options *opts);

/* Splits a comma-separated list of metadata field names (spaces around names ignored) into *names
 * (owned by the caller, with each string). Refuses empty names, duplicates, and the names of the
 * headers the sink always sets. Returns 0, or -1 with the reason in err. */
int kafka_header_names_parse(const char *list, char ***names, size_t *n, char *err, size_t errlen);
void kafka_header_names_free(char **names, size_t n);

/* The headers every message carries; metadata headers may not take these names. */
extern const char *const kafka_builtin_headers[];
extern const size_t kafka_n_builtin_headers;

#endif
