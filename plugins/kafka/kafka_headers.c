#include "kafka_headers.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "kafka_options.h"
#include "relay_plugin_int64.h"

int kafka_headers_init(kafka_headers *h, char **names, size_t n_names, char *err, size_t errlen)
{
    *h = (kafka_headers){.metadata_names = names, .n_metadata_names = n_names};
    if (n_names == 0)
        return 0;
    h->tokener = json_tokener_new();
    if (h->tokener == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Copies the listed top-level metadata fields: strings as their text, anything else as its JSON
 * text. A null or absent field, or metadata that is not an object, gives no header. */
static void kafka_headers_add_metadata(kafka_headers *h, rd_kafka_headers_t *hdrs,
                                       const relay_sink_event *e)
{
    if (e->metadata == NULL || e->metadata_len == 0 || e->metadata_len > INT32_MAX)
        return;
    json_tokener_reset(h->tokener);
    json_object *root = json_tokener_parse_ex(h->tokener, e->metadata, (int)e->metadata_len);
    if (root == NULL)
        return;
    if (json_object_is_type(root, json_type_object)) {
        for (size_t i = 0; i < h->n_metadata_names; i++) {
            json_object *value;
            if (!json_object_object_get_ex(root, h->metadata_names[i], &value) || value == NULL)
                continue;
            if (json_object_is_type(value, json_type_string)) {
                rd_kafka_header_add(hdrs, h->metadata_names[i], -1, json_object_get_string(value),
                                    json_object_get_string_len(value));
            } else {
                const char *text = json_object_to_json_string_ext(
                    value, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                rd_kafka_header_add(hdrs, h->metadata_names[i], -1, text, -1);
            }
        }
    }
    json_object_put(root);
}

rd_kafka_headers_t *kafka_headers_build(kafka_headers *h, const relay_sink_event *e)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(6 + e->n_headers + h->n_metadata_names);
    if (hdrs == NULL)
        return NULL;
    /* The event's public id, as Debezium's outbox router sets it; the ordering id (event_id
     * NULL) unless source.columns.event_id maps another. */
    char number[RELAY_PLUGIN_INT64_SIZE];
    size_t len;
    if (e->event_id != NULL) {
        rd_kafka_header_add(hdrs, "id", 2, e->event_id, (ssize_t)e->event_id_len);
    } else {
        len = relay_plugin_format_int64(number, e->id);
        rd_kafka_header_add(hdrs, "id", 2, number, (ssize_t)len);
    }
    if (e->type != NULL && !(e->flags & RELAY_SINK_EVENT_TYPE_NULL))
        rd_kafka_header_add(hdrs, "type", 4, e->type, (ssize_t)e->type_len);
    if (e->has_version) {
        len = relay_plugin_format_int64(number, e->version);
        rd_kafka_header_add(hdrs, "version", 7, number, (ssize_t)len);
    }
    if (e->created_at != NULL && !(e->flags & RELAY_SINK_EVENT_CREATED_AT_NULL))
        rd_kafka_header_add(hdrs, "created_at", 10, e->created_at, -1);
    if (e->flags & RELAY_SINK_EVENT_LATE)
        rd_kafka_header_add(hdrs, "late", 4, "true", 4);
    if (e->flags & RELAY_SINK_EVENT_REDELIVERED)
        rd_kafka_header_add(hdrs, "redelivered", 11, "true", 4);
    /* The columns of source.columns.headers, by name; a NULL value gives no header. */
    for (size_t i = 0; i < e->n_headers; i++) {
        const relay_sink_header *c = &e->headers[i];
        if (c->value != NULL)
            rd_kafka_header_add(hdrs, c->name, (ssize_t)c->name_len, c->value,
                                (ssize_t)c->value_len);
    }
    if (h->n_metadata_names > 0)
        kafka_headers_add_metadata(h, hdrs, e);
    return hdrs;
}

void kafka_headers_free(kafka_headers *h)
{
    if (h->tokener != NULL)
        json_tokener_free(h->tokener);
    kafka_header_names_free(h->metadata_names, h->n_metadata_names);
    *h = (kafka_headers){0};
}
