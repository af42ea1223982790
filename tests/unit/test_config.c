#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "conninfo.h"

/* Criterion 2.4.1 ignores LeakSanitizer's verdict at the end of a test's process, so tests ask
 * for a leak check themselves, at points where nothing the config code allocated may be alive. */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static void assert_no_leaks(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked, see the report above");
#endif
}

/* The smallest valid file; cases that add keys start on line 6. */
#define MINIMAL "name: orders\ndatabase:\n  conninfo: dbname=app\nsink:\n  plugin: stdout\n"

static int parse(const char *text, relay_config *config, char *err, size_t errlen)
{
    return relay_config_parse("t.yaml", text, strlen(text), config, err, errlen);
}

static bool is_zeroed(const relay_config *config)
{
    static const relay_config zero;
    return memcmp(config, &zero, sizeof zero) == 0;
}

static void assert_error(const char *text, const char *expected)
{
    relay_config config;
    char err[512] = "";
    memset(&config, 0xab, sizeof config); /* a failed parse must zero it, whatever it held */
    cr_assert_eq(parse(text, &config, err, sizeof err), -1, "parsed:\n%s", text);
    cr_assert_str_eq(err, expected);
    cr_assert(is_zeroed(&config), "config not zeroed after a failure");
    assert_no_leaks();
}

static void parse_ok(const char *text, relay_config *config)
{
    char err[512] = "";
    cr_assert_eq(parse(text, config, err, sizeof err), 0, "unexpected error: %s", err);
}

static void free_config(relay_config *config)
{
    relay_config_free(config);
    cr_assert(is_zeroed(config), "config not zeroed by relay_config_free");
    assert_no_leaks();
}

static const char *option(const relay_config *config, const char *key)
{
    for (size_t i = 0; i < config->n_sink_options; i++)
        if (strcmp(config->sink_options[i].key, key) == 0)
            return config->sink_options[i].value;
    return NULL;
}

Test(config, full_file_sets_every_field)
{
    const char *text = "name: orders-1.v2_x\n"
                       "database:\n"
                       "  conninfo: \"host=/run/postgresql dbname=app user=relay\"\n"
                       "  password_file: /run/secrets/pg\n"
                       "source:\n"
                       "  table: app.outbox\n"
                       "  columns:\n"
                       "    id: event_id\n"
                       "    created_at: ts\n"
                       "    key: agg\n"
                       "    type: event_type\n"
                       "    version: ver\n"
                       "    payload: data\n"
                       "    metadata: meta\n"
                       "  safety_margin: 250ms\n"
                       "  batch_size: 500\n"
                       "  poll_interval: 2s\n"
                       "sink:\n"
                       "  plugin: /opt/plugins/kafka.so\n"
                       "  flush_timeout: 1m\n"
                       "  options:\n"
                       "    topic: orders\n"
                       "plugin_dir: /opt/plugins\n"
                       "retry: {initial: 50ms, max: 1h}\n"
                       "log: {level: debug, format: json}\n"
                       "retention:\n"
                       "  delete_after: 1h\n"
                       "  batch_size: 200\n"
                       "  interval: 5s\n"
                       "  drop_partitions: true\n";
    relay_config c;
    parse_ok(text, &c);
    cr_assert_str_eq(c.path, "t.yaml");
    cr_assert_str_eq(c.name, "orders-1.v2_x");
    cr_assert_str_eq(c.conninfo, "host=/run/postgresql dbname=app user=relay");
    cr_assert_str_eq(c.password_file, "/run/secrets/pg");
    cr_assert_str_eq(c.table, "app.outbox");
    cr_assert_str_eq(c.columns.id, "event_id");
    cr_assert_str_eq(c.columns.created_at, "ts");
    cr_assert_str_eq(c.columns.key, "agg");
    cr_assert_str_eq(c.columns.type, "event_type");
    cr_assert_str_eq(c.columns.version, "ver");
    cr_assert_str_eq(c.columns.payload, "data");
    cr_assert_str_eq(c.columns.metadata, "meta");
    cr_assert_eq(c.safety_margin_ms, 250);
    cr_assert_eq(c.batch_size, 500);
    cr_assert_eq(c.poll_interval_ms, 2000);
    cr_assert_str_eq(c.sink_plugin, "/opt/plugins/kafka.so");
    cr_assert_eq(c.sink_flush_timeout_ms, 60000);
    cr_assert_eq(c.n_sink_options, 1);
    cr_assert_str_eq(c.sink_options[0].key, "topic");
    cr_assert_str_eq(c.sink_options[0].value, "orders");
    cr_assert_str_eq(c.plugin_dir, "/opt/plugins");
    cr_assert_eq(c.retry_initial_ms, 50);
    cr_assert_eq(c.retry_max_ms, 3600000);
    cr_assert_eq(c.log_level, RELAY_LOG_DEBUG);
    cr_assert_eq(c.log_format, RELAY_LOG_JSON);
    cr_assert(relay_retention_enabled(&c));
    cr_assert_eq(c.retention_delete_after_ms, 3600000);
    cr_assert_eq(c.retention_batch_size, 200);
    cr_assert_eq(c.retention_interval_ms, 5000);
    cr_assert(c.retention_drop_partitions);
    free_config(&c);
}

Test(config, minimal_file_gets_defaults)
{
    relay_config c;
    parse_ok(MINIMAL, &c);
    cr_assert_str_eq(c.name, "orders");
    cr_assert_str_eq(c.conninfo, "dbname=app");
    cr_assert_null(c.password_file);
    cr_assert_str_eq(c.table, "events");
    cr_assert_str_eq(c.columns.id, "id");
    cr_assert_str_eq(c.columns.created_at, "created_at");
    cr_assert_str_eq(c.columns.key, "aggregate_id");
    cr_assert_str_eq(c.columns.type, "kind");
    cr_assert_str_eq(c.columns.version, "aggregate_version");
    cr_assert_str_eq(c.columns.payload, "body");
    cr_assert_str_eq(c.columns.metadata, "metadata");
    cr_assert_str_eq(c.columns.aggregate_type, "aggregate_type");
    cr_assert_null(c.columns.event_id, "the id column is the event's id by default");
    cr_assert_null(c.columns.headers);
    cr_assert_eq(c.columns.n_headers, 0);
    cr_assert_eq(c.safety_margin_ms, 1000);
    cr_assert_eq(c.batch_size, 1000);
    cr_assert_eq(c.poll_interval_ms, 200);
    cr_assert_eq(c.max_wait_ms, 10);
    cr_assert_eq(c.gap_floor_ms, 0, "the proof of death needs no floor by default");
    cr_assert_not(c.ids_taken_ahead);
    cr_assert_str_eq(c.sink_plugin, "stdout");
    cr_assert_eq(c.n_sink_options, 0);
    cr_assert_null(c.sink_options);
    cr_assert_eq(c.sink_flush_timeout_ms, 30000);
    cr_assert_null(c.plugin_dir);
    cr_assert_eq(c.retry_initial_ms, 100);
    cr_assert_eq(c.retry_max_ms, 30000);
    cr_assert_eq(c.log_level, RELAY_LOG_INFO);
    cr_assert_eq(c.log_format, RELAY_LOG_TEXT);
    cr_assert_eq(c.mode, RELAY_MODE_MARGIN);
    cr_assert(c.gap_watch);
    cr_assert_eq(c.gap_max_age_ms, 600000);
    cr_assert_eq(c.max_gaps, 10000);
    cr_assert_null(c.notify_channel);
    cr_assert_eq(c.sink_on_reject, RELAY_ON_REJECT_STOP);
    cr_assert_not(relay_retention_enabled(&c), "retention is off by default");
    cr_assert_eq(c.retention_delete_after_ms, RELAY_RETENTION_OFF);
    cr_assert_eq(c.retention_batch_size, 5000);
    cr_assert_eq(c.retention_interval_ms, 30000);
    cr_assert_not(c.retention_drop_partitions);
    free_config(&c);
}

