/*
 * Templates are compiled into parts once, so that the per-event work is a few memcpy calls into a
 * buffer that stops growing after the first events.
 */
#include "kafka_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_plugin_int64.h"

static const struct {
    const char *name;
    kafka_template_var var;
} kafka_template_vars[] = {
    {"id", KAFKA_VAR_ID},
    {"key", KAFKA_VAR_KEY},
    {"type", KAFKA_VAR_TYPE},
    {"version", KAFKA_VAR_VERSION},
    {"aggregate_type", KAFKA_VAR_AGGREGATE_TYPE},
    {"event_id", KAFKA_VAR_EVENT_ID},
};

static int kafka_template_lookup(const char *name, size_t len, kafka_template_var *var)
{
    for (size_t i = 0; i < sizeof kafka_template_vars / sizeof kafka_template_vars[0]; i++) {
        if (strlen(kafka_template_vars[i].name) == len &&
            memcmp(kafka_template_vars[i].name, name, len) == 0) {
            *var = kafka_template_vars[i].var;
            return 0;
        }
    }
    return -1;
}

/* Appends a part, merging a literal into the literal before it so that rendering copies once. */
static void kafka_template_add(kafka_template *t, kafka_template_var var, size_t offset, size_t len)
{
    if (var == KAFKA_VAR_NONE && len == 0)
        return;
    kafka_template_part *last = t->n_parts > 0 ? &t->parts[t->n_parts - 1] : NULL;
    if (var == KAFKA_VAR_NONE && last != NULL && last->var == KAFKA_VAR_NONE &&
        last->offset + last->len == offset) {
        last->len += len;
        return;
    }
    t->parts[t->n_parts++] = (kafka_template_part){.var = var, .offset = offset, .len = len};
}

int kafka_template_compile(const char *text, kafka_template *out, char *err, size_t errlen)
{
    size_t text_len = strlen(text);
    kafka_template t = {0};
    /* Literals only ever shrink ($$ becomes $), and there is at most a part per input byte. */
    t.literals = malloc(text_len + 1);
    t.parts = malloc((text_len + 1) * sizeof *t.parts);
    if (t.literals == NULL || t.parts == NULL) {
        kafka_template_free(&t);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    size_t lit_len = 0;
    size_t i = 0;
    while (i < text_len) {
        const char *dollar = memchr(text + i, '$', text_len - i);
        size_t run = dollar != NULL ? (size_t)(dollar - (text + i)) : text_len - i;
        memcpy(t.literals + lit_len, text + i, run);
        kafka_template_add(&t, KAFKA_VAR_NONE, lit_len, run);
        lit_len += run;
        i += run;
        if (i == text_len)
            break;

        /* text[i] is a '$' */
        if (text[i + 1] == '$') {
            t.literals[lit_len] = '$';
            kafka_template_add(&t, KAFKA_VAR_NONE, lit_len, 1);
            lit_len++;
            i += 2;
            continue;
        }
        if (text[i + 1] != '{') {
            snprintf(err, errlen,
                     "'$' at offset %zu in \"%s\" must start ${NAME} or be doubled ($$)", i, text);
            kafka_template_free(&t);
            return -1;
        }
        const char *close = strchr(text + i + 2, '}');
        if (close == NULL) {
            snprintf(err, errlen, "unterminated '${' at offset %zu in \"%s\"", i, text);
            kafka_template_free(&t);
            return -1;
        }
        const char *name = text + i + 2;
        size_t name_len = (size_t)(close - name);
        kafka_template_var var;
        if (kafka_template_lookup(name, name_len, &var) != 0) {
            snprintf(err, errlen,
                     "unknown variable '${%.*s}' in \"%s\" (known: ${id}, ${key}, ${type}, "
                     "${version}, ${aggregate_type}, ${event_id})",
                     (int)name_len, name, text);
            kafka_template_free(&t);
            return -1;
        }
        kafka_template_add(&t, var, 0, 0);
        i = (size_t)(close - text) + 1;
    }
    t.literals[lit_len] = '\0';
    *out = t;
    return 0;
}

int kafka_template_is_constant(const kafka_template *t)
{
    for (size_t i = 0; i < t->n_parts; i++) {
        if (t->parts[i].var != KAFKA_VAR_NONE)
            return 0;
    }
    return 1;
}

/* The text of one part for an event; digits is scratch room for numbers. */
static void kafka_template_part_text(const kafka_template *t, const kafka_template_part *p,
                                     const relay_sink_event *e, char *digits, const char **text,
                                     size_t *len)
{
    switch (p->var) {
    case KAFKA_VAR_NONE:
        *text = t->literals + p->offset;
        *len = p->len;
        return;
    case KAFKA_VAR_ID:
        *len = relay_plugin_format_int64(digits, e->id);
        *text = digits;
        return;
    case KAFKA_VAR_KEY:
        *text = e->key != NULL ? e->key : "";
        *len = e->key != NULL ? e->key_len : 0;
        return;
    case KAFKA_VAR_TYPE:
        *text = e->type != NULL ? e->type : "";
        *len = e->type != NULL ? e->type_len : 0;
        return;
    case KAFKA_VAR_VERSION:
        *len = e->has_version ? relay_plugin_format_int64(digits, e->version) : 0;
        *text = digits;
        digits[*len] = '\0';
        return;
    case KAFKA_VAR_AGGREGATE_TYPE:
        *text = e->aggregate_type != NULL ? e->aggregate_type : "";
        *len = e->aggregate_type != NULL ? e->aggregate_type_len : 0;
        return;
    case KAFKA_VAR_EVENT_ID:
        /* NULL: the event's public id is its ordering id. */
        if (e->event_id != NULL) {
            *text = e->event_id;
            *len = e->event_id_len;
        } else {
            *len = relay_plugin_format_int64(digits, e->id);
            *text = digits;
            digits[*len] = '\0';
        }
        return;
    }
    *text = "";
    *len = 0;
}

int kafka_template_render(const kafka_template *t, const relay_sink_event *e,
                          relay_plugin_buffer *buf, const char **text, size_t *len)
{
    /* A lone literal or string variable is already NUL-terminated where it lies. */
    if (t->n_parts == 0) {
        *text = "";
        *len = 0;
        return 0;
    }
    if (t->n_parts == 1 && t->parts[0].var != KAFKA_VAR_ID &&
        t->parts[0].var != KAFKA_VAR_VERSION) {
        char unused[RELAY_PLUGIN_INT64_SIZE];
        kafka_template_part_text(t, &t->parts[0], e, unused, text, len);
        return 0;
    }

    buf->len = 0;
    for (size_t i = 0; i < t->n_parts; i++) {
        char digits[RELAY_PLUGIN_INT64_SIZE];
        const char *part;
        size_t part_len;
        kafka_template_part_text(t, &t->parts[i], e, digits, &part, &part_len);
        if (relay_plugin_buffer_reserve(buf, part_len + 1) != 0)
            return -1;
        memcpy(buf->data + buf->len, part, part_len);
        buf->len += part_len;
    }
    if (relay_plugin_buffer_reserve(buf, 1) != 0)
        return -1;
    buf->data[buf->len] = '\0';
    *text = buf->data;
    *len = buf->len;
    return 0;
}

void kafka_template_free(kafka_template *t)
{
    free(t->literals);
    free(t->parts);
    *t = (kafka_template){0};
}
