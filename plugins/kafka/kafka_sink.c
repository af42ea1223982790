/*
 * The Kafka sink: events become messages through librdkafka, acknowledged by the brokers before
 * flush() says OK. This file holds the entry point and the sink's life: options in, producer up,
 * everything released (after a bounded wait for what is still queued) at the end.
 */
#include "kafka_sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_options.h"
#include "kafka_topic_name.h"

static void kafka_sink_destroy(void *state)
{
    kafka_sink *sink = state;
    if (sink == NULL)
        return;
    kafka_topics_free(&sink->topics);
    kafka_producer_close(&sink->producer, sink->shutdown_timeout_ms);
    kafka_producer_free(&sink->producer);
    kafka_template_free(&sink->topic);
    kafka_template_free(&sink->key);
    relay_plugin_buffer_free(&sink->topic_buf);
    relay_plugin_buffer_free(&sink->key_buf);
    kafka_headers_free(&sink->headers);
    kafka_batch_free(&sink->batch);
    free(sink);
}

/* Everything but the producer, which needs the sink at its final address. */
static int kafka_sink_configure(kafka_sink *sink, kafka_options *opts, char *err, size_t errlen)
{
    char why[512];
    if (kafka_template_compile(opts->topic, &sink->topic, why, sizeof why) != 0) {
        snprintf(err, errlen, "kafka: topic: %s", why);
        return -1;
    }
    sink->topic_constant = kafka_template_is_constant(&sink->topic);
    if (sink->topic_constant &&
        kafka_topic_name_check(sink->topic.literals, strlen(sink->topic.literals), why,
                               sizeof why) != 0) {
        snprintf(err, errlen, "kafka: topic: %s", why);
        return -1;
    }
    if (kafka_template_compile(opts->key, &sink->key, why, sizeof why) != 0) {
        snprintf(err, errlen, "kafka: key: %s", why);
        return -1;
    }
    /* The header names move to the sink. */
    char **names = opts->metadata_headers;
    size_t n_names = opts->n_metadata_headers;
    opts->metadata_headers = NULL;
    opts->n_metadata_headers = 0;
    if (kafka_headers_init(&sink->headers, names, n_names, why, sizeof why) != 0) {
        snprintf(err, errlen, "kafka: %s", why);
        return -1;
    }
    sink->queue_full_timeout_ms = opts->queue_full_timeout_ms;
    sink->shutdown_timeout_ms = opts->shutdown_timeout_ms;
    return 0;
}

static relay_sink_status kafka_sink_init(const relay_sink_host *host,
                                         const relay_sink_option *options, size_t n_options,
                                         void **state, char *err, size_t errlen)
{
    kafka_sink *sink = calloc(1, sizeof *sink);
    if (sink == NULL) {
        snprintf(err, errlen, "kafka: out of memory");
        return RELAY_SINK_FATAL;
    }
    sink->host = host;
    kafka_batch_init(&sink->batch);

    kafka_options opts;
    char why[512];
    if (kafka_options_parse(options, n_options, &opts, why, sizeof why) != 0) {
        snprintf(err, errlen, "kafka: %s", why);
        goto failed;
    }
    if (kafka_sink_configure(sink, &opts, err, errlen) != 0)
        goto failed;
    if (kafka_producer_init(&sink->producer, host, opts.properties, opts.n_properties,
                            kafka_sink_on_delivery, sink, why, sizeof why) != 0) {
        snprintf(err, errlen, "kafka: %s", why);
        goto failed;
    }
    kafka_options_free(&opts);
    *state = sink;
    return RELAY_SINK_OK;

failed:
    kafka_options_free(&opts);
    /* Nothing was sent yet: nothing to wait for. */
    sink->shutdown_timeout_ms = 0;
    kafka_sink_destroy(sink);
    return RELAY_SINK_FATAL;
}

/*
 * Asks the cluster for metadata within timeout_ms: the topic's, when the template names one
 * topic (it must exist: a producer would wait for it until message.timeout.ms), else the
 * cluster's. A broker that does not answer, or refuses the credentials, fails it; librdkafka
 * reports most of those causes through the error callback, which the log shows.
 */
static relay_sink_status kafka_sink_check(void *state, int timeout_ms, char *err, size_t errlen)
{
    kafka_sink *sink = state;
    rd_kafka_t *rk = sink->producer.rk;
    rd_kafka_topic_t *rkt =
        sink->topic_constant ? rd_kafka_topic_new(rk, sink->topic.literals, NULL) : NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, rkt == NULL, rkt, &md, timeout_ms);
    relay_sink_status status = RELAY_SINK_OK;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka: no metadata from the cluster within %d ms: %s", timeout_ms,
                 rd_kafka_err2str(e));
        kafka_producer_scrub(&sink->producer, err, errlen);
        status = RELAY_SINK_RETRY;
    } else if (rkt != NULL && md->topic_cnt == 1 &&
               md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka: topic %s: %s", sink->topic.literals,
                 rd_kafka_err2str(md->topics[0].err));
        status = RELAY_SINK_FATAL;
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    return status;
}

static const relay_sink_api kafka_sink_api = {
    .abi_version = RELAY_SINK_ABI_VERSION,
    .struct_size = sizeof(relay_sink_api),
    .name = "kafka",
    .init = kafka_sink_init,
    .deliver = kafka_sink_deliver,
    .flush = kafka_sink_flush,
    .destroy = kafka_sink_destroy,
    .check = kafka_sink_check,
};

const relay_sink_api *RELAY_SINK_ENTRY(void)
{
    return &kafka_sink_api;
}
