/*
 * The operator's commands: `dead-letters list|retry|drop` and `replay`, driven through the real
 * binary against dead letters a real relay made (the testsink refusing chosen events under
 * sink.on_reject: dead_letter) and positions it stored; and every command's own --help.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../harness/harness.h"
#include "scene.h"

#define LONG_AGO "now() - interval '1 hour'"
/* Relays lock their name database-wide: each test names its relay after its own schema. */
#define RELAY_NAME scope.schema

static th_scope scope;

static void setup(void)
{
    th_scope_new(&scope);
}

static void teardown(void)
{
    th_scope_free(&scope);
}

TestSuite(operator, .init = setup, .fini = teardown, .timeout = 180);

/* A testsink config of the scope's relay writing to sink_out, refusing reject_ids (NULL: none)
 * with sink.on_reject: dead_letter, in batches of batch_size. */
static void write_testsink_config(char config[TH_PATH_MAX], const char *sink_out,
                                  const char *reject_ids, int batch_size)
{
    char reject_line[128] = "";
    if (reject_ids)
        snprintf(reject_line, sizeof reject_line, "    reject_ids: \"%s\"\n", reject_ids);
    th_write_config(&scope, config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  safety_margin: 0s\n"
                    "  poll_interval: 50ms\n"
                    "  batch_size: %d\n"
                    "sink:\n"
                    "  plugin: %s\n"
                    "  on_reject: dead_letter\n"
                    "  options:\n"
                    "    out: %s\n"
                    "%s"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 200ms\n",
                    RELAY_NAME, scope.conninfo_yaml, batch_size, th_env("RELAY_TESTSINK"), sink_out,
                    reject_line);
}

/* Runs a relay on config until its position reaches position, then stops it (exit 0). */
static void relay_until(const char *config, int64_t position)
{
    char out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, position);
    th_relay_stop(&scope, pid);
}

/* Events 1..10, a relay refusing 3 and 7 as dead letters and delivering the rest to
 * "relay.sink"; rejecting_config gets its config. */
static void make_dead_letters(char rejecting_config[TH_PATH_MAX])
{
    char sink_out[TH_PATH_MAX];
    th_path(&scope, "relay.sink", sink_out);
    write_testsink_config(rejecting_config, sink_out, "3,7", 100);
    th_migrate(rejecting_config);
    th_insert_events(scope.conn, 10, LONG_AGO);
    relay_until(rejecting_config, 10);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_dead_letters"), 2);
}

/* The event ids of relay_dead_letters, "3,7" ("" for none); caller frees. */
static char *dead_letter_events(void)
{
    char *ids = th_query_text(scope.conn, "SELECT coalesce(string_agg(event_id::text, ','"
                                          " ORDER BY event_id), '') FROM relay_dead_letters"
                                          " WHERE dropped_at IS NULL");
    cr_assert_not_null(ids);
    return ids;
}

static void assert_dead_letters(const char *expected, const char *when)
{
    char *ids = dead_letter_events();
    cr_assert_str_eq(ids, expected, "%s: dead letters of events [%s], expected [%s]", when, ids,
                     expected);
    free(ids);
}

/* Asserts that the testsink file holds exactly the ids, in order, each marked redelivered (or
 * none marked, with marked false). */
