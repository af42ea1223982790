/*
 * The stdout sink's JSON lines, driven through its public entry as the relay drives it: init,
 * one batch, flush, destroy. Descriptor 1 is a memfd that every run reads back, to check that
 * each event gave exactly one line, that no raw control character got out but those of the
 * payload and metadata (passed as they come, CR and LF made spaces), and, with json-c, that a
 * line whose JSON members are valid parses back to the event's strings.
 *
 * Input: up to FUZZ_MAX_EVENTS events, each the NUL-separated fields
 *     control, key, type, payload, metadata, created_at, aggregate_type, event_id,
 *     then a name and a value per header,
 * where control is "FLAGS HEADERS ID VERSION" in integers: FLAGS' low 5 bits are the event's
 * RELAY_SINK_EVENT_* flags, 0x20 gives it a version, 0x40, 0x80 and 0x100 make metadata,
 * aggregate_type and event_id NULL, 0x200 sets RELAY_SINK_EVENT_REDELIVERED; HEADERS & 3 headers, 4
 * << i making header i's value NULL. The strings of flagged NULL columns are "", and event_id is
 * the id with ID_IS_ID, as the relay hands them over.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <outbox_relay/sink.h>

#include "fuzz.h"
#include "relay_plugin_int64.h"

#ifdef FUZZ_HAVE_JSONC
#include <json-c/json.h>
#endif

#define FUZZ_MAX_EVENTS 8
#define FUZZ_MAX_HEADERS 3

#define FLAG_HAS_VERSION 0x20
#define FLAG_NO_METADATA 0x40
#define FLAG_NO_AGGREGATE_TYPE 0x80
#define FLAG_NO_EVENT_ID 0x100
/* RELAY_SINK_EVENT_REDELIVERED, 0x20 among the event's flags, came after FLAG_HAS_VERSION took
 * that bit of the control: it has a bit of its own, so that the corpus keeps its meaning. */
#define FLAG_REDELIVERED 0x200

typedef struct fuzz_event {
    relay_sink_event e;
    relay_sink_header headers[FUZZ_MAX_HEADERS];
    char id_text[RELAY_PLUGIN_INT64_SIZE];
} fuzz_event;

static int output = -1; /* the memfd behind descriptor 1 */

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    output = memfd_create("fuzz-stdout-sink", 0);
    if (output < 0 || dup2(output, STDOUT_FILENO) < 0) {
        perror("fuzz: memfd as descriptor 1");
        exit(1);
    }
    return 0;
}

static void quiet_log(void *ctx, relay_sink_log_level level, const char *fmt, ...)
{
    (void)ctx;
    (void)level;
    (void)fmt;
}

static void ignore_reject(void *ctx, int64_t event_id, const char *reason)
{
    (void)ctx;
    (void)event_id;
    (void)reason;
}

/* The column's text, or "" when the flag says SQL NULL (what the relay hands over then). */
static const char *text_unless(fuzz_field f, uint32_t flags, uint32_t null_flag, size_t *len)
{
    *len = flags & null_flag ? 0 : f.len;
    return flags & null_flag ? "" : f.text;
}

static void read_event(fuzz_input *in, fuzz_event *fe)
{
    fuzz_field control = fuzz_input_next(in);
    uint32_t bits = (uint32_t)fuzz_field_int(control, 0);
    uint32_t header_bits = (uint32_t)fuzz_field_int(control, 1);
    relay_sink_event *e = &fe->e;
    *e = (relay_sink_event){.id = fuzz_field_int(control, 2),
                            .version = fuzz_field_int(control, 3),
                            .has_version = (bits & FLAG_HAS_VERSION) != 0,
                            .flags = (bits & 0x1f) |
                                     (bits & FLAG_REDELIVERED ? RELAY_SINK_EVENT_REDELIVERED : 0)};
    fuzz_field key = fuzz_input_next(in), type = fuzz_input_next(in);
    fuzz_field payload = fuzz_input_next(in), metadata = fuzz_input_next(in);
    fuzz_field created_at = fuzz_input_next(in), aggregate_type = fuzz_input_next(in);
    fuzz_field event_id = fuzz_input_next(in);
    e->key = text_unless(key, e->flags, RELAY_SINK_EVENT_KEY_NULL, &e->key_len);
    e->type = text_unless(type, e->flags, RELAY_SINK_EVENT_TYPE_NULL, &e->type_len);
    e->payload = payload.text;
    e->payload_len = payload.len;
    e->metadata = bits & FLAG_NO_METADATA ? NULL : metadata.text;
    e->metadata_len = bits & FLAG_NO_METADATA ? 0 : metadata.len;
    size_t created_at_len;
    e->created_at =
        text_unless(created_at, e->flags, RELAY_SINK_EVENT_CREATED_AT_NULL, &created_at_len);
    e->aggregate_type = bits & FLAG_NO_AGGREGATE_TYPE ? NULL : aggregate_type.text;
    e->aggregate_type_len = bits & FLAG_NO_AGGREGATE_TYPE ? 0 : aggregate_type.len;
    if (bits & FLAG_NO_EVENT_ID) {
        e->event_id = NULL;
    } else if (e->flags & RELAY_SINK_EVENT_ID_IS_ID) {
        e->event_id_len = relay_plugin_format_int64(fe->id_text, e->id);
        e->event_id = fe->id_text;
    } else {
        e->event_id = event_id.text;
        e->event_id_len = event_id.len;
    }
    e->n_headers = header_bits & 3;
    for (size_t i = 0; i < e->n_headers; i++) {
        fuzz_field name = fuzz_input_next(in), value = fuzz_input_next(in);
        bool null = header_bits & (4u << i);
        fe->headers[i] = (relay_sink_header){.name = name.text,
                                             .name_len = name.len,
                                             .value = null ? NULL : value.text,
                                             .value_len = null ? 0 : value.len};
    }
    e->headers = e->n_headers > 0 ? fe->headers : NULL;
}

