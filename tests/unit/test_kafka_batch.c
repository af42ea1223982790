/*
 * The per-batch delivery state machine that decides what flush() may acknowledge and what a batch
 * handed over again sends, driven without librdkafka through the opaques its reports carry.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_batch.h"

static relay_sink_event event(int64_t id, const char *key, const char *type)
{
    return (relay_sink_event){
        .id = id,
        .key = key,
        .key_len = strlen(key),
        .type = type,
        .type_len = strlen(type),
        .payload = "{}",
        .payload_len = 2,
        .created_at = "2026-11-26T04:12:53.123456Z",
        .version = 7,
        .has_version = 1,
    };
}

#define N 5

static relay_sink_event batch_events[N];
static const relay_sink_batch whole_batch = {
    .events = batch_events, .count = N, .event_size = sizeof(relay_sink_event)};

static void make_batch(int64_t first_id)
{
    for (size_t i = 0; i < N; i++)
        batch_events[i] = event(first_id + (int64_t)i, "k", "t");
}

/* Sends every message the batch allows, as deliver() does; returns how many. */
static size_t send_all(kafka_batch *b)
{
    size_t sent = 0;
    for (size_t i = 0; i < kafka_batch_send_limit(b); i++) {
        if (kafka_batch_status(b, i) == KAFKA_MSG_NOT_SENT) {
            kafka_batch_mark_pending(b, i);
            sent++;
        }
    }
    return sent;
}

/* A delivery report, routed the way the sink routes one: through the opaque. */
static int report(kafka_batch *b, void *opaque, int ok)
{
    size_t index;
    if (kafka_batch_locate(b, opaque, &index) != 0)
        return -1;
    if (ok)
        kafka_batch_mark_ok(b, index);
    else
        kafka_batch_mark_failed(b, index, "_MSG_TIMED_OUT: Local: Message timed out");
    return 0;
}

Test(kafka_batch, a_new_batch_is_all_unsent_and_settles_when_all_acknowledged)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 0);
    cr_assert_eq(send_all(&b), N);
    cr_assert_eq(b.n_pending, N);
    cr_assert_not(kafka_batch_settled(&b));
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(report(&b, kafka_batch_opaque(&b, i), 1), 0);
    cr_assert_eq(b.n_pending, 0);
    cr_assert(kafka_batch_settled(&b));
    kafka_batch_free(&b);
}

Test(kafka_batch, a_retried_batch_resends_the_tail_from_the_first_failure)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, &whole_batch);
    send_all(&b);
    report(&b, kafka_batch_opaque(&b, 0), 1);
    report(&b, kafka_batch_opaque(&b, 1), 1);
    report(&b, kafka_batch_opaque(&b, 2), 0);
    report(&b, kafka_batch_opaque(&b, 3), 1);
    report(&b, kafka_batch_opaque(&b, 4), 0);
    cr_assert_eq(b.n_failed, 2);
    cr_assert(b.has_failure);
    cr_assert_eq(b.failure_id, 12, "the first failure is event 12, not %lld",
                 (long long)b.failure_id);
    cr_assert(strstr(b.failure, "_MSG_TIMED_OUT") != NULL);

    /* Handed over again: 2, 3 (acknowledged, but after a failed one) and 4 go out again. */
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 1);
    cr_assert_eq(kafka_batch_status(&b, 0), KAFKA_MSG_OK);
    cr_assert_eq(kafka_batch_status(&b, 1), KAFKA_MSG_OK);
    for (size_t i = 2; i < N; i++)
        cr_assert_eq(kafka_batch_status(&b, i), KAFKA_MSG_NOT_SENT, "message %zu", i);
    cr_assert_eq(b.n_failed, 0);
    cr_assert_not(b.has_failure);
    cr_assert_eq(send_all(&b), 3);
    kafka_batch_free(&b);
}