Test(config, retention_keys)
{
    relay_config c;
    /* ~ is off, as the default; 0s deletes as soon as every relay delivered */
    parse_ok(MINIMAL "retention:\n  delete_after: ~\n", &c);
    cr_assert_not(relay_retention_enabled(&c));
    free_config(&c);
    parse_ok(MINIMAL "retention:\n  delete_after:\n", &c);
    cr_assert_not(relay_retention_enabled(&c));
    free_config(&c);
    parse_ok(MINIMAL "retention: {delete_after: 0s}\n", &c);
    cr_assert(relay_retention_enabled(&c));
    cr_assert_eq(c.retention_delete_after_ms, 0);
    cr_assert_eq(c.retention_batch_size, 5000, "the other keys keep their defaults");
    cr_assert_eq(c.retention_interval_ms, 30000);
    free_config(&c);
    parse_ok(MINIMAL "retention: {delete_after: 87600h, batch_size: 100000, interval: 24h}\n", &c);
    cr_assert_eq(c.retention_delete_after_ms, INT64_C(87600) * 3600000);
    cr_assert_eq(c.retention_batch_size, 100000);
    cr_assert_eq(c.retention_interval_ms, 86400000);
    free_config(&c);
    parse_ok(MINIMAL "retention: {interval: 1ms, batch_size: 1}\n", &c);
    cr_assert_eq(c.retention_interval_ms, 1);
    cr_assert_eq(c.retention_batch_size, 1);
    free_config(&c);

    assert_error(MINIMAL "retention: {delete_after: 87601h}\n",
                 "t.yaml:6:27: retention.delete_after: must be at most 87600h");
    assert_error(MINIMAL "retention: {delete_after: 1d}\n",
                 "t.yaml:6:27: retention.delete_after: bad duration \"1d\": unit must be ms, s, m "
                 "or h");
    assert_error(MINIMAL "retention: {delete_after: '1h'}\n",
                 "t.yaml:6:27: retention.delete_after: expected a duration, e.g. 500ms or 2s");
    assert_error(MINIMAL "retention: {batch_size: 0}\n",
                 "t.yaml:6:25: retention.batch_size: expected an integer from 1 to 100000");
    assert_error(MINIMAL "retention: {batch_size: 100001}\n",
                 "t.yaml:6:25: retention.batch_size: expected an integer from 1 to 100000");
    assert_error(MINIMAL "retention: {interval: 0s}\n",
                 "t.yaml:6:23: retention.interval: must be more than 0");
    assert_error(MINIMAL "retention: {interval: ~}\n",
                 "t.yaml:6:23: retention.interval: expected a duration, e.g. 500ms or 2s");
    assert_error(MINIMAL "retention: {interval: 25h}\n",
                 "t.yaml:6:23: retention.interval: must be at most 24h");
    assert_error(MINIMAL "retention: {drop_partitions: yes}\n",
                 "t.yaml:6:30: retention.drop_partitions: expected true or false");
    assert_error(MINIMAL "retention:\n  delete_afer: 1h\n",
                 "t.yaml:7:3: retention.delete_afer: unknown key (did you mean 'delete_after'?)");
    assert_error(MINIMAL "retention: 1h\n", "t.yaml:6:12: retention: expected a mapping");
}

Test(config, debezium_columns)
{
    relay_config c;
    parse_ok(MINIMAL "source:\n"
                     "  columns:\n"
                     "    id: seq\n"
                     "    aggregate_type: aggregatetype\n"
                     "    event_id: id\n"
                     "    headers: [trace_id, \"tenant\", 'span id']\n",
             &c);
    cr_assert_str_eq(c.columns.id, "seq");
    cr_assert_str_eq(c.columns.aggregate_type, "aggregatetype");
    cr_assert_str_eq(c.columns.event_id, "id");
    cr_assert_eq(c.columns.n_headers, 3);
    cr_assert_str_eq(c.columns.headers[0], "trace_id");
    cr_assert_str_eq(c.columns.headers[1], "tenant");
    cr_assert_str_eq(c.columns.headers[2], "span id");
    free_config(&c);

    parse_ok(MINIMAL "source:\n  columns:\n    aggregate_type: ~\n    event_id: null\n"
                     "    headers: []\n",
             &c);
    cr_assert_null(c.columns.aggregate_type);
    cr_assert_null(c.columns.event_id);
    cr_assert_null(c.columns.headers);
    cr_assert_eq(c.columns.n_headers, 0);
    free_config(&c);

    parse_ok(MINIMAL "source:\n  columns:\n    headers: ~\n", &c);
    cr_assert_eq(c.columns.n_headers, 0);
    free_config(&c);

    parse_ok(MINIMAL "source:\n  columns:\n    headers:\n      - a\n      - b\n", &c);
    cr_assert_eq(c.columns.n_headers, 2);
    cr_assert_str_eq(c.columns.headers[1], "b");
    free_config(&c);
}

Test(config, headers_errors)
{
    assert_error(MINIMAL "source:\n  columns:\n    headers: trace_id\n",
                 "t.yaml:8:14: source.columns.headers: expected a list of strings");
    assert_error(MINIMAL "source:\n  columns:\n    headers: {a: b}\n",
                 "t.yaml:8:14: source.columns.headers: expected a list of strings");
    assert_error(MINIMAL "source:\n  columns:\n    headers: [a, \"\"]\n",
                 "t.yaml:8:18: source.columns.headers: must not be empty");
    assert_error(MINIMAL "source:\n  columns:\n    headers: [a, ~]\n",
                 "t.yaml:8:18: source.columns.headers: expected a string");
    assert_error(MINIMAL "source:\n  columns:\n    headers: [a, [b]]\n",
                 "t.yaml:8:18: source.columns.headers: expected a string");
    assert_error(MINIMAL "source:\n  columns:\n    headers: [\"a\\0b\"]\n",
                 "t.yaml:8:15: source.columns.headers: must not contain a NUL character");
    assert_error(MINIMAL "source:\n  columns:\n    headers: [a, b, a]\n",
                 "t.yaml:8:21: source.columns.headers: duplicate entry \"a\"");
    /* an alias is the very node it names, so the place is the anchor's */
    assert_error(MINIMAL "source:\n  columns:\n    headers: [&h a, *h]\n",
                 "t.yaml:8:15: source.columns.headers: duplicate entry \"a\"");
    assert_error(MINIMAL "source:\n  columns:\n    headers: [a]\n    headers: [b]\n",
                 "t.yaml:9:5: source.columns.headers: duplicate key");
    /* the list is stored when a later key fails: relay_config_free must release it */
    assert_error(MINIMAL "source:\n  columns:\n    headers: [a, b]\n    event_id: \"\"\n",
                 "t.yaml:9:15: source.columns.event_id: must not be empty");
    assert_error(MINIMAL "source:\n  columns:\n    headr: [a]\n",
                 "t.yaml:8:5: source.columns.headr: unknown key (did you mean 'headers'?)");

    /* 32 columns are taken, a 33rd is refused where it is written */
    char text[1024];
    int len = snprintf(text, sizeof text, "%s", MINIMAL "source:\n  columns:\n    headers: [");
    for (int i = 0; i < 32; i++)
        len += snprintf(text + len, sizeof text - (size_t)len, "%sh%02d", i ? ", " : "", i);
    snprintf(text + len, sizeof text - (size_t)len, "]\n");
    relay_config c;
    parse_ok(text, &c);
    cr_assert_eq(c.columns.n_headers, 32);
    cr_assert_str_eq(c.columns.headers[31], "h31");
    free_config(&c);
    snprintf(text + len, sizeof text - (size_t)len, ", h32]\n");
    assert_error(text, "t.yaml:8:175: source.columns.headers: more than 32 entries");
}

