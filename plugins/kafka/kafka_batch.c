#include "kafka_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The opaque is one pointer-sized integer: the index in the low bits, the generation (modulo what
 * fits) above. 32-bit systems keep 20 bits of index, ten times the relay's largest batch. */
#define KAFKA_BATCH_INDEX_BITS (UINTPTR_MAX > 0xffffffffu ? 32 : 20)

size_t kafka_batch_max_count(void)
{
    return (size_t)1 << KAFKA_BATCH_INDEX_BITS;
}

void kafka_batch_init(kafka_batch *b)
{
    *b = (kafka_batch){0};
}

static void kafka_batch_forget_rejections(kafka_batch *b)
{
    for (size_t i = 0; i < b->n_rejections; i++)
        free(b->rejections[i].reason);
    b->n_rejections = 0;
}

void kafka_batch_free(kafka_batch *b)
{
    kafka_batch_forget_rejections(b);
    free(b->rejections);
    free(b->ids);
    free(b->status);
    *b = (kafka_batch){0};
}

static void kafka_batch_clear_failure(kafka_batch *b)
{
    b->has_failure = 0;
    b->failure_id = 0;
    b->failure[0] = '\0';
}

static int kafka_batch_same(const kafka_batch *b, const relay_sink_batch *batch)
{
    size_t count = batch->count;
    return b->count == count && b->first_id == relay_sink_batch_event(batch, 0)->id &&
           b->last_id == relay_sink_batch_event(batch, count - 1)->id;
}

static int kafka_batch_reserve(kafka_batch *b, size_t count)
{
    if (count <= b->cap)
        return 0;
    int64_t *ids = realloc(b->ids, count * sizeof *ids);
    if (ids != NULL)
        b->ids = ids;
    unsigned char *status = realloc(b->status, count);
    if (status != NULL)
        b->status = status;
    if (ids == NULL || status == NULL)
        return -1;
    b->cap = count;
    return 0;
}

static void kafka_batch_set(kafka_batch *b, size_t index, kafka_msg_status status);

/* After a failure, with nothing in flight: the tail from the first failure goes out again. */
static void kafka_batch_reset_tail(kafka_batch *b)
{
    size_t first = kafka_batch_send_limit(b);
    for (size_t i = first; i < b->count; i++) {
        if (b->status[i] != KAFKA_MSG_REJECTED)
            kafka_batch_set(b, i, KAFKA_MSG_NOT_SENT);
    }
    kafka_batch_clear_failure(b);
}

int kafka_batch_begin(kafka_batch *b, const relay_sink_batch *batch)
{
    size_t count = batch->count;
    if (kafka_batch_same(b, batch)) {
        if (b->n_pending == 0 && b->n_failed > 0)
            kafka_batch_reset_tail(b);
        return 1;
    }

    b->generation++;
    b->count = 0;
    b->n_pending = 0;
    b->n_failed = 0;
    b->n_settled = 0;
    b->isolate = 0;
    kafka_batch_clear_failure(b);
    kafka_batch_forget_rejections(b);
    if (kafka_batch_reserve(b, count) != 0)
        return -1;
    for (size_t i = 0; i < count; i++)
        b->ids[i] = relay_sink_batch_event(batch, i)->id;
    memset(b->status, KAFKA_MSG_NOT_SENT, count);
    b->count = count;
    b->first_id = b->ids[0];
    b->last_id = b->ids[count - 1];
    return 0;
}

size_t kafka_batch_send_limit(const kafka_batch *b)
{
    if (b->n_failed == 0)
        return b->count;
    const void *failed = memchr(b->status, KAFKA_MSG_FAILED, b->count);
    return failed != NULL ? (size_t)((const unsigned char *)failed - b->status) : b->count;
}

void *kafka_batch_opaque(const kafka_batch *b, size_t index)
{
    uintptr_t tag = ((uintptr_t)b->generation << KAFKA_BATCH_INDEX_BITS) | (uintptr_t)index;
    return (void *)tag;
}

