/*
 * The delivery contract: deliver() only enqueues, flush() says OK only once the brokers
 * acknowledged every message of the batch (or it was refused for good and reported). A batch the
 * relay hands over again after a failure resends what failed and everything after it, so that a
 * consumer's latest view of each key stays in order; messages still in flight inside librdkafka
 * are left to librdkafka, which retries them itself.
 *
 * Order of first deliveries: librdkafka stops at a request refused for good (gapless, see
 * kafka_producer.c), so nothing behind a failed message is written before it; the producer is
 * then replaced and the batch sent again from its first unacknowledged message. A refusal is only
 * an event's own when the event went alone in its request: a request of several messages refused
 * as too large (or invalid) fails the batch, which goes again one message per request.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kafka_sink.h"
#include "kafka_topic_name.h"

static int64_t kafka_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void kafka_sink_reject(kafka_sink *sink, size_t index, const char *reason)
{
    /* When the rejection cannot be recorded the message counts as failed: the batch is retried
     * rather than passed with the event unreported. */
    if (kafka_batch_mark_rejected(&sink->batch, index, reason) == 0)
        sink->host->reject(sink->host->ctx, sink->batch.ids[index], reason);
}

static void kafka_sink_fail(kafka_sink *sink, size_t index, rd_kafka_resp_err_t error,
                            const char *detail)
{
    char why[512];
    snprintf(why, sizeof why, "%s: %s", rd_kafka_err2name(error), detail);
    kafka_batch_mark_failed(&sink->batch, index, why);
}

/*
 * The broker refused the request that carried the message, with an error that names no message:
 * the request's record batch as a whole is too large, or holds an invalid record. Only a message
 * alone in its request is refused for good; one among others may well be fine, and a message
 * larger than message.max.bytes never gets this far (librdkafka refuses it at produce time).
 */
