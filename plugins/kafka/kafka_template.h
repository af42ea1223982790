/*
 * Topic and key templates: text with ${id}, ${key}, ${type}, ${version}, ${aggregate_type} and
 * ${event_id} in it ($$ is a literal $). A template is compiled once, at init, into literal and
 * variable parts, then rendered per event without parsing again.
 *
 * Pure C, free of librdkafka and json-c, so that the unit tests compile it alone.
 */
#ifndef KAFKA_TEMPLATE_H
#define KAFKA_TEMPLATE_H

#include <stddef.h>

#include <outbox_relay/sink.h>

#include "relay_plugin_buffer.h"

typedef enum kafka_template_var {
    KAFKA_VAR_NONE = 0, /* a literal part */
    KAFKA_VAR_ID,
    KAFKA_VAR_KEY,
    KAFKA_VAR_TYPE,
    KAFKA_VAR_VERSION,        /* empty when the event has no version */
    KAFKA_VAR_AGGREGATE_TYPE, /* empty when unmapped or NULL */
    KAFKA_VAR_EVENT_ID,       /* the event's public id (the id, unless mapped) */
} kafka_template_var;

typedef struct kafka_template_part {
    kafka_template_var var;
    size_t offset; /* literal parts: where their text starts in kafka_template.literals */
    size_t len;
} kafka_template_part;

typedef struct kafka_template {
    char *literals; /* every literal part's text, $$ already collapsed */
    kafka_template_part *parts;
    size_t n_parts;
} kafka_template;

/* Compiles text into *out (owned by the caller: kafka_template_free). Returns 0, or -1 with the
 * reason in err: an unknown variable (named), an unterminated ${, a $ that starts neither. */
int kafka_template_compile(const char *text, kafka_template *out, char *err, size_t errlen);

/* Whether rendering gives the same text for every event. */
int kafka_template_is_constant(const kafka_template *t);

/*
 * Renders the template for an event. *text then points to len bytes followed by a NUL: into buf,
 * or straight into the event when the template is one variable alone (no copy). Valid until the
 * next render into buf or until the event's memory goes. Returns 0, or -1 when out of memory.
 */
int kafka_template_render(const kafka_template *t, const relay_sink_event *e,
                          relay_plugin_buffer *buf, const char **text, size_t *len);

void kafka_template_free(kafka_template *t);

#endif
