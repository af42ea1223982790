/*
 * The Kafka sink's state, shared by its lifecycle (kafka_sink.c) and its delivery contract
 * (kafka_delivery.c).
 */
#ifndef KAFKA_SINK_H
#define KAFKA_SINK_H

#include <outbox_relay/sink.h>

#include "kafka_batch.h"
#include "kafka_headers.h"
#include "kafka_producer.h"
#include "kafka_template.h"
#include "kafka_topics.h"
#include "relay_plugin_buffer.h"

typedef struct kafka_sink {
    const relay_sink_host *host;
    kafka_producer producer;
    kafka_topics topics;
    kafka_template topic;
    int topic_constant; /* the topic template has no variables (its name was checked at init) */
    kafka_template key;
    relay_plugin_buffer topic_buf;
    relay_plugin_buffer key_buf;
    kafka_headers headers;
    kafka_batch batch;
    int queue_full_timeout_ms;
    int shutdown_timeout_ms;
    int64_t stopping_since_ms; /* when the host first said it is stopping; 0 before */
} kafka_sink;

relay_sink_status kafka_sink_deliver(void *state, const relay_sink_batch *batch, char *err,
                                     size_t errlen);
relay_sink_status kafka_sink_flush(void *state, int timeout_ms, char *err, size_t errlen);

/* Takes a delivery report (the producer's kafka_delivery_fn, ctx being the sink). */
void kafka_sink_on_delivery(void *ctx, const rd_kafka_message_t *msg);

#endif
