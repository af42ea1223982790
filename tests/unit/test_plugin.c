#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin_path.h"
#include "sink_host.h"

static const char *env(const char *name)
{
    const char *value = getenv(name);
    cr_assert(value != NULL && value[0] != '\0', "%s is not set: run through meson test", name);
    return value;
}

static relay_logger quiet_logger(void)
{
    return (relay_logger){.level = RELAY_LOG_ERROR, .format = RELAY_LOG_TEXT, .out = stderr};
}

/* A fresh path in a fresh directory; the file itself does not exist yet. */
static void temp_path(char *out, size_t outlen, const char *file)
{
    char dir[] = "/tmp/relay-test-plugin-XXXXXX";
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    snprintf(out, outlen, "%s/%s", dir, file);
}

/* Removes a temp_path file and its directory. */
static void discard(const char *path)
{
    unlink(path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
}

/* The whole file, NUL-terminated; the caller frees it. */
static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    cr_assert_not_null(mem);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    return text;
}

static relay_sink_event event(int64_t id, const char *key, const char *type, const char *payload,
                              const char *metadata)
{
    return (relay_sink_event){
        .id = id,
        .key = key,
        .key_len = strlen(key),
        .type = type,
        .type_len = strlen(type),
        .payload = payload,
        .payload_len = strlen(payload),
        .metadata = metadata,
        .metadata_len = metadata != NULL ? strlen(metadata) : 0,
        .created_at = "2026-11-26T04:12:53.123456Z",
    };
}

static void load_ok(relay_sink *sink, const char *path, const relay_logger *log)
{
    char err[1024];
    cr_assert_eq(relay_sink_load(sink, path, log, err, sizeof err), 0, "%s", err);
}

static void refused(const char *path, const char *expected)
{
    relay_logger log = quiet_logger();
    relay_sink sink;
    char err[1024] = "";
    cr_assert_eq(relay_sink_load(&sink, path, &log, err, sizeof err), -1, "%s was accepted", path);
    cr_expect(strstr(err, expected) != NULL, "message '%s' lacks '%s'", err, expected);
    cr_expect(strstr(err, path) != NULL, "message '%s' does not name %s", err, path);
    cr_expect_null(sink.handle);
    cr_expect_null(sink.api);
    relay_sink_unload(&sink);
}

Test(plugin, testsink_loads_inits_and_records_flushed_events)
{
    char out[PATH_MAX];
    temp_path(out, sizeof out, "out");
    relay_logger log = quiet_logger();
    relay_sink sink;
    load_ok(&sink, env("RELAY_TESTSINK"), &log);
    cr_assert_str_eq(sink.api->name, "testsink");

    char err[1024];
    relay_config_option options[] = {{.key = "out", .value = out}};
    cr_assert_eq(relay_sink_init(&sink, options, 1, err, sizeof err), RELAY_SINK_OK, "%s", err);

    relay_sink_event events[] = {
        event(1, "a-1", "created", "{}", NULL),
        event(2, "a-1", "updated", "{}", NULL),
        event(3, "b-7", "created", "{}", "{}"),
    };
    relay_sink_batch batch = {.events = events, .count = 3, .event_size = sizeof(relay_sink_event)};
    cr_assert_eq(relay_sink_deliver(&sink, &batch, err, sizeof err), RELAY_SINK_OK, "%s", err);
    cr_assert_eq(relay_sink_flush(&sink, 1000, err, sizeof err), RELAY_SINK_OK, "%s", err);
    relay_sink_unload(&sink);
    cr_expect_null(sink.handle);

    char *text = read_all(out);
    cr_expect_str_eq(text, "1 a-1 created\n2 a-1 updated\n3 b-7 created\n");
    free(text);
    discard(out);
}