Test(kafka_batch, in_flight_messages_are_not_resent)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, &whole_batch);
    send_all(&b);
    report(&b, kafka_batch_opaque(&b, 0), 0);
    report(&b, kafka_batch_opaque(&b, 1), 1);
    /* 2..4 still in flight: the relay retries, nothing is reset nor sent. */
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 1);
    cr_assert_eq(kafka_batch_status(&b, 0), KAFKA_MSG_FAILED);
    cr_assert_eq(kafka_batch_status(&b, 2), KAFKA_MSG_PENDING);
    cr_assert_eq(send_all(&b), 0);
    cr_assert_eq(kafka_batch_send_limit(&b), 0);
    /* Their reports still count. */
    for (size_t i = 2; i < N; i++)
        cr_assert_eq(report(&b, kafka_batch_opaque(&b, i), 1), 0);
    cr_assert_eq(b.n_pending, 0);
    /* Now the tail from 0 goes again. */
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 1);
    cr_assert_eq(send_all(&b), N);
    kafka_batch_free(&b);
}

Test(kafka_batch, nothing_is_sent_past_a_failure)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, &whole_batch);
    kafka_batch_mark_pending(&b, 0);
    kafka_batch_mark_failed(&b, 1, "_UNKNOWN_PARTITION: Local: Unknown partition");
    cr_assert_eq(kafka_batch_send_limit(&b), 1);
    cr_assert_eq(send_all(&b), 0);
    cr_assert_eq(kafka_batch_status(&b, 2), KAFKA_MSG_NOT_SENT);
    kafka_batch_free(&b);
}

Test(kafka_batch, another_batch_ignores_reports_of_the_previous_one)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, &whole_batch);
    send_all(&b);
    void *old = kafka_batch_opaque(&b, 3);

    make_batch(20);
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 0);
    send_all(&b);
    cr_assert_eq(report(&b, old, 1), -1, "a report of the previous batch was taken");
    cr_assert_eq(kafka_batch_status(&b, 3), KAFKA_MSG_PENDING);
    cr_assert_eq(b.n_pending, N);
    kafka_batch_free(&b);
}

Test(kafka_batch, the_same_first_id_with_another_count_is_another_batch)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    relay_sink_batch shorter = whole_batch;
    shorter.count = N - 1;
    kafka_batch_begin(&b, &shorter);
    send_all(&b);
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 0);
    cr_assert_eq(b.n_pending, 0);
    cr_assert_eq(send_all(&b), N);
    kafka_batch_free(&b);
}

Test(kafka_batch, abandoning_fails_the_unfinished_and_outdates_their_reports)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, &whole_batch);
    send_all(&b);
    report(&b, kafka_batch_opaque(&b, 0), 1);
    void *in_flight = kafka_batch_opaque(&b, 2);
    kafka_batch_abandon(&b, "the producer failed fatally: PRODUCER_FENCED");
    cr_assert_eq(b.n_pending, 0);
    cr_assert_eq(b.n_failed, N - 1);
    cr_assert_eq(kafka_batch_status(&b, 0), KAFKA_MSG_OK);
    cr_assert_eq(b.failure_id, 11);
    cr_assert_eq(report(&b, in_flight, 1), -1, "a report from the old producer was taken");
    cr_assert_not(kafka_batch_settled(&b));

    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 1);
    cr_assert_eq(send_all(&b), N - 1);
    kafka_batch_free(&b);
}

Test(kafka_batch, rejected_messages_settle_and_stay_rejected)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, &whole_batch);
    kafka_batch_mark_pending(&b, 0);
    cr_assert_eq(kafka_batch_mark_rejected(&b, 1, "larger than message.max.bytes (2000 bytes)"), 0);
    for (size_t i = 2; i < N; i++)
        kafka_batch_mark_pending(&b, i);
    report(&b, kafka_batch_opaque(&b, 0), 0);
    for (size_t i = 2; i < N; i++)
        report(&b, kafka_batch_opaque(&b, i), 1);
    cr_assert_eq(b.n_rejections, 1);
    cr_assert_eq(b.rejections[0].index, 1);

    /* The tail from 0 is reset, but the refused event is not sent again, and is remembered to be
     * reported on this hand-over too. */
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 1);
    cr_assert_eq(kafka_batch_status(&b, 1), KAFKA_MSG_REJECTED);
    cr_assert_eq(b.n_rejections, 1);
    cr_assert_str_eq(b.rejections[0].reason, "larger than message.max.bytes (2000 bytes)");
    cr_assert_eq(send_all(&b), N - 1);
    for (size_t i = 0; i < N; i++) {
        if (i != 1)
            report(&b, kafka_batch_opaque(&b, i), 1);
    }
    cr_assert(kafka_batch_settled(&b));

    make_batch(20);
    kafka_batch_begin(&b, &whole_batch);
    cr_assert_eq(b.n_rejections, 0, "rejections of the previous batch were kept");
    kafka_batch_free(&b);
}

