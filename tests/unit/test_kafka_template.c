/*
 * The Kafka sink's pure logic, without a broker: templates, topic names, options, secrets in
 * messages, and the per-batch delivery state machine that decides what flush() may acknowledge.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_batch.h"
#include "kafka_options.h"
#include "kafka_ordering.h"
#include "kafka_template.h"

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

/* Compiles text and renders it for e; the rendering is copied out, NUL-checked. */
static void render(const char *text, const relay_sink_event *e, char *out, size_t outlen)
{
    kafka_template t;
    char err[256];
    cr_assert_eq(kafka_template_compile(text, &t, err, sizeof err), 0, "%s: %s", text, err);
    relay_plugin_buffer buf = {0};
    const char *rendered;
    size_t len;
    cr_assert_eq(kafka_template_render(&t, e, &buf, &rendered, &len), 0);
    cr_assert_eq(rendered[len], '\0', "%s: rendering not NUL-terminated", text);
    cr_assert_eq(strlen(rendered), len, "%s: length %zu, text '%s'", text, len, rendered);
    snprintf(out, outlen, "%s", rendered);
    relay_plugin_buffer_free(&buf);
    kafka_template_free(&t);
}

static void compile_fails(const char *text, const char *expected)
{
    kafka_template t;
    char err[256] = "";
    cr_assert_eq(kafka_template_compile(text, &t, err, sizeof err), -1, "%s compiled", text);
    cr_assert(strstr(err, expected) != NULL, "%s: '%s' does not say '%s'", text, err, expected);
}

