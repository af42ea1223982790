/*
 * SIGHUP: the configuration read again while the relay runs, against a real PostgreSQL and the
 * testsink, which records its batches and its inits. A file that does not load changes nothing,
 * restart-only keys keep their values, live ones apply, the sink starts anew only for new options,
 * and no event is lost or reordered across a reload; systemd hears RELOADING=1, then READY=1.
 */
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../harness/harness.h"

#define LONG_AGO "now() - interval '1 hour'"
#define RELAY_NAME scope.schema

static th_scope scope;

/* The files of the scope's one relay. */
static char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], batches[TH_PATH_MAX], inits[TH_PATH_MAX],
    fail[TH_PATH_MAX], log_path[TH_PATH_MAX];

static void setup(void)
{
    th_scope_new(&scope);
    th_path(&scope, "relay.yaml", config);
    th_path(&scope, "sink.out", sink_out);
    th_path(&scope, "batches", batches);
    th_path(&scope, "inits", inits);
    th_path(&scope, "fail", fail);
    th_path(&scope, "relay.err", log_path);
}

static void teardown(void)
{
    th_scope_free(&scope);
}

TestSuite(reload, .init = setup, .fini = teardown, .timeout = 180);

/* What a test varies in the configuration. */
typedef struct settings {
    const char *name;     /* NULL: the scope's */
    const char *conninfo; /* YAML scalar; NULL: the scope's */
    const char *table;
    const char *plugin; /* NULL: the testsink */
    int batch_size;
    const char *level;
    const char *tag;
    const char *extra_option; /* one more sink option line ("" for none) */
} settings;

static settings defaults(void)
{
    return (settings){
        .table = "events", .batch_size = 5, .level = "info", .tag = "a", .extra_option = ""};
}

static void write_settings(const settings *s)
{
    th_write_file(config,
                  "name: %s\n"
                  "database:\n"
                  "  conninfo: %s\n"
                  "source:\n"
                  "  table: %s\n"
                  "  safety_margin: 0s\n"
                  "  batch_size: %d\n"
                  "  poll_interval: 50ms\n"
                  "sink:\n"
                  "  plugin: %s\n"
                  "  options:\n"
                  "    out: %s\n"
                  "    batches: %s\n"
                  "    inits: %s\n"
                  "    fail_while_exists: %s\n"
                  "    tag: %s\n"
                  "%s"
                  "retry:\n"
                  "  initial: 50ms\n"
                  "  max: 200ms\n"
                  "log:\n"
                  "  level: %s\n",
                  s->name ? s->name : RELAY_NAME, s->conninfo ? s->conninfo : scope.conninfo_yaml,
                  s->table, s->batch_size, s->plugin ? s->plugin : th_env("RELAY_TESTSINK"),
                  sink_out, batches, inits, fail, s->tag, s->extra_option, s->level);
}

static bool log_says(void *arg)
{
    return th_file_contains(log_path, arg);
}

static void wait_log(const char *text)
{
    th_wait_until(&scope, TH_DEADLINE_MS, log_says, (void *)text, text);
}

/* How many times text occurs in the log. */
static size_t log_count(const char *text)
{
    return th_file_count(log_path, text);
}

/* Sends SIGHUP and waits until the reload is over: the n-th "configuration reloaded" (or, for a
 * file that does not load, the n-th "reload failed"). */
static void reload_and_wait(pid_t pid, const char *end_text)
{
    size_t n = log_count(end_text) + 1;
    th_relay_signal(pid, SIGHUP);
    th_wait_file_count(&scope, log_path, end_text, n);
}

static pid_t start_relay(const char *level)
{
    th_migrate(config);
    pid_t pid = th_relay_start_at_level(&scope, config, NULL, log_path, level);
    /* SIGHUP before the handlers are installed would end the process. */
    char started[128];
    snprintf(started, sizeof started, "relay '%s' started", RELAY_NAME);
    wait_log(started);
    return pid;
}

/* The batch sizes the sink recorded, from line `from` on: the largest and the smallest. */
static void batch_range(size_t from, size_t *smallest, size_t *largest, size_t *count)
{
    char **lines;
    size_t n = th_read_lines(batches, &lines);
    *smallest = SIZE_MAX;
    *largest = 0;
    *count = n > from ? n - from : 0;
    for (size_t i = from; i < n; i++) {
        size_t size = strtoull(lines[i], NULL, 10);
        *smallest = size < *smallest ? size : *smallest;
        *largest = size > *largest ? size : *largest;
    }
    th_free_lines(lines, n);
}

