/*
 * Kafka topic and key templates: kafka_template_compile must refuse exactly what the syntax
 * refuses, and kafka_template_render give what a plain reading of the template gives,
 * NUL-terminated, into a fresh buffer and into a warm one alike.
 *
 * Input: the NUL-separated fields control, template, key, type, aggregate_type, event_id, where
 * control is "FLAGS ID VERSION" in integers: FLAGS 0x1 gives the event a version, 0x2 and 0x4
 * make aggregate_type and event_id NULL (an older host's event_id).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kafka_template.h"
#include "relay_plugin_int64.h"

/* A growable string for the reference rendering. */
typedef struct text {
    char *data;
    size_t len;
} text;

static void append(text *t, const char *s, size_t len)
{
    char *grown = realloc(t->data, t->len + len + 1);
    FUZZ_CHECK(grown != NULL, "out of memory");
    t->data = grown;
    memcpy(t->data + t->len, s, len);
    t->len += len;
    t->data[t->len] = '\0';
}

/* The value of ${name} (len bytes) for e; -1 for an unknown name. */
static int variable(const relay_sink_event *e, const char *name, size_t len, text *out)
{
    char digits[RELAY_PLUGIN_INT64_SIZE];
#define IS(literal) (len == sizeof(literal) - 1 && memcmp(name, literal, len) == 0)
    if (IS("id") || (IS("event_id") && e->event_id == NULL))
        append(out, digits, relay_plugin_format_int64(digits, e->id));
    else if (IS("event_id"))
        append(out, e->event_id, e->event_id_len);
    else if (IS("key"))
        append(out, e->key, e->key_len);
    else if (IS("type"))
        append(out, e->type, e->type_len);
    else if (IS("version"))
        append(out, digits, e->has_version ? relay_plugin_format_int64(digits, e->version) : 0);
    else if (IS("aggregate_type"))
        append(out, e->aggregate_type ? e->aggregate_type : "", e->aggregate_type_len);
    else
        return -1;
#undef IS
    return 0;
}

/* The template read the plain way, straight from its text: -1 where it is malformed. *constant
 * says whether it names no variable. */
static int reference(const char *tmpl, const relay_sink_event *e, text *out, bool *constant)
{
    *constant = true;
    append(out, "", 0);
    for (const char *p = tmpl; *p;) {
        if (p[0] != '$') {
            append(out, p++, 1);
        } else if (p[1] == '$') {
            append(out, "$", 1);
            p += 2;
        } else {
            const char *close = p[1] == '{' ? strchr(p + 2, '}') : NULL;
            if (close == NULL || variable(e, p + 2, (size_t)(close - p - 2), out) != 0)
                return -1;
            *constant = false;
            p = close + 1;
        }
    }
    return 0;
}

static void check_render(const kafka_template *t, const relay_sink_event *e,
                         relay_plugin_buffer *buf, const text *expected)
{
    const char *rendered = NULL;
    size_t len = 0;
    FUZZ_CHECK(kafka_template_render(t, e, buf, &rendered, &len) == 0, "render failed");
    FUZZ_CHECK(rendered[len] == '\0', "the rendering is not NUL-terminated");
    FUZZ_CHECK(len == expected->len && memcmp(rendered, expected->data, len) == 0,
               "rendered \"%.*s\", expected \"%s\"", (int)len, rendered, expected->data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in;
    fuzz_input_init(&in, data, size);
    fuzz_field control = fuzz_input_next(&in), tmpl = fuzz_input_next(&in);
    fuzz_field key = fuzz_input_next(&in), type = fuzz_input_next(&in);
    fuzz_field aggregate_type = fuzz_input_next(&in), event_id = fuzz_input_next(&in);
    int64_t flags = fuzz_field_int(control, 0);
    relay_sink_event e = {
        .id = fuzz_field_int(control, 1),
        .key = key.text,
        .key_len = key.len,
        .type = type.text,
        .type_len = type.len,
        .payload = "{}",
        .payload_len = 2,
        .created_at = "2026-11-26T04:12:53.123456Z",
        .version = fuzz_field_int(control, 2),
        .has_version = (flags & 0x1) != 0,
        .aggregate_type = flags & 0x2 ? NULL : aggregate_type.text,
        .aggregate_type_len = flags & 0x2 ? 0 : aggregate_type.len,
        .event_id = flags & 0x4 ? NULL : event_id.text,
        .event_id_len = flags & 0x4 ? 0 : event_id.len,
    };
    /* A second event, all its values others, for the warm buffer. */
    relay_sink_event other = {.id = e.id ^ 1,
                              .key = "k",
                              .key_len = 1,
                              .type = "t",
                              .type_len = 1,
                              .version = ~e.version,
                              .has_version = !e.has_version};

    text expected = {0}, expected_other = {0};
    bool constant;
    int ok = reference(tmpl.text, &e, &expected, &constant);
    reference(tmpl.text, &other, &expected_other, &constant);

    kafka_template t;
    char err[512];
    int rc = kafka_template_compile(tmpl.text, &t, err, sizeof err);
    FUZZ_CHECK(rc == ok, "compile returned %d, the syntax says %d (%s)", rc, ok,
               rc != 0 ? err : "no error");
    if (rc == 0) {
        FUZZ_CHECK(kafka_template_is_constant(&t) == constant, "is_constant says %d",
                   kafka_template_is_constant(&t));
        relay_plugin_buffer buf = {0};
        check_render(&t, &e, &buf, &expected);
        check_render(&t, &other, &buf, &expected_other);
        check_render(&t, &e, &buf, &expected);
        relay_plugin_buffer_free(&buf);
        kafka_template_free(&t);
    }
    free(expected.data);
    free(expected_other.data);
    fuzz_input_free(&in);
    return 0;
}
