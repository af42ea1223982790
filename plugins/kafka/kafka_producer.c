#include "kafka_producer.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "kafka_ordering.h"
#include "kafka_redact.h"

void kafka_producer_scrub(const kafka_producer *p, char *text, size_t size)
{
    for (size_t i = 0; i + 1 < p->n_secrets; i += 2)
        kafka_redact_property(text, size, p->secrets[i], p->secrets[i + 1]);
}

static relay_sink_log_level kafka_producer_level(int syslog_level)
{
    if (syslog_level <= LOG_ERR)
        return RELAY_SINK_LOG_ERROR;
    if (syslog_level == LOG_WARNING)
        return RELAY_SINK_LOG_WARN;
    if (syslog_level <= LOG_INFO)
        return RELAY_SINK_LOG_INFO;
    return RELAY_SINK_LOG_DEBUG;
}

/* With log.queue set, this runs inside rd_kafka_poll on the relay's thread, never on one of
 * librdkafka's: the relay's log is only promised to its own thread. */
static void kafka_producer_log_cb(const rd_kafka_t *rk, int level, const char *facility,
                                  const char *message)
{
    const kafka_producer *p = rd_kafka_opaque(rk);
    if (p == NULL)
        return;
    /* A broker's failure is also raised through the error callback, which logs each problem once
     * when it starts; librdkafka's own line for it repeats per broker and per reconnect. A fatal
     * error is logged where the sink deals with it, by replacing the producer. The sink sets
     * enable.gapless.guarantee itself, on purpose (see kafka_producer_init): librdkafka's warning
     * that it is experimental would only alarm the operator at every start. */
    relay_sink_log_level mapped = kafka_producer_level(level);
    if (strcmp(facility, "FAIL") == 0 || strcmp(facility, "FATAL") == 0 ||
        (strcmp(facility, "CONFWARN") == 0 &&
         strstr(message, "enable.gapless.guarantee is experimental") != NULL))
        mapped = RELAY_SINK_LOG_DEBUG;
    char text[1024];
    snprintf(text, sizeof text, "%s", message);
    kafka_producer_scrub(p, text, sizeof text);
    p->host->log(p->host->ctx, mapped, "librdkafka %s: %s", facility, text);
}

static void kafka_producer_error_cb(rd_kafka_t *rk, int error, const char *reason, void *opaque)
{
    (void)rk;
    kafka_producer *p = opaque;
    char text[1024];
    snprintf(text, sizeof text, "%s", reason);
    kafka_producer_scrub(p, text, sizeof text);
    const char *name = rd_kafka_err2name((rd_kafka_resp_err_t)error);

    /* A fatal error is logged where it is dealt with: when the producer is replaced. */
    if (error == RD_KAFKA_RESP_ERR__FATAL) {
        p->host->log(p->host->ctx, RELAY_SINK_LOG_DEBUG, "%s: %s", name, text);
        return;
    }
    if (error == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!p->brokers_down)
            p->host->log(p->host->ctx, RELAY_SINK_LOG_WARN,
                         "all brokers are down (%s); messages wait in librdkafka's queue "
                         "and the position does not move until they are acknowledged",
                         text);
        p->brokers_down = 1;
        return;
    }
    relay_sink_log_level level =
        error != p->last_error ? RELAY_SINK_LOG_WARN : RELAY_SINK_LOG_DEBUG;
    p->host->log(p->host->ctx, level, "%s: %s", name, text);
    p->last_error = error;
}

static void kafka_producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    kafka_producer *p = opaque;
    p->on_delivery(p->ctx, msg);
}

static int kafka_producer_set(kafka_producer *p, rd_kafka_conf_t *conf, const char *name,
                              const char *value, char *err, size_t errlen)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) == RD_KAFKA_CONF_OK)
        return 0;
    kafka_producer_scrub(p, errstr, sizeof errstr);
    snprintf(err, errlen, "properties.%s: %s", name, errstr);
    return -1;
}