static size_t line_count(const char *path)
{
    char **lines;
    size_t n = th_read_lines(path, &lines);
    th_free_lines(lines, n);
    return n;
}

/* Asserts the sink received exactly 1..last, each once, in order. */
static void assert_delivered_once_in_order(int64_t last)
{
    int64_t *ids;
    size_t n = th_read_testsink_ids(sink_out, &ids);
    cr_assert_eq((int64_t)n, last, "%zu events delivered, expected %" PRId64, n, last);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], (int64_t)i + 1, "line %zu: event %" PRId64 ", expected %zu", i + 1,
                     ids[i], i + 1);
    free(ids);
}

Test(reload, an_invalid_file_keeps_the_configuration_in_force)
{
    settings s = defaults();
    write_settings(&s);
    pid_t pid = start_relay("debug");
    th_insert_events(scope.conn, 10, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 10);

    /* A typo on line 5, column 3, and a batch size that would show if anything of it applied. */
    th_write_file(config,
                  "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  batch_sise: 50\n"
                  "  batch_size: 50\nsink:\n  plugin: stdout\n",
                  RELAY_NAME, scope.conninfo_yaml);
    reload_and_wait(pid, "reload failed");
    char expected[TH_PATH_MAX + 256];
    snprintf(expected, sizeof expected,
             "reload failed, the configuration in force stays: %s:5:3: source.batch_sise: "
             "unknown key",
             config);
    cr_assert(th_file_contains(log_path, expected), "the log does not say: %s", expected);
    cr_assert_eq(kill(pid, 0), 0, "the relay is gone");

    /* A valid file that others may write is refused, as at start: it could name any plugin. */
    s.batch_size = 50;
    write_settings(&s);
    cr_assert_eq(chmod(config, 0666), 0);
    reload_and_wait(pid, "reload failed");
    snprintf(expected, sizeof expected,
             "reload failed, the configuration in force stays: config %s is writable by anyone",
             config);
    cr_assert(th_file_contains(log_path, expected), "the log does not say: %s", expected);
    cr_assert_eq(chmod(config, 0644), 0);

    /* Events still flow, to the same sink, in batches of the old size. */
    size_t before = line_count(batches);
    th_insert_events(scope.conn, 30, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 40);
    size_t smallest, largest, count;
    batch_range(before, &smallest, &largest, &count);
    cr_assert_gt(count, 0);
    cr_assert_leq(largest, 5, "a batch of %zu after a reload that failed", largest);
    assert_delivered_once_in_order(40);
    cr_assert_eq(line_count(inits), 1, "the sink was started anew");
    th_relay_stop(&scope, pid);
}

Test(reload, a_new_batch_size_cuts_the_next_batches)
{
    settings s = defaults();
    s.batch_size = 3;
    write_settings(&s);
    pid_t pid = start_relay("debug");
    th_insert_events(scope.conn, 12, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 12);
    size_t smallest, largest, count;
    batch_range(0, &smallest, &largest, &count);
    cr_assert_eq(largest, 3, "largest batch %zu at batch_size 3", largest);

    s.batch_size = 40;
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    cr_assert(th_file_contains(log_path, "reload: source.batch_size: '3' -> '40'"));
    size_t before = line_count(batches);
    th_insert_events(scope.conn, 100, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 112);
    batch_range(before, &smallest, &largest, &count);
    cr_assert_gt(largest, 3, "no batch above the old size after the reload");
    cr_assert_leq(largest, 40, "a batch of %zu at batch_size 40", largest);

    s.batch_size = 2;
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    before = line_count(batches);
    th_insert_events(scope.conn, 10, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 122);
    batch_range(before, &smallest, &largest, &count);
    cr_assert_eq(largest, 2, "largest batch %zu at batch_size 2", largest);

    assert_delivered_once_in_order(122);
    /* The options did not change: the sink was not started anew. */
    cr_assert_eq(line_count(inits), 1, "%zu inits", line_count(inits));
    th_relay_stop(&scope, pid);
}

