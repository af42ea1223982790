#include "kafka_options.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KAFKA_PROPERTIES_PREFIX "properties."

const char *const kafka_builtin_headers[] = {"id", "type", "version", "created_at", "late"};
const size_t kafka_n_builtin_headers =
    sizeof kafka_builtin_headers / sizeof kafka_builtin_headers[0];

static int kafka_parse_ms(const char *key, const char *text, int *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0 || value > INT_MAX) {
        snprintf(err, errlen, "%s: '%s' is not a whole number of milliseconds (0..%d)", key, text,
                 INT_MAX);
        return -1;
    }
    *out = (int)value;
    return 0;
}

void kafka_header_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int kafka_header_name_check(char **names, size_t n, const char *name, char *err,
                                   size_t errlen)
{
    if (name[0] == '\0') {
        snprintf(err, errlen, "metadata_headers: empty field name in the list");
        return -1;
    }
    for (size_t i = 0; i < kafka_n_builtin_headers; i++) {
        if (strcmp(name, kafka_builtin_headers[i]) == 0) {
            snprintf(err, errlen,
                     "metadata_headers: '%s' collides with the header of that name every "
                     "message carries (id, type, version, created_at, late)",
                     name);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            snprintf(err, errlen, "metadata_headers: '%s' is listed twice", name);
            return -1;
        }
    }
    return 0;
}

int kafka_header_names_parse(const char *list, char ***names, size_t *n, char *err, size_t errlen)
{
    static const char blanks[] = " \t";
    *names = NULL;
    *n = 0;
    if (list[strspn(list, blanks)] == '\0')
        return 0;

    size_t max = 1;
    for (const char *c = list; *c != '\0'; c++)
        max += *c == ',';
    char **out = calloc(max, sizeof *out);
    if (out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t count = 0;
    const char *start = list;
    for (;;) {
        size_t len = strcspn(start, ",");
        const char *next = start[len] == ',' ? start + len + 1 : NULL;
        size_t lead = strspn(start, blanks);
        lead = lead < len ? lead : len;
        const char *name = start + lead;
        len -= lead;
        while (len > 0 && strchr(blanks, name[len - 1]) != NULL)
            len--;
        char *copy = strndup(name, len);
        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            kafka_header_names_free(out, count);
            return -1;
        }
        if (kafka_header_name_check(out, count, copy, err, errlen) != 0) {
            free(copy);
            kafka_header_names_free(out, count);
            return -1;
        }
        out[count++] = copy;
        if (next == NULL)
            break;
        start = next;
    }
    *names = out;
    *n = count;
    return 0;
}

int kafka_options_parse(const relay_sink_option *options, size_t n_options, kafka_options *out,
                        char *err, size_t errlen)
{
    *out = (kafka_options){
        .key = "${key}",
        .queue_full_timeout_ms = 30000,
        .shutdown_timeout_ms = 10000,
    };
    out->properties = calloc(n_options > 0 ? n_options : 1, sizeof *out->properties);
    if (out->properties == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    for (size_t i = 0; i < n_options; i++) {
        const char *key = options[i].key;
        const char *value = options[i].value != NULL ? options[i].value : "";
        if (strncmp(key, KAFKA_PROPERTIES_PREFIX, strlen(KAFKA_PROPERTIES_PREFIX)) == 0) {
            out->properties[out->n_properties++] =
                (kafka_property){.name = key + strlen(KAFKA_PROPERTIES_PREFIX), .value = value};
        } else if (strcmp(key, "topic") == 0) {
            out->topic = value;
        } else if (strcmp(key, "key") == 0) {
            out->key = value;
        } else if (strcmp(key, "metadata_headers") == 0) {
            kafka_header_names_free(out->metadata_headers, out->n_metadata_headers);
            out->metadata_headers = NULL;
            out->n_metadata_headers = 0;
            if (kafka_header_names_parse(value, &out->metadata_headers, &out->n_metadata_headers,
                                         err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "queue_full_timeout_ms") == 0) {
            if (kafka_parse_ms(key, value, &out->queue_full_timeout_ms, err, errlen) != 0)
                return -1;
        } else if (strcmp(key, "shutdown_timeout_ms") == 0) {
            if (kafka_parse_ms(key, value, &out->shutdown_timeout_ms, err, errlen) != 0)
                return -1;
        } else {
            snprintf(err, errlen,
                     "unknown option '%s' (known: topic, key, metadata_headers, "
                     "queue_full_timeout_ms, shutdown_timeout_ms, properties.*)",
                     key);
            return -1;
        }
    }
    if (out->topic == NULL || out->topic[0] == '\0') {
        snprintf(err, errlen,
                 "option 'topic' is required (a topic name or a template such as "
                 "events.${type})");
        return -1;
    }
    return 0;
}

void kafka_options_free(kafka_options *opts)
{
    kafka_header_names_free(opts->metadata_headers, opts->n_metadata_headers);
    free(opts->properties);
    *opts = (kafka_options){0};
}