static int kafka_producer_keep_secret(kafka_producer *p, const char *name, const char *value,
                                      char *err, size_t errlen)
{
    char **grown = realloc(p->secrets, (p->n_secrets + 2) * sizeof *grown);
    if (grown == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->secrets = grown;
    char *name_copy = strdup(name), *value_copy = strdup(value);
    if (name_copy == NULL || value_copy == NULL) {
        free(name_copy);
        free(value_copy);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->secrets[p->n_secrets++] = name_copy;
    p->secrets[p->n_secrets++] = value_copy;
    return 0;
}

/* Without a broker to start from, every message would wait until it timed out: say so now. */
static int kafka_producer_check_brokers(rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    char value[512];
    size_t size = sizeof value;
    if (rd_kafka_conf_get(conf, "bootstrap.servers", value, &size) == RD_KAFKA_CONF_OK &&
        value[0] != '\0')
        return 0;
    size = sizeof value;
    if (rd_kafka_conf_get(conf, "test.mock.num.brokers", value, &size) == RD_KAFKA_CONF_OK &&
        strcmp(value, "0") != 0 && value[0] != '\0')
        return 0;
    snprintf(err, errlen,
             "properties.bootstrap.servers is required (or properties.test.mock.num.brokers for "
             "librdkafka's in-process mock cluster)");
    return -1;
}

static int kafka_producer_start(kafka_producer *p, int single, char *err, size_t errlen)
{
    rd_kafka_conf_t *copy = rd_kafka_conf_dup(p->conf);
    char errstr[512];
    /* librdkafka batches at most this many messages per partition in one request; batch.size
     * applies only from the second message on, so one is one whatever the sizes. */
    if (single && rd_kafka_conf_set(copy, "batch.num.messages", "1", errstr, sizeof errstr) !=
                      RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(copy);
        snprintf(err, errlen, "cannot set batch.num.messages: %s", errstr);
        return -1;
    }
    p->single = single;
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, copy, errstr, sizeof errstr);
    if (p->rk == NULL) {
        rd_kafka_conf_destroy(copy); /* rd_kafka_new takes it only when it succeeds */
        kafka_producer_scrub(p, errstr, sizeof errstr);
        snprintf(err, errlen, "cannot create the producer: %s", errstr);
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_set_log_queue(p->rk, NULL);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot route librdkafka's log: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(p->rk);
        p->rk = NULL;
        return -1;
    }
    return 0;
}

int kafka_producer_init(kafka_producer *p, const relay_sink_host *host,
                        const kafka_property *properties, size_t n_properties,
                        kafka_delivery_fn *on_delivery, void *ctx, char *err, size_t errlen)
{
    *p = (kafka_producer){.host = host, .on_delivery = on_delivery, .ctx = ctx};
    for (size_t i = 0; i < n_properties; i++) {
        if (kafka_property_is_sensitive(properties[i].name) &&
            kafka_producer_keep_secret(p, properties[i].name, properties[i].value, err, errlen) !=
                0)
            return -1;
    }

    kafka_ordering ordering;
    if (kafka_ordering_check(properties, n_properties, &ordering, err, errlen) != 0)
        return -1;
    if (ordering.warning[0] != '\0')
        host->log(host->ctx, RELAY_SINK_LOG_WARN, "properties: %s", ordering.warning);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    p->conf = conf;
    /* Ours first, so that the operator's properties override them (the ordering check above
     * refused those that would break the order). A request the broker refuses for good makes
     * librdkafka stop with a fatal error instead of numbering the messages behind it afresh and
     * writing them first (gapless; it needs idempotence); the sink then replaces the producer and
     * sends the batch again from its first unacknowledged message. A message never times out
     * inside librdkafka, since a timeout would leave the same gap, uncovered by gapless. */
    if (kafka_producer_set(p, conf, "enable.idempotence", "true", err, errlen) != 0 ||
        kafka_producer_set(p, conf, "acks", "all", err, errlen) != 0 ||
        kafka_producer_set(p, conf, "message.timeout.ms", "0", err, errlen) != 0)
        return -1;
    if (ordering.idempotent &&
        kafka_producer_set(p, conf, "enable.gapless.guarantee", "true", err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < n_properties; i++) {
        if (kafka_producer_set(p, conf, properties[i].name, properties[i].value, err, errlen) != 0)
            return -1;
    }
    /* Not overridable: logs must come out on the relay's thread (see the log callback). */
    if (kafka_producer_set(p, conf, "log.queue", "true", err, errlen) != 0)
        return -1;
    if (kafka_producer_check_brokers(conf, err, errlen) != 0)
        return -1;
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_producer_dr_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_producer_error_cb);
    rd_kafka_conf_set_log_cb(conf, kafka_producer_log_cb);
    return kafka_producer_start(p, 0, err, errlen);
}

int kafka_producer_failed(kafka_producer *p, char *err, size_t errlen)
{
    if (p->rk == NULL) {
        snprintf(err, errlen, "no producer");
        return 1;
    }
    char reason[512];
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(p->rk, reason, sizeof reason);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    kafka_producer_scrub(p, reason, sizeof reason);
    snprintf(err, errlen, "%s: %s", rd_kafka_err2name(e), reason);
    return 1;
}

/* Destroys the producer without waiting for anything still queued or in flight. */
static void kafka_producer_discard(kafka_producer *p)
{
    if (p->rk == NULL)
        return;
    /* Without the purge, rd_kafka_destroy would wait for in-flight requests to complete. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
}

void kafka_producer_settle(kafka_producer *p)
{
    if (p->rk == NULL)
        return;
    /* Blocking: each broker thread finishes the response in hand (whose reports it queues) before
     * it purges, and every purged message gets a report of its own. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->rk, 0);
}

int kafka_producer_recreate(kafka_producer *p, int single, char *err, size_t errlen)
{
    kafka_producer_discard(p);
    p->brokers_down = 0;
    p->last_error = 0;
    return kafka_producer_start(p, single, err, errlen);
}

void kafka_producer_delivered(kafka_producer *p)
{
    if (p->brokers_down)
        p->host->log(p->host->ctx, RELAY_SINK_LOG_INFO,
                     "brokers are reachable again, deliveries are acknowledged");
    p->brokers_down = 0;
    p->last_error = 0;
}

void kafka_producer_close(kafka_producer *p, int timeout_ms)
{
    if (p->rk == NULL)
        return;
    /* In slices: the relay may be stopping, and then nothing unacknowledged is worth a wait (it
     * is sent again after the restart). */
    const relay_sink_host *host = p->host;
    bool can_ask = RELAY_SINK_HAS(relay_sink_host, host->struct_size, waiting) && host->waiting;
    int waited = 0;
    for (; waited < timeout_ms && rd_kafka_outq_len(p->rk) > 0; waited += 100) {
        if (can_ask && host->waiting(host->ctx))
            break;
        rd_kafka_flush(p->rk, timeout_ms - waited < 100 ? timeout_ms - waited : 100);
    }
    int left = rd_kafka_outq_len(p->rk);
    if (left > 0) {
        /* Purged, rd_kafka_destroy does not wait for them either. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        p->host->log(p->host->ctx, RELAY_SINK_LOG_WARN,
                     "%d messages or events still unacknowledged after %d ms at shutdown; "
                     "dropping them (the position did not move past them: they are sent again)",
                     left, waited < timeout_ms ? waited : timeout_ms);
    }
    kafka_producer_discard(p);
}

void kafka_producer_free(kafka_producer *p)
{
    kafka_producer_discard(p);
    if (p->conf != NULL)
        rd_kafka_conf_destroy(p->conf);
    for (size_t i = 0; i < p->n_secrets; i++) {
        explicit_bzero(p->secrets[i], strlen(p->secrets[i]));
        free(p->secrets[i]);
    }
    free(p->secrets);
    *p = (kafka_producer){0};
}
