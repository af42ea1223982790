/*
 * Which librdkafka properties keep the order of first deliveries per key, which only warn, and
 * which are refused, through aliases and with the last setting winning as in librdkafka.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "kafka_ordering.h"

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