Test(kafka_template, renders_every_variable)
{
    relay_sink_event e = event(42, "order-1", "created");
    char out[256];
    render("events.${type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "events.created");
    render("${key}/${id}/v${version}", &e, out, sizeof out);
    cr_assert_str_eq(out, "order-1/42/v7");
    render("${type}${type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "createdcreated");
}

Test(kafka_template, single_variables_and_constants)
{
    relay_sink_event e = event(-9223372036854775807LL - 1, "k", "t");
    char out[256];
    render("${key}", &e, out, sizeof out);
    cr_assert_str_eq(out, "k");
    render("${id}", &e, out, sizeof out);
    cr_assert_str_eq(out, "-9223372036854775808");
    render("${version}", &e, out, sizeof out);
    cr_assert_str_eq(out, "7");
    render("fixed", &e, out, sizeof out);
    cr_assert_str_eq(out, "fixed");
    render("", &e, out, sizeof out);
    cr_assert_str_eq(out, "");
}

Test(kafka_template, version_is_empty_without_one)
{
    relay_sink_event e = event(1, "k", "t");
    e.has_version = 0;
    char out[256];
    render("v${version}.x", &e, out, sizeof out);
    cr_assert_str_eq(out, "v.x");
    render("${version}", &e, out, sizeof out);
    cr_assert_str_eq(out, "");
}

Test(kafka_template, double_dollar_is_a_dollar)
{
    relay_sink_event e = event(1, "k", "t");
    char out[256];
    render("$$", &e, out, sizeof out);
    cr_assert_str_eq(out, "$");
    render("a$${type}$$$${key}b", &e, out, sizeof out);
    cr_assert_str_eq(out, "a${type}$${key}b");
    render("$$${type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "$t");
}

Test(kafka_template, refuses_what_it_cannot_render)
{
    compile_fails("events.${typo}", "${typo}");
    compile_fails("events.${}", "unknown variable");
    compile_fails("events.${type", "unterminated");
    compile_fails("x${", "unterminated");
    compile_fails("cost$5", "'$' at offset 4");
    compile_fails("trailing$", "'$' at offset 8");
}

Test(kafka_template, constant_only_without_variables)
{
    kafka_template t;
    char err[256];
    cr_assert_eq(kafka_template_compile("a$$b", &t, err, sizeof err), 0);
    cr_assert(kafka_template_is_constant(&t));
    cr_assert_str_eq(t.literals, "a$b");
    kafka_template_free(&t);
    cr_assert_eq(kafka_template_compile("a.${id}", &t, err, sizeof err), 0);
    cr_assert_not(kafka_template_is_constant(&t));
    kafka_template_free(&t);
}

Test(kafka_template, the_buffer_is_reused_across_events)
{
    kafka_template t;
    char err[256];
    cr_assert_eq(kafka_template_compile("events.${type}.${id}", &t, err, sizeof err), 0);
    relay_plugin_buffer buf = {0};
    const char *text;
    size_t len;
    relay_sink_event long_one = event(1, "k", "a-rather-long-type-name-that-grows-the-buffer");
    cr_assert_eq(kafka_template_render(&t, &long_one, &buf, &text, &len), 0);
    char *data = buf.data;
    relay_sink_event short_one = event(2, "k", "x");
    cr_assert_eq(kafka_template_render(&t, &short_one, &buf, &text, &len), 0);
    cr_assert_str_eq(text, "events.x.2");
    cr_assert_eq(buf.data, data, "a shorter rendering reallocated the buffer");
    relay_plugin_buffer_free(&buf);
    kafka_template_free(&t);
}

/* --- options --- */

Test(kafka_options, defaults_and_properties_in_order)
{
    const relay_sink_option given[] = {
        {"topic", "events.${type}"},
        {"properties.bootstrap.servers", "k1:9092,k2:9092"},
        {"properties.linger.ms", "5"},
    };
    kafka_options o;
    char err[256];
    cr_assert_eq(kafka_options_parse(given, 3, &o, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(o.topic, "events.${type}");
    cr_assert_str_eq(o.key, "${key}");
    cr_assert_eq(o.queue_full_timeout_ms, 30000);
    cr_assert_eq(o.shutdown_timeout_ms, 10000);
    cr_assert_eq(o.n_metadata_headers, 0);
    cr_assert_eq(o.n_properties, 2);
    cr_assert_str_eq(o.properties[0].name, "bootstrap.servers");
    cr_assert_str_eq(o.properties[0].value, "k1:9092,k2:9092");
    cr_assert_str_eq(o.properties[1].name, "linger.ms");
    kafka_options_free(&o);
}

Test(kafka_options, every_option)
{
    const relay_sink_option given[] = {
        {"topic", "t"},
        {"key", "${type}:${key}"},
        {"metadata_headers", " trace_id ,tenant"},
        {"queue_full_timeout_ms", "0"},
        {"shutdown_timeout_ms", "2500"},
    };
    kafka_options o;
    char err[256];
    cr_assert_eq(kafka_options_parse(given, 5, &o, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(o.key, "${type}:${key}");
    cr_assert_eq(o.n_metadata_headers, 2);
    cr_assert_str_eq(o.metadata_headers[0], "trace_id");
    cr_assert_str_eq(o.metadata_headers[1], "tenant");
    cr_assert_eq(o.queue_full_timeout_ms, 0);
    cr_assert_eq(o.shutdown_timeout_ms, 2500);
    kafka_options_free(&o);
}

static void options_fail(const relay_sink_option *given, size_t n, const char *expected)
{
    kafka_options o;
    char err[256] = "";
    cr_assert_eq(kafka_options_parse(given, n, &o, err, sizeof err), -1, "accepted");
    cr_assert(strstr(err, expected) != NULL, "'%s' does not say '%s'", err, expected);
    kafka_options_free(&o);
}

Test(kafka_options, refuses_bad_options)
{
    options_fail((relay_sink_option[]){{"key", "${key}"}}, 1, "'topic' is required");
    options_fail((relay_sink_option[]){{"topic", ""}}, 1, "'topic' is required");
    options_fail((relay_sink_option[]){{"topic", "t"}, {"partition", "1"}}, 2,
                 "unknown option 'partition'");
    options_fail((relay_sink_option[]){{"topic", "t"}, {"shutdown_timeout_ms", "10s"}}, 2,
                 "shutdown_timeout_ms");
    options_fail((relay_sink_option[]){{"topic", "t"}, {"queue_full_timeout_ms", "-1"}}, 2,
                 "queue_full_timeout_ms");
    options_fail((relay_sink_option[]){{"topic", "t"}, {"queue_full_timeout_ms", "99999999999"}}, 2,
                 "queue_full_timeout_ms");
}

Test(kafka_options, header_names)
{
    char **names;
    size_t n;
    char err[256] = "";
    cr_assert_eq(kafka_header_names_parse("", &names, &n, err, sizeof err), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(kafka_header_names_parse("a", &names, &n, err, sizeof err), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(names[0], "a");
    kafka_header_names_free(names, n);

    cr_assert_eq(kafka_header_names_parse("a,,b", &names, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "empty") != NULL, "%s", err);
    cr_assert_eq(kafka_header_names_parse("a, ", &names, &n, err, sizeof err), -1);
    cr_assert_eq(kafka_header_names_parse("a,b,a", &names, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "twice") != NULL, "%s", err);
    for (size_t i = 0; i < kafka_n_builtin_headers; i++) {
        char list[64];
        snprintf(list, sizeof list, "trace, %s", kafka_builtin_headers[i]);
        cr_assert_eq(kafka_header_names_parse(list, &names, &n, err, sizeof err), -1, "%s", list);
        cr_assert(strstr(err, "collides") != NULL, "%s", err);
    }
}

/* --- options that keep or break the order of first deliveries --- */

static void ordering_ok(const kafka_property *given, size_t n, int idempotent, const char *warning)
{
    kafka_ordering o;
    char err[512] = "";
    cr_assert_eq(kafka_ordering_check(given, n, &o, err, sizeof err), 0, "refused: %s", err);
    cr_assert_eq(o.idempotent, idempotent);
    if (warning == NULL)
        cr_assert_str_empty(o.warning, "unexpected warning: %s", o.warning);
    else
        cr_assert(strstr(o.warning, warning) != NULL, "'%s' does not say '%s'", o.warning, warning);
}

static void ordering_refused(const kafka_property *given, size_t n, const char *expected)
{
    kafka_ordering o;
    char err[512] = "";
    cr_assert_eq(kafka_ordering_check(given, n, &o, err, sizeof err), -1, "accepted");
    cr_assert(strstr(err, expected) != NULL, "'%s' does not say '%s'", err, expected);
}

Test(kafka_ordering, the_defaults_keep_the_order)
{
    ordering_ok(NULL, 0, 1, NULL);
    ordering_ok((kafka_property[]){{"linger.ms", "5"}, {"enable.idempotence", "true"}}, 2, 1, NULL);
    ordering_ok((kafka_property[]){{"max.in.flight", "5"},
                                   {"enable.gapless.guarantee", "T"},
                                   {"message.timeout.ms", "0"}},
                3, 1, NULL);
}

Test(kafka_ordering, retries_without_idempotence_are_refused)
{
    /* librdkafka retries without limit unless told otherwise. */
    ordering_refused((kafka_property[]){{"enable.idempotence", "false"}}, 1,
                     "enable.idempotence=false with retries");
    ordering_refused((kafka_property[]){{"enable.idempotence", "0"}, {"retries", "3"}}, 2,
                     "retries (3");
    ordering_refused((kafka_property[]){{"message.send.max.retries", "0"},
                                        {"enable.idempotence", "F"},
                                        {"retries", "2"}},
                     3, "retries (2");
}

Test(kafka_ordering, no_idempotence_and_no_retries_is_a_warning)
{
    ordering_ok((kafka_property[]){{"enable.idempotence", "false"}, {"retries", "0"}}, 2, 0,
                "consumers can then see a key's events out of order");
    /* Through the alias, and a later setting wins. */
    ordering_ok((kafka_property[]){{"retries", "5"},
                                   {"enable.idempotence", "FALSE"},
                                   {"message.send.max.retries", "0"}},
                3, 0, "enable.idempotence=false");
}

Test(kafka_ordering, more_than_five_requests_in_flight_are_refused)
{
    ordering_refused((kafka_property[]){{"max.in.flight.requests.per.connection", "6"}}, 1,
                     "max.in.flight.requests.per.connection=6");
    ordering_refused((kafka_property[]){{"max.in.flight", "1000000"}}, 1, "at most 5");
    ordering_refused(
        (kafka_property[]){{"max.in.flight", "1"}, {"max.in.flight.requests.per.connection", "10"}},
        2, "=10");
    ordering_ok((kafka_property[]){{"max.in.flight", "9"}, {"max.in.flight", "1"}}, 2, 1, NULL);
}

Test(kafka_ordering, gaps_are_refused)
{
    ordering_refused((kafka_property[]){{"enable.gapless.guarantee", "false"}}, 1,
                     "enable.gapless.guarantee=false");
}

Test(kafka_ordering, a_message_timeout_is_a_warning)
{
    ordering_ok((kafka_property[]){{"message.timeout.ms", "300000"}}, 1, 1,
                "message.timeout.ms=300000");
    ordering_ok((kafka_property[]){{"delivery.timeout.ms", "1000"}}, 1, 1, "timeouts");
}

Test(kafka_ordering, unreadable_values_are_left_to_librdkafka)
{
    ordering_ok((kafka_property[]){{"enable.idempotence", "perhaps"},
                                   {"max.in.flight", "many"},
                                   {"message.timeout.ms", "soon"}},
                3, 1, NULL);
}

/* --- the batch state machine --- */

#define N 5

static relay_sink_event batch_events[N];

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
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 0);
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
    kafka_batch_begin(&b, batch_events, N);
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
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 1);
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
    kafka_batch_begin(&b, batch_events, N);
    send_all(&b);
    report(&b, kafka_batch_opaque(&b, 0), 0);
    report(&b, kafka_batch_opaque(&b, 1), 1);
    /* 2..4 still in flight: the relay retries, nothing is reset nor sent. */
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 1);
    cr_assert_eq(kafka_batch_status(&b, 0), KAFKA_MSG_FAILED);
    cr_assert_eq(kafka_batch_status(&b, 2), KAFKA_MSG_PENDING);
    cr_assert_eq(send_all(&b), 0);
    cr_assert_eq(kafka_batch_send_limit(&b), 0);
    /* Their reports still count. */
    for (size_t i = 2; i < N; i++)
        cr_assert_eq(report(&b, kafka_batch_opaque(&b, i), 1), 0);
    cr_assert_eq(b.n_pending, 0);
    /* Now the tail from 0 goes again. */
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 1);
    cr_assert_eq(send_all(&b), N);
    kafka_batch_free(&b);
}

Test(kafka_batch, nothing_is_sent_past_a_failure)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, batch_events, N);
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
    kafka_batch_begin(&b, batch_events, N);
    send_all(&b);
    void *old = kafka_batch_opaque(&b, 3);

    make_batch(20);
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 0);
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
    kafka_batch_begin(&b, batch_events, N - 1);
    send_all(&b);
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 0);
    cr_assert_eq(b.n_pending, 0);
    cr_assert_eq(send_all(&b), N);
    kafka_batch_free(&b);
}

