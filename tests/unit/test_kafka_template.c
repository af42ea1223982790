/*
 * Topic and key templates: every variable, $$, what compiling refuses, and rendering that neither
 * copies a lone variable nor reallocates a warm buffer.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kafka_template.h"

static relay_sink_event event(int64_t id, const char *key, const char *type)
{
    return (relay_sink_event){
        .id = id,
        .key = key,
        .key_len = strlen(key),
        .type = type,
        .type_len = strlen(type),
        .payload = "{}",
        .payload_len = 2,
        .created_at = "2026-11-26T04:12:53.123456Z",
        .version = 7,
        .has_version = 1,
    };
}

/* Compiles text and renders it for e; the rendering is copied out, NUL-checked. */
static void render(const char *text, const relay_sink_event *e, char *out, size_t outlen)
{
    kafka_template t;
    char err[256];
    cr_assert_eq(kafka_template_compile(text, &t, err, sizeof err), 0, "%s: %s", text, err);
    relay_plugin_buffer buf = {0};
    const char *rendered;
    size_t len;
    cr_assert_eq(kafka_template_render(&t, e, &buf, &rendered, &len), 0);
    cr_assert_eq(rendered[len], '\0', "%s: rendering not NUL-terminated", text);
    cr_assert_eq(strlen(rendered), len, "%s: length %zu, text '%s'", text, len, rendered);
    snprintf(out, outlen, "%s", rendered);
    relay_plugin_buffer_free(&buf);
    kafka_template_free(&t);
}

static void compile_fails(const char *text, const char *expected)
{
    kafka_template t;
    char err[256] = "";
    cr_assert_eq(kafka_template_compile(text, &t, err, sizeof err), -1, "%s compiled", text);
    cr_assert(strstr(err, expected) != NULL, "%s: '%s' does not say '%s'", text, err, expected);
}

Test(kafka_template, renders_every_variable)
{
    relay_sink_event e = event(42, "order-1", "created");
    char out[256];
    render("events.${type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "events.created");
    render("${key}/${id}/v${version}", &e, out, sizeof out);
    cr_assert_str_eq(out, "order-1/42/v7");
    render("${type}${type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "createdcreated");
}

Test(kafka_template, single_variables_and_constants)
{
    relay_sink_event e = event(-9223372036854775807LL - 1, "k", "t");
    char out[256];
    render("${key}", &e, out, sizeof out);
    cr_assert_str_eq(out, "k");
    render("${id}", &e, out, sizeof out);
    cr_assert_str_eq(out, "-9223372036854775808");
    render("${version}", &e, out, sizeof out);
    cr_assert_str_eq(out, "7");
    render("fixed", &e, out, sizeof out);
    cr_assert_str_eq(out, "fixed");
    render("", &e, out, sizeof out);
    cr_assert_str_eq(out, "");
}

Test(kafka_template, version_is_empty_without_one)
{
    relay_sink_event e = event(1, "k", "t");
    e.has_version = 0;
    char out[256];
    render("v${version}.x", &e, out, sizeof out);
    cr_assert_str_eq(out, "v.x");
    render("${version}", &e, out, sizeof out);
    cr_assert_str_eq(out, "");
}

Test(kafka_template, aggregate_type_and_event_id)
{
    relay_sink_event e = event(42, "order-1", "created");
    e.aggregate_type = "Order";
    e.aggregate_type_len = strlen("Order");
    e.event_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    e.event_id_len = strlen(e.event_id);
    char out[256];
    render("outbox.event.${aggregate_type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "outbox.event.Order");
    render("${aggregate_type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "Order");
    render("${event_id}", &e, out, sizeof out);
    cr_assert_str_eq(out, "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
    render("${aggregate_type}/${key}/${event_id}#${id}", &e, out, sizeof out);
    cr_assert_str_eq(out, "Order/order-1/1b4e28ba-2fa1-11d2-883f-0016d3cca427#42");
}

Test(kafka_template, aggregate_type_empty_and_event_id_the_id_when_null)
{
    /* event() leaves both NULL: an unmapped aggregate_type is empty; an unmapped event_id means
     * the event's id is its ordering id. */
    relay_sink_event e = event(42, "order-1", "created");
    char out[256];
    render("outbox.event.${aggregate_type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "outbox.event.");
    render("${aggregate_type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "");
    render("${event_id}", &e, out, sizeof out);
    cr_assert_str_eq(out, "42");
    render("a${event_id}.${aggregate_type}b", &e, out, sizeof out);
    cr_assert_str_eq(out, "a42.b");
}

Test(kafka_template, double_dollar_is_a_dollar)
{
    relay_sink_event e = event(1, "k", "t");
    char out[256];
    render("$$", &e, out, sizeof out);
    cr_assert_str_eq(out, "$");
    render("a$${type}$$$${key}b", &e, out, sizeof out);
    cr_assert_str_eq(out, "a${type}$${key}b");
    render("$$${type}", &e, out, sizeof out);
    cr_assert_str_eq(out, "$t");
}

Test(kafka_template, refuses_what_it_cannot_render)
{
    compile_fails("events.${typo}", "${typo}");
    /* The message lists every variable there is, the newest included. */
    compile_fails("events.${typo}", "${aggregate_type}");
    compile_fails("events.${typo}", "${event_id}");
    compile_fails("events.${aggregatetype}", "known: ${id}, ${key}, ${type}, ${version}, "
                                             "${aggregate_type}, ${event_id})");
    compile_fails("events.${}", "unknown variable");
    compile_fails("events.${type", "unterminated");
    compile_fails("x${", "unterminated");
    compile_fails("cost$5", "'$' at offset 4");
    compile_fails("trailing$", "'$' at offset 8");
}

Test(kafka_template, constant_only_without_variables)
{
    kafka_template t;
    char err[256];
    cr_assert_eq(kafka_template_compile("a$$b", &t, err, sizeof err), 0);
    cr_assert(kafka_template_is_constant(&t));
    cr_assert_str_eq(t.literals, "a$b");
    kafka_template_free(&t);
    cr_assert_eq(kafka_template_compile("a.${id}", &t, err, sizeof err), 0);
    cr_assert_not(kafka_template_is_constant(&t));
    kafka_template_free(&t);
}

Test(kafka_template, the_buffer_is_reused_across_events)
{
    kafka_template t;
    char err[256];
    cr_assert_eq(kafka_template_compile("events.${type}.${id}", &t, err, sizeof err), 0);
    relay_plugin_buffer buf = {0};
    const char *text;
    size_t len;
    relay_sink_event long_one = event(1, "k", "a-rather-long-type-name-that-grows-the-buffer");
    cr_assert_eq(kafka_template_render(&t, &long_one, &buf, &text, &len), 0);
    char *data = buf.data;
    relay_sink_event short_one = event(2, "k", "x");
    cr_assert_eq(kafka_template_render(&t, &short_one, &buf, &text, &len), 0);
    cr_assert_str_eq(text, "events.x.2");
    cr_assert_eq(buf.data, data, "a shorter rendering reallocated the buffer");
    relay_plugin_buffer_free(&buf);
    kafka_template_free(&t);
}