static void assert_sink_lines(const char *path, const int64_t *ids, size_t n, bool marked,
                              const char *what)
{
    char **lines;
    size_t count = th_read_lines(path, &lines);
    cr_assert_eq(count, n, "%s: %zu lines, expected %zu", what, count, n);
    for (size_t i = 0; i < count; i++) {
        long long id;
        cr_assert_eq(sscanf(lines[i], "%lld", &id), 1, "%s: line %zu: %s", what, i + 1, lines[i]);
        cr_assert_eq(id, ids[i], "%s: line %zu has id %lld, expected %" PRId64, what, i + 1, id,
                     ids[i]);
        size_t len = strlen(lines[i]);
        bool mark = len > 12 && strcmp(lines[i] + len - 12, " redelivered") == 0;
        cr_assert_eq(mark, marked, "%s: line %zu is%s marked redelivered: %s", what, i + 1,
                     mark ? "" : " not", lines[i]);
    }
    th_free_lines(lines, count);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Runs the CLI; asserts its exit code and, when expected is not NULL, that stderr says it. */
static void assert_cli(const char *const argv[], int want, const char *expected)
{
    char *out = NULL, *err = NULL;
    int code = th_run_cli_argv(&out, &err, argv);
    cr_assert_eq(code, want, "%s %s ... exited %d, not %d:\n%s%s", argv[0], argv[1] ? argv[1] : "",
                 code, want, out, err);
    if (expected)
        cr_assert_not_null(strstr(err, expected), "%s ...: no '%s' in:\n%s", argv[0], expected,
                           err);
    free(out);
    free(err);
}

/* ---- dead-letters list ------------------------------------------------------------------- */

Test(operator, list_shows_the_dead_letters_as_text_and_json)
{
    char config[TH_PATH_MAX];
    make_dead_letters(config);
    int64_t first = th_query_int64(scope.conn, "SELECT min(id) FROM relay_dead_letters");

    char *out, *err;
    int code = th_run_cli(&out, &err, "dead-letters", "-c", config, "list");
    cr_assert_eq(code, 0, "list exited %d: %s", code, err);
    char head[128];
    snprintf(head, sizeof head, "2 dead letters of '%s':\n", RELAY_NAME);
    cr_assert(strncmp(out, head, strlen(head)) == 0, "no '%s' first in:\n%s", head, out);
    /* One row per dead letter: its own id, the event id, when, in the table, why. */
    const int64_t events[] = {3, 7};
    for (size_t i = 0; i < 2; i++) {
        char row[64];
        snprintf(row, sizeof row, "\n%-8" PRId64 " %-12" PRId64 " ", first + (int64_t)i, events[i]);
        const char *at = strstr(out, row);
        cr_assert_not_null(at, "no row '%s' in:\n%s", row + 1, out);
        const char *eol = strchr(at + 1, '\n');
        cr_assert_not_null(eol);
        char *line = strndup(at + 1, (size_t)(eol - at - 1));
        cr_assert(strstr(line, " yes ") && strstr(line, "testsink: refused on purpose"),
                  "row of event %" PRId64 ": %s", events[i], line);
        free(line);
    }
    free(out);
    free(err);

    code = th_run_cli(&out, &err, "dead-letters", "-c", config, "list", "--json");
    cr_assert_eq(code, 0, "list --json exited %d: %s", code, err);
    char expected[1024];
    char *when3 =
        th_query_text(scope.conn, "SELECT to_char(created_at AT TIME ZONE 'UTC',"
                                  " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM relay_dead_letters"
                                  " WHERE event_id = 3");
    char *when7 =
        th_query_text(scope.conn, "SELECT to_char(created_at AT TIME ZONE 'UTC',"
                                  " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM relay_dead_letters"
                                  " WHERE event_id = 7");
    snprintf(expected, sizeof expected,
             "{\"id\":%" PRId64 ",\"event_id\":3,\"relay\":\"%s\",\"created_at\":\"%s\","
             "\"reason\":\"testsink: refused on purpose\",\"in_table\":true}\n"
             "{\"id\":%" PRId64 ",\"event_id\":7,\"relay\":\"%s\",\"created_at\":\"%s\","
             "\"reason\":\"testsink: refused on purpose\",\"in_table\":true}\n",
             first, RELAY_NAME, when3, first + 1, RELAY_NAME, when7);
    cr_assert_str_eq(out, expected, "list --json:\n%s\nexpected:\n%s", out, expected);
    free(when3);
    free(when7);
    free(out);
    free(err);

    /* Another relay's dead letters are not this one's. */
    th_exec(scope.conn, "INSERT INTO relay_dead_letters (relay_name, event_id, reason)"
                        " VALUES ('someone-else', 5, 'theirs')");
    code = th_run_cli(&out, &err, "dead-letters", "-c", config, "list", "--json");
    cr_assert_eq(code, 0);
    cr_assert_null(strstr(out, "theirs"), "another relay's dead letter listed:\n%s", out);
    free(out);
    free(err);
}

Test(operator, list_of_none)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX];
    th_path(&scope, "relay.sink", sink_out);
    write_testsink_config(config, sink_out, NULL, 100);
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "dead-letters", "-c", config, "list");
    cr_assert_eq(code, 0, "list exited %d: %s", code, err);
    char expected[128];
    snprintf(expected, sizeof expected, "0 dead letters of '%s'\n", RELAY_NAME);
    cr_assert_str_eq(out, expected);
    free(out);
    free(err);
    code = th_run_cli(&out, &err, "dead-letters", "-c", config, "list", "--json");
    cr_assert_eq(code, 0, "list --json exited %d: %s", code, err);
    cr_assert_str_eq(out, "", "list --json of none printed:\n%s", out);
    free(out);
    free(err);
}