Test(reload, a_new_log_level_applies_at_once)
{
    settings s = defaults();
    write_settings(&s);
    /* No --log-level: the config's level is the one in force. */
    pid_t pid = start_relay(NULL);
    th_insert_events(scope.conn, 5, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 5);
    cr_assert_eq(log_count("Z debug "), 0, "debug lines at level info");

    s.level = "debug";
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    th_insert_events(scope.conn, 5, LONG_AGO);
    wait_log("Z debug delivered 5 events, position 10");

    s.level = "info";
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    size_t debug_lines = log_count("Z debug ");
    th_insert_events(scope.conn, 5, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 15);
    /* The relay logs a batch's delivery before the store that moves the position. */
    cr_assert_eq(log_count("Z debug "), debug_lines, "debug lines after going back to info");
    th_relay_stop(&scope, pid);
}

Test(reload, restart_only_keys_are_named_and_keep_their_values)
{
    settings s = defaults();
    write_settings(&s);
    pid_t pid = start_relay("debug");
    th_insert_events(scope.conn, 5, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 5);

    char renamed[96], conninfo[2048];
    snprintf(renamed, sizeof renamed, "%s_renamed", RELAY_NAME);
    /* The same conninfo with a password: it must never reach the log. */
    size_t len = strlen(scope.conninfo_yaml);
    snprintf(conninfo, sizeof conninfo, "%.*s password=reload-secret-x\"", (int)(len - 1),
             scope.conninfo_yaml);
    s.name = renamed;
    s.table = "no_such_table";
    s.plugin = "stdout";
    s.conninfo = conninfo;
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");

    char line[1024];
    snprintf(line, sizeof line,
             "reload: name changed from '%s' to '%s', but it takes effect only after a restart; "
             "'%s' stays in force",
             RELAY_NAME, renamed, RELAY_NAME);
    cr_assert(th_file_contains(log_path, line), "no warning: %s", line);
    cr_assert(th_file_contains(log_path, "warn  reload: source.table changed from 'events' to "
                                         "'no_such_table'"));
    snprintf(line, sizeof line, "warn  reload: sink.plugin changed from '%s' to 'stdout'",
             th_env("RELAY_TESTSINK"));
    cr_assert(th_file_contains(log_path, line), "no warning: %s", line);
    cr_assert(th_file_contains(log_path, "warn  reload: database.conninfo changed (value not "
                                         "shown), but it takes effect only after a restart"));
    cr_assert_not(th_file_contains(log_path, "reload-secret-x"), "the password reached the log");

    /* The old values are in force: the same table, the same sink, the position under the old
     * name. */
    th_insert_events(scope.conn, 5, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 10);
    assert_delivered_once_in_order(10);
    cr_assert_not(th_checkpoint_exists(&scope, renamed), "a position under the new name");
    th_relay_stop(&scope, pid);
}

static bool flush_failed(void *arg)
{
    (void)arg;
    return th_file_contains(log_path, "sink failed on events 21..25");
}

Test(reload, new_sink_options_start_the_sink_anew_losing_nothing)
{
    settings s = defaults();
    write_settings(&s);
    pid_t pid = start_relay("debug");
    th_insert_events(scope.conn, 20, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 20);

    /* The reload comes while the sink fails on a batch in hand: the new instance gets it. */
    th_write_file(fail, "on\n");
    th_insert_events(scope.conn, 20, LONG_AGO);
    th_wait_until(&scope, TH_DEADLINE_MS, flush_failed, NULL, "a failed flush");
    s.tag = "b";
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    cr_assert(th_file_contains(log_path, "reload: sink.options.tag changed (value not shown)"));
    cr_assert(th_file_contains(log_path, "reload: sink testsink started anew"));
    char *text = th_read_file(inits, NULL);
    cr_assert_str_eq(text, "init a\ninit b\n");
    free(text);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 20, "the position passed a failed batch");
    cr_assert_eq(unlink(fail), 0);
    th_wait_position(&scope, RELAY_NAME, 40);

    /* Options the sink refuses: the instance in force goes on with its own. */
    s.tag = "c";
    s.extra_option = "    init_error: refused on purpose\n";
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    cr_assert(th_file_contains(log_path, "reload: sink testsink refused the new sink.options "
                                         "(refused on purpose); it goes on with the options in "
                                         "force"));
    th_insert_events(scope.conn, 20, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 60);
    text = th_read_file(inits, NULL);
    cr_assert_str_eq(text, "init a\ninit b\n");
    free(text);

    /* A reload that leaves the options as they are (only the level changes) keeps the sink. */
    s.tag = "b";
    s.extra_option = "";
    s.level = "warn";
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    th_insert_events(scope.conn, 20, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 80);
    cr_assert_eq(line_count(inits), 2, "the sink was started anew for unchanged options");

    assert_delivered_once_in_order(80);
    th_relay_stop(&scope, pid);
}

