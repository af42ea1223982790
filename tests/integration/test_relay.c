/*
 * The relay's delivery guarantees, end to end: the real binary, a real PostgreSQL, real signals.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../harness/cluster.h"
#include "../harness/harness.h"
#include "scene.h"

/* Created outside any safety margin, so that the relay may deliver at once. */
#define LONG_AGO "now() - interval '1 hour'"
/* Relays lock their name database-wide: each test names its relay after its own schema. */
#define RELAY_NAME scope.schema

/* Criterion can only hand fixtures over through file scope; each test runs in its own process. */
static th_scope scope;

static void setup(void)
{
    th_scope_new(&scope);
}

static void teardown(void)
{
    th_scope_free(&scope);
}

TestSuite(relay, .timeout = 180);

/* arg: the relay's output file. */
static bool nothing_delivered(void *arg)
{
    int64_t *ids;
    size_t n = th_read_stdout_ids(arg, &ids);
    free(ids);
    return n == 0 && th_position(&scope, RELAY_NAME) == 0;
}

static bool relay_is_up(void *arg)
{
    (void)arg;
    return th_checkpoint_exists(&scope, RELAY_NAME);
}

/* Asserts that ids holds exactly first..last in order. */
static void assert_ids_range(const int64_t *ids, size_t n, int64_t first, int64_t last,
                             const char *what)
{
    cr_assert_eq((int64_t)n, last - first + 1, "%s: %zu ids, expected %" PRId64 "..%" PRId64, what,
                 n, first, last);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], first + (int64_t)i,
                     "%s: line %zu has id %" PRId64 ", expected %" PRId64, what, i + 1, ids[i],
                     first + (int64_t)i);
}

Test(relay, delivered_in_order_intact, .init = setup, .fini = teardown)
{
    const int64_t n_events = 500;
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 64);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);

    th_insert_events(scope.conn, 250, LONG_AGO);
    /* The awkward ones, in the middle of ordinary traffic: escapes in key and type, a payload
     * with quotes, backslashes, non-ASCII and a control character, NULL metadata, the extreme
     * versions, created_at on a leap day, at a whole second and in another time zone. */
    th_exec(scope.conn,
            "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body, "
            "metadata, created_at) VALUES "
            "('quote\"back\\slash', 'order', 2147483647, 'say \"hi\"', "
            " '{\"text\": \"say \\\"hi\\\" \\\\ naïve ☃ 😀 \\u0001\", \"n\": [1, 2.50, null, "
            "true]}', NULL, '2024-02-29 23:59:59.000001+00'), "
            "('ünïcode-key', 'order', -2147483648, 'renamed', '\"just a string\"', "
            " '{\"trace\": {\"span\": \"a\\\\b\"}}', '2021-01-01 00:00:00+05:30'), "
            "('empty', 'order', 0, 'emptied', '{}', '[]', now() - interval '2 days')");
    th_insert_events(scope.conn, 247, LONG_AGO);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT max(id) FROM events"), n_events);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, n_events);
    th_relay_stop(&scope, pid);

    /* The expected lines, from PostgreSQL's own renderings of each value. */
    PGresult *res = PQexec(
        scope.conn,
        "SELECT '{\"id\":' || id || ',\"key\":' || to_json(aggregate_id)::text"
        " || ',\"type\":' || to_json(kind)::text || ',\"version\":' || aggregate_version"
        " || ',\"payload\":' || body::text || ',\"metadata\":' || coalesce(metadata::text, 'null')"
        " || ',\"created_at\":\"'"
        " || to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || '\"'"
        " || ',\"aggregate_type\":' || to_json(aggregate_type)::text || '}'"
        " FROM events ORDER BY id");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(scope.conn));
    cr_assert_eq(PQntuples(res), n_events);

    char **lines;
    size_t n_lines = th_read_lines(out, &lines);
    int64_t *ids;
    size_t n_ids = th_read_stdout_ids(out, &ids);
    assert_ids_range(ids, n_ids, 1, n_events, "output");
    for (size_t i = 0; i < n_lines; i++) {
        const char *expected = PQgetvalue(res, (int)i, 0);
        cr_assert_str_eq(lines[i], expected, "line %zu:\n  got      %s\n  expected %s", i + 1,
                         lines[i], expected);
    }
    free(ids);
    th_free_lines(lines, n_lines);
    PQclear(res);
}

