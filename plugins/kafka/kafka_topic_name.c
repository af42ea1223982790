#include "kafka_topic_name.h"

#include <stdio.h>
#include <string.h>

#define KAFKA_TOPIC_NAME_MAX 249

int kafka_topic_name_check(const char *name, size_t len, char *err, size_t errlen)
{
    if (len == 0) {
        snprintf(err, errlen, "the topic name is empty");
        return -1;
    }
    if (len > KAFKA_TOPIC_NAME_MAX) {
        snprintf(err, errlen, "the topic name is %zu characters long, Kafka allows at most %d", len,
                 KAFKA_TOPIC_NAME_MAX);
        return -1;
    }
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
        snprintf(err, errlen, "'%.*s' is not a valid topic name", (int)len, name);
        return -1;
    }
    size_t legal =
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");
    if (legal < len) {
        snprintf(err, errlen,
                 "topic name '%.*s' has a character Kafka does not allow at offset %zu "
                 "(allowed: letters, digits, '.', '_', '-')",
                 (int)len, name, legal);
        return -1;
    }
    return 0;
}
