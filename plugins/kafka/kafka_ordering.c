#include "kafka_ordering.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* librdkafka's limit for in-flight requests with idempotence: the broker remembers the sequence
 * numbers of a producer's last five batches per partition, and no more. */
#define KAFKA_IDEMPOTENT_MAX_IN_FLIGHT 5

/* The value of the last setting of name or its alias (librdkafka applies properties in order),
 * NULL when neither is set. */
static const char *kafka_ordering_value(const kafka_property *properties, size_t n,
                                        const char *name, const char *alias)
{
    const char *value = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(properties[i].name, name) == 0 ||
            (alias != NULL && strcmp(properties[i].name, alias) == 0))
            value = properties[i].value;
    }
    return value;
}

/* 1 or 0 as librdkafka reads a boolean; -1 when unset or unreadable (librdkafka refuses the
 * latter itself). */
static int kafka_ordering_bool(const char *value)
{
    if (value == NULL)
        return -1;
    if (strcasecmp(value, "true") == 0 || strcasecmp(value, "t") == 0 || strcmp(value, "1") == 0)
        return 1;
    if (strcasecmp(value, "false") == 0 || strcasecmp(value, "f") == 0 || strcmp(value, "0") == 0)
        return 0;
    return -1;
}

/* The number, or fallback when unset or unreadable (librdkafka refuses the latter itself). */
static long long kafka_ordering_int(const char *value, long long fallback)
{
    if (value == NULL)
        return fallback;
    char *end;
    errno = 0;
    long long number = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0')
        return fallback;
    return number;
}

int kafka_ordering_check(const kafka_property *properties, size_t n_properties, kafka_ordering *out,
                         char *err, size_t errlen)
{
    *out = (kafka_ordering){.idempotent = 1};
    int idempotence = kafka_ordering_bool(
        kafka_ordering_value(properties, n_properties, "enable.idempotence", NULL));
    /* librdkafka's defaults: retries without limit, a million requests in flight (five with
     * idempotence, when not set). */
    long long retries = kafka_ordering_int(
        kafka_ordering_value(properties, n_properties, "retries", "message.send.max.retries"),
        2147483647);
    long long in_flight = kafka_ordering_int(
        kafka_ordering_value(properties, n_properties, "max.in.flight.requests.per.connection",
                             "max.in.flight"),
        -1);
    int gapless = kafka_ordering_bool(
        kafka_ordering_value(properties, n_properties, "enable.gapless.guarantee", NULL));
    long long timeout = kafka_ordering_int(
        kafka_ordering_value(properties, n_properties, "message.timeout.ms", "delivery.timeout.ms"),
        0);

    if (idempotence == 0) {
        out->idempotent = 0;
        if (retries > 0) {
            snprintf(err, errlen,
                     "properties: enable.idempotence=false with retries (%lld; librdkafka's "
                     "default has no limit) breaks per-key order: a request that is retried is "
                     "written after the requests sent behind it meanwhile. Keep "
                     "enable.idempotence (the default), or set retries: 0 and accept that a "
                     "failed request lets later events of its partition be written first",
                     retries);
            return -1;
        }
        snprintf(out->warning, sizeof out->warning,
                 "enable.idempotence=false: a failed produce request lets the requests behind it "
                 "be written first, and the relay sends the failed events again after them; "
                 "consumers can then see a key's events out of order");
        return 0;
    }
    if (in_flight > KAFKA_IDEMPOTENT_MAX_IN_FLIGHT) {
        snprintf(err, errlen,
                 "properties: max.in.flight.requests.per.connection=%lld with idempotence: the "
                 "broker keeps the sequence numbers of a producer's last %d requests per "
                 "partition only, so a request retried behind more can be neither de-duplicated "
                 "nor kept in order (librdkafka refuses it too); at most %d",
                 in_flight, KAFKA_IDEMPOTENT_MAX_IN_FLIGHT, KAFKA_IDEMPOTENT_MAX_IN_FLIGHT);
        return -1;
    }
    if (gapless == 0) {
        snprintf(err, errlen,
                 "properties: enable.gapless.guarantee=false breaks per-key order: after a "
                 "request the broker refuses for good, librdkafka would number the messages "
                 "behind it afresh and write them before the relay sends the refused ones "
                 "again. The sink sets it to true; leave it out");
        return -1;
    }
    if (timeout > 0) {
        snprintf(out->warning, sizeof out->warning,
                 "message.timeout.ms=%lld: a message that times out inside librdkafka leaves a "
                 "gap that the messages behind it fill (enable.gapless.guarantee does not cover "
                 "timeouts), so its key's later events can be written before it. The sink's "
                 "default, 0, never times out: flush_timeout bounds each wait instead",
                 timeout);
    }
    return 0;
}