static int64_t monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The next datagram on fd that contains want, into msg; fails the test past the deadline. */
static void next_message(int fd, const char *want, char *msg, size_t len)
{
    int64_t deadline = monotonic_usec() + (int64_t)TH_DEADLINE_MS * 1000;
    while (monotonic_usec() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = recv(fd, msg, len - 1, 0);
        if (n <= 0)
            continue;
        msg[n] = '\0';
        if (strstr(msg, want))
            return;
    }
    cr_assert_fail("no %s on NOTIFY_SOCKET", want);
}

/* Sends SIGHUP and asserts systemd hears RELOADING=1 with a MONOTONIC_USEC of the reload's
 * time, then READY=1. */
static void assert_reload_notified(pid_t pid, int fd)
{
    char msg[512];
    int64_t before = monotonic_usec();
    th_relay_signal(pid, SIGHUP);
    next_message(fd, "RELOADING=1", msg, sizeof msg);
    int64_t after = monotonic_usec();
    const char *usec = strstr(msg, "\nMONOTONIC_USEC=");
    cr_assert(usec, "RELOADING=1 without MONOTONIC_USEC: %s", msg);
    int64_t at = strtoll(usec + strlen("\nMONOTONIC_USEC="), NULL, 10);
    cr_assert(at >= before && at <= after,
              "MONOTONIC_USEC=%" PRId64 " is not between %" PRId64 " and %" PRId64, at, before,
              after);
    next_message(fd, "READY=1", msg, sizeof msg);
}

Test(reload, systemd_hears_reloading_then_ready)
{
    char socket_path[TH_PATH_MAX];
    int fd = th_notify_socket(&scope, socket_path);

    settings s = defaults();
    write_settings(&s);
    setenv("NOTIFY_SOCKET", socket_path, 1);
    pid_t pid = start_relay("debug");
    unsetenv("NOTIFY_SOCKET");
    char msg[512];
    next_message(fd, "READY=1", msg, sizeof msg);

    s.batch_size = 7;
    write_settings(&s);
    assert_reload_notified(pid, fd);
    wait_log("configuration reloaded");

    /* A reload that fails ends with READY=1 too: the old configuration runs on. */
    th_write_file(config, "name: [\n");
    assert_reload_notified(pid, fd);
    wait_log("reload failed");

    th_insert_events(scope.conn, 5, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 5);
    close(fd);
    th_relay_stop(&scope, pid);
}

Test(reload, an_unchanged_credential_says_that_a_restart_applies_an_edit)
{
    settings s = defaults();
    write_settings(&s);
    /* As under the unit: the config is a credential, a copy systemd made at start. */
    setenv("CREDENTIALS_DIRECTORY", scope.dir, 1);
    pid_t pid = start_relay("debug");
    unsetenv("CREDENTIALS_DIRECTORY");
    reload_and_wait(pid, "configuration reloaded");
    char line[TH_PATH_MAX + 128];
    snprintf(line, sizeof line, "warn  reload: nothing changed in %s, a systemd credential",
             config);
    cr_assert(th_file_contains(log_path, line), "no warning: %s", line);
    th_relay_stop(&scope, pid);

    /* Elsewhere a file unchanged is only that. */
    pid = start_relay("debug");
    reload_and_wait(pid, "configuration reloaded");
    snprintf(line, sizeof line, "info  reload: nothing changed in %s\n", config);
    cr_assert(th_file_contains(log_path, line), "not said: %s", line);
    th_relay_stop(&scope, pid);
}

static bool failed_on_1_to_6(void *arg)
{
    (void)arg;
    return th_file_contains(log_path, "sink failed on events 1..6");
}