/* ---- dead-letters retry ------------------------------------------------------------------ */

Test(operator, retry_delivers_exactly_those_events_marked_and_removes_them)
{
    char rejecting[TH_PATH_MAX], config[TH_PATH_MAX], sink_out[TH_PATH_MAX];
    make_dead_letters(rejecting);
    /* The destination takes them now; batches of one, so that the retry takes two. */
    th_path(&scope, "retry.sink", sink_out);
    write_testsink_config(config, sink_out, NULL, 1);

    char *out, *err;
    int code = th_run_cli(&out, &err, "dead-letters", "-c", config, "retry", "7", "3");
    cr_assert_eq(code, 0, "retry exited %d:\n%s%s", code, out, err);
    char expected[256];
    snprintf(expected, sizeof expected,
             "retried 2 events of '%s': 2 delivered (dead letters removed)\n", RELAY_NAME);
    cr_assert_str_eq(out, expected);
    free(out);
    free(err);
    const int64_t ids[] = {3, 7};
    assert_sink_lines(sink_out, ids, 2, true, "the retry's deliveries");
    assert_dead_letters("", "after the retry");
    cr_assert_eq(th_position(&scope, RELAY_NAME), 10, "the retry moved the position");
}

/* Dead letters are often the events too large for the destination: a retry reads them cut by
 * batch_bytes, as the relay does, and goes on with the ids the cut left for the next batch. */
Test(operator, retry_cuts_its_batches_by_batch_bytes)
{
    char rejecting[TH_PATH_MAX], config[TH_PATH_MAX], sink_out[TH_PATH_MAX], batches[TH_PATH_MAX];
    make_dead_letters(rejecting);
    /* 40 kB each: two do not fit in 64 kB. */
    th_exec(scope.conn, "UPDATE events SET body = jsonb_build_object('blob', repeat('x', 40000))"
                        " WHERE id IN (3, 7)");
    th_path(&scope, "retry.sink", sink_out);
    th_path(&scope, "retry.batches", batches);
    th_write_config(&scope, config,
                    "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  batch_size: 100\n"
                    "  batch_bytes: 65536\nsink:\n  plugin: %s\n  options:\n    out: %s\n"
                    "    batches: %s\n",
                    RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), sink_out, batches);

    char *out, *err;
    int code = th_run_cli(&out, &err, "dead-letters", "-c", config, "retry", "3", "7");
    cr_assert_eq(code, 0, "retry exited %d:\n%s%s", code, out, err);
    cr_assert_not_null(strstr(out, "2 delivered (dead letters removed)\n"), "retry says:\n%s", out);
    cr_assert_null(strstr(out, "no longer in the table"), "retry says:\n%s", out);
    free(out);
    free(err);
    const int64_t ids[] = {3, 7};
    assert_sink_lines(sink_out, ids, 2, true, "the retry's deliveries");
    char *sizes = th_read_file(batches, NULL);
    cr_assert_str_eq(sizes, "1\n1\n", "the retry's batches were not cut by batch_bytes");
    free(sizes);
    assert_dead_letters("", "after the retry");
}

Test(operator, retry_of_an_unknown_id_fails_and_changes_nothing)
{
    char rejecting[TH_PATH_MAX], config[TH_PATH_MAX], sink_out[TH_PATH_MAX];
    make_dead_letters(rejecting);
    th_path(&scope, "retry.sink", sink_out);
    write_testsink_config(config, sink_out, NULL, 100);

    /* 5 is an event, delivered: not a dead letter; 99 is no event at all. */
    const char *argv[] = {"dead-letters", "-c", config, "retry", "3", "5", "99", NULL};
    assert_cli(argv, 7, "event 5, event 99");
    cr_assert(!exists(sink_out), "the refused retry delivered something");
    assert_dead_letters("3,7", "after the refused retry");
}