Test(plugin, testsink_failure_on_demand_accepts_nothing)
{
    char out[PATH_MAX], fail[PATH_MAX], attempts[PATH_MAX];
    temp_path(out, sizeof out, "out");
    temp_path(fail, sizeof fail, "fail");
    temp_path(attempts, sizeof attempts, "attempts");
    FILE *marker = fopen(fail, "w");
    cr_assert_not_null(marker);
    fclose(marker);

    relay_logger log = quiet_logger();
    relay_sink sink;
    load_ok(&sink, env("RELAY_TESTSINK"), &log);
    char err[1024];
    relay_config_option options[] = {
        {.key = "out", .value = out},
        {.key = "fail_while_exists", .value = fail},
        {.key = "attempts", .value = attempts},
    };
    cr_assert_eq(relay_sink_init(&sink, options, 3, err, sizeof err), RELAY_SINK_OK, "%s", err);

    relay_sink_event events[] = {event(5, "k", "t", "{}", NULL)};
    relay_sink_batch batch = {.events = events, .count = 1, .event_size = sizeof(relay_sink_event)};
    cr_assert_eq(relay_sink_deliver(&sink, &batch, err, sizeof err), RELAY_SINK_OK, "%s", err);
    cr_assert_eq(relay_sink_flush(&sink, 1000, err, sizeof err), RELAY_SINK_RETRY);
    cr_expect_str_eq(err, "testsink: failing on purpose");
    cr_expect_eq(access(out, F_OK), -1, "a failed flush wrote %s", out);

    cr_assert_eq(unlink(fail), 0);
    cr_assert_eq(relay_sink_deliver(&sink, &batch, err, sizeof err), RELAY_SINK_OK, "%s", err);
    cr_assert_eq(relay_sink_flush(&sink, 1000, err, sizeof err), RELAY_SINK_OK, "%s", err);
    relay_sink_unload(&sink);

    char *text = read_all(out);
    cr_expect_str_eq(text, "5 k t\n");
    free(text);
    text = read_all(attempts);
    cr_expect_str_eq(text, "fail\nok\n");
    free(text);
    discard(out);
    discard(fail);
    discard(attempts);
}

Test(plugin, testsink_init_errors_are_fatal)
{
    relay_logger log = quiet_logger();
    relay_sink sink;
    load_ok(&sink, env("RELAY_TESTSINK"), &log);
    char err[1024];
    relay_config_option wanted[] = {{.key = "init_error", .value = "no broker today"}};
    cr_expect_eq(relay_sink_init(&sink, wanted, 1, err, sizeof err), RELAY_SINK_FATAL);
    cr_expect_str_eq(err, "no broker today");
    cr_expect_null(sink.state);

    relay_config_option unknown[] = {{.key = "bogus", .value = "1"}};
    cr_expect_eq(relay_sink_init(&sink, unknown, 1, err, sizeof err), RELAY_SINK_FATAL);
    cr_expect_str_eq(err, "testsink: unknown option 'bogus'");

    cr_expect_eq(relay_sink_init(&sink, NULL, 0, err, sizeof err), RELAY_SINK_FATAL);
    cr_expect_str_eq(err, "testsink: option 'out' is required");
    relay_sink_unload(&sink);
}

Test(plugin, sink_logs_go_through_the_relay_logger_with_the_sink_name)
{
    char out[PATH_MAX];
    temp_path(out, sizeof out, "out");
    FILE *captured = tmpfile();
    cr_assert_not_null(captured);
    relay_logger log = {.level = RELAY_LOG_DEBUG, .format = RELAY_LOG_TEXT, .out = captured};
    relay_sink sink;
    load_ok(&sink, env("RELAY_TESTSINK"), &log);
    char err[1024];
    relay_config_option options[] = {{.key = "out", .value = out}};
    cr_assert_eq(relay_sink_init(&sink, options, 1, err, sizeof err), RELAY_SINK_OK, "%s", err);
    relay_sink_unload(&sink);

    char text[4096] = "";
    rewind(captured);
    size_t n = fread(text, 1, sizeof text - 1, captured);
    text[n] = '\0';
    fclose(captured);
    char expected[PATH_MAX + 64];
    snprintf(expected, sizeof expected, "sink testsink: writing to %s", out);
    cr_expect(strstr(text, expected) != NULL, "log '%s' lacks '%s'", text, expected);
    discard(out);
}

Test(plugin, refuses_another_abi_version)
{
    refused(env("RELAY_BADABI_VERSION"), "speaks sink ABI 999, this relay speaks 2");
}

Test(plugin, refuses_a_plugin_of_abi_1)
{
    refused(env("RELAY_BADABI_V1"), "speaks sink ABI 1, this relay speaks 2");
}

Test(plugin, refuses_a_short_api_struct)
{
    refused(env("RELAY_BADABI_SHORT"), "declares a sink API of 8 bytes");
}

Test(plugin, refuses_a_module_without_the_entry_point)
{
    refused(env("RELAY_BADABI_NOSYM"), "does not export relay_sink_entry");
}

Test(plugin, refuses_a_missing_file)
{
    refused("/nonexistent/relay/nosuch.so", "cannot load sink plugin");
}