/* A table of another shape: json payload, timestamp without time zone (read as UTC), no version
 * or metadata column, an int4 id. */
Test(relay, unmapped_columns_and_plain_timestamps, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_config(&scope, config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  table: plain_outbox\n"
                    "  poll_interval: 50ms\n"
                    "  columns:\n"
                    "    id: n\n"
                    "    created_at: at\n"
                    "    key: k\n"
                    "    type: t\n"
                    "    version: ~\n"
                    "    payload: p\n"
                    "    metadata: ~\n"
                    "sink:\n"
                    "  plugin: stdout\n",
                    RELAY_NAME, scope.conninfo_yaml);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_exec(scope.conn, "CREATE TABLE plain_outbox (n serial PRIMARY KEY, at timestamp, k text NOT "
                        "NULL, t text NOT NULL, p json)");
    th_migrate(config);
    th_exec(scope.conn,
            "INSERT INTO plain_outbox (at, k, t, p) VALUES "
            "('1999-12-31 23:59:59.999999', 'a', 'x', '{ \"kept\" : \"as written\" }'), "
            "('2024-02-29 12:00:00', 'b', 'y', NULL), "
            "(NULL, 'c', 'z', '[1]')");

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 3);
    th_relay_stop(&scope, pid);

    static const char *const expected[] = {
        "{\"id\":1,\"key\":\"a\",\"type\":\"x\",\"version\":null,\"payload\":{ \"kept\" : \"as "
        "written\" },\"metadata\":null,\"created_at\":\"1999-12-31T23:59:59.999999Z\"}",
        "{\"id\":2,\"key\":\"b\",\"type\":\"y\",\"version\":null,\"payload\":null,\"metadata\":"
        "null,\"created_at\":\"2024-02-29T12:00:00.000000Z\"}",
        "{\"id\":3,\"key\":\"c\",\"type\":\"z\",\"version\":null,\"payload\":[1],\"metadata\":"
        "null,\"created_at\":null}",
    };
    char **lines;
    size_t n_lines = th_read_lines(out, &lines);
    cr_assert_eq(n_lines, 3, "%zu lines", n_lines);
    for (size_t i = 0; i < n_lines; i++)
        cr_assert_str_eq(lines[i], expected[i], "line %zu:\n  got      %s\n  expected %s", i + 1,
                         lines[i], expected[i]);
    th_free_lines(lines, n_lines);
}

Test(relay, out_of_order_commit, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "2s", 64);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_until(&scope, TH_DEADLINE_MS, relay_is_up, NULL, "the relay to load its checkpoint");

    /* A takes id 1 but commits late; B takes id 2 and commits at once. */
    PGconn *a = th_scope_connect(&scope);
    PGconn *b = th_scope_connect(&scope);
    th_exec(a, "BEGIN");
    cr_assert_eq(th_query_int64(a, "INSERT INTO events (aggregate_id, aggregate_type, "
                                   "aggregate_version, kind, body) VALUES "
                                   "('a', 'order', 1, 'created', '{}') RETURNING id"),
                 1);
    cr_assert_eq(th_query_int64(b, "INSERT INTO events (aggregate_id, aggregate_type, "
                                   "aggregate_version, kind, body) VALUES "
                                   "('b', 'order', 1, 'created', '{}') RETURNING id"),
                 2);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE id = 2"), 1);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE id = 1"), 0);

    /* This is the moment a relay without a margin delivers 2 and moves past 1 for good. */
    th_hold_for(&scope, 500, nothing_delivered, out, "nothing delivered while id 1 is in flight");

    if (!th_query_int64(a, "SELECT (clock_timestamp() - created_at < interval '1900 ms')::int "
                           "FROM events WHERE id = 1"))
        cr_skip_test("machine too slow: id 1 left the safety margin before its commit");
    th_exec(a, "COMMIT");

    th_wait_position(&scope, RELAY_NAME, 2);
    int64_t *ids;
    size_t n = th_read_stdout_ids(out, &ids);
    assert_ids_range(ids, n, 1, 2, "output");
    free(ids);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 2);
    th_relay_stop(&scope, pid);
}