Test(kafka_batch, abandoning_fails_the_unfinished_and_outdates_their_reports)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, batch_events, N);
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

    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 1);
    cr_assert_eq(send_all(&b), N - 1);
    kafka_batch_free(&b);
}

Test(kafka_batch, rejected_messages_settle_and_stay_rejected)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, batch_events, N);
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
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 1);
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
    kafka_batch_begin(&b, batch_events, N);
    cr_assert_eq(b.n_rejections, 0, "rejections of the previous batch were kept");
    kafka_batch_free(&b);
}

Test(kafka_batch, a_report_for_a_message_not_in_flight_is_ignored)
{
    kafka_batch b;
    kafka_batch_init(&b);
    make_batch(10);
    kafka_batch_begin(&b, batch_events, N);
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
    cr_assert_eq(kafka_batch_begin(&b, events, count), 0);
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
    kafka_batch_begin(&b, batch_events, N);
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
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 1);
    cr_assert(b.isolate);
    cr_assert_eq(kafka_batch_status(&b, 0), KAFKA_MSG_OK);
    for (size_t i = 1; i < N; i++)
        cr_assert_eq(kafka_batch_status(&b, i), KAFKA_MSG_NOT_SENT, "message %zu", i);

    /* The next batch goes in requests of many again. */
    make_batch(20);
    cr_assert_eq(kafka_batch_begin(&b, batch_events, N), 0);
    cr_assert_not(b.isolate);
    kafka_batch_free(&b);
}