int kafka_batch_locate(const kafka_batch *b, void *opaque, size_t *index)
{
    uintptr_t tag = (uintptr_t)opaque;
    uintptr_t generation = ((uintptr_t)b->generation << KAFKA_BATCH_INDEX_BITS);
    uintptr_t index_mask = ((uintptr_t)1 << KAFKA_BATCH_INDEX_BITS) - 1;
    if ((tag & ~index_mask) != generation)
        return -1;
    size_t i = (size_t)(tag & index_mask);
    if (i >= b->count || b->status[i] != KAFKA_MSG_PENDING)
        return -1;
    *index = i;
    return 0;
}

int kafka_batch_settled(const kafka_batch *b)
{
    return b->n_settled == b->count;
}

kafka_msg_status kafka_batch_status(const kafka_batch *b, size_t index)
{
    return (kafka_msg_status)b->status[index];
}

/* Moves a message to status, keeping the counters right. */
static void kafka_batch_set(kafka_batch *b, size_t index, kafka_msg_status status)
{
    kafka_msg_status old = (kafka_msg_status)b->status[index];
    if (old == KAFKA_MSG_PENDING)
        b->n_pending--;
    else if (old == KAFKA_MSG_FAILED)
        b->n_failed--;
    else if (old == KAFKA_MSG_OK || old == KAFKA_MSG_REJECTED)
        b->n_settled--;
    if (status == KAFKA_MSG_PENDING)
        b->n_pending++;
    else if (status == KAFKA_MSG_FAILED)
        b->n_failed++;
    else if (status == KAFKA_MSG_OK || status == KAFKA_MSG_REJECTED)
        b->n_settled++;
    b->status[index] = (unsigned char)status;
}

void kafka_batch_mark_pending(kafka_batch *b, size_t index)
{
    kafka_batch_set(b, index, KAFKA_MSG_PENDING);
}

void kafka_batch_mark_ok(kafka_batch *b, size_t index)
{
    kafka_batch_set(b, index, KAFKA_MSG_OK);
}

void kafka_batch_mark_failed(kafka_batch *b, size_t index, const char *why)
{
    kafka_batch_set(b, index, KAFKA_MSG_FAILED);
    if (!b->has_failure) {
        b->has_failure = 1;
        b->failure_id = b->ids[index];
        snprintf(b->failure, sizeof b->failure, "%s", why);
    }
}

int kafka_batch_mark_rejected(kafka_batch *b, size_t index, const char *reason)
{
    if (b->n_rejections == b->rejections_cap) {
        size_t cap = b->rejections_cap > 0 ? b->rejections_cap * 2 : 8;
        kafka_rejection *grown = realloc(b->rejections, cap * sizeof *grown);
        if (grown == NULL) {
            kafka_batch_mark_failed(b, index, "out of memory recording a refused event");
            return -1;
        }
        b->rejections = grown;
        b->rejections_cap = cap;
    }
    char *copy = strdup(reason);
    if (copy == NULL) {
        kafka_batch_mark_failed(b, index, "out of memory recording a refused event");
        return -1;
    }
    b->rejections[b->n_rejections++] = (kafka_rejection){.index = index, .reason = copy};
    kafka_batch_set(b, index, KAFKA_MSG_REJECTED);
    return 0;
}

void kafka_batch_mark_refused_with_others(kafka_batch *b, size_t index, const char *why)
{
    kafka_batch_mark_failed(b, index, why);
    b->isolate = 1;
}

void kafka_batch_abandon(kafka_batch *b, const char *why)
{
    b->generation++;
    for (size_t i = 0; i < b->count; i++) {
        kafka_msg_status s = (kafka_msg_status)b->status[i];
        if (s != KAFKA_MSG_OK && s != KAFKA_MSG_REJECTED && s != KAFKA_MSG_FAILED)
            kafka_batch_mark_failed(b, i, why);
    }
}