Test(relay, cut_at_first_row_inside_margin, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "3s", 64);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    /* id 1 is fresh, id 2 old: the batch must stop before id 1, so id 2 waits too. */
    th_exec(scope.conn, "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, "
                        "kind, body, created_at) VALUES "
                        "('fresh', 'order', 1, 'created', '{}', clock_timestamp())");
    th_exec(scope.conn, "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, "
                        "kind, body, created_at) VALUES "
                        "('old', 'order', 1, 'created', '{}', " LONG_AGO ")");

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_until(&scope, TH_DEADLINE_MS, relay_is_up, NULL, "the relay to load its checkpoint");

    /* Watch for as long as id 1 is surely inside the margin, by the database's clock (the one
     * the relay judges by), keeping half a second away from the edge. */
    int64_t remaining_ms = th_query_int64(
        scope.conn, "SELECT (extract(epoch FROM created_at + interval '3 s' - clock_timestamp())"
                    " * 1000)::bigint FROM events WHERE id = 1");
    if (remaining_ms > 1000)
        th_hold_for(&scope, (int)(remaining_ms - 500), nothing_delivered, out,
                    "nothing delivered while id 1 is inside the margin");
    else
        cr_log_info("machine too slow: %" PRId64 " ms left in the margin, not watched",
                    remaining_ms);

    th_wait_position(&scope, RELAY_NAME, 2);
    int64_t *ids;
    size_t n = th_read_stdout_ids(out, &ids);
    assert_ids_range(ids, n, 1, 2, "output");
    free(ids);
    th_relay_stop(&scope, pid);
}

typedef struct position_window {
    int64_t above;
} position_window;

static bool position_moved(void *arg)
{
    position_window *w = arg;
    return th_position(&scope, RELAY_NAME) > w->above;
}

Test(relay, kill9_restart, .init = setup, .fini = teardown)
{
    const int64_t n_events = 20000;
    char config[TH_PATH_MAX], out1[TH_PATH_MAX], out2[TH_PATH_MAX], err1[TH_PATH_MAX],
        err2[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 100);
    th_path(&scope, "relay1.out", out1);
    th_path(&scope, "relay1.err", err1);
    th_path(&scope, "relay2.out", out2);
    th_path(&scope, "relay2.err", err2);
    th_migrate(config);
    th_insert_events(scope.conn, (int)n_events, LONG_AGO);

    pid_t first = th_relay_start(&scope, config, out1, err1);
    position_window started = {0};
    th_wait_until(&scope, TH_DEADLINE_MS, position_moved, &started, "a first committed batch");
    th_relay_signal(first, SIGKILL);
    cr_assert_eq(th_relay_wait(&scope, first, TH_DEADLINE_MS), 128 + SIGKILL);
    /* Its backend may still be running a COMMIT it received before the kill. */
    th_wait_relay_sessions_gone(&scope);
    int64_t at_kill = th_position(&scope, RELAY_NAME);
    if (at_kill == n_events)
        cr_log_info("the relay finished before the kill; the restart is not exercised");

    pid_t second = th_relay_start(&scope, config, out2, err2);
    th_wait_position(&scope, RELAY_NAME, n_events);
    th_relay_stop(&scope, second);

    int64_t *ids1, *ids2;
    size_t n1 = th_read_stdout_ids(out1, &ids1);
    size_t n2 = th_read_stdout_ids(out2, &ids2);
    /* What the first run committed, it had written, in order. */
    cr_assert_geq((int64_t)n1, at_kill, "first run committed %" PRId64 " but wrote %zu", at_kill,
                  n1);
    for (size_t i = 0; i < n1; i++)
        cr_assert_eq(ids1[i], (int64_t)i + 1, "first run, line %zu: id %" PRId64, i + 1, ids1[i]);
    /* The second resumes right after the committed position, not from the start. */
    if (at_kill < n_events) {
        assert_ids_range(ids2, n2, at_kill + 1, n_events, "second run");
        cr_assert_gt(ids2[0], 1, "the second run started over from id 1");
    }
    /* Nothing lost. */
    unsigned char *seen = calloc((size_t)n_events + 1, 1);
    cr_assert_not_null(seen);
    for (size_t i = 0; i < n1; i++)
        seen[ids1[i]] = 1;
    for (size_t i = 0; i < n2; i++) {
        cr_assert(ids2[i] >= 1 && ids2[i] <= n_events);
        seen[ids2[i]] = 1;
    }
    for (int64_t id = 1; id <= n_events; id++)
        cr_assert(seen[id], "id %" PRId64 " was never delivered", id);
    free(seen);
    free(ids1);
    free(ids2);
}