/* The raw control characters JSON text brings into a line: all but CR and LF, which the sink
 * makes spaces; none when the sink writes null instead. */
static size_t raw_controls(const char *json, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; json != NULL && i < len; i++)
        n += (unsigned char)json[i] < 0x20 && json[i] != '\n' && json[i] != '\r';
    return n;
}

static void check_line(const relay_sink_event *e, const char *line, size_t len);

/* Reads back what the sink wrote and checks it line by line. */
static void check_output(const fuzz_event *events, size_t n)
{
    off_t size = lseek(output, 0, SEEK_END);
    FUZZ_CHECK(size >= 0, "lseek failed");
    char *text = malloc((size_t)size + 1);
    FUZZ_CHECK(text != NULL, "out of memory");
    FUZZ_CHECK(pread(output, text, (size_t)size, 0) == size, "short read of the output");
    text[size] = '\0';
    const char *p = text, *end = text + size;
    for (size_t i = 0; i < n; i++) {
        const relay_sink_event *e = &events[i].e;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        FUZZ_CHECK(nl != NULL, "event %zu of %zu gave no line", i + 1, n);
        size_t len = (size_t)(nl - p), controls = 0;
        for (size_t j = 0; j < len; j++)
            controls += (unsigned char)p[j] < 0x20;
        size_t expected = (e->payload_len > 0 ? raw_controls(e->payload, e->payload_len) : 0) +
                          (e->metadata_len > 0 ? raw_controls(e->metadata, e->metadata_len) : 0);
        FUZZ_CHECK(controls == expected,
                   "event %zu: %zu raw control characters, expected %zu: %.*s", i + 1, controls,
                   expected, (int)len, p);
        check_line(e, p, len);
        p = nl + 1;
    }
    FUZZ_CHECK(p == end, "%zu events gave more than %zu lines: %s", n, n, p);
    free(text);
    FUZZ_CHECK(ftruncate(output, 0) == 0 && lseek(output, 0, SEEK_SET) == 0,
               "cannot empty the output");
}