Test(reload, a_new_batch_size_while_the_sink_fails_reads_the_batch_again)
{
    settings s = defaults();
    write_settings(&s);
    /* The first batch, 1..6 with id 4 missing (its transaction still open), meets a failing
     * sink. */
    th_write_file(fail, "on\n");
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    PGconn *writer = th_scope_connect(&scope);
    th_exec(writer, "BEGIN");
    th_exec(writer, "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, "
                    "body, created_at) VALUES ('held', 'order', 1, 'created', '{}', "
                    "now() - interval '1 hour')");
    th_insert_events(scope.conn, 3, LONG_AGO);
    pid_t pid = start_relay("debug");
    th_wait_until(&scope, TH_DEADLINE_MS, failed_on_1_to_6, NULL, "a failed flush of 1..6");

    /* The batch in hand is dropped, and its gap with it: the gap is above the position again,
     * where a read finds its row. Still watched, the row would go out late, before 1..3, and
     * again when read. */
    s.batch_size = 2;
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    th_exec(writer, "COMMIT");
    cr_assert_eq(unlink(fail), 0);
    th_wait_position(&scope, RELAY_NAME, 7);

    /* Each once; 4 may come late (after 5: its transaction outlasted the margin of 0 s), but
     * never before the events below it, which the position had not passed. */
    int64_t *ids;
    size_t n = th_read_testsink_ids(sink_out, &ids), at[8] = {0};
    cr_assert_eq(n, 7, "%zu events delivered, expected 7", n);
    for (size_t i = 0; i < n; i++) {
        cr_assert(ids[i] >= 1 && ids[i] <= 7 && at[ids[i]] == 0, "line %zu: event %" PRId64, i + 1,
                  ids[i]);
        at[ids[i]] = i + 1;
    }
    free(ids);
    for (int64_t id = 1; id <= 3; id++)
        cr_assert_lt(at[id], at[4], "event 4 went out before event %" PRId64, id);
    size_t smallest, largest, count;
    batch_range(0, &smallest, &largest, &count);
    cr_assert_leq(largest, 2, "a batch of %zu after the reload to 2", largest);
    th_relay_stop(&scope, pid);
}

/* A reload applies within a backoff's wait and the wait goes on: reloading a relay whose sink
 * fails, however often, does not turn the backoff into retries at the pace of the reloads. */
Test(reload, reloads_during_a_backoff_do_not_retry_the_sink_sooner)
{
    /* The first retry comes 15 to 30 s after the failure: far beyond what the reloads take. */
    th_write_file(config,
                  "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  safety_margin: 0s\n"
                  "  poll_interval: 50ms\nsink:\n  plugin: %s\n  options:\n"
                  "    out: %s\n    fail_while_exists: %s\n"
                  "retry:\n  initial: 30s\n  max: 60s\n",
                  RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), sink_out, fail);
    th_write_file(fail, "on\n");
    pid_t pid = start_relay("debug");
    th_insert_events(scope.conn, 3, LONG_AGO);
    wait_log("sink failed on");
    for (int i = 0; i < 5; i++)
        reload_and_wait(pid, "reload: nothing changed");
    cr_assert_eq(log_count("sink still failing"), 0,
                 "the sink was retried during its backoff, at a reload");
    cr_assert_eq(line_count(sink_out), 0);
    th_relay_stop(&scope, pid);
}

/* --log-level outranks log.level, at a reload too, and the log says so rather than announce a
 * change that does not happen. */
Test(reload, a_log_level_given_on_the_command_line_outranks_a_reloaded_one)
{
    settings s = defaults();
    write_settings(&s);
    pid_t pid = start_relay("debug");
    s.level = "error";
    write_settings(&s);
    reload_and_wait(pid, "configuration reloaded");
    cr_assert(th_file_contains(log_path, "reload: log.level changed from 'info' to 'error', but "
                                         "--log-level outranks it"),
              "the reload does not say that --log-level keeps the level");
    cr_assert_eq(log_count("reload: log.level: "), 0, "the reload announces a new level");
    th_insert_events(scope.conn, 5, LONG_AGO);
    wait_log("Z debug delivered 5 events, position 5");
    th_relay_stop(&scope, pid);
}