typedef struct line_goal {
    const char *path;
    size_t at_least;
} line_goal;

static bool file_has_lines(void *arg)
{
    line_goal *goal = arg;
    char **lines;
    size_t n = th_read_lines(goal->path, &lines);
    th_free_lines(lines, n);
    return n >= goal->at_least;
}

static bool failed_thrice_or_moved(void *arg)
{
    return file_has_lines(arg) || th_position(&scope, RELAY_NAME) > 0;
}

Test(relay, failing_sink_holds_position, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], attempts[TH_PATH_MAX], fail[TH_PATH_MAX],
        out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "sink.out", sink_out);
    th_path(&scope, "sink.attempts", attempts);
    th_path(&scope, "sink.fail", fail);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_write_file(fail, "failing\n");
    th_write_config(&scope, config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  safety_margin: 0s\n"
                    "  poll_interval: 50ms\n"
                    "sink:\n"
                    "  plugin: %s\n"
                    "  options:\n"
                    "    out: %s\n"
                    "    attempts: %s\n"
                    "    fail_while_exists: %s\n"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 200ms\n",
                    RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), sink_out, attempts,
                    fail);
    th_migrate(config);
    th_insert_events(scope.conn, 10, LONG_AGO);

    pid_t pid = th_relay_start(&scope, config, out, err);
    /* Stop waiting early too when the position moves: that is the failure to report. */
    line_goal three_attempts = {attempts, 3};
    th_wait_until(&scope, TH_DEADLINE_MS, failed_thrice_or_moved, &three_attempts,
                  "three failed flushes");
    cr_assert_eq(th_position(&scope, RELAY_NAME), 0, "position moved past a failed flush");
    size_t out_len;
    free(th_read_file(sink_out, &out_len));
    cr_assert_eq(out_len, 0, "the sink accepted events while failing");

    cr_assert_eq(unlink(fail), 0);
    th_wait_position(&scope, RELAY_NAME, 10);
    th_relay_stop(&scope, pid);

    int64_t *ids;
    size_t n = th_read_testsink_ids(sink_out, &ids);
    /* At least once, in order: the first appearances are 1..10. */
    int64_t next = 1;
    for (size_t i = 0; i < n; i++) {
        cr_assert(ids[i] >= 1 && ids[i] <= next, "line %zu: id %" PRId64 " before %" PRId64, i + 1,
                  ids[i], next);
        if (ids[i] == next)
            next++;
    }
    cr_assert_eq(next, 11, "ids 1..10 not all delivered (up to %" PRId64 ")", next - 1);
    free(ids);
}

