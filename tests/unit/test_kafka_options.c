/*
 * The sink's options as the relay hands them over: defaults, every key, and the refusals, which
 * must name the option so that `outbox-relay check` tells the operator what to fix.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "kafka_options.h"

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