Test(operator, retry_refused_again_keeps_the_dead_letter)
{
    char rejecting[TH_PATH_MAX], sink_out[TH_PATH_MAX];
    make_dead_letters(rejecting);
    th_path(&scope, "relay.sink", sink_out);
    char **lines;
    size_t before = th_read_lines(sink_out, &lines);
    th_free_lines(lines, before);

    /* The same destination, refusing 3 and 7 still. */
    const char *argv[] = {"dead-letters", "-c", rejecting, "retry", "3", NULL};
    assert_cli(argv, 1, "the sink refused event 3 again");
    assert_dead_letters("3,7", "after the refused retry");
    size_t after = th_read_lines(sink_out, &lines);
    th_free_lines(lines, after);
    cr_assert(before == 8 && after == 8, "the sink's output went from %zu to %zu lines", before,
              after);
}

Test(operator, retry_of_an_event_gone_from_the_table_names_it_and_keeps_it)
{
    char rejecting[TH_PATH_MAX], config[TH_PATH_MAX], sink_out[TH_PATH_MAX];
    make_dead_letters(rejecting);
    th_path(&scope, "retry.sink", sink_out);
    write_testsink_config(config, sink_out, NULL, 100);
    /* As retention would, were the row not a dead letter's. */
    th_exec(scope.conn, "DELETE FROM events WHERE id = 7");

    char *out, *err;
    int code = th_run_cli(&out, &err, "dead-letters", "-c", config, "list", "--json");
    cr_assert_eq(code, 0);
    cr_assert(strstr(out, "\"event_id\":7,") && strstr(out, "\"in_table\":false}"),
              "list does not say event 7 is gone:\n%s", out);
    free(out);
    free(err);

    const char *argv[] = {"dead-letters", "-c", config, "retry", "3", "7", NULL};
    assert_cli(argv, 7, "event 7");
    const int64_t ids[] = {3};
    assert_sink_lines(sink_out, ids, 1, true, "the retry's deliveries");
    assert_dead_letters("7", "after the retry");
}

static bool relay_alive(void *arg)
{
    return kill(*(pid_t *)arg, 0) == 0;
}

/* retry takes no lock either: the relay that made the dead letters goes on leading meanwhile. */
Test(operator, retry_runs_beside_the_running_relay)
{
    char rejecting[TH_PATH_MAX], config[TH_PATH_MAX], relay_sink[TH_PATH_MAX];
    char retry_sink[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "relay.sink", relay_sink);
    th_path(&scope, "retry.sink", retry_sink);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    write_testsink_config(rejecting, relay_sink, "3,7", 100);
    write_testsink_config(config, retry_sink, NULL, 100);
    th_migrate(rejecting);
    th_insert_events(scope.conn, 10, LONG_AGO);
    pid_t pid = th_relay_start(&scope, rejecting, out, err);
    th_wait_position(&scope, RELAY_NAME, 10);

    const char *argv[] = {"dead-letters", "-c", config, "retry", "3", "7", NULL};
    assert_cli(argv, 0, NULL);
    const int64_t ids[] = {3, 7};
    assert_sink_lines(retry_sink, ids, 2, true, "the retry's deliveries");
    assert_dead_letters("", "after the retry");
    th_hold_for(&scope, 200, relay_alive, &pid, "the relay running");
    th_insert_events(scope.conn, 2, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 12);
    th_relay_stop(&scope, pid);
}

/* The sink failing (not refusing) delivers nothing for sure: every dead letter stays. */
Test(operator, retry_with_a_failing_sink_keeps_the_dead_letters)
{
    char rejecting[TH_PATH_MAX], config[TH_PATH_MAX], sink_out[TH_PATH_MAX], fail[TH_PATH_MAX];
    make_dead_letters(rejecting);
    th_path(&scope, "retry.sink", sink_out);
    th_path(&scope, "fail", fail);
    th_write_file(fail, "down\n");
    th_write_config(&scope, config,
                    "name: %s\ndatabase:\n  conninfo: %s\nsink:\n  plugin: %s\n"
                    "  options:\n    out: %s\n    fail_while_exists: %s\n",
                    RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), sink_out, fail);
    const char *argv[] = {"dead-letters", "-c", config, "retry", "3", "7", NULL};
    assert_cli(argv, 1, "testsink: failing on purpose");
    assert_dead_letters("3,7", "after the failed retry");
}