/* ---- PostgreSQL restart: a cluster of the test's own ---------------------------------------- */

static th_cluster cluster;

/* Called from the test body, not from .init: Criterion runs .fini after a failure in the body,
 * not after one in .init, and a started server must always be stopped. */
static void start_own_cluster(void)
{
    th_cluster_start(&cluster, NULL);
    th_scope_new_at(&scope, cluster.conninfo);
}

/* Runs after a failure too: whatever happened, the server stops and its files go. */
static void teardown_own_cluster(void)
{
    th_scope_free(&scope);
    th_clusters_free();
}

static bool own_session_back(void *arg)
{
    (void)arg;
    PGresult *res = PQexec(scope.conn, "SELECT 1");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    if (!ok)
        PQreset(scope.conn);
    return ok;
}

static bool all_ids_delivered(void *arg)
{
    const line_goal *goal = arg;
    int64_t *ids;
    size_t n = th_read_stdout_ids(goal->path, &ids);
    size_t next = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == (int64_t)next)
            next++;
    }
    free(ids);
    return next > goal->at_least;
}

Test(relay, postgres_restart, .fini = teardown_own_cluster)
{
    start_own_cluster();
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "0s", 64);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    th_insert_events(scope.conn, 10, LONG_AGO);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 10);

    th_cluster_restart(&cluster);
    th_wait_until(&scope, TH_DEADLINE_MS, own_session_back, NULL,
                  "the test's own session to reconnect");
    th_insert_events(scope.conn, 10, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 20);

    /* At least once across the outage, in order: the first appearances are 1..20. */
    line_goal all = {out, 20};
    th_wait_until(&scope, TH_DEADLINE_MS, all_ids_delivered, &all, "ids 1..20 in the output");
    int64_t *ids;
    size_t n = th_read_stdout_ids(out, &ids);
    int64_t highest = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(ids[i] <= highest + 1, "line %zu: id %" PRId64 " skips ahead of %" PRId64, i + 1,
                  ids[i], highest);
        if (ids[i] > highest)
            highest = ids[i];
    }
    free(ids);
    th_relay_stop(&scope, pid);
}

typedef struct pipe_reader {
    int fd;
} pipe_reader;

static bool pipe_has_data(void *arg)
{
    pipe_reader *r = arg;
    int available = 0;
    return ioctl(r->fd, FIONREAD, &available) == 0 && available > 0;
}

/* Copies the pipe into path until every writer closed it, within TH_DEADLINE_MS. */
static void drain_pipe(int fd, const char *path)
{
    FILE *out = fopen(path, "w");
    cr_assert_not_null(out, "cannot write %s", path);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n == 0)
                break;
            if (n > 0)
                fwrite(buf, 1, (size_t)n, out);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        cr_assert_lt((now.tv_sec - start.tv_sec) * 1000, TH_DEADLINE_MS,
                     "the relay's stdout stayed open after SIGTERM");
    }
    fclose(out);
}

