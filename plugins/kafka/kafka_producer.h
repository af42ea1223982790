/*
 * The librdkafka producer: its configuration (our defaults, then the operator's properties, once
 * they passed the ordering check), its creation and re-creation after a fatal error or to change
 * how many messages go in one request, its callbacks into the relay's log, and its bounded
 * shutdown. Secrets among the properties are kept only to scrub them from librdkafka's messages.
 */
#ifndef KAFKA_PRODUCER_H
#define KAFKA_PRODUCER_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>
#include <outbox_relay/sink.h>

#include "kafka_options.h"

/* Called, on the relay's thread from inside rd_kafka_poll/flush, with every delivery report. */
typedef void kafka_delivery_fn(void *ctx, const rd_kafka_message_t *msg);

typedef struct kafka_producer {
    rd_kafka_t *rk;        /* NULL only when re-creating it failed */
    rd_kafka_conf_t *conf; /* owned: every producer is made from a copy, as rd_kafka_new eats it */
    const relay_sink_host *host;
    kafka_delivery_fn *on_delivery;
    void *ctx;
    /* Copies of the sensitive properties, to scrub their values from messages: names at even
     * indexes, each followed by its value. */
    char **secrets;
    size_t n_secrets;
    /* Each message in a request of its own (batch.num.messages=1), so that a broker's refusal of
     * a request is a refusal of that one message. */
    int single;
    /* Problems are logged when they start, not every time librdkafka repeats them; a successful
     * delivery clears both. */
    int brokers_down;
    int last_error;
} kafka_producer;

/*
 * Configures and creates the producer. p must stay at its address while the producer lives (it
 * is the callbacks' opaque). Returns 0, or -1 with the reason in err (properties that break the
 * order of first deliveries, or librdkafka's own message, secrets redacted); kafka_producer_free
 * is needed either way.
 */
int kafka_producer_init(kafka_producer *p, const relay_sink_host *host,
                        const kafka_property *properties, size_t n_properties,
                        kafka_delivery_fn *on_delivery, void *ctx, char *err, size_t errlen);

/* Whether the producer hit a fatal error (e.g. its idempotent session was fenced); if so, writes
 * librdkafka's name and reason for it into err. */
int kafka_producer_failed(kafka_producer *p, char *err, size_t errlen);

/* Gives up on every message still queued or in flight, and serves the delivery reports that say
 * so, with every report that came before them: what the brokers answered is known before the
 * producer is replaced. */
void kafka_producer_settle(kafka_producer *p);

/* Throws the producer away, messages in flight included, and makes a new one from the same
 * configuration, one message per request when single. Topic handles of the old one must be
 * released first. Returns 0, or -1 with the reason in err (p->rk is then NULL). */
int kafka_producer_recreate(kafka_producer *p, int single, char *err, size_t errlen);

/* A delivery succeeded: the brokers are reachable, problems seen before are over. */
void kafka_producer_delivered(kafka_producer *p);

/* Waits at most timeout_ms for queued messages, then destroys the producer without waiting
 * longer. Topic handles must be released first. */
void kafka_producer_close(kafka_producer *p, int timeout_ms);

/* Closes at once if still open, and frees the configuration and secrets. */
void kafka_producer_free(kafka_producer *p);

/* Scrubs every secret from text (NUL-terminated, in a buffer of size bytes). */
void kafka_producer_scrub(const kafka_producer *p, char *text, size_t size);

#endif
