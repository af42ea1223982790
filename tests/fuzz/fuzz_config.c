/*
 * The config parser on any bytes: relay_config_parse must either fill the config or leave it
 * zeroed with a message, and never leak, crash or read past the buffer (which is not
 * NUL-terminated here, as a file read with fread is not). Durations come through
 * relay_duration_parse; those of a parsed config must survive a format and a parse again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conninfo.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* ${VAR} in conninfo expands from the environment: give the seeds values worth quoting. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("FUZZ_PASSWORD", "s3cret 'quoted' \\ back", 1);
    setenv("FUZZ_EMPTY", "", 1);
    setenv("FUZZ_URL", "postgresql://u:p%40ss@h/db", 1);
    return 0;
}

static void check_duration(int64_t ms)
{
    char text[32], err[128];
    int64_t again = -1;
    relay_duration_format(ms, text, sizeof text);
    FUZZ_CHECK(relay_duration_parse(text, &again, err, sizeof err) == 0, "\"%s\": %s", text, err);
    FUZZ_CHECK(again == ms, "%lld ms written \"%s\" reads back %lld ms", (long long)ms, text,
               (long long)again);
}

static bool is_zeroed(const relay_config *config)
{
    static const relay_config zero;
    return memcmp(config, &zero, sizeof zero) == 0;
}

/* A reload's report of what changed: it names secrets but never says their values. */
static void check_change(const relay_config_change *c, void *arg)
{
    int *changes = arg;
    (*changes)++;
    bool secret = strcmp(c->key, "database.conninfo") == 0 ||
                  strncmp(c->key, "sink.options", strlen("sink.options")) == 0;
    FUZZ_CHECK(c->secret == secret, "%s is %s secret", c->key, c->secret ? "" : "not");
    FUZZ_CHECK(c->secret ? !c->old_value && !c->new_value : c->old_value && c->new_value,
               "%s: values %s", c->key, c->secret ? "shown" : "missing");
    FUZZ_CHECK(c->reloadable == relay_config_key_reloadable(c->key), "%s: reloadable differs",
               c->key);
}

/* What a reload does with the parsed config: a copy equals it, a diff against another hides
 * secrets, and adopting swaps values without a leak or a double free. */
static void check_reload(const relay_config *config)
{
    static const char other_text[] = "name: other\ndatabase:\n  conninfo: \"dbname=x "
                                     "password=p\"\nsink:\n  plugin: stdout\n  options:\n"
                                     "    k: v\n";
    relay_config copy, other;
    char err[512];
    if (relay_config_copy(&copy, config, err, sizeof err) != 0)
        return;
    int changes = 0;
    relay_config_diff(config, &copy, check_change, &changes);
    FUZZ_CHECK(changes == 0, "a copy differs from its original in %d keys", changes);
    FUZZ_CHECK(relay_config_same_sink_options(config, &copy), "a copy has other sink options");
    if (relay_config_parse("other.yaml", other_text, sizeof other_text - 1, &other, err,
                           sizeof err) == 0) {
        relay_config_diff(&copy, &other, check_change, &changes);
        relay_config_adopt(&copy, &other);
        relay_config_free(&other);
    }
    relay_config_free(&copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes: a read past the end is AddressSanitizer's to see. */
    char *text = malloc(size > 0 ? size : 1);
    if (text == NULL)
        return 0;
    if (size > 0)
        memcpy(text, data, size);

    relay_config config;
    char err[512];
    err[0] = '\0';
    memset(&config, 0xab, sizeof config);
    if (relay_config_parse("/nonexistent/fuzz/relay.yaml", text, size, &config, err, sizeof err) !=
        0) {
        FUZZ_CHECK(is_zeroed(&config), "a failed parse left the config filled in (%s)", err);
        FUZZ_CHECK(err[0] != '\0', "a failed parse said nothing");
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL, "the message is not terminated");
        free(text);
        return 0;
    }
    FUZZ_CHECK(config.name != NULL && config.conninfo != NULL && config.sink_plugin != NULL,
               "a required key is missing from a parsed config");
    FUZZ_CHECK(relay_conninfo_check(config.conninfo, err, sizeof err) == 0,
               "the parsed conninfo does not parse: %s", err);
    check_duration(config.safety_margin_ms);
    check_duration(config.poll_interval_ms);
    check_duration(config.max_wait_ms);
    check_duration(config.gap_floor_ms);
    check_duration(config.gap_max_age_ms);
    check_duration(config.sink_flush_timeout_ms);
    check_duration(config.retry_initial_ms);
    check_duration(config.retry_max_ms);
    check_duration(config.retention_interval_ms);
    if (relay_retention_enabled(&config))
        check_duration(config.retention_delete_after_ms);
    check_reload(&config);
    relay_config_free(&config);
    free(text);
    return 0;
}