Test(relay, sigterm_finishes_batch, .init = setup, .fini = teardown)
{
    /* The relay writes into a pipe nobody reads yet: once the first bytes are there, it soon
     * blocks inside deliver() with a batch larger than the pipe holds (the reads after a connect
     * double from 16 rows). That is when the signal comes. */
    const int64_t n_events = 5000;
    char config[TH_PATH_MAX], fifo[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", (int)n_events);
    th_path(&scope, "relay.fifo", fifo);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    th_migrate(config);
    th_insert_events(scope.conn, (int)n_events, LONG_AGO);

    cr_assert_eq(mkfifo(fifo, 0600), 0);
    /* Opened first, without blocking, so that the relay's open for writing finds a reader. */
    pipe_reader reader = {open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
    cr_assert_geq(reader.fd, 0);
    pid_t pid = th_relay_start(&scope, config, fifo, err);
    th_wait_until(&scope, TH_DEADLINE_MS, pipe_has_data, &reader, "the first delivered bytes");
    th_relay_signal(pid, SIGTERM);
    drain_pipe(reader.fd, out);
    close(reader.fd);
    int code = th_relay_wait(&scope, pid, TH_DEADLINE_MS);
    cr_assert_eq(code, 0, "relay exited %d after SIGTERM", code);

    /* It finished the batch in hand and committed exactly what it wrote. */
    int64_t position = th_position(&scope, RELAY_NAME);
    int64_t *ids;
    size_t n = th_read_stdout_ids(out, &ids);
    assert_ids_range(ids, n, 1, position, "output");
    cr_assert_eq(position, (int64_t)n, "stopped at %" PRId64 " with events 1..%zu written",
                 position, n);
    free(ids);
}

/* ---- events the destination refuses for good (sink.on_reject) ------------------------------- */

/* A testsink config refusing reject_ids, with the given on_reject line ("" for the default). */
static void write_rejecting_config(char config[TH_PATH_MAX], const char *sink_out,
                                   const char *reject_ids, const char *on_reject_line)
{
    th_write_config(&scope, config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  safety_margin: 0s\n"
                    "  poll_interval: 50ms\n"
                    "sink:\n"
                    "  plugin: %s\n"
                    "%s"
                    "  options:\n"
                    "    out: %s\n"
                    "    reject_ids: \"%s\"\n"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 200ms\n",
                    RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), on_reject_line,
                    sink_out, reject_ids);
}

/* Whether text mentions "event ID" with no further digit: "event 6" but not "event 60". */
static bool names_event(const char *text, int64_t id)
{
    char needle[32];
    snprintf(needle, sizeof needle, "event %" PRId64, id);
    for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + 1, needle)) {
        char next = at[strlen(needle)];
        if (next < '0' || next > '9')
            return true;
    }
    return false;
}

Test(relay, reject_stop, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "sink.out", sink_out);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    write_rejecting_config(config, sink_out, "6", "");
    th_migrate(config);
    th_insert_events(scope.conn, 10, LONG_AGO);

    pid_t pid = th_relay_start(&scope, config, out, err);
    int code = th_relay_wait(&scope, pid, TH_DEADLINE_MS);
    cr_assert_eq(code, 1, "relay exited %d, expected 1 (sink.on_reject: stop)", code);

    char *log = th_read_file(err, NULL);
    cr_assert(names_event(log, 6), "stderr does not name event 6:\n%s", log);
    free(log);
    /* Everything before the refused event is kept; the event itself and all after it are not. */
    cr_assert_eq(th_position(&scope, RELAY_NAME), 5);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_dead_letters"), 0,
                 "the stop policy recorded a dead letter");

    int64_t *ids;
    size_t n = th_read_testsink_ids(sink_out, &ids);
    cr_assert_geq(n, 5, "the sink accepted %zu events, expected at least 1..5", n);
    assert_ids_range(ids, 5, 1, 5, "the sink's first five");
    for (size_t i = 0; i < n; i++)
        cr_assert_neq(ids[i], 6, "the refused event 6 reached the sink's output");
    free(ids);
}