/* ---- dead-letters drop ------------------------------------------------------------------- */

Test(operator, drop_removes_them_and_refuses_unknown_ids_whole)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX];
    make_dead_letters(config);
    th_path(&scope, "relay.sink", sink_out);

    const char *drop3[] = {"dead-letters", "-c", config, "drop", "3", NULL};
    assert_cli(drop3, 0, NULL);
    assert_dead_letters("7", "after drop 3");

    const char *drop_unknown[] = {"dead-letters", "-c", config, "drop", "7", "42", NULL};
    assert_cli(drop_unknown, 7, "event 42");
    assert_dead_letters("7", "after the refused drop");

    const char *drop7[] = {"dead-letters", "-c", config, "drop", "7", NULL};
    assert_cli(drop7, 0, NULL);
    assert_dead_letters("", "after drop 7");
    /* Dropped, not delivered; marked, not deleted (a replay leaves them out); no longer a dead
     * letter to retry or drop again. */
    const int64_t delivered[] = {1, 2, 4, 5, 6, 8, 9, 10};
    assert_sink_lines(sink_out, delivered, 8, false, "the relay's deliveries");
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_dead_letters"
                                            " WHERE dropped_at IS NOT NULL"),
                 2, "the dropped dead letters are not marked");
    const char *retry3[] = {"dead-letters", "-c", config, "retry", "3", NULL};
    assert_cli(retry3, 7, "event 3");
    const char *drop3_again[] = {"dead-letters", "-c", config, "drop", "3", NULL};
    assert_cli(drop3_again, 7, "event 3");
    char *out, *err;
    int code = th_run_cli(&out, &err, "dead-letters", "-c", config, "list");
    cr_assert_eq(code, 0);
    char none[128];
    snprintf(none, sizeof none, "0 dead letters of '%s'\n", RELAY_NAME);
    cr_assert_str_eq(out, none, "list shows dropped ones");
    free(out);
    free(err);
}

/* Retention keeps the rows of dead letters (the only copy of what `retry` sends), and deletes a
 * dropped one's like any other delivered row. */
Test(operator, retention_keeps_dead_letters_until_they_are_dropped)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "relay.sink", sink_out);
    th_path(&scope, "relay.err", err);
    th_write_config(&scope, config,
                    "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  safety_margin: 0s\n"
                    "  poll_interval: 50ms\nsink:\n  plugin: %s\n  on_reject: dead_letter\n"
                    "  options:\n    out: %s\n    reject_ids: \"3,7\"\n"
                    "retention:\n  delete_after: 0s\n  interval: 50ms\n",
                    RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), sink_out);
    th_migrate(config);
    th_insert_events(scope.conn, 10, LONG_AGO);
    pid_t pid = th_relay_start(&scope, config, NULL, err);
    th_wait_position(&scope, RELAY_NAME, 10);
    th_wait_query_int64(&scope, "SELECT count(*) FROM events", 2);
    char *left =
        th_query_text(scope.conn, "SELECT string_agg(id::text, ',' ORDER BY id) FROM events");
    cr_assert_str_eq(left, "3,7", "retention deleted a dead letter's row");
    free(left);

    const char *drop[] = {"dead-letters", "-c", config, "drop", "3", NULL};
    assert_cli(drop, 0, NULL);
    th_wait_query_int64(&scope, "SELECT count(*) FROM events WHERE id = 3", 0);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE id = 7"), 1);
    th_relay_stop(&scope, pid);
}

/* A dropped dead letter's event was never delivered: a replay over its id does not send it. */
Test(operator, replay_leaves_dropped_dead_letters_out)
{
    char rejecting[TH_PATH_MAX], replay[TH_PATH_MAX], replay_out[TH_PATH_MAX];
    make_dead_letters(rejecting);
    const char *drop[] = {"dead-letters", "-c", rejecting, "drop", "3", NULL};
    assert_cli(drop, 0, NULL);
    th_path(&scope, "replay.sink", replay_out);
    write_testsink_config(replay, replay_out, NULL, 100);
    const char *argv[] = {"replay", "-c", replay, "--from", "1", "--to", "10", NULL};
    assert_cli(argv, 0, NULL);
    const int64_t ids[] = {1, 2, 4, 5, 6, 8, 9, 10};
    assert_sink_lines(replay_out, ids, 8, true, "the replay");
}