Test(config, reloadable_keys)
{
    static const char *const reloadable[] = {
        "source.batch_size",
        "source.poll_interval",
        "source.max_wait",
        "source.max_gaps",
        "sink.flush_timeout",
        "retry.initial",
        "retry.max",
        "retry",
        "log.level",
        "retention.batch_size",
        "retention.interval",
        "source.safety_margin",
        "sink.options",
        "sink.options.topic",
        "sink.options.properties.bootstrap.servers",
    };
    static const char *const restart[] = {
        "name",
        "database",
        "database.conninfo",
        "database.password_file",
        "source",
        "source.table",
        "source.columns",
        "source.columns.id",
        "source.columns.created_at",
        "source.columns.key",
        "source.columns.type",
        "source.columns.version",
        "source.columns.payload",
        "source.columns.metadata",
        "source.columns.aggregate_type",
        "source.columns.event_id",
        "source.columns.headers",
        "source.mode",
        "source.gap_watch",
        "source.gap_floor",
        "source.ids_taken_ahead",
        "source.gap_max_age",
        "source.notify_channel",
        "source.durable_on",
        "sink",
        "sink.plugin",
        "sink.on_reject",
        "plugin_dir",
        "log",
        "log.format",
        "retention",
        "retention.delete_after",
        "retention.drop_partitions",
        "http",
        "http.listen",
    };
    for (size_t i = 0; i < sizeof reloadable / sizeof reloadable[0]; i++)
        cr_assert(relay_config_key_reloadable(reloadable[i]), "%s", reloadable[i]);
    for (size_t i = 0; i < sizeof restart / sizeof restart[0]; i++)
        cr_assert_not(relay_config_key_reloadable(restart[i]), "%s", restart[i]);

    /* unknown or malformed keys are never reloadable */
    static const char *const unknown[] = {
        "",
        ".",
        "colour",
        "batch_size",
        "source.",
        "source.batch_sizes",
        "source.batch",
        "source..batch_size",
        "source.batch_size.x",
        "retry.",
        "retry.initial.",
        "sink.options.",
        "log.level.debug",
        "retention.delete",
        "retention.interval.x",
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        cr_assert_not(relay_config_key_reloadable(unknown[i]), "\"%s\"", unknown[i]);
    cr_assert_not(relay_config_key_reloadable(NULL));
}

Test(config, example_file_shows_the_defaults)
{
    const char *dir = getenv("RELAY_SOURCE_DIR");
    if (!dir)
        cr_skip_test("RELAY_SOURCE_DIR is not set");
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/relay.yaml.example", dir);
    relay_config example, minimal;
    cr_assert_eq(relay_config_load(path, &example, err, sizeof err), 0, "%s", err);
    parse_ok(MINIMAL, &minimal);
    const char *const columns[][2] = {
        {example.columns.id, minimal.columns.id},
        {example.columns.created_at, minimal.columns.created_at},
        {example.columns.key, minimal.columns.key},
        {example.columns.type, minimal.columns.type},
        {example.columns.version, minimal.columns.version},
        {example.columns.payload, minimal.columns.payload},
        {example.columns.metadata, minimal.columns.metadata},
        {example.columns.aggregate_type, minimal.columns.aggregate_type},
    };
    for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
        cr_assert_str_eq(columns[i][0], columns[i][1]);
    cr_assert_null(example.columns.event_id);
    cr_assert_eq(example.columns.n_headers, 0);
    cr_assert_str_eq(example.table, minimal.table);
    cr_assert_eq(example.safety_margin_ms, minimal.safety_margin_ms);
    cr_assert_eq(example.batch_size, minimal.batch_size);
    cr_assert_eq(example.poll_interval_ms, minimal.poll_interval_ms);
    cr_assert_eq(example.max_gaps, minimal.max_gaps);
    cr_assert_eq(example.gap_max_age_ms, minimal.gap_max_age_ms);
    cr_assert_eq(example.sink_flush_timeout_ms, minimal.sink_flush_timeout_ms);
    cr_assert_eq(example.retry_initial_ms, minimal.retry_initial_ms);
    cr_assert_eq(example.retry_max_ms, minimal.retry_max_ms);
    cr_assert_eq(example.retention_delete_after_ms, minimal.retention_delete_after_ms);
    cr_assert_eq(example.retention_batch_size, minimal.retention_batch_size);
    cr_assert_eq(example.retention_interval_ms, minimal.retention_interval_ms);
    cr_assert_eq(example.retention_drop_partitions, minimal.retention_drop_partitions);
    free_config(&example);
    free_config(&minimal);
}

Test(config, durable_on_names_standbys)
{
    relay_config c;
    parse_ok(MINIMAL "source:\n  durable_on: [stby1, stby2]\n", &c);
    cr_assert_str_eq(c.durable_on, "stby1,stby2");
    free_config(&c);
    parse_ok(MINIMAL "source:\n  durable_on: stby1\n", &c);
    cr_assert_str_eq(c.durable_on, "stby1");
    free_config(&c);
    parse_ok(MINIMAL "source:\n  durable_on: []\n", &c);
    cr_assert_null(c.durable_on);
    free_config(&c);
    parse_ok(MINIMAL, &c);
    cr_assert_null(c.durable_on, "the primary's flush is the default");
    free_config(&c);
    assert_error(MINIMAL "source:\n  durable_on: [\"a,b\"]\n",
                 "t.yaml:7:16: source.durable_on: a standby's name (its application_name) cannot "
                 "hold a ','");
}

Test(config, null_unmaps_optional_columns_and_keys)
{
    relay_config c;
    parse_ok(MINIMAL "source:\n  columns:\n    version: ~\n    metadata:\n"
                     "plugin_dir: null\n",
             &c);
    cr_assert_null(c.columns.version);
    cr_assert_null(c.columns.metadata);
    cr_assert_null(c.plugin_dir);
    free_config(&c);
}

Test(config, quoted_scalar_is_a_string)
{
    relay_config c;
    parse_ok(MINIMAL "source:\n  columns:\n    version: \"~\"\n", &c);
    cr_assert_str_eq(c.columns.version, "~");
    free_config(&c);
    assert_error(MINIMAL "source:\n  batch_size: \"5\"\n",
                 "t.yaml:7:15: source.batch_size: expected an integer from 1 to 100000");
    assert_error(MINIMAL "source:\n  safety_margin: '1s'\n",
                 "t.yaml:7:18: source.safety_margin: expected a duration, e.g. 500ms or 2s");
}

Test(config, unknown_keys)
{
    assert_error(MINIMAL "colour: red\n", "t.yaml:6:1: colour: unknown key");
    assert_error(MINIMAL "sourc:\n  table: x\n",
                 "t.yaml:6:1: sourc: unknown key (did you mean 'source'?)");
    assert_error(MINIMAL "source:\n  table: x\n  colums:\n    id: i\n",
                 "t.yaml:8:3: source.colums: unknown key (did you mean 'columns'?)");
    assert_error(MINIMAL "source:\n  columns:\n    payloda: p\n",
                 "t.yaml:8:5: source.columns.payloda: unknown key (did you mean 'payload'?)");
    assert_error(MINIMAL "log: {level: info, colour: red}\n",
                 "t.yaml:6:20: log.colour: unknown key");
}

Test(config, wrong_types)
{
    assert_error("name: a\ndatabase:\n  conninfo: dbname=x\nsink: stdout\n",
                 "t.yaml:4:7: sink: expected a mapping");
    assert_error(MINIMAL "source:\n  table: [a, b]\n",
                 "t.yaml:7:10: source.table: expected a string");
    assert_error(MINIMAL "source:\n  table:\n", "t.yaml:7:9: source.table: expected a string");
    assert_error(MINIMAL "source:\n  table: \"\"\n",
                 "t.yaml:7:10: source.table: must not be empty");
    assert_error(MINIMAL "source:\n  columns: id\n",
                 "t.yaml:7:12: source.columns: expected a mapping");
    assert_error(MINIMAL "source:\n  poll_interval: {a: 1}\n",
                 "t.yaml:7:18: source.poll_interval: expected a duration, e.g. 500ms or 2s");
    assert_error(MINIMAL "sink_options:\n  - a\n", "t.yaml:6:1: sink_options: unknown key");
    assert_error(MINIMAL "[a]: 1\n", "t.yaml:6:1: expected a scalar key");
}

Test(config, bad_durations)
{
    assert_error(
        MINIMAL "source:\n  safety_margin: 1x\n",
        "t.yaml:7:18: source.safety_margin: bad duration \"1x\": unit must be ms, s, m or h");
    assert_error(MINIMAL "source:\n  poll_interval: 200\n",
                 "t.yaml:7:18: source.poll_interval: bad duration \"200\": needs a unit, e.g. "
                 "500ms or 2s");
    assert_error(MINIMAL "retry:\n  initial: -1s\n",
                 "t.yaml:7:12: retry.initial: bad duration \"-1s\": must be a whole number and a "
                 "unit, e.g. 500ms or 2s");
}

Test(config, durations_out_of_range)
{
    assert_error(MINIMAL "source:\n  poll_interval: 0ms\n",
                 "t.yaml:7:18: source.poll_interval: must be more than 0");
    assert_error(MINIMAL "  flush_timeout: 0s\n",
                 "t.yaml:6:18: sink.flush_timeout: must be more than 0");
    assert_error(MINIMAL "  flush_timeout: 61m\n",
                 "t.yaml:6:18: sink.flush_timeout: must be at most 1h");
    /* A margin of 3,000,000,000 h once overflowed the cut's microseconds into "no margin". */
    assert_error(MINIMAL "source:\n  safety_margin: 3000000000h\n",
                 "t.yaml:7:18: source.safety_margin: must be at most 168h");
    assert_error(MINIMAL "source:\n  poll_interval: 2h\n",
                 "t.yaml:7:18: source.poll_interval: must be at most 1h");
    assert_error(MINIMAL "retry: {initial: 0s}\n",
                 "t.yaml:6:18: retry.initial: must be more than 0");
    assert_error(MINIMAL "retry: {initial: 2s, max: 1s}\n",
                 "t.yaml:6:27: retry.max: must be at least retry.initial (2s)");
    assert_error(MINIMAL "source:\n  ids_taken_ahead: true\n",
                 "t.yaml:7:20: source.ids_taken_ahead: needs source.gap_floor: how long the "
                 "application may hold an id before the transaction that inserts it ends");
    /* max left at its default 30s, below the initial written here */
    assert_error(MINIMAL "retry:\n  initial: 1m\n",
                 "t.yaml:7:3: retry.max: must be at least retry.initial (1m)");

    relay_config c;
    parse_ok(MINIMAL
             "  flush_timeout: 1h\nsource: {safety_margin: 0s}\nretry: {initial: 1s, max: 1s}\n",
             &c);
    cr_assert_eq(c.sink_flush_timeout_ms, 3600000);
    cr_assert_eq(c.safety_margin_ms, 0);
    cr_assert_eq(c.retry_max_ms, 1000);
    free_config(&c);
}

Test(config, integers_out_of_range)
{
    assert_error(MINIMAL "source:\n  batch_size: 100001\n",
                 "t.yaml:7:15: source.batch_size: expected an integer from 1 to 100000");
    assert_error(MINIMAL "source:\n  batch_size: 0\n",
                 "t.yaml:7:15: source.batch_size: expected an integer from 1 to 100000");
    assert_error(MINIMAL "source:\n  batch_size: -5\n",
                 "t.yaml:7:15: source.batch_size: expected an integer from 1 to 100000");
    assert_error(MINIMAL "source:\n  batch_size: 99999999999999999999999\n",
                 "t.yaml:7:15: source.batch_size: expected an integer from 1 to 100000");
    assert_error(MINIMAL "source:\n  batch_size: 10k\n",
                 "t.yaml:7:15: source.batch_size: expected an integer from 1 to 100000");

    relay_config c;
    parse_ok(MINIMAL "source:\n  batch_size: 100000\n", &c);
    cr_assert_eq(c.batch_size, 100000);
    free_config(&c);
}

Test(config, missing_required_keys)
{
    assert_error("name: a\nsink:\n  plugin: x\n", "t.yaml:1:1: database: required key is missing");
    assert_error("database: {conninfo: dbname=x}\nsink: {plugin: x}\n",
                 "t.yaml:1:1: name: required key is missing");
    assert_error("name: a\ndatabase: {conninfo: dbname=x}\n",
                 "t.yaml:1:1: sink: required key is missing");
    assert_error("name: a\ndatabase:\n  password_file: /x\nsink: {plugin: x}\n",
                 "t.yaml:3:3: database.conninfo: required key is missing");
    assert_error("name: a\ndatabase: {conninfo: dbname=x}\nsink: {}\n",
                 "t.yaml:3:7: sink.plugin: required key is missing");
}

Test(config, duplicate_keys)
{
    assert_error(MINIMAL "name: other\n", "t.yaml:6:1: name: duplicate key");
    assert_error(MINIMAL "source:\n  batch_size: 1\n  batch_size: 2\n",
                 "t.yaml:8:3: source.batch_size: duplicate key");
    assert_error(MINIMAL "  options:\n    a: 1\n    a: 2\n",
                 "t.yaml:8:5: sink.options.a: duplicate key");
    /* the same option written flat and nested */
    assert_error(MINIMAL "  options:\n    a.b: 1\n    a:\n      b: 2\n",
                 "t.yaml:9:7: sink.options.a.b: duplicate key");
}

Test(config, yaml_syntax_errors)
{
    assert_error("name: a\n  b: c\n",
                 "t.yaml:2:4: syntax error: mapping values are not allowed in this context");
    assert_error("name: [a, b\n", "t.yaml:2:1: syntax error: did not find expected ',' or ']' "
                                  "(while parsing a flow sequence at 1:7)");
    assert_error("name: *missing\n", "t.yaml:1:7: syntax error: found undefined alias");
    assert_error("name: \"a\xff\"\n", "t.yaml:1:9: syntax error: invalid leading UTF-8 octet");
}

Test(config, documents_that_are_not_a_mapping)
{
    assert_error("", "t.yaml:1:1: the file is empty, expected a mapping");
    assert_error("# only a comment\n", "t.yaml:1:1: the file is empty, expected a mapping");
    assert_error("\n\nhello\n", "t.yaml:3:1: expected a mapping at the top level");
    assert_error("- name: a\n", "t.yaml:1:1: expected a mapping at the top level");
    assert_error(MINIMAL "---\nname: b\n", "t.yaml:7:1: expected a single YAML document");
}

Test(config, names)
{
    assert_error("name: \"my orders\"\ndatabase: {conninfo: dbname=x}\nsink: {plugin: x}\n",
                 "t.yaml:1:7: name: bad name \"my orders\": use 1 to 63 letters, digits, '_', '.' "
                 "or '-'");
    assert_error(
        "name: a/b\ndatabase: {conninfo: dbname=x}\nsink: {plugin: x}\n",
        "t.yaml:1:7: name: bad name \"a/b\": use 1 to 63 letters, digits, '_', '.' or '-'");
    assert_error("name: ''\ndatabase: {conninfo: dbname=x}\nsink: {plugin: x}\n",
                 "t.yaml:1:7: name: must not be empty");

    char text[256], name[65];
    memset(name, 'n', 63);
    name[63] = '\0';
    snprintf(text, sizeof text, "name: %s\ndatabase: {conninfo: dbname=x}\nsink: {plugin: x}\n",
             name);
    relay_config c;
    parse_ok(text, &c);
    cr_assert_str_eq(c.name, name);
    free_config(&c);

    strcat(name, "n");
    snprintf(text, sizeof text, "name: %s\ndatabase: {conninfo: dbname=x}\nsink: {plugin: x}\n",
             name);
    char expected[256];
    snprintf(expected, sizeof expected,
             "t.yaml:1:7: name: bad name \"%s\": use 1 to 63 letters, digits, '_', '.' or '-'",
             name);
    assert_error(text, expected);
}

Test(config, conninfo_expands_environment)
{
    cr_assert_eq(setenv("RELAY_TEST_USER", "alice", 1), 0);
    cr_assert_eq(setenv("RELAY_TEST_EMPTY", "", 1), 0);
    relay_config c;
    parse_ok(
        "name: a\n"
        "database:\n"
        "  conninfo: \"user=${RELAY_TEST_USER} password=pa$$word$x port=${RELAY_TEST_EMPTY}$5\"\n"
        "sink: {plugin: x}\n",
        &c);
    cr_assert_str_eq(c.conninfo, "user=alice password=pa$word$x port=$5");
    free_config(&c);
}

/* Found by tests/fuzz/fuzz_conninfo.c (corpus/conninfo/empty-value.bin). libpq skips the blanks
 * after a keyword's '=', so an empty variable there took the next keyword for its value:
 * "password= dbname=app" is the password "dbname=app", and no dbname. */
Test(config, an_empty_variable_is_an_empty_value)
{
    cr_assert_eq(setenv("RELAY_TEST_EMPTY", "", 1), 0);
    static const char *const cases[][2] = {
        {"host=h password=${RELAY_TEST_EMPTY} dbname=app", "host=h password='' dbname=app"},
        {"password= ${RELAY_TEST_EMPTY}${RELAY_TEST_EMPTY}\\tdbname=app",
         "password= ''\tdbname=app"},
        /* Anywhere else nothing is the empty value already. */
        {"password=${RELAY_TEST_EMPTY}", "password="},
        {"password='${RELAY_TEST_EMPTY}' dbname=app", "password='' dbname=app"},
        {"password=a${RELAY_TEST_EMPTY} dbname=app", "password=a dbname=app"},
        {"password=${RELAY_TEST_EMPTY}b dbname=app", "password=b dbname=app"},
        {"postgresql://u:${RELAY_TEST_EMPTY}@h/app", "postgresql://u:@h/app"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "name: a\ndatabase:\n  conninfo: \"%s\"\nsink: {plugin: x}\n",
                 cases[i][0]);
        relay_config c;
        parse_ok(text, &c);
        cr_assert_str_eq(c.conninfo, cases[i][1], "%s", cases[i][0]);
        free_config(&c);
    }
}

Test(config, conninfo_errors_name_the_variable_only)
{
    unsetenv("RELAY_TEST_UNSET");
    assert_error(
        "name: a\n"
        "database:\n"
        "  conninfo: \"password=hunter2 user=${RELAY_TEST_UNSET}\"\n"
        "sink: {plugin: x}\n",
        "t.yaml:3:13: database.conninfo: environment variable RELAY_TEST_UNSET is not set");
    assert_error("name: a\ndatabase:\n  conninfo: password=hunter2${X\nsink: {plugin: x}\n",
                 "t.yaml:3:13: database.conninfo: unterminated ${ (write $$ for a literal $)");
    assert_error("name: a\ndatabase:\n  conninfo: password=${hunter 2}\nsink: {plugin: x}\n",
                 "t.yaml:3:13: database.conninfo: bad variable name in ${...}");
}

Test(config, options_are_flattened_in_document_order)
{
    relay_config c;
    parse_ok(MINIMAL "  options:\n"
                     "    topic: orders\n"
                     "    properties:\n"
                     "      bootstrap.servers: a:9092\n"
                     "      acks:\n"
                     "        mode: all\n"
                     "    brokers: [a, b, 3]\n"
                     "    none: []\n"
                     "    empty:\n"
                     "    quoted: \"~\"\n"
                     "    number: 010\n",
             &c);
    const char *expected[][2] = {
        {"topic", "orders"},
        {"properties.bootstrap.servers", "a:9092"},
        {"properties.acks.mode", "all"},
        {"brokers", "a,b,3"},
        {"none", ""},
        {"empty", ""},
        {"quoted", "~"},
        {"number", "010"},
    };
    size_t n = sizeof expected / sizeof expected[0];
    cr_assert_eq(c.n_sink_options, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(c.sink_options[i].key, expected[i][0]);
        cr_assert_str_eq(c.sink_options[i].value, expected[i][1]);
    }
    cr_assert_str_eq(option(&c, "brokers"), "a,b,3");
    free_config(&c);
}

Test(config, options_errors)
{
    assert_error(MINIMAL "  options: [a]\n", "t.yaml:6:12: sink.options: expected a mapping");
    assert_error(MINIMAL "  options:\n    hosts:\n      - {a: 1}\n",
                 "t.yaml:8:9: sink.options.hosts: expected a scalar or a list of scalars");
    /* an anchor referring to itself must not recurse forever */
    assert_error(MINIMAL "  options: &o {x: *o}\n",
                 "t.yaml:6:12: sink.options.x.x.x.x.x.x.x.x: nested too deeply");
}

Test(config, log_settings)
{
    assert_error(MINIMAL "log: {level: verbose}\n",
                 "t.yaml:6:14: log.level: unknown level \"verbose\": expected debug, info, warn or "
                 "error");
    assert_error(MINIMAL "log: {format: xml}\n",
                 "t.yaml:6:15: log.format: unknown format \"xml\": expected text or json");
    relay_config c;
    parse_ok(MINIMAL "log: {level: warn}\n", &c);
    cr_assert_eq(c.log_level, RELAY_LOG_WARN);
    cr_assert_eq(c.log_format, RELAY_LOG_TEXT);
    free_config(&c);
}

Test(config, duration_table)
{
    static const struct {
        const char *text;
        int64_t ms;
    } good[] = {{"250ms", 250}, {"1s", 1000}, {"2m", 120000}, {"1h", 3600000}, {"0s", 0}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = -1;
        char err[128] = "";
        cr_assert_eq(relay_duration_parse(good[i].text, &ms, err, sizeof err), 0, "%s: %s",
                     good[i].text, err);
        cr_assert_eq(ms, good[i].ms, "%s", good[i].text);
    }

    static const struct {
        const char *text;
        const char *why;
    } bad[] = {
        {"1", "needs a unit, e.g. 500ms or 2s"},
        {"1.5s", "must be a whole number, e.g. 1500ms rather than 1.5s"},
        {"-1s", "must be a whole number and a unit, e.g. 500ms or 2s"},
        {"1x", "unit must be ms, s, m or h"},
        {"", "must be a whole number and a unit, e.g. 500ms or 2s"},
        {"1 s", "unit must be ms, s, m or h"},
        {"s", "must be a whole number and a unit, e.g. 500ms or 2s"},
        {"9223372036854775807ms", NULL},
        {"9223372036854775808ms", "too large"},
        {"9223372036854776s", "too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = -1;
        char err[128] = "";
        int rc = relay_duration_parse(bad[i].text, &ms, err, sizeof err);
        if (!bad[i].why) {
            cr_assert_eq(rc, 0, "%s: %s", bad[i].text, err);
            cr_assert_eq(ms, INT64_MAX);
            continue;
        }
        cr_assert_eq(rc, -1, "\"%s\" was accepted", bad[i].text);
        cr_assert_str_eq(err, bad[i].why, "for \"%s\"", bad[i].text);
    }
}

Test(config, free_is_safe_on_a_zeroed_struct)
{
    relay_config c;
    memset(&c, 0, sizeof c);
    free_config(&c);
    free_config(&c);
}

Test(config, load_reads_a_file)
{
    char path[] = "/tmp/relay-test-config-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_not_null(f);
    fputs(MINIMAL "source:\n  batch_size: 7\n", f);
    cr_assert_eq(fclose(f), 0);

    relay_config c;
    char err[512] = "";
    int rc = relay_config_load(path, &c, err, sizeof err);
    unlink(path);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(c.path, path);
    cr_assert_eq(c.batch_size, 7);
    free_config(&c);
}

Test(config, load_reports_unreadable_files)
{
    relay_config c;
    char err[512] = "";
    cr_assert_eq(relay_config_load("/nonexistent/relay.yaml", &c, err, sizeof err), -1);
    cr_assert_str_eq(err, "/nonexistent/relay.yaml: cannot read: No such file or directory");
    cr_assert(is_zeroed(&c));
    cr_assert_eq(relay_config_load("/tmp", &c, err, sizeof err), -1);
    cr_assert_str_eq(err, "/tmp: cannot read: Is a directory");
}

Test(config, variable_values_are_quoted_for_their_form)
{
    cr_assert_eq(setenv("RELAY_TEST_PW", "x dbname=postgres 'a\\b'", 1), 0);
    cr_assert_eq(setenv("RELAY_TEST_URL", "host=/tmp dbname=app", 1), 0);
    relay_config c;
    parse_ok("name: a\ndatabase:\n  conninfo: \"host=h password=${RELAY_TEST_PW}\"\n"
             "sink: {plugin: x}\n",
             &c);
    cr_assert_str_eq(c.conninfo, "host=h password=x\\ dbname=postgres\\ \\'a\\\\b\\'");
    free_config(&c);
    parse_ok("name: a\ndatabase:\n  conninfo: \"postgresql://u:${RELAY_TEST_PW}@h/db\"\n"
             "sink: {plugin: x}\n",
             &c);
    cr_assert_str_eq(c.conninfo, "postgresql://u:x%20dbname%3Dpostgres%20%27a%5Cb%27@h/db");
    free_config(&c);
    /* A conninfo that is one variable is that variable's conninfo. */
    parse_ok("name: a\ndatabase:\n  conninfo: \"${RELAY_TEST_URL}\"\nsink: {plugin: x}\n", &c);
    cr_assert_str_eq(c.conninfo, "host=/tmp dbname=app");
    free_config(&c);
}

Test(config, malformed_conninfo_is_refused_without_its_text)
{
    assert_error("name: a\ndatabase:\n  conninfo: \"postgresql://u:s3cret@[::1/db\"\n"
                 "sink: {plugin: x}\n",
                 "t.yaml:3:13: database.conninfo: malformed: end of string reached when looking "
                 "for matching \"[redacted]\" in IPv6 host address in URI: \"[redacted]\"");
}

Test(config, redaction_removes_passwords_and_quoted_fragments)
{
    char msg[256];
    snprintf(msg, sizeof msg, "failed for s3cret and s3cret, user \"u\"");
    relay_conninfo_redact("host=h password=s3cret", "filepw", msg, sizeof msg);
    cr_assert_str_eq(msg, "failed for [redacted] and [redacted], user \"u\"");
    snprintf(msg, sizeof msg, "bad: filepw");
    relay_conninfo_redact("host=h", "filepw", msg, sizeof msg);
    cr_assert_str_eq(msg, "bad: [redacted]");
    /* Unparseable: whatever libpq quoted may be a piece of it. */
    snprintf(msg, sizeof msg, "missing \"=\" after \"pw\" in connection info string");
    relay_conninfo_redact("host=h password=s3 pw", NULL, msg, sizeof msg);
    cr_assert_str_eq(msg, "missing \"[redacted]\" after \"[redacted]\" in connection info string");
}

Test(config, nul_is_refused_in_option_values_and_keys)
{
    /* The plugin would see "visible", and "out\0evil" would be a second "out". */
    assert_error("name: a\ndatabase: {conninfo: dbname=x}\n"
                 "sink: {plugin: x, options: {a: \"visible\\0hidden\"}}\n",
                 "t.yaml:3:32: sink.options.a: must not contain a NUL character");
    assert_error("name: a\ndatabase: {conninfo: dbname=x}\n"
                 "sink: {plugin: x, options: {out: 1, \"out\\0evil\": 2}}\n",
                 "t.yaml:3:37: sink.options: a key must not contain a NUL character");
}

Test(config, relative_paths_are_beside_the_config)
{
    relay_config c;
    char err[512] = "";
    const char *text = "name: a\ndatabase:\n  conninfo: dbname=x\n  password_file: secrets/pw\n"
                       "plugin_dir: lib\nsink:\n  plugin: ../plugins/mysink.so\n";
    cr_assert_eq(
        relay_config_parse("/nonexistent/etc/relay.yaml", text, strlen(text), &c, err, sizeof err),
        0, "%s", err);
    cr_assert_str_eq(c.sink_plugin, "/nonexistent/etc/../plugins/mysink.so");
    cr_assert_str_eq(c.password_file, "/nonexistent/etc/secrets/pw");
    cr_assert_str_eq(c.plugin_dir, "/nonexistent/etc/lib");
    free_config(&c);
    /* A name is looked up in plugin_dir, and an absolute path stays. */
    text = "name: a\ndatabase:\n  conninfo: dbname=x\n  password_file: /run/pw\n"
           "sink:\n  plugin: stdout\n";
    cr_assert_eq(relay_config_parse("etc/relay.yaml", text, strlen(text), &c, err, sizeof err), 0);
    cr_assert_str_eq(c.sink_plugin, "stdout");
    cr_assert_str_eq(c.password_file, "/run/pw");
    free_config(&c);
}

Test(config, yaml_tags_are_refused)
{
    assert_error("name: a\ndatabase: {conninfo: dbname=x}\nsink: {plugin: !!binary c3Rkb3V0}\n",
                 "t.yaml:3:16: sink.plugin: YAML tag !!binary is not supported: write the value "
                 "plainly");
    assert_error("name: a\ndatabase: {conninfo: dbname=x}\n"
                 "sink: {plugin: x, options: {a: !custom b}}\n",
                 "t.yaml:3:32: sink.options.a: YAML tag !custom is not supported: write the value "
                 "plainly");
    relay_config c;
    parse_ok("name: !!str a\ndatabase: {conninfo: dbname=x}\nsink: {plugin: x}\n", &c);
    cr_assert_str_eq(c.name, "a");
    free_config(&c);
}

Test(config, size_and_nesting_are_bounded)
{
    /* 200,000 levels took libyaml's loader 107 s. */
    enum { LEVELS = 200000 };
    char *deep = malloc(2 * LEVELS + 64);
    cr_assert_not_null(deep);
    size_t n = (size_t)sprintf(deep, "name: a\nx: ");
    memset(deep + n, '[', LEVELS);
    memset(deep + n + LEVELS, ']', LEVELS);
    deep[n + 2 * LEVELS] = '\0';
    assert_error(deep, "t.yaml:2:67: nested deeper than 64 levels");
    free(deep);

    size_t big = 1024 * 1024 + 1;
    char *large = malloc(big + 1);
    cr_assert_not_null(large);
    memset(large, '#', big);
    large[big] = '\0';
    assert_error(large, "t.yaml:1:1: the file is larger than 1048576 bytes");
    free(large);

    assert_error("name: a\ndatabase: {conninfo: dbname=x}\nsink: {plugin: x}\n"
                 "retry: {initial: 100000000000h}\n",
                 "t.yaml:4:18: retry.initial: must be at most 24h");
}

Test(config, an_error_through_an_alias_is_reported_where_the_alias_is)
{
    /* The anchor is where it is not read as a source: a sink option, aliased into source. The
     * error was reported at 3:48, a line that says nothing of source. */
    assert_error("name: a\ndatabase: {conninfo: dbname=x}\n"
                 "sink: {plugin: x, options: {o: &d {batch_size: 0}}}\nsource: *d\n",
                 "t.yaml:4:7: source.batch_size: expected an integer from 1 to 100000 (in the "
                 "anchored value at 3:48)");
}

Test(config, password_file_may_name_a_systemd_credential)
{
    cr_assert_eq(setenv("CREDENTIALS_DIRECTORY", "/run/credentials/outbox-relay@a.service", 1), 0);
    relay_config c;
    parse_ok("name: a\n"
             "database:\n"
             "  conninfo: dbname=app\n"
             "  password_file: ${CREDENTIALS_DIRECTORY}/password\n"
             "sink: {plugin: x}\n",
             &c);
    cr_assert_str_eq(c.password_file, "/run/credentials/outbox-relay@a.service/password");
    free_config(&c);
    /* Only that form: any other '$' is part of the file's name, as it always was. */
    parse_ok("name: a\ndatabase:\n  conninfo: dbname=x\n  password_file: /s/${HOME}/pw\n"
             "sink: {plugin: x}\n",
             &c);
    cr_assert_str_eq(c.password_file, "/s/${HOME}/pw");
    free_config(&c);
}

Test(config, a_credential_without_its_directory_is_a_config_error)
{
    static const char text[] = "name: a\n"
                               "database:\n"
                               "  conninfo: dbname=x\n"
                               "  password_file: ${CREDENTIALS_DIRECTORY}/password\n"
                               "sink: {plugin: x}\n";
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_error(text, "t.yaml:4:18: database.password_file: environment variable "
                       "CREDENTIALS_DIRECTORY is not set: systemd sets it for a unit with "
                       "LoadCredential=");
    cr_assert_eq(setenv("CREDENTIALS_DIRECTORY", "relative", 1), 0);
    assert_error(text, "t.yaml:4:18: database.password_file: environment variable "
                       "CREDENTIALS_DIRECTORY is not an absolute path: systemd sets it for a unit "
                       "with LoadCredential=");
}

/* ---- reloads: what changed, and what a running configuration takes of a new one ---- */

typedef struct seen_changes {
    char lines[16][512];
    size_t n;
} seen_changes;

static void record_change(const relay_config_change *c, void *arg)
{
    seen_changes *seen = arg;
    cr_assert_lt(seen->n, 16, "too many changes");
    snprintf(seen->lines[seen->n++], sizeof seen->lines[0], "%s %s %s %s", c->key,
             c->reloadable ? "live" : "restart", c->old_value ? c->old_value : "(secret)",
             c->new_value ? c->new_value : "(secret)");
}

#define RELOAD_OLD                                                                                 \
    "name: orders\ndatabase:\n  conninfo: \"dbname=app password=old-secret\"\n"                    \
    "source:\n  table: events\n  batch_size: 10\n  safety_margin: 1s\n  mode: margin\n"            \
    "  columns:\n    headers: [a]\n"                                                               \
    "sink:\n  plugin: stdout\n  options:\n    sasl.password: old-pw\n"                             \
    "log:\n  level: info\n"
#define RELOAD_NEW                                                                                 \
    "name: invoices\ndatabase:\n  conninfo: \"dbname=app password=new-secret\"\n"                  \
    "source:\n  table: other\n  batch_size: 20\n  safety_margin: 250ms\n  mode: settled\n"         \
    "  columns:\n    headers: [a, b]\n"                                                            \
    "sink:\n  plugin: stdout\n  options:\n    sasl.password: new-pw\n"                             \
    "log:\n  level: debug\n"

Test(config, diff_names_each_changed_key_and_hides_secrets)
{
    relay_config a, b;
    parse_ok(RELOAD_OLD, &a);
    parse_ok(RELOAD_NEW, &b);
    seen_changes seen = {0};
    relay_config_diff(&a, &b, record_change, &seen);
    const char *expected[] = {
        "name restart orders invoices",       "database.conninfo restart (secret) (secret)",
        "source.table restart events other",  "source.columns.headers restart [a] [a, b]",
        "source.safety_margin live 1s 250ms", "source.batch_size live 10 20",
        "source.mode restart margin settled", "sink.options.sasl.password live (secret) (secret)",
        "log.level live info debug",
    };
    cr_assert_eq(seen.n, sizeof expected / sizeof expected[0], "%zu changes", seen.n);
    for (size_t i = 0; i < seen.n; i++)
        cr_assert_str_eq(seen.lines[i], expected[i]);

    seen.n = 0;
    relay_config_diff(&a, &a, record_change, &seen);
    cr_assert_eq(seen.n, 0, "a configuration differs from itself: %s", seen.lines[0]);
    free_config(&a);
    free_config(&b);
}

Test(config, adopt_takes_live_keys_and_keeps_the_rest)
{
    relay_config running, fresh;
    parse_ok(RELOAD_OLD, &running);
    parse_ok(RELOAD_NEW, &fresh);
    char **headers = running.columns.headers; /* batches point at them: they must not move */
    relay_config_adopt(&running, &fresh);

    cr_assert_eq(running.batch_size, 20);
    cr_assert_eq(running.safety_margin_ms, 250);
    cr_assert_eq(running.log_level, RELAY_LOG_DEBUG);
    cr_assert_str_eq(option(&running, "sasl.password"), "new-pw");
    cr_assert_str_eq(running.name, "orders");
    cr_assert_str_eq(running.table, "events");
    cr_assert_eq(running.mode, RELAY_MODE_MARGIN);
    cr_assert_eq(running.columns.headers, headers);
    cr_assert_eq(running.columns.n_headers, 1);
    cr_assert(strstr(running.conninfo, "old-secret"));
    /* fresh holds what running gave up, and frees it */
    cr_assert_eq(fresh.batch_size, 10);
    cr_assert_str_eq(option(&fresh, "sasl.password"), "old-pw");

    relay_config_swap_sink_options(&running, &fresh);
    cr_assert_str_eq(option(&running, "sasl.password"), "old-pw");
    free_config(&fresh);
    free_config(&running);
}

Test(config, copy_is_deep_and_equal)
{
    relay_config a, b;
    parse_ok(RELOAD_NEW, &a);
    char err[256] = "";
    cr_assert_eq(relay_config_copy(&b, &a, err, sizeof err), 0, "%s", err);
    seen_changes seen = {0};
    relay_config_diff(&a, &b, record_change, &seen);
    cr_assert_eq(seen.n, 0, "the copy differs: %s", seen.lines[0]);
    cr_assert(relay_config_same_sink_options(&a, &b));
    cr_assert_neq(a.name, b.name);
    cr_assert_neq(a.columns.headers, b.columns.headers);
    cr_assert_neq(a.sink_options, b.sink_options);
    cr_assert_str_eq(b.path, "t.yaml");
    free_config(&a);
    free_config(&b);
}

/* Each key of relay.yaml.example (its first part, above the Kafka examples) says whether a reload
 * applies it, "# live" or "# restart": what it says must be what the code does, and every key
 * that takes a value must say it. */
Test(config, example_file_marks_each_key_live_or_restart)
{
    const char *dir = getenv("RELAY_SOURCE_DIR");
    if (!dir)
        cr_skip_test("RELAY_SOURCE_DIR is not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/relay.yaml.example", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    char line[512], stack[4][64] = {{0}};
    size_t marked = 0, n = 0;
    while (fgets(line, sizeof line, f) && !strstr(line, "--- Kafka")) {
        n++;
        /* "  key: value  # live", or a key shown commented out: "  # key: value  # restart" */
        const char *at = line;
        while (*at == ' ')
            at++;
        size_t depth = (size_t)(at - line) / 2;
        bool commented = strncmp(at, "# ", 2) == 0;
        if (commented)
            at += 2;
        size_t len = strspn(at, "abcdefghijklmnopqrstuvwxyz_");
        if (len == 0 || at[len] != ':' || depth >= 4)
            continue;
        const char *value = at + len + 1;
        bool mapping = strspn(value, " \n") == strlen(value);
        /* A commented line is a key only with its mark; without one it is prose. */
        if (commented && !strstr(value, "  # live") && !strstr(value, "  # restart"))
            continue;
        snprintf(stack[depth], sizeof stack[depth], "%.*s", (int)len, at);
        if (mapping)
            continue;
        char key[256] = "";
        for (size_t i = 0; i <= depth; i++)
            snprintf(key + strlen(key), sizeof key - strlen(key), "%s%s", i ? "." : "", stack[i]);
        bool live = strstr(value, "live") && strrchr(value, '#');
        bool restart = strstr(value, "restart") && strrchr(value, '#');
        cr_assert(live != restart, "line %zu: %s is marked neither live nor restart", n, key);
        cr_assert_eq(live, relay_config_key_reloadable(key), "line %zu: %s is marked %s", n, key,
                     live ? "live" : "restart");
        marked++;
    }
    fclose(f);
    cr_assert_geq(marked, 40, "only %zu keys marked", marked);
}

Test(config, diff_names_each_sink_option_added_removed_or_changed)
{
    relay_config a, b, c;
    parse_ok(MINIMAL "  options:\n    k1: x\n    k2: y\n", &a);
    parse_ok(MINIMAL "  options:\n    k2: y\n    k3: z\n", &b);
    parse_ok(MINIMAL "  options:\n    k2: y\n    k1: x\n", &c);
    seen_changes seen = {0};
    relay_config_diff(&a, &b, record_change, &seen);
    cr_assert_eq(seen.n, 2, "%zu changes", seen.n);
    cr_assert_str_eq(seen.lines[0], "sink.options.k1 live (secret) (secret)");
    cr_assert_str_eq(seen.lines[1], "sink.options.k3 live (secret) (secret)");
    cr_assert_not(relay_config_same_sink_options(&a, &b));

    /* The same options in another order: said once, for the sink sees them in order. */
    seen.n = 0;
    relay_config_diff(&a, &c, record_change, &seen);
    cr_assert_eq(seen.n, 1, "%zu changes", seen.n);
    cr_assert_str_eq(seen.lines[0], "sink.options live (secret) (secret)");
    free_config(&a);
    free_config(&b);
    free_config(&c);
}