Test(relay, reject_dead_letter, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "sink.out", sink_out);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    write_rejecting_config(config, sink_out, "3,7", "  on_reject: dead_letter\n");
    th_migrate(config);
    th_insert_events(scope.conn, 10, LONG_AGO);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 10);
    /* Still running: SIGTERM finds it and it exits 0. */
    th_relay_stop(&scope, pid);

    char *dead = th_query_text(scope.conn,
                               "SELECT string_agg(event_id || ' ' || relay_name || ' ' || reason,"
                               " E'\\n' ORDER BY event_id) FROM relay_dead_letters");
    char expected[512];
    snprintf(expected, sizeof expected,
             "3 %s testsink: refused on purpose\n7 %s testsink: refused on purpose", RELAY_NAME,
             RELAY_NAME);
    cr_assert_not_null(dead, "relay_dead_letters is empty");
    cr_assert_str_eq(dead, expected, "relay_dead_letters:\n%s\nexpected:\n%s", dead, expected);
    free(dead);

    int64_t *ids;
    size_t n = th_read_testsink_ids(sink_out, &ids);
    const int64_t accepted[] = {1, 2, 4, 5, 6, 8, 9, 10};
    const size_t n_accepted = sizeof accepted / sizeof accepted[0];
    cr_assert_eq(n, n_accepted, "the sink accepted %zu events, expected %zu", n, n_accepted);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], accepted[i], "line %zu: id %" PRId64 ", expected %" PRId64, i + 1,
                     ids[i], accepted[i]);
    free(ids);
}

typedef struct forgot_goal {
    const char *err;
} forgot_goal;

static bool forgot_the_gap(void *arg)
{
    const forgot_goal *g = arg;
    return th_file_contains(g->err, "forgot 1 missing id") &&
           th_query_int64(scope.conn, "SELECT count(*) FROM relay_gaps") == 0;
}

/* A refused event is recorded once: the commit that the gap watch makes later, with no hand-over
 * of its own, must not record the last hand-over's refusals again. */
Test(relay, reject_recorded_once_when_a_gap_is_stored_later, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "sink.out", sink_out);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    write_rejecting_config(config, sink_out, "3", "  on_reject: dead_letter\n");
    th_migrate(config);
    sc_begin(&scope);
    PGconn *open_tx = th_scope_connect(&scope);
    for (int64_t id = 1; id <= 3; id++)
        cr_assert_eq(sc_insert_one(scope.conn), id);
    th_exec(open_tx, "BEGIN");
    cr_assert_eq(sc_insert_one(open_tx), 4);
    cr_assert_eq(sc_insert_one(scope.conn), 5);

    /* One hand-over: 1, 2, 3 (refused), 5, leaving the gap {4} watched. */
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 5);
    th_exec(open_tx, "ROLLBACK");
    forgot_goal goal = {err};
    th_wait_until(&scope, TH_DEADLINE_MS, forgot_the_gap, &goal, "the rolled-back id forgotten");
    th_relay_stop(&scope, pid);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_dead_letters"), 1,
                 "event 3 recorded as a dead letter more than once");
}

/* ---- one leader ------------------------------------------------------------------------------ */

/* A testsink config with its own out file, a failure switch (NULL: never fails) and the first
 * backoff after a failure (YAML duration). */
static void write_switchable_config(char config[TH_PATH_MAX], const char *sink_out,
                                    const char *fail_path, const char *retry_initial)
{
    char fail_line[TH_PATH_MAX + 32] = "";
    if (fail_path)
        snprintf(fail_line, sizeof fail_line, "    fail_while_exists: %s\n", fail_path);
    th_write_config(&scope, config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  safety_margin: 0s\n"
                    "  poll_interval: 50ms\n"
                    "sink:\n"
                    "  plugin: %s\n"
                    "  options:\n"
                    "    out: %s\n"
                    "%s"
                    "retry:\n"
                    "  initial: %s\n"
                    "  max: 2s\n",
                    RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), sink_out, fail_line,
                    retry_initial);
}

typedef struct log_goal {
    const char *path;
    const char *text;
} log_goal;

static bool log_has(void *arg)
{
    const log_goal *g = arg;
    return th_file_contains(g->path, g->text);
}

/* The backend holding the scope's relay lock (its sessions carry the scope's application_name). */
static int64_t lock_holder_pid(void)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
             " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = '%s'",
             scope.schema);
    return th_query_int64(scope.conn, sql);
}

/*
 * The leader's sink fails; meanwhile its session is ended and the standby takes over and
 * delivers everything. When the old leader's sink recovers, it must not hand the events over
 * again after the standby's: it finds its lock gone before its next attempt, and stands by.
 */