/* ---- replay -------------------------------------------------------------------------------- */

/* The checkpoint row's columns that a write changes, as text (caller frees): with updated_at
 * when the row must stay untouched, without when a running relay may store it again. */
static char *checkpoint_text_of(bool with_updated_at)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT position || ' ' || epoch || ' ' || %s FROM relay_checkpoints"
             " WHERE name = '%s'",
             with_updated_at ? "updated_at" : "''", RELAY_NAME);
    char *text = th_query_text(scope.conn, sql);
    cr_assert_not_null(text);
    return text;
}

static char *checkpoint_text(void)
{
    return checkpoint_text_of(true);
}

Test(operator, replay_delivers_exactly_the_range_marked_and_the_position_stays)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], replay[TH_PATH_MAX], replay_out[TH_PATH_MAX];
    th_path(&scope, "relay.sink", sink_out);
    write_testsink_config(config, sink_out, NULL, 4);
    th_migrate(config);
    th_insert_events(scope.conn, 20, LONG_AGO);
    relay_until(config, 20);
    /* A gap in the range: ids missing are simply not there. */
    th_exec(scope.conn, "DELETE FROM events WHERE id = 8");
    char *before = checkpoint_text();

    /* Batches of 3, so that the range takes several, and one ends inside it. */
    th_path(&scope, "replay.sink", replay_out);
    write_testsink_config(replay, replay_out, NULL, 3);
    char *out, *err;
    int code = th_run_cli(&out, &err, "replay", "-c", replay, "--from", "5", "--to", "12");
    cr_assert_eq(code, 0, "replay exited %d:\n%s%s", code, out, err);
    char expected[256];
    snprintf(expected, sizeof expected,
             "replayed 7 events of '%s' in ids 5..12 (position 20, not moved)\n", RELAY_NAME);
    cr_assert_str_eq(out, expected);
    free(out);
    free(err);

    const int64_t ids[] = {5, 6, 7, 9, 10, 11, 12};
    assert_sink_lines(replay_out, ids, 7, true, "the replay");
    char *after = checkpoint_text();
    cr_assert_str_eq(after, before, "the checkpoint changed: %s, was %s", after, before);
    free(before);
    free(after);
}

Test(operator, replay_above_the_position_is_refused)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], replay[TH_PATH_MAX], replay_out[TH_PATH_MAX];
    th_path(&scope, "relay.sink", sink_out);
    th_path(&scope, "replay.sink", replay_out);
    write_testsink_config(config, sink_out, NULL, 100);
    write_testsink_config(replay, replay_out, NULL, 100);
    th_migrate(config);

    /* No position yet: nothing was delivered under the name. */
    th_insert_events(scope.conn, 20, LONG_AGO);
    const char *none[] = {"replay", "-c", replay, "--from", "1", "--to", "5", NULL};
    assert_cli(none, 7, "has no position yet");

    relay_until(config, 20);
    th_insert_events(scope.conn, 5, LONG_AGO); /* 21..25: in the table, not delivered yet */
    const char *above[] = {"replay", "-c", replay, "--from", "15", "--to", "21", NULL};
    assert_cli(above, 7, "--to 21 is above the position 20");
    cr_assert(!exists(replay_out), "the refused replay delivered something");
    cr_assert_eq(th_position(&scope, RELAY_NAME), 20);

    const char *reversed[] = {"replay", "-c", replay, "--from", "9", "--to", "5", NULL};
    assert_cli(reversed, 2, "--from 9 is above --to 5");
}

/* Dead letters were never delivered (retry is theirs), so a replay leaves them out. */
Test(operator, replay_leaves_dead_letters_out)
{
    char rejecting[TH_PATH_MAX], replay[TH_PATH_MAX], replay_out[TH_PATH_MAX];
    make_dead_letters(rejecting);
    th_path(&scope, "replay.sink", replay_out);
    write_testsink_config(replay, replay_out, NULL, 100);
    const char *argv[] = {"replay", "-c", replay, "--from", "1", "--to", "10", NULL};
    assert_cli(argv, 0, NULL);
    const int64_t ids[] = {1, 2, 4, 5, 6, 8, 9, 10};
    assert_sink_lines(replay_out, ids, 8, true, "the replay");
}

