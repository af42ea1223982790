/*
 * Topic names as Kafka allows them, at the edges of every rule: a name the brokers would refuse
 * must be caught by the sink, not retried until it times out.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "kafka_topic_name.h"

Test(kafka_topic_name, follows_kafka_rules)
{
    char err[256];
    cr_assert_eq(kafka_topic_name_check("events.order_created-v2", 23, err, sizeof err), 0);
    cr_assert_eq(kafka_topic_name_check("", 0, err, sizeof err), -1);
    cr_assert_eq(kafka_topic_name_check(".", 1, err, sizeof err), -1);
    cr_assert_eq(kafka_topic_name_check("..", 2, err, sizeof err), -1);
    cr_assert_eq(kafka_topic_name_check("...", 3, err, sizeof err), 0);
    cr_assert_eq(kafka_topic_name_check("events.order created", 20, err, sizeof err), -1);
    cr_assert(strstr(err, "offset 12") != NULL, "%s", err);
    cr_assert_eq(kafka_topic_name_check("caf\xc3\xa9", 5, err, sizeof err), -1);

    char name[251];
    memset(name, 'a', 250);
    name[250] = '\0';
    cr_assert_eq(kafka_topic_name_check(name, 249, err, sizeof err), 0);
    cr_assert_eq(kafka_topic_name_check(name, 250, err, sizeof err), -1);
}