Test(relay, leader_that_lost_its_session_delivers_nothing_more, .init = setup, .fini = teardown)
{
    char leader_cfg[TH_PATH_MAX], standby_cfg[TH_PATH_MAX], leader_out[TH_PATH_MAX],
        standby_out[TH_PATH_MAX], fail[TH_PATH_MAX], out[TH_PATH_MAX], leader_err[TH_PATH_MAX],
        standby_err[TH_PATH_MAX];
    th_path(&scope, "leader.sink", leader_out);
    th_path(&scope, "standby.sink", standby_out);
    th_path(&scope, "leader.fail", fail);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "leader.err", leader_err);
    th_path(&scope, "standby.err", standby_err);
    th_write_file(fail, "failing\n");
    /* The leader backs off for a second after each failure: the standby, waiting on the lock,
     * takes it the moment the leader's session is gone. */
    write_switchable_config(leader_cfg, leader_out, fail, "1s");
    write_switchable_config(standby_cfg, standby_out, NULL, "50ms");
    th_migrate(leader_cfg);
    th_insert_events(scope.conn, 6, LONG_AGO);

    pid_t leader = th_relay_start(&scope, leader_cfg, out, leader_err);
    log_goal failing = {leader_err, "sink failed on events"};
    th_wait_until(&scope, TH_DEADLINE_MS, log_has, &failing, "the leader's sink to fail");
    pid_t standby = th_relay_start(&scope, standby_cfg, out, standby_err);
    log_goal standing_by = {standby_err, "standing by"};
    th_wait_until(&scope, TH_DEADLINE_MS, log_has, &standing_by, "the standby to stand by");

    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%" PRId64 ", 10000)::int",
             lock_holder_pid());
    cr_assert_eq(th_query_int64(scope.conn, sql), 1);
    th_wait_position(&scope, RELAY_NAME, 6);

    /* The old leader's sink recovers: by now it must know it is no longer the leader. */
    cr_assert_eq(unlink(fail), 0);
    log_goal demoted = {leader_err, "standing by"};
    th_wait_until(&scope, TH_DEADLINE_MS, log_has, &demoted, "the old leader to stand by");
    size_t written;
    free(th_read_file(leader_out, &written));
    cr_assert_eq(written, 0, "the old leader delivered after losing its lock");
    th_relay_stop(&scope, leader);
    th_relay_stop(&scope, standby);
}

/* The lock belongs to the relay's name and the checkpoint table's schema, not to the table's
 * oid: re-creating the table (or restoring it) must not let a second relay of that name run. */
Test(relay, lock_survives_the_checkpoint_table_recreated, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], out[TH_PATH_MAX], first_err[TH_PATH_MAX],
        second_err[TH_PATH_MAX];
    th_path(&scope, "sink.out", sink_out);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "first.err", first_err);
    th_path(&scope, "second.err", second_err);
    write_switchable_config(config, sink_out, NULL, "50ms");
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    pid_t first = th_relay_start(&scope, config, out, first_err);
    th_wait_position(&scope, RELAY_NAME, 3);

    th_exec(scope.conn, "BEGIN;"
                        " CREATE TABLE saved AS SELECT * FROM relay_checkpoints;"
                        " DROP TABLE relay_checkpoints;"
                        " CREATE TABLE relay_checkpoints (LIKE saved INCLUDING ALL,"
                        "                                 PRIMARY KEY (name));"
                        " INSERT INTO relay_checkpoints SELECT * FROM saved;"
                        " COMMIT");
    pid_t second = th_relay_start(&scope, config, out, second_err);
    log_goal standing_by = {second_err, "standing by"};
    th_wait_until(&scope, TH_DEADLINE_MS, log_has, &standing_by,
                  "the second relay to stand by behind the first");
    th_relay_stop(&scope, second);
    th_relay_stop(&scope, first);
}