static bool one_gap_stored(void *arg)
{
    (void)arg;
    return sc_stored_gaps() == 1;
}

/* A row in a watched gap was missing when the position passed it: never acknowledged, so not
 * replayed (the relay delivers it, late). */
Test(operator, replay_leaves_watched_gaps_out)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], replay[TH_PATH_MAX], replay_out[TH_PATH_MAX];
    char out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "relay.sink", sink_out);
    th_path(&scope, "replay.sink", replay_out);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    write_testsink_config(config, sink_out, NULL, 100);
    write_testsink_config(replay, replay_out, NULL, 100);
    th_migrate(config);
    sc_begin(&scope);
    PGconn *open_tx = th_scope_connect(&scope);
    for (int64_t id = 1; id <= 3; id++)
        cr_assert_eq(sc_insert_one(scope.conn), id);
    th_exec(open_tx, "BEGIN");
    cr_assert_eq(sc_insert_one(open_tx), 4);
    cr_assert_eq(sc_insert_one(scope.conn), 5);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 5);
    th_wait_until(&scope, TH_DEADLINE_MS, one_gap_stored, NULL, "the gap {4} stored");
    th_relay_stop(&scope, pid);
    th_exec(open_tx, "COMMIT");
    cr_assert_eq(sc_stored_gaps(), 1, "the gap was forgotten");

    char *cli_out, *cli_err;
    int code = th_run_cli(&cli_out, &cli_err, "replay", "-c", replay, "--from", "1", "--to", "5");
    cr_assert_eq(code, 0, "replay exited %d:\n%s%s", code, cli_out, cli_err);
    free(cli_out);
    free(cli_err);
    const int64_t ids[] = {1, 2, 3, 5};
    assert_sink_lines(replay_out, ids, 4, true, "the replay");
}

Test(operator, replay_runs_beside_a_running_relay_of_the_same_name)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX], replay[TH_PATH_MAX], replay_out[TH_PATH_MAX];
    char out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "relay.sink", sink_out);
    th_path(&scope, "replay.sink", replay_out);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    write_testsink_config(config, sink_out, NULL, 100);
    write_testsink_config(replay, replay_out, NULL, 7);
    th_migrate(config);
    th_insert_events(scope.conn, 20, LONG_AGO);

    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, RELAY_NAME, 20);
    char *epoch_before = checkpoint_text_of(false);
    const char *argv[] = {"replay", "-c", replay, "--from", "1", "--to", "20", NULL};
    assert_cli(argv, 0, NULL);
    int64_t all[20];
    for (int i = 0; i < 20; i++)
        all[i] = i + 1;
    assert_sink_lines(replay_out, all, 20, true, "the replay");

    /* The relay kept its lock and its epoch, and goes on delivering. */
    th_hold_for(&scope, 200, relay_alive, &pid, "the relay running");
    char *epoch_after = checkpoint_text_of(false);
    cr_assert_str_eq(epoch_after, epoch_before, "the replay touched the checkpoint");
    free(epoch_before);
    free(epoch_after);
    th_insert_events(scope.conn, 5, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 25);
    th_relay_stop(&scope, pid);
    int64_t relay_ids[25];
    for (int i = 0; i < 25; i++)
        relay_ids[i] = i + 1;
    assert_sink_lines(sink_out, relay_ids, 25, false, "the relay's deliveries");
}

/* The stdout sink marks each line; the summary goes to stderr, out of its JSON lines. */
Test(operator, replay_through_the_stdout_sink_marks_its_lines)
{
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 100);
    th_migrate(config);
    th_insert_events(scope.conn, 5, LONG_AGO);
    relay_until(config, 5);

    char *out, *err;
    int code = th_run_cli(&out, &err, "replay", "-c", config, "--from", "2", "--to", "4");
    cr_assert_eq(code, 0, "replay exited %d:\n%s", code, err);
    char path[TH_PATH_MAX];
    th_path(&scope, "replay.out", path);
    th_write_file(path, "%s", out);
    int64_t *ids;
    size_t n = th_read_stdout_ids(path, &ids);
    cr_assert_eq(n, 3, "%zu lines on stdout:\n%s", n, out);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], (int64_t)i + 2);
    free(ids);
    char **lines;
    n = th_read_lines(path, &lines);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        cr_assert(len > 20 && strcmp(lines[i] + len - 20, ",\"redelivered\":true}") == 0,
                  "line %zu not marked: %s", i + 1, lines[i]);
    }
    th_free_lines(lines, n);
    cr_assert_not_null(strstr(err, "replayed 3 events"), "no summary on stderr:\n%s", err);
    free(out);
    free(err);
}