static void kafka_sink_refused(kafka_sink *sink, size_t index, const rd_kafka_message_t *msg)
{
    char reason[512];
    if (!sink->producer.single) {
        snprintf(reason, sizeof reason,
                 "%s: %s, for a request of several messages; they go again one per request",
                 rd_kafka_err2name(msg->err), rd_kafka_err2str(msg->err));
        kafka_batch_mark_refused_with_others(&sink->batch, index, reason);
        return;
    }
    if (msg->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        snprintf(reason, sizeof reason,
                 "larger than the broker accepts, alone in its request (%zu bytes of key and "
                 "value; broker message.max.bytes or topic max.message.bytes)",
                 msg->len + msg->key_len);
    else
        snprintf(reason, sizeof reason, "refused by the broker, alone in its request: %s: %s",
                 rd_kafka_err2name(msg->err), rd_kafka_err2str(msg->err));
    kafka_sink_reject(sink, index, reason);
}

void kafka_sink_on_delivery(void *ctx, const rd_kafka_message_t *msg)
{
    kafka_sink *sink = ctx;
    size_t index;
    if (kafka_batch_locate(&sink->batch, msg->_private, &index) != 0)
        return; /* from a hand-over given up since */

    switch (msg->err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        kafka_batch_mark_ok(&sink->batch, index);
        kafka_producer_delivered(&sink->producer);
        return;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        kafka_sink_refused(sink, index, msg);
        return;
    default:
        kafka_sink_fail(sink, index, msg->err, rd_kafka_err2str(msg->err));
        return;
    }
}

/* Says that the batch in hand goes again one message per request, and why. */
static void kafka_sink_log_isolation(kafka_sink *sink)
{
    const kafka_batch *b = &sink->batch;
    sink->host->log(sink->host->ctx, RELAY_SINK_LOG_WARN,
                    "the broker refused a request of several messages as too large or invalid; "
                    "events %lld..%lld go again one message per request, to tell an event "
                    "refused for good from a request too large for the broker (keep "
                    "properties.batch.size below the broker's message.max.bytes and the topic's "
                    "max.message.bytes)",
                    (long long)b->first_id, (long long)b->last_id);
}

/* The producer is beyond repair (it stopped at a request refused for good, or its idempotent
 * session was fenced): a new one resends the batch, from its first unacknowledged message. */
static relay_sink_status kafka_sink_recover(kafka_sink *sink, const char *why, char *err,
                                            size_t errlen)
{
    sink->host->log(sink->host->ctx, RELAY_SINK_LOG_ERROR,
                    "the producer failed fatally (%s); replacing it, the batch's "
                    "unacknowledged events are sent again",
                    why);
    /* What the brokers answered first: a refusal says whether the batch goes again one message
     * per request, or which event is refused for good. Reports from the old producer are ignored
     * from then on. */
    kafka_producer_settle(&sink->producer);
    char text[600];
    snprintf(text, sizeof text, "the producer failed fatally: %s", why);
    kafka_batch_abandon(&sink->batch, text);
    kafka_topics_clear(&sink->topics);
    if (sink->batch.isolate && !sink->producer.single)
        kafka_sink_log_isolation(sink);
    char reason[512];
    if (kafka_producer_recreate(&sink->producer, sink->batch.isolate, reason, sizeof reason) != 0) {
        snprintf(err, errlen, "kafka: the producer failed fatally (%s) and cannot be replaced: %s",
                 why, reason);
        return RELAY_SINK_FATAL;
    }
    snprintf(err, errlen, "kafka: the producer failed fatally (%s); replaced it", why);
    return RELAY_SINK_RETRY;
}

/* Whether the producer failed fatally; if so, replaces it and sets *status. */
static int kafka_sink_check_producer(kafka_sink *sink, relay_sink_status *status, char *err,
                                     size_t errlen)
{
    char why[512];
    if (!kafka_producer_failed(&sink->producer, why, sizeof why))
        return 0;
    *status = kafka_sink_recover(sink, why, err, errlen);
    return 1;
}

/* A producer that sends one message per request while the batch in hand needs it, and many
 * after. Replaced only with nothing in flight, since replacing gives up what it holds: with
 * something in flight the switch waits for a later hand-over. Returns OK, or FATAL when no new
 * producer can be made. */
static relay_sink_status kafka_sink_pace(kafka_sink *sink, char *err, size_t errlen)
{
    kafka_batch *b = &sink->batch;
    if (b->isolate == sink->producer.single || b->n_pending > 0)
        return RELAY_SINK_OK;
    if (b->isolate)
        kafka_sink_log_isolation(sink);
    else
        sink->host->log(sink->host->ctx, RELAY_SINK_LOG_INFO,
                        "back to requests of several messages from event %lld on",
                        (long long)b->first_id);
    kafka_topics_clear(&sink->topics);
    char reason[512];
    if (kafka_producer_recreate(&sink->producer, b->isolate, reason, sizeof reason) != 0) {
        snprintf(err, errlen, "kafka: cannot replace the producer: %s", reason);
        return RELAY_SINK_FATAL;
    }
    return RELAY_SINK_OK;
}

/* How long a wait goes on once the relay is stopping: acknowledgements from healthy brokers
 * come within it, so a stop still commits the batch in hand; an outage does not hold the stop. */
#define KAFKA_STOP_GRACE_MS 700

/* Tells the relay that the sink waits (its watchdog is fed); true once it has been stopping for
 * the grace: then the wait ends, its batch unacknowledged. */
static int kafka_sink_stopping(kafka_sink *sink)
{
    const relay_sink_host *host = sink->host;
    if (!RELAY_SINK_HAS(relay_sink_host, host->struct_size, waiting) || !host->waiting ||
        !host->waiting(host->ctx))
        return 0;
    int64_t now = kafka_now_ms();
    if (sink->stopping_since_ms == 0)
        sink->stopping_since_ms = now;
    return now - sink->stopping_since_ms >= KAFKA_STOP_GRACE_MS;
}

/* The messages librdkafka holds (queued or in flight, acknowledgements not yet served), for the
 * relay's metrics endpoint, where the host has one. */
static void kafka_sink_report_in_flight(kafka_sink *sink)
{
    const relay_sink_host *host = sink->host;
    if (RELAY_SINK_HAS(relay_sink_host, host->struct_size, report_metric) && host->report_metric &&
        sink->producer.rk != NULL)
        host->report_metric(host->ctx, "kafka_in_flight_messages",
                            "Messages librdkafka holds that the brokers have not acknowledged.",
                            (double)rd_kafka_outq_len(sink->producer.rk));
}

/*
 * Enqueues message index. A failure that concerns this event alone marks it (failed, or refused
 * for good) and returns OK, so that flush() reports it; RETRY when librdkafka's queue stayed full,
 * or after replacing a failed producer.
 */
static relay_sink_status kafka_sink_send(kafka_sink *sink, const relay_sink_event *e, size_t index,
                                         char *err, size_t errlen)
{
    const char *topic;
    size_t topic_len;
    const char *key;
    size_t key_len;
    if (kafka_template_render(&sink->topic, e, &sink->topic_buf, &topic, &topic_len) != 0 ||
        kafka_template_render(&sink->key, e, &sink->key_buf, &key, &key_len) != 0) {
        kafka_batch_mark_failed(&sink->batch, index, "out of memory rendering the topic or key");
        return RELAY_SINK_OK;
    }
    char why[512];
    /* A constant topic was checked once, at init. */
    if (!sink->topic_constant && kafka_topic_name_check(topic, topic_len, why, sizeof why) != 0) {
        char reason[600];
        snprintf(reason, sizeof reason, "topic template: %s", why);
        kafka_sink_reject(sink, index, reason);
        return RELAY_SINK_OK;
    }
    rd_kafka_topic_t *rkt =
        kafka_topics_get(&sink->topics, sink->producer.rk, topic, topic_len, why, sizeof why);
    if (rkt == NULL) {
        kafka_batch_mark_failed(&sink->batch, index, why);
        return RELAY_SINK_OK;
    }

    /* librdkafka's RD_KAFKA_V_ macros do not parenthesise their arguments: plain names only. */
    void *value = (void *)e->payload;
    size_t value_len = e->payload != NULL ? e->payload_len : 0;
    const void *key_bytes = key_len > 0 ? key : NULL;
    void *opaque = kafka_batch_opaque(&sink->batch, index);
    rd_kafka_headers_t *headers = kafka_headers_build(&sink->headers, e);
    int64_t deadline = 0;
    rd_kafka_resp_err_t error;
    for (;;) {
        /* On success librdkafka owns the headers; on failure they are still ours. */
        error = rd_kafka_producev(
            sink->producer.rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_KEY(key_bytes, key_len),
            RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (error == RD_KAFKA_RESP_ERR_NO_ERROR) {
            kafka_batch_mark_pending(&sink->batch, index);
            return RELAY_SINK_OK;
        }
        if (error != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        int64_t now = kafka_now_ms();
        if (deadline == 0) {
            deadline = now + sink->queue_full_timeout_ms;
        } else if (now >= deadline) {
            rd_kafka_headers_destroy(headers);
            snprintf(err, errlen,
                     "kafka: librdkafka's queue stayed full for %d ms at event %lld (see "
                     "queue.buffering.max.messages and .kbytes); the rest of the batch waits",
                     sink->queue_full_timeout_ms, (long long)e->id);
            return RELAY_SINK_RETRY;
        }
        if (kafka_sink_stopping(sink)) {
            rd_kafka_headers_destroy(headers);
            snprintf(err, errlen, "kafka: the relay is stopping; the rest of the batch waits");
            return RELAY_SINK_RETRY;
        }
        /* Serving delivery reports is what makes room. */
        rd_kafka_poll(sink->producer.rk, 100);
    }
    rd_kafka_headers_destroy(headers);

    if (error == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        snprintf(why, sizeof why, "larger than message.max.bytes (%zu bytes)",
                 e->payload_len + key_len);
        kafka_sink_reject(sink, index, why);
        return RELAY_SINK_OK;
    }
    relay_sink_status status;
    if (error == RD_KAFKA_RESP_ERR__FATAL && kafka_sink_check_producer(sink, &status, err, errlen))
        return status;
    kafka_sink_fail(sink, index, error, rd_kafka_err2str(error));
    return RELAY_SINK_OK;
}

relay_sink_status kafka_sink_deliver(void *state, const relay_sink_batch *batch, char *err,
                                     size_t errlen)
{
    kafka_sink *sink = state;
    if (batch->count == 0)
        return RELAY_SINK_OK;
    if (batch->count > kafka_batch_max_count()) {
        snprintf(err, errlen, "kafka: a batch of %zu events is more than this sink handles (%zu)",
                 batch->count, kafka_batch_max_count());
        return RELAY_SINK_FATAL;
    }
    relay_sink_status status;
    if (kafka_sink_check_producer(sink, &status, err, errlen))
        return status;

    /* Take in the reports that came back since the last call, so that a batch handed over again
     * sees where its messages stand. */
    rd_kafka_poll(sink->producer.rk, 0);
    kafka_batch *b = &sink->batch;
    int same = kafka_batch_begin(b, batch);
    if (same < 0) {
        snprintf(err, errlen, "kafka: out of memory");
        return RELAY_SINK_RETRY;
    }
    /* The relay forgets rejections between hand-overs: tell it again. */
    if (same) {
        for (size_t i = 0; i < b->n_rejections; i++)
            sink->host->reject(sink->host->ctx, b->ids[b->rejections[i].index],
                               b->rejections[i].reason);
    }
    status = kafka_sink_pace(sink, err, errlen);
    if (status != RELAY_SINK_OK)
        return status;

    /* The limit moves down when a message fails, here or in a report served meanwhile. */
    size_t limit = kafka_batch_send_limit(b);
    size_t failures = b->n_failed;
    for (size_t i = 0; i < limit; i++) {
        if (kafka_batch_status(b, i) != KAFKA_MSG_NOT_SENT)
            continue;
        status = kafka_sink_send(sink, relay_sink_batch_event(batch, i), i, err, errlen);
        if (status != RELAY_SINK_OK)
            return status;
        if (b->n_failed != failures) {
            limit = kafka_batch_send_limit(b);
            failures = b->n_failed;
        }
    }
    return RELAY_SINK_OK;
}

relay_sink_status kafka_sink_flush(void *state, int timeout_ms, char *err, size_t errlen)
{
    kafka_sink *sink = state;
    kafka_batch *b = &sink->batch;
    int64_t deadline = kafka_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    /* Reports already in are taken even with no time to wait. */
    if (sink->producer.rk != NULL)
        rd_kafka_poll(sink->producer.rk, 0);
    for (;;) {
        relay_sink_status status;
        kafka_sink_report_in_flight(sink);
        if (kafka_sink_check_producer(sink, &status, err, errlen))
            return status;
        if (b->n_pending == 0)
            break;
        int64_t left = deadline - kafka_now_ms();
        if (left <= 0)
            break;
        if (kafka_sink_stopping(sink)) {
            snprintf(err, errlen,
                     "kafka: the relay is stopping with %zu of %zu messages "
                     "unacknowledged",
                     b->n_pending, b->count);
            return RELAY_SINK_RETRY;
        }
        /* In slices, to notice a fatal error; rd_kafka_flush also sends at once, linger.ms or
         * not. It returns early once librdkafka holds nothing, reports included. */
        int slice = left < 100 ? (int)left : 100;
        if (rd_kafka_flush(sink->producer.rk, slice) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            b->n_pending > 0)
            rd_kafka_poll(sink->producer.rk, 10);
    }

    char first_failure[600] = "";
    if (b->has_failure)
        snprintf(first_failure, sizeof first_failure, "event %lld: %s", (long long)b->failure_id,
                 b->failure);
    if (b->n_pending > 0) {
        snprintf(err, errlen, "kafka: %zu of %zu messages unacknowledged after %d ms%s%s",
                 b->n_pending, b->count, timeout_ms, b->has_failure ? "; first failure: " : "",
                 first_failure);
        return RELAY_SINK_RETRY;
    }
    if (b->n_failed > 0) {
        snprintf(err, errlen, "kafka: %s", first_failure);
        return RELAY_SINK_RETRY;
    }
    if (!kafka_batch_settled(b)) {
        snprintf(err, errlen, "kafka: %zu of %zu messages not sent yet", b->count - b->n_settled,
                 b->count);
        return RELAY_SINK_RETRY;
    }
    return RELAY_SINK_OK;
}
