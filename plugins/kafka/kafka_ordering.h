/*
 * Which librdkafka properties keep the sink's promise of per-key (per-partition) order of first
 * deliveries, and which break it. The judgement reads the operator's properties as given (aliases
 * included, the last setting of a property winning, as in librdkafka), so that init, and with it
 * `outbox-relay check`, refuse a configuration before a producer exists. Pure C, free of
 * librdkafka, so that the unit tests drive it directly.
 */
#ifndef KAFKA_ORDERING_H
#define KAFKA_ORDERING_H

#include <stddef.h>

#include "kafka_options.h"

typedef struct kafka_ordering {
    /* enable.idempotence stays on: the sink adds enable.gapless.guarantee, which needs it. */
    int idempotent;
    /* Accepted, but to be logged at startup: what the operator gave up. Empty when nothing. */
    char warning[600];
} kafka_ordering;

/* Fills *out. Returns 0, or -1 with the reason in err when the properties break the order of first
 * deliveries in a way the operator cannot have meant to accept. Values librdkafka cannot parse are
 * left to librdkafka, which refuses them when they are set. */
int kafka_ordering_check(const kafka_property *properties, size_t n_properties, kafka_ordering *out,
                         char *err, size_t errlen);

#endif