/* ---- the command line ------------------------------------------------------------------------ */

Test(operator, each_command_has_its_own_help)
{
    static const char *const commands[] = {"run",   "migrate", "check",       "status",
                                           "reset", "replay",  "dead-letters"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char *out, *err;
        /* No -c: help needs no config. */
        int code = th_run_cli(&out, &err, commands[i], "--help");
        cr_assert_eq(code, 0, "%s --help exited %d: %s", commands[i], code, err);
        char head[64];
        snprintf(head, sizeof head, "usage: outbox-relay %s -c FILE", commands[i]);
        cr_assert(strncmp(out, head, strlen(head)) == 0, "%s --help:\n%s", commands[i], out);
        cr_assert_not_null(strstr(out, "exit codes:"), "%s --help:\n%s", commands[i], out);
        free(out);
        free(err);
    }
    char *out, *err;
    int code = th_run_cli(&out, &err, "--help");
    cr_assert_eq(code, 0);
    cr_assert(strstr(out, "usage: outbox-relay COMMAND") && strstr(out, "\n  dead-letters ") &&
                  strstr(out, "\n  replay ") && strstr(out, "\n  7  dead-letters, replay"),
              "--help:\n%s", out);
    free(out);
    free(err);
    /* The option after the command's arguments works too. */
    code = th_run_cli(&out, &err, "dead-letters", "retry", "3", "--help");
    cr_assert_eq(code, 0);
    cr_assert(strncmp(out, "usage: outbox-relay dead-letters", 32) == 0, "%s", out);
    free(out);
    free(err);
}

Test(operator, bad_options_are_usage_errors)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX];
    th_path(&scope, "relay.sink", sink_out);
    write_testsink_config(config, sink_out, NULL, 100);
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    relay_until(config, 3);
    th_exec(scope.conn, "INSERT INTO relay_dead_letters (relay_name, event_id, reason)"
                        " SELECT name, 2, 'x' FROM relay_checkpoints");

    const struct {
        const char *argv[10];
        const char *says;
    } cases[] = {
        {{"dead-letters", "-c", config, NULL}, "give an action"},
        {{"dead-letters", "-c", config, "frob", NULL}, "unknown action 'frob'"},
        {{"dead-letters", "-c", config, "retry", NULL}, "retry: give the event ids"},
        {{"dead-letters", "-c", config, "drop", "2", "x2", NULL}, "expected an id"},
        {{"dead-letters", "-c", config, "drop", "0", NULL}, "expected an id (1 or more)"},
        {{"dead-letters", "-c", config, "retry", "2", "--json", NULL}, "list only"},
        {{"dead-letters", "-c", config, "list", "2", NULL}, "unexpected argument '2'"},
        {{"dead-letters", "-c", config, "list", "--from", "1", NULL}, "not an option"},
        {{"dead-letters", "list", NULL}, "-c FILE is required"},
        {{"replay", "-c", config, "--from", "1", NULL}, "--from ID --to ID"},
        {{"replay", "-c", config, "--to", "2", NULL}, "--from ID --to ID"},
        {{"replay", "-c", config, "--from", "one", "--to", "2", NULL}, "--from: expected an id"},
        {{"replay", "-c", config, "--from", "1", "--to", "2", "--latest", NULL}, "not an option"},
        {{"replay", "-c", config, "--from", "1", "--to", "2", "extra", NULL},
         "unexpected argument"},
        {{"replay", "-c", config, "--from", "1", "--to", "2", "--bogus", NULL}, NULL},
        {{"status", "-c", config, "--from", "1", NULL}, "--from is not an option of status"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_cli(cases[i].argv, 2, cases[i].says);
    /* Nothing of it acted. */
    assert_dead_letters("2", "after the usage errors");
    cr_assert_eq(th_position(&scope, RELAY_NAME), 3);
}
