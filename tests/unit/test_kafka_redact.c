/*
 * Which librdkafka properties are secret, and their values scrubbed from text, the mark's own
 * letters and a cut at the buffer's end included.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "kafka_redact.h"

Test(kafka_secrets, sensitive_property_names)
{
    cr_assert(kafka_property_is_sensitive("sasl.password"));
    cr_assert(kafka_property_is_sensitive("ssl.key.password"));
    cr_assert(kafka_property_is_sensitive("ssl.keystore.password"));
    cr_assert(kafka_property_is_sensitive("ssl.key.pem"));
    cr_assert(kafka_property_is_sensitive("sasl.oauthbearer.client.secret"));
    cr_assert(kafka_property_is_sensitive("sasl.oauthbearer.config"));
    cr_assert_not(kafka_property_is_sensitive("sasl.username"));
    cr_assert_not(kafka_property_is_sensitive("bootstrap.servers"));
    cr_assert_not(kafka_property_is_sensitive("ssl.certificate.location"));
}

Test(kafka_secrets, redacts_every_occurrence)
{
    char text[128] = "Invalid value \"hunter2\" (hunter2hunter2)";
    kafka_redact(text, sizeof text, "hunter2");
    cr_assert_str_eq(text, "Invalid value \"[redacted]\" ([redacted][redacted])");
    cr_assert_null(strstr(text, "hunter2"));
}

Test(kafka_secrets, a_secret_inside_the_mark_is_no_loop)
{
    char text[64] = "a d here";
    kafka_redact(text, sizeof text, "d");
    cr_assert_str_eq(text, "a [redacted] here");
}

Test(kafka_secrets, truncation_leaves_no_piece_of_a_secret)
{
    /* "[redacted]" is longer than "pw12": the text grows and is cut at the buffer's end, which
     * would leave the start of the last secret there. */
    char text[24] = "pw12 pw12 pw12 pw12";
    kafka_redact(text, sizeof text, "pw12");
    /* Cut right after the second mark: 23 bytes would end in " p". */
    cr_assert_str_eq(text, "[redacted] [redacted] ");
}

Test(kafka_secrets, empty_secret_changes_nothing)
{
    char text[32] = "nothing to hide";
    kafka_redact(text, sizeof text, "");
    cr_assert_str_eq(text, "nothing to hide");
}

Test(kafka_secrets, a_property_is_redacted_where_it_is_named_or_quoted)
{
    /* Every occurrence everywhere would tell the password through librdkafka's client id. */
    char text[160] = "[thrd:app]: rdkafka#producer-1 initialised";
    kafka_redact_property(text, sizeof text, "sasl.password", "producer");
    cr_assert_str_eq(text, "[thrd:app]: rdkafka#producer-1 initialised");

    char named[160] = "Invalid value producer for configuration property sasl.password";
    kafka_redact_property(named, sizeof named, "sasl.password", "producer");
    cr_assert_str_eq(named, "Invalid value [redacted] for configuration property sasl.password");

    char quoted[160] = "rdkafka#producer-1: value \"producer\" or 'producer' refused";
    kafka_redact_property(quoted, sizeof quoted, "sasl.password", "producer");
    cr_assert_str_eq(quoted, "rdkafka#producer-1: value \"[redacted]\" or '[redacted]' refused");
}

/* Found by tests/fuzz/fuzz_kafka_redact.c (corpus/kafka-redact/regression-shared-quote.bin): two
 * quoted values sharing the quote between them, and the search going on after the first mark,
 * past that quote, left the second one to read. */
Test(kafka_secrets, quoted_values_sharing_a_quote_are_both_redacted)
{
    char text[160] = "value \"producer\"producer\" or 'producer'producer'producer' refused";
    kafka_redact_property(text, sizeof text, "sasl.password", "producer");
    cr_assert_str_eq(text, "value \"[redacted]\"[redacted]\" or "
                           "'[redacted]'[redacted]'[redacted]' refused");
}
