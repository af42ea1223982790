/*
 * Delivery state of the batch in hand: which of its messages are acknowledged, in flight, failed
 * or refused for good. This is what lets flush() say OK only when every message came back
 * acknowledged, and lets a retried batch resend only what needs resending.
 *
 * Messages are tagged with an opaque (generation, index) handed to librdkafka with each message;
 * a delivery report carrying an older generation belongs to a hand-over that was given up and is
 * ignored. Pure C, free of librdkafka types, so that the unit tests drive it directly.
 */
#ifndef KAFKA_BATCH_H
#define KAFKA_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include <outbox_relay/sink.h>

typedef enum kafka_msg_status {
    KAFKA_MSG_NOT_SENT = 0,
    KAFKA_MSG_PENDING,  /* enqueued in librdkafka, no report yet */
    KAFKA_MSG_OK,       /* acknowledged by the broker */
    KAFKA_MSG_FAILED,   /* failed in a way retrying may cure */
    KAFKA_MSG_REJECTED, /* refused for good, reported through host->reject */
} kafka_msg_status;

typedef struct kafka_rejection {
    size_t index;
    char *reason;
} kafka_rejection;

typedef struct kafka_batch {
    /* The identity of the batch: the relay hands the same events over again after a failure. */
    int64_t first_id;
    int64_t last_id;
    size_t count;

    int64_t *ids;          /* the event id of each message */
    unsigned char *status; /* a kafka_msg_status per message */
    size_t cap;            /* room in ids and status */
    uint64_t generation;

    size_t n_pending;
    size_t n_failed;
    size_t n_settled; /* OK or REJECTED: nothing left to do for them */

    /* The broker refused a request of several messages (too large, an invalid record): each of
     * them may be fine alone, so the batch goes again one message per request, which tells an
     * event refused for good from a batch too large for the broker. Until the next batch. */
    int isolate;

    /* The first failure since the batch began or was last reset, for the error message. */
    int has_failure;
    int64_t failure_id;
    char failure[512];

    /* Events refused for good, kept to be reported again on every hand-over of the batch: the
     * relay forgets rejections when it hands a batch over again. */
    kafka_rejection *rejections;
    size_t n_rejections;
    size_t rejections_cap;
} kafka_batch;

/* The largest batch whose indexes fit in a message opaque. */
size_t kafka_batch_max_count(void);

void kafka_batch_init(kafka_batch *b);
void kafka_batch_free(kafka_batch *b);

/*
 * Starts a hand-over of the batch (count > 0, at most kafka_batch_max_count()). A batch
 * other than the one in hand starts a new generation with every message NOT_SENT. The same batch
 * again keeps its state, except that when nothing is in flight any longer and something failed,
 * every message from the first failed one to the end goes back to NOT_SENT (refused ones stay
 * refused): sending the whole tail again keeps each key's messages in order for consumers.
 * Returns 1 for the same batch, 0 for a new one, -1 when out of memory (the state is then empty).
 */
int kafka_batch_begin(kafka_batch *b, const relay_sink_batch *batch);

/* Messages may be sent, in index order, up to (not including) the returned index: the first
 * failed message, or count. Sending past a failure would put later messages of a key before a
 * resent earlier one. */
size_t kafka_batch_send_limit(const kafka_batch *b);

/* The opaque that ties a message's delivery report to index in the current generation. */
void *kafka_batch_opaque(const kafka_batch *b, size_t index);

/* Finds the message a delivery report's opaque names. Returns 0 and sets *index when it is a
 * message of the current generation still PENDING; -1 for a stale or unknown report. */
int kafka_batch_locate(const kafka_batch *b, void *opaque, size_t *index);

/* Whether every message is OK or REJECTED: the only state in which flush() may say OK. */
int kafka_batch_settled(const kafka_batch *b);

kafka_msg_status kafka_batch_status(const kafka_batch *b, size_t index);

void kafka_batch_mark_pending(kafka_batch *b, size_t index);
void kafka_batch_mark_ok(kafka_batch *b, size_t index);
/* Records why, when this is the first failure since the batch began or was reset. */
void kafka_batch_mark_failed(kafka_batch *b, size_t index, const char *why);
/* Copies reason. Returns 0, or -1 when out of memory (the message is then marked FAILED, so that
 * the batch cannot pass without the rejection reported). */
int kafka_batch_mark_rejected(kafka_batch *b, size_t index, const char *reason);

/* A refusal of a request of several messages, message index among them: index failed with why
 * (retrying may cure it), and the batch goes again one message per request. */
void kafka_batch_mark_refused_with_others(kafka_batch *b, size_t index, const char *why);

/*
 * Gives up on everything in flight (the producer is being replaced): every message neither OK nor
 * REJECTED becomes FAILED with why, and the generation moves on so that reports still coming from
 * the old producer are ignored.
 */
void kafka_batch_abandon(kafka_batch *b, const char *why);

#endif