#ifdef FUZZ_HAVE_JSONC
/* Whether json is what the relay hands over (json or jsonb text): absent, or one whole value. */
static bool is_json(const char *json, size_t len)
{
    if (json == NULL || len == 0)
        return true;
    json_tokener *tok = json_tokener_new();
    FUZZ_CHECK(tok != NULL, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *value = json_tokener_parse_ex(tok, json, (int)len);
    bool whole = value != NULL && json_tokener_get_parse_end(tok) == len;
    json_object_put(value);
    json_tokener_free(tok);
    return whole;
}

/* The member name of the line holds s (len bytes), or JSON null when s is NULL. */
static void check_string(json_object *line, const char *name, const char *s, size_t len)
{
    json_object *value = NULL;
    FUZZ_CHECK(json_object_object_get_ex(line, name, &value), "no %s", name);
    if (s == NULL) {
        FUZZ_CHECK(value == NULL, "%s is not null", name);
        return;
    }
    FUZZ_CHECK(json_object_is_type(value, json_type_string), "%s is not a string", name);
    FUZZ_CHECK((size_t)json_object_get_string_len(value) == len &&
                   memcmp(json_object_get_string(value), s, len) == 0,
               "%s reads back \"%s\", not \"%.*s\"", name, json_object_get_string(value), (int)len,
               s);
}

static bool distinct_names(const relay_sink_event *e)
{
    for (size_t i = 0; i < e->n_headers; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(e->headers[i].name, e->headers[j].name) == 0)
                return false;
    return true;
}

static void check_members(const relay_sink_event *e, json_object *line)
{
    json_object *value = NULL;
    FUZZ_CHECK(json_object_object_get_ex(line, "id", &value) &&
                   json_object_get_int64(value) == e->id,
               "id does not read back");
    check_string(line, "key", e->flags & RELAY_SINK_EVENT_KEY_NULL ? NULL : e->key, e->key_len);
    check_string(line, "type", e->flags & RELAY_SINK_EVENT_TYPE_NULL ? NULL : e->type, e->type_len);
    check_string(line, "created_at",
                 e->flags & RELAY_SINK_EVENT_CREATED_AT_NULL ? NULL : e->created_at,
                 strlen(e->created_at));
    FUZZ_CHECK(json_object_object_get_ex(line, "version", &value), "no version");
    FUZZ_CHECK(e->has_version ? json_object_get_int64(value) == e->version : value == NULL,
               "version does not read back");
    if (e->aggregate_type != NULL)
        check_string(line, "aggregate_type", e->aggregate_type, e->aggregate_type_len);
    else
        FUZZ_CHECK(!json_object_object_get_ex(line, "aggregate_type", NULL), "aggregate_type");
    if (e->event_id != NULL && !(e->flags & RELAY_SINK_EVENT_ID_IS_ID))
        check_string(line, "event_id", e->event_id, e->event_id_len);
    else
        FUZZ_CHECK(!json_object_object_get_ex(line, "event_id", NULL), "event_id");
    FUZZ_CHECK(json_object_object_get_ex(line, "late", NULL) ==
                   !!(e->flags & RELAY_SINK_EVENT_LATE),
               "late");
    FUZZ_CHECK(json_object_object_get_ex(line, "redelivered", NULL) ==
                   !!(e->flags & RELAY_SINK_EVENT_REDELIVERED),
               "redelivered");
    json_object *headers = NULL;
    FUZZ_CHECK(json_object_object_get_ex(line, "headers", &headers) == (e->n_headers > 0),
               "headers");
    for (size_t i = 0; i < e->n_headers && distinct_names(e); i++)
        check_string(headers, e->headers[i].name, e->headers[i].value, e->headers[i].value_len);
}

/* A line whose payload and metadata are JSON is one JSON object holding the event. */
static void check_line(const relay_sink_event *e, const char *line, size_t len)
{
    if (!is_json(e->payload, e->payload_len) || !is_json(e->metadata, e->metadata_len))
        return;
    /* Deeper than the members' own limit, which the line adds a level to. */
    json_tokener *tok = json_tokener_new_ex(2 * JSON_TOKENER_DEFAULT_DEPTH);
    FUZZ_CHECK(tok != NULL, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *object = json_tokener_parse_ex(tok, line, (int)len);
    FUZZ_CHECK(object != NULL && json_tokener_get_parse_end(tok) == len &&
                   json_object_is_type(object, json_type_object),
               "not one JSON object (%s): %.*s",
               json_tokener_error_desc(json_tokener_get_error(tok)), (int)len, line);
    check_members(e, object);
    json_object_put(object);
    json_tokener_free(tok);
}
#else
/* Without json-c: the line starts as every line does. */
static void check_line(const relay_sink_event *e, const char *line, size_t len)
{
    char start[32 + RELAY_PLUGIN_INT64_SIZE];
    int n = snprintf(start, sizeof start, "{\"id\":%lld,", (long long)e->id);
    FUZZ_CHECK(len > (size_t)n && memcmp(line, start, (size_t)n) == 0, "line starts %.*s", n, line);
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fuzz_event events[FUZZ_MAX_EVENTS];
    fuzz_input in;
    fuzz_input_init(&in, data, size);
    size_t n = 0;
    while (n < FUZZ_MAX_EVENTS && (n == 0 || fuzz_input_more(&in)))
        read_event(&in, &events[n++]);

    const relay_sink_api *api = relay_sink_entry();
    relay_sink_host host = {.abi_version = RELAY_SINK_ABI_VERSION,
                            .struct_size = sizeof host,
                            .log = quiet_log,
                            .reject = ignore_reject};
    void *state = NULL;
    char err[256];
    FUZZ_CHECK(api->init(&host, NULL, 0, &state, err, sizeof err) == RELAY_SINK_OK, "init: %s",
               err);
    /* Events farther apart than sizeof(relay_sink_event), as from a newer relay: the sink must
     * walk by event_size. */
    relay_sink_batch batch = {.events = events, .count = n, .event_size = sizeof events[0]};
    FUZZ_CHECK(api->deliver(state, &batch, err, sizeof err) == RELAY_SINK_OK, "deliver: %s", err);
    FUZZ_CHECK(api->flush(state, 1000, err, sizeof err) == RELAY_SINK_OK, "flush: %s", err);
    api->destroy(state);
    check_output(events, n);
    fuzz_input_free(&in);
    return 0;
}