Test(plugin, refuses_a_file_that_is_not_a_shared_object)
{
    char path[PATH_MAX];
    temp_path(path, sizeof path, "plain.so");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    refused(path, "cannot load sink plugin");
    discard(path);
}

Test(plugin, unload_is_safe_on_a_zeroed_sink)
{
    relay_sink sink;
    memset(&sink, 0, sizeof sink);
    relay_sink_unload(&sink);
    relay_sink_unload(&sink);
    cr_expect_null(sink.api);
}

/* A plugin that breaks the contract, to check the wrappers repair it. */
static relay_sink_status careless_init(const relay_sink_host *host,
                                       const relay_sink_option *options, size_t n_options,
                                       void **state, char *err, size_t errlen)
{
    (void)host;
    (void)options;
    (void)n_options;
    *state = (void *)1; /* must be ignored: init failed */
    memset(err, 'x', errlen);
    return RELAY_SINK_RETRY;
}

static relay_sink_status careless_deliver(void *state, const relay_sink_batch *batch, char *err,
                                          size_t errlen)
{
    (void)state;
    (void)batch;
    (void)err;
    (void)errlen;
    return (relay_sink_status)7;
}

static relay_sink_status careless_flush(void *state, int timeout_ms, char *err, size_t errlen)
{
    (void)state;
    (void)timeout_ms;
    (void)err;
    (void)errlen;
    return RELAY_SINK_RETRY;
}

static void careless_destroy(void *state)
{
    (void)state;
    cr_assert_fail("destroy called although init failed");
}

static const relay_sink_api careless_api = {
    .abi_version = RELAY_SINK_ABI_VERSION,
    .struct_size = sizeof(relay_sink_api),
    .name = "careless",
    .init = careless_init,
    .deliver = careless_deliver,
    .flush = careless_flush,
    .destroy = careless_destroy,
};

Test(plugin, wrappers_guarantee_a_known_status_and_a_message)
{
    relay_sink sink;
    memset(&sink, 0, sizeof sink);
    sink.api = &careless_api;
    char err[64];

    cr_expect_eq(relay_sink_init(&sink, NULL, 0, err, sizeof err), RELAY_SINK_RETRY);
    cr_expect_eq(strlen(err), sizeof err - 1, "err is not NUL-terminated within its buffer");
    cr_expect_null(sink.state);

    cr_expect_eq(relay_sink_deliver(&sink, &(relay_sink_batch){0}, err, sizeof err),
                 RELAY_SINK_FATAL);
    cr_expect_str_eq(err, "sink careless: deliver returned unknown status 7");

    strcpy(err, "stale message from an earlier call");
    cr_expect_eq(relay_sink_flush(&sink, 1000, err, sizeof err), RELAY_SINK_RETRY);
    cr_expect_str_eq(err, "sink careless: flush failed without a message");

    relay_sink_unload(&sink);
}