Test(kafka_batch, a_report_for_a_message_not_in_flight_is_ignored)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, &whole_batch);
    kafka_batch_mark_pending(&b, 0);
    cr_assert_eq(report(&b, kafka_batch_opaque(&b, 0), 1), 0);
    cr_assert_eq(report(&b, kafka_batch_opaque(&b, 0), 0), -1, "a second report was taken");
    cr_assert_eq(kafka_batch_status(&b, 0), KAFKA_MSG_OK);
    cr_assert_eq(report(&b, kafka_batch_opaque(&b, 1), 1), -1, "a report for an unsent message");
    cr_assert_eq(report(&b, (void *)(uintptr_t)(((uintptr_t)b.generation << 20) | 0xfffff), 1), -1);
    kafka_batch_free(&b);
}

Test(kafka_batch, opaques_round_trip_at_the_largest_index)
{
    cr_assert_geq(kafka_batch_max_count(), 100000, "the relay's largest batch does not fit");
    kafka_batch b;
    kafka_batch_init(&b);
    size_t count = 100000;
    relay_sink_event *events = calloc(count, sizeof *events);
    for (size_t i = 0; i < count; i++)
        events[i] = event((int64_t)i + 1, "k", "t");
    relay_sink_batch batch = {.events = events, .count = count, .event_size = sizeof *events};
    cr_assert_eq(kafka_batch_begin(&b, &batch), 0);
    kafka_batch_mark_pending(&b, count - 1);
    size_t index = 0;
    cr_assert_eq(kafka_batch_locate(&b, kafka_batch_opaque(&b, count - 1), &index), 0);
    cr_assert_eq(index, count - 1);
    free(events);
    kafka_batch_free(&b);
}

Test(kafka_batch, a_request_refused_with_others_sends_the_batch_again_one_by_one)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, &whole_batch);
    send_all(&b);
    cr_assert_not(b.isolate);
    report(&b, kafka_batch_opaque(&b, 0), 1);
    size_t index;
    cr_assert_eq(kafka_batch_locate(&b, kafka_batch_opaque(&b, 1), &index), 0);
    kafka_batch_mark_refused_with_others(&b, index, "MSG_SIZE_TOO_LARGE: for a request");
    cr_assert(b.isolate);
    /* A failure, not a rejection: nothing counts as handled, the batch is not settled. */
    cr_assert_eq(kafka_batch_status(&b, 1), KAFKA_MSG_FAILED);
    cr_assert_eq(b.n_rejections, 0);
    cr_assert_eq(b.failure_id, 11);
    for (size_t i = 2; i < N; i++)
        report(&b, kafka_batch_opaque(&b, i), 1);
    cr_assert_not(kafka_batch_settled(&b));

    /* Handed over again: still one by one, from the refused message on. */
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 1);
    cr_assert(b.isolate);
    cr_assert_eq(kafka_batch_status(&b, 0), KAFKA_MSG_OK);
    for (size_t i = 1; i < N; i++)
        cr_assert_eq(kafka_batch_status(&b, i), KAFKA_MSG_NOT_SENT, "message %zu", i);

    /* The next batch goes in requests of many again. */
    make_batch(20);
    cr_assert_eq(kafka_batch_begin(&b, &whole_batch), 0);
    cr_assert_not(b.isolate);
    kafka_batch_free(&b);
}