Test(plugin, resolves_a_name_in_an_explicit_plugin_dir)
{
    char dir[PATH_MAX], expected[PATH_MAX + 32], out[PATH_MAX], err[1024];
    snprintf(dir, sizeof dir, "%s/plugins/stdout", env("RELAY_BUILD_DIR"));
    snprintf(expected, sizeof expected, "%s/stdout.so", dir);
    cr_assert_eq(relay_plugin_resolve("stdout", dir, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    cr_expect_str_eq(out, expected);

    relay_logger log = quiet_logger();
    relay_sink sink;
    load_ok(&sink, out, &log);
    cr_expect_str_eq(sink.api->name, "stdout");
    relay_sink_unload(&sink);

    cr_expect_eq(relay_plugin_resolve("nosuch", dir, out, sizeof out, err, sizeof err), -1);
    char tried[PATH_MAX + 32];
    snprintf(tried, sizeof tried, "%s/nosuch.so", dir);
    cr_expect(strstr(err, tried) != NULL, "message '%s' does not name %s", err, tried);
}

Test(plugin, takes_a_name_with_a_slash_as_a_path)
{
    char out[PATH_MAX], err[1024];
    cr_assert_eq(
        relay_plugin_resolve("./not/checked.so", "/ignored", out, sizeof out, err, sizeof err), 0,
        "%s", err);
    cr_expect_str_eq(out, "./not/checked.so");
}

/* Lays out EXEDIR/plugins/NAME/NAME.so (the build-tree rule) as a link to the test sink, with a
 * name of this process's own so that parallel runs do not collide. */
Test(plugin, resolves_a_name_beside_the_executable)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(n > 0, "/proc/self/exe: %s", strerror(errno));
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';

    char name[64], plugins[PATH_MAX + 16], dir[PATH_MAX + 96], link[PATH_MAX + 192];
    snprintf(name, sizeof name, "resolve-check-%ld", (long)getpid());
    snprintf(plugins, sizeof plugins, "%s/plugins", exe);
    snprintf(dir, sizeof dir, "%s/%s", plugins, name);
    snprintf(link, sizeof link, "%s/%s.so", dir, name);
    cr_assert(mkdir(plugins, 0755) == 0 || errno == EEXIST, "%s: %s", plugins, strerror(errno));
    cr_assert_eq(mkdir(dir, 0755), 0, "%s: %s", dir, strerror(errno));
    cr_assert_eq(symlink(env("RELAY_TESTSINK"), link), 0, "%s: %s", link, strerror(errno));

    char out[PATH_MAX], err[1024];
    int found = relay_plugin_resolve(name, NULL, out, sizeof out, err, sizeof err);
    unlink(link);
    rmdir(dir);
    rmdir(plugins); /* only when we made it: it fails while anything else is in there */
    cr_assert_eq(found, 0, "%s", err);
    cr_expect_str_eq(out, link);

    cr_expect_eq(relay_plugin_resolve("nosuch", NULL, out, sizeof out, err, sizeof err), -1);
    char tried[PATH_MAX + 32];
    snprintf(tried, sizeof tried, "%s/plugins/nosuch/nosuch.so", exe);
    cr_expect(strstr(err, tried) != NULL, "message '%s' does not name %s", err, tried);
    cr_expect(strstr(err, " and ") != NULL, "message '%s' names one place only", err);
    cr_expect_eq(relay_plugin_resolve("", NULL, out, sizeof out, err, sizeof err), -1);
}

/* The stdout sink, with fd 1 pointed elsewhere for the duration of a test. */

static int redirect_stdout(int fd)
{
    int saved = dup(STDOUT_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_eq(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
    close(fd);
    return saved;
}

static int redirect_stdout_to(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    return redirect_stdout(fd);
}

static void restore_stdout(int saved)
{
    dup2(saved, STDOUT_FILENO);
    close(saved);
}

static void load_stdout_sink(relay_sink *sink, const relay_logger *log)
{
    char path[PATH_MAX], err[1024];
    snprintf(path, sizeof path, "%s/plugins/stdout/stdout.so", env("RELAY_BUILD_DIR"));
    load_ok(sink, path, log);
    cr_assert_eq(relay_sink_init(sink, NULL, 0, err, sizeof err), RELAY_SINK_OK, "%s", err);
}

/* Writes a batch through the stdout sink and returns what it printed (the caller frees it). */
static char *stdout_lines(const relay_sink_batch *batch)
{
    char path[PATH_MAX], err[1024];
    temp_path(path, sizeof path, "stdout");
    relay_logger log = quiet_logger();
    relay_sink sink;
    load_stdout_sink(&sink, &log);
    int saved = redirect_stdout_to(path);
    relay_sink_status st = relay_sink_deliver(&sink, batch, err, sizeof err);
    if (st == RELAY_SINK_OK)
        st = relay_sink_flush(&sink, 1000, err, sizeof err);
    restore_stdout(saved);
    relay_sink_unload(&sink);
    cr_assert_eq(st, RELAY_SINK_OK, "%s", err);
    char *text = read_all(path);
    discard(path);
    return text;
}

Test(stdout_sink, writes_one_exact_json_line_per_event)
{
    relay_sink_event events[3] = {
        event(1, "a\"b\\c", "line\nbreak", "{\"x\":1}", NULL),
        event(9007199254740993, "\x01\t\x1f\b\f\r", "caf\xc3\xa9", "{\"a\":\n[1,\r\n2]}",
              "{\"m\":\"v\\\"q\"}"),
        event(INT64_MAX, "", "t", "[]", ""),
    };
    events[1].has_version = 1;
    events[1].version = -3;
    events[2].has_version = 1;
    events[2].version = INT64_MIN;
    const char *expected =
        "{\"id\":1,\"key\":\"a\\\"b\\\\c\",\"type\":\"line\\nbreak\",\"version\":null,"
        "\"payload\":{\"x\":1},\"metadata\":null,\"created_at\":\"2026-11-26T04:12:53.123456Z\"}\n"
        "{\"id\":9007199254740993,\"key\":\"\\u0001\\t\\u001f\\b\\f\\r\",\"type\":\"caf\xc3\xa9\","
        "\"version\":-3,\"payload\":{\"a\": [1,  2]},\"metadata\":{\"m\":\"v\\\"q\"},"
        "\"created_at\":\"2026-11-26T04:12:53.123456Z\"}\n"
        "{\"id\":9223372036854775807,\"key\":\"\",\"type\":\"t\",\"version\":-9223372036854775808,"
        "\"payload\":[],\"metadata\":null,\"created_at\":\"2026-11-26T04:12:53.123456Z\"}\n";

    relay_sink_batch batch = {.events = events, .count = 3, .event_size = sizeof events[0]};
    char *text = stdout_lines(&batch);
    cr_expect_str_eq(text, expected);
    free(text);
}

Test(stdout_sink, writes_every_event_of_a_batch_larger_than_its_buffer)
{
    enum { count = 20000 };
    static char payloads[count][160];
    static char keys[count][16];
    static relay_sink_event events[count];
    for (int i = 0; i < count; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        snprintf(payloads[i], sizeof payloads[i], "{\"n\":%d,\"pad\":\"%0120d\"}", i, i);
        events[i] = event(i + 1, keys[i], "t", payloads[i], NULL);
    }

    relay_sink_batch batch = {.events = events, .count = count, .event_size = sizeof events[0]};
    char *text = stdout_lines(&batch);
    char *line = text;
    for (int i = 0; i < count; i++) {
        char prefix[64];
        int n = snprintf(prefix, sizeof prefix, "{\"id\":%d,\"key\":\"k%d\",", i + 1, i);
        cr_assert(strncmp(line, prefix, (size_t)n) == 0, "line %d starts '%.60s'", i + 1, line);
        char *end = strchr(line, '\n');
        cr_assert_not_null(end, "line %d is not terminated", i + 1);
        line = end + 1;
    }
    cr_expect_eq(*line, '\0', "output goes on after the last event");
    free(text);
}

Test(stdout_sink, rejects_unknown_options)
{
    char path[PATH_MAX], err[1024];
    snprintf(path, sizeof path, "%s/plugins/stdout/stdout.so", env("RELAY_BUILD_DIR"));
    relay_logger log = quiet_logger();
    relay_sink sink;
    load_ok(&sink, path, &log);
    relay_config_option options[] = {{.key = "x", .value = "1"}};
    cr_expect_eq(relay_sink_init(&sink, options, 1, err, sizeof err), RELAY_SINK_FATAL);
    cr_expect_str_eq(err, "stdout: unknown option 'x'");
    relay_sink_unload(&sink);
}

/* Delivers one event to whatever fd 1 is and expects deliver and flush both to fail with reason,
 * then, with fd 1 back to a working file, both to succeed again. */
static void expect_write_failure(int broken_fd, int reason)
{
    relay_sink_event events[] = {event(1, "k", "t", "{}", NULL)};
    relay_sink_batch batch = {.events = events, .count = 1, .event_size = sizeof(relay_sink_event)};
    char path[PATH_MAX], deliver_err[1024], flush_err[1024], err[1024];
    temp_path(path, sizeof path, "stdout");
    relay_logger log = quiet_logger();
    relay_sink sink;
    load_stdout_sink(&sink, &log);

    int saved = redirect_stdout(broken_fd);
    relay_sink_status delivered =
        relay_sink_deliver(&sink, &batch, deliver_err, sizeof deliver_err);
    relay_sink_status flushed = relay_sink_flush(&sink, 1000, flush_err, sizeof flush_err);
    restore_stdout(saved);
    cr_expect_eq(delivered, RELAY_SINK_RETRY, "deliver to a broken stdout: %d", delivered);
    cr_expect(strstr(deliver_err, strerror(reason)) != NULL, "deliver: '%s'", deliver_err);
    cr_expect_eq(flushed, RELAY_SINK_RETRY, "flush after a failed write: %d", flushed);
    cr_expect(strstr(flush_err, strerror(reason)) != NULL, "flush: '%s'", flush_err);

    saved = redirect_stdout_to(path);
    delivered = relay_sink_deliver(&sink, &batch, err, sizeof err);
    flushed = relay_sink_flush(&sink, 1000, err, sizeof err);
    restore_stdout(saved);
    relay_sink_unload(&sink);
    cr_expect_eq(delivered, RELAY_SINK_OK, "%s", err);
    cr_expect_eq(flushed, RELAY_SINK_OK, "the old failure is reported once only: %s", err);
    discard(path);
}

Test(stdout_sink, reports_a_full_device)
{
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "/dev/full: %s", strerror(errno));
    expect_write_failure(fd, ENOSPC);
}

Test(stdout_sink, reports_a_closed_pipe)
{
    /* As in the relay: a reader gone is an error to report, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    close(fds[0]);
    expect_write_failure(fds[1], EPIPE);
}

Test(plugin, stdout_prints_the_event_id_aggregate_type_and_headers)
{
    relay_sink_header headers[] = {
        {.name = "tenant_id", .name_len = 9, .value = "t-\"1\"", .value_len = 5},
        {.name = "trace_id", .name_len = 8, .value = NULL},
    };
    relay_sink_event events[] = {
        event(7, "a", "t", "{}", NULL),
        event(8, "b", "t", "{}", NULL),
    };
    events[0].event_id = "0b7e4a6c-5b0e-4d1e-9c54-0f0e2a6b1a11";
    events[0].event_id_len = strlen(events[0].event_id);
    events[0].aggregate_type = "order";
    events[0].aggregate_type_len = 5;
    events[0].headers = headers;
    events[0].n_headers = 2;
    /* An event id that is the ordering id says nothing new: left out. */
    events[1].event_id = "8";
    events[1].event_id_len = 1;
    events[1].flags = RELAY_SINK_EVENT_ID_IS_ID;
    relay_sink_batch batch = {.events = events, .count = 2, .event_size = sizeof events[0]};
    char *text = stdout_lines(&batch);
    cr_expect_str_eq(text, "{\"id\":7,\"key\":\"a\",\"type\":\"t\",\"version\":null,\"payload\":{},"
                           "\"metadata\":null,\"created_at\":\"2026-11-26T04:12:53.123456Z\","
                           "\"aggregate_type\":\"order\","
                           "\"event_id\":\"0b7e4a6c-5b0e-4d1e-9c54-0f0e2a6b1a11\","
                           "\"headers\":{\"tenant_id\":\"t-\\\"1\\\"\",\"trace_id\":null}}\n"
                           "{\"id\":8,\"key\":\"b\",\"type\":\"t\",\"version\":null,\"payload\":{},"
                           "\"metadata\":null,\"created_at\":\"2026-11-26T04:12:53.123456Z\"}\n");
    free(text);
}

/* A newer relay appends members to relay_sink_event: a sink built against this header must walk
 * the batch by event_size, or it reads the second event from the middle of the first. */
Test(plugin, sinks_walk_a_batch_by_its_event_size)
{
    struct newer_event {
        relay_sink_event known;
        int64_t appended[3];
    } events[2] = {{.known = event(1, "a", "x", "{}", NULL), .appended = {-1, -1, -1}},
                   {.known = event(2, "b", "y", "[]", NULL), .appended = {-1, -1, -1}}};
    relay_sink_batch batch = {.events = events, .count = 2, .event_size = sizeof events[0]};
    cr_assert_gt(batch.event_size, sizeof(relay_sink_event));
    char *text = stdout_lines(&batch);
    cr_expect_str_eq(text, "{\"id\":1,\"key\":\"a\",\"type\":\"x\",\"version\":null,\"payload\":{},"
                           "\"metadata\":null,\"created_at\":\"2026-11-26T04:12:53.123456Z\"}\n"
                           "{\"id\":2,\"key\":\"b\",\"type\":\"y\",\"version\":null,\"payload\":[],"
                           "\"metadata\":null,\"created_at\":\"2026-11-26T04:12:53.123456Z\"}\n");
    free(text);
}

Test(plugin, relay_sink_has_tells_which_members_a_size_covers)
{
    size_t v2 = sizeof(relay_sink_host);
    cr_expect(RELAY_SINK_HAS(relay_sink_host, v2, reject));
    cr_expect_not(RELAY_SINK_HAS(relay_sink_host, offsetof(relay_sink_host, reject), reject));
    cr_expect(RELAY_SINK_HAS(relay_sink_event, sizeof(relay_sink_event), n_headers));
    cr_expect_not(RELAY_SINK_HAS(relay_sink_event, offsetof(relay_sink_event, headers), n_headers));
}
