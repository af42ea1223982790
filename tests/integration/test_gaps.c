/*
 * What closes the margin's holes: the gap watch (margin mode), the settled mode, NOTIFY wake-ups
 * and restore detection, end to end against a real PostgreSQL.
 *
 * The scenarios need transactions that commit out of id order: the test holds them open on
 * sessions of its own and commits them when the relay has been seen to pass their ids.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "../harness/harness.h"
#include "scene.h"

#define RELAY_NAME scope.schema

/* Sources of the scenarios: margin mode with a 1 s margin, with and without the gap watch, and
 * settled mode with a short floor so that rolled-back ids hold the stream only briefly. */
#define MARGIN_1S "  safety_margin: 1s\n  poll_interval: 50ms\n"
#define MARGIN_1S_NO_WATCH "  safety_margin: 1s\n  poll_interval: 50ms\n  gap_watch: false\n"
#define SETTLED "  mode: settled\n  gap_floor: 100ms\n  poll_interval: 50ms\n"

static th_scope scope;

static void setup(void)
{
    th_scope_new(&scope);
    sc_begin(&scope);
}

static void teardown(void)
{
    th_scope_free(&scope);
}

TestSuite(gaps, .timeout = 180);

/* ---- margin mode: the gap watch ---------------------------------------------------------- */

/*
 * T1 takes id 1 and stays open; T2 takes id 2 and commits. Once the margin lets id 2 through, the
 * position passes id 1 while it is still in flight: without the gap watch it is lost for good.
 */
static void pass_an_open_transaction(PGconn *t1, PGconn *t2, const char *out)
{
    th_exec(t1, "BEGIN");
    cr_assert_eq(sc_insert_one(t1), 1);
    cr_assert_eq(sc_insert_one(t2), 2);
    sc_wait_passed(out, 2);
    cr_assert_eq(sc_times_delivered(out, 1), 0, "id 1 delivered before its commit");
    th_exec(t1, "COMMIT");
}

Test(gaps, long_transaction_margin, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, MARGIN_1S);
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    PGconn *t1 = th_scope_connect(&scope), *t2 = th_scope_connect(&scope);

    th_exec(t1, "BEGIN");
    cr_assert_eq(sc_insert_one(t1), 1);
    cr_assert_eq(sc_insert_one(t2), 2);
    sc_wait_passed(f.out, 2);
    /* The position passed id 1 while it is in flight: it is watched, and stored with the
     * position it belongs to. */
    cr_assert_eq(sc_times_delivered(f.out, 1), 0, "id 1 delivered before its commit");
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_gaps"
                                            " WHERE low_id = 1 AND high_id = 1"),
                 1, "gap {1} is not stored with position 2");
    cr_assert_eq(sc_status_field(config, "watched_gaps"), 1);
    cr_assert_eq(sc_status_field(config, "watched_ids"), 1);
    sc_keep_gap_open(1);
    /* Longer than the margin, by the database's clock: the margin alone would not save it. */
    cr_assert(th_query_int64(t1, "SELECT (clock_timestamp() - created_at > interval '3 s')::int"
                                 " FROM events WHERE id = 1"));
    th_exec(t1, "COMMIT");

    sc_wait_delivered(f.out, 1);
    char *late_line = sc_line_of(f.out, 1), *on_time_line = sc_line_of(f.out, 2);
    cr_assert(sc_is_late(late_line), "id 1 not flagged late: %s", late_line);
    cr_assert_not(sc_is_late(on_time_line), "id 2 flagged late: %s", on_time_line);
    free(late_line);
    free(on_time_line);
    th_wait_until(&scope, TH_DEADLINE_MS, sc_no_stored_gaps, NULL, "the filled gap to be dropped");
    cr_assert(th_file_contains(f.err, "event 1 delivered late"));
    th_relay_stop(&scope, pid);

    /* Nothing lost, nothing twice; the late one came after the one that passed it. */
    int64_t *ids;
    size_t n = th_read_stdout_ids(f.out, &ids);
    cr_assert_eq(n, 2, "%zu lines, expected ids 2 then 1", n);
    cr_assert(ids[0] == 2 && ids[1] == 1, "order %" PRId64 ", %" PRId64, ids[0], ids[1]);
    free(ids);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 2);
    cr_assert_eq(sc_status_field(config, "late_events"), 1);
    cr_assert_eq(sc_status_field(config, "watched_gaps"), 0);
    cr_assert_eq(sc_status_field(config, "watched_ids"), 0);
}

/* The same scenario without the watch loses the event: what the test above guards against. */
Test(gaps, long_transaction_lost_without_gap_watch, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, MARGIN_1S_NO_WATCH);
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    PGconn *t1 = th_scope_connect(&scope), *t2 = th_scope_connect(&scope);

    pass_an_open_transaction(t1, t2, f.out);
    cr_assert_eq(sc_stored_gaps(), 0);
    /* The relay reads on past the committed id 1... */
    cr_assert_eq(sc_insert_one(t2), 3);
    sc_wait_passed(f.out, 3);
    /* ...and never goes back for it. */
    sc_id_goal lost = {f.out, 1};
    th_hold_for(&scope, 1500, sc_id_absent, &lost, "id 1 never delivered");
    th_relay_stop(&scope, pid);
    cr_assert_eq(sc_status_field(config, "late_events"), 0);
}

Test(gaps, rollback_gaps_forgotten, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, MARGIN_1S);
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    PGconn *w = th_scope_connect(&scope);

    /* Committed 1, 3, 6 and 9; rolled back 2, 4..5 and 7..8 (one of them alongside a committed
     * session's insert, so that its gap is seen with other transactions in flight). */
    cr_assert_eq(sc_insert_one(w), 1);
    th_exec(w, "BEGIN");
    cr_assert_eq(sc_insert_one(w), 2);
    th_exec(w, "ROLLBACK");
    cr_assert_eq(sc_insert_one(w), 3);
    th_exec(w, "BEGIN");
    cr_assert_eq(sc_insert_one(w), 4);
    cr_assert_eq(sc_insert_one(w), 5);
    th_exec(w, "ROLLBACK");
    cr_assert_eq(sc_insert_one(w), 6);
    sc_wait_passed(f.out, 6);

    th_exec(w, "BEGIN");
    cr_assert_eq(sc_insert_one(w), 7);
    cr_assert_eq(sc_insert_one(w), 8);
    cr_assert_eq(sc_insert_one(scope.conn), 9);
    sc_wait_passed(f.out, 9);
    th_exec(w, "ROLLBACK");

    sc_forgotten_goal all = {f.err, 5};
    th_wait_until(&scope, TH_DEADLINE_MS, sc_forgot_all, &all,
                  "the 5 rolled-back ids to be forgotten as proven dead");
    th_relay_stop(&scope, pid);

    int64_t *ids;
    size_t n = th_read_stdout_ids(f.out, &ids);
    const int64_t expected[] = {1, 3, 6, 9};
    cr_assert_eq(n, 4, "%zu lines, expected ids 1, 3, 6, 9", n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], expected[i], "line %zu: id %" PRId64, i + 1, ids[i]);
    free(ids);
    cr_assert_eq(sc_ids_forgotten(f.err), 5, "the log forgot %" PRId64 " ids, expected 5",
                 sc_ids_forgotten(f.err));
    cr_assert_eq(sc_status_field(config, "late_events"), 0);
    cr_assert_eq(sc_status_field(config, "watched_gaps"), 0);
}

/* ---- xid order and id order disagree ----------------------------------------------------- */

/*
 * T1 takes its xid first, T2 inserts id 1 and commits, then T1 inserts id 2 and, while T1 is still
 * open, T3 inserts id 3. A relay that tracks xids passes T1's row; one that tracks ids must wait
 * for it (settled) or come back for it (margin).
 */
static void xid_position_inversion(const char *source_yaml, bool settled)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, source_yaml);
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    PGconn *t1 = th_scope_connect(&scope), *t2 = th_scope_connect(&scope);

    th_exec(t1, "BEGIN");
    th_exec(t1, "SELECT pg_current_xact_id()");
    cr_assert_eq(sc_insert_one(t2), 1);
    sc_wait_passed(f.out, 1);
    cr_assert_eq(sc_insert_one(t1), 2);
    cr_assert_eq(sc_insert_one(t2), 3);
    if (settled) {
        /* Strict id order: nothing passes the open transaction's id. */
        sc_id_goal three = {f.out, 3};
        th_hold_for(&scope, 500, sc_id_absent, &three, "id 3 held behind the open id 2");
        cr_assert_eq(th_position(&scope, RELAY_NAME), 1);
    } else {
        sc_wait_passed(f.out, 3);
        sc_keep_gap_open(2);
    }
    th_exec(t1, "COMMIT");
    sc_wait_delivered(f.out, 2);
    sc_wait_passed(f.out, 3);
    th_relay_stop(&scope, pid);

    for (int64_t id = 1; id <= 3; id++)
        cr_assert_eq(sc_times_delivered(f.out, id), 1, "id %" PRId64 " delivered %zu times", id,
                     sc_times_delivered(f.out, id));
    if (settled) {
        int64_t *ids;
        size_t n = th_read_stdout_ids(f.out, &ids);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(ids[i], (int64_t)i + 1, "settled: line %zu has id %" PRId64, i + 1,
                         ids[i]);
        free(ids);
        cr_assert_eq(sc_status_field(config, "late_events"), 0);
    } else {
        char *line = sc_line_of(f.out, 2);
        cr_assert(sc_is_late(line), "id 2 not flagged late: %s", line);
        free(line);
        cr_assert_eq(sc_status_field(config, "late_events"), 1);
    }
}

Test(gaps, xid_position_inversion_margin, .init = setup, .fini = teardown)
{
    xid_position_inversion(MARGIN_1S, false);
}

Test(gaps, xid_position_inversion_settled, .init = setup, .fini = teardown)
{
    xid_position_inversion(SETTLED, true);
}

/* ---- settled mode ------------------------------------------------------------------------ */

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define WRITERS 4
#define TARGET_EVENTS 2000

/* A writer session and the transaction it has open, if any. */
typedef struct writer {
    PGconn *conn;
    bool open;
    int steps_left; /* steps of the other writers before it ends */
    bool rollback;  /* how it ends */
    int64_t ids[8]; /* taken by the open transaction */
    size_t n_ids;
} writer;

/* The ids each run of the writers committed and rolled back, as flags by id. */
typedef struct writes {
    unsigned char *committed; /* committed[id], id 1..cap-1 */
    unsigned char *rolled_back;
    size_t cap;
    int64_t n_committed, n_rolled_back, max_committed;
} writes;

static void end_transaction(writer *w, writes *out)
{
    th_exec(w->conn, w->rollback ? "ROLLBACK" : "COMMIT");
    for (size_t i = 0; i < w->n_ids; i++) {
        int64_t id = w->ids[i];
        cr_assert(id > 0 && (size_t)id < out->cap, "id %" PRId64 " out of range", id);
        if (w->rollback) {
            out->rolled_back[id] = 1;
            out->n_rolled_back++;
        } else {
            out->committed[id] = 1;
            out->n_committed++;
            out->max_committed = id > out->max_committed ? id : out->max_committed;
        }
    }
    w->open = false;
    w->n_ids = 0;
}

/*
 * Interleaves transactions of WRITERS sessions until TARGET_EVENTS ids are taken: each inserts
 * 1..5 rows one statement at a time, stays open while the others take a few steps, and commits,
 * or rolls back one time in forty. Deterministic, so that a failure can be replayed.
 */
static void write_concurrently(writer *ws, writes *out)
{
    unsigned seed = 4;
    int64_t taken = 0;
    while (taken < TARGET_EVENTS) {
        writer *w = &ws[rand_r(&seed) % WRITERS];
        if (!w->open) {
            th_exec(w->conn, "BEGIN");
            w->open = true;
            w->steps_left = rand_r(&seed) % 6;
            w->rollback = rand_r(&seed) % 40 == 0;
        }
        if (w->n_ids < 5 && rand_r(&seed) % 3 != 0) {
            w->ids[w->n_ids++] = sc_insert_one(w->conn);
            taken++;
        }
        if (w->steps_left-- <= 0 && w->n_ids > 0)
            end_transaction(w, out);
    }
    for (int i = 0; i < WRITERS; i++)
        if (ws[i].open)
            end_transaction(&ws[i], out);
}

typedef struct count_goal {
    const char *out;
    int64_t lines;
    int64_t position;
} count_goal;

static bool all_lines_and_position(void *arg)
{
    const count_goal *goal = arg;
    int64_t *ids;
    size_t n = th_read_stdout_ids(goal->out, &ids);
    free(ids);
    return (int64_t)n >= goal->lines && th_position(&scope, RELAY_NAME) >= goal->position;
}

Test(gaps, settled_strict_order, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, SETTLED "  batch_size: 100\n");
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);

    writer ws[WRITERS] = {0};
    for (int i = 0; i < WRITERS; i++)
        ws[i].conn = th_scope_connect(&scope);
    writes w = {.cap = TARGET_EVENTS + 16};
    w.committed = calloc(w.cap, 1);
    w.rolled_back = calloc(w.cap, 1);
    cr_assert(w.committed && w.rolled_back);
    int64_t started = monotonic_ms();
    write_concurrently(ws, &w);
    int64_t written = monotonic_ms();
    cr_assert_gt(w.n_rolled_back, 0, "the writers rolled nothing back");

    count_goal all = {f.out, w.n_committed, w.max_committed};
    /* Each rolled-back range holds the stream for its floor: generous. */
    th_wait_until(&scope, 2 * TH_DEADLINE_MS, all_lines_and_position, &all,
                  "every committed id delivered");
    cr_log_info("%" PRId64 " ids committed, %" PRId64 " rolled back, in %" PRId64
                " ms; all delivered %" PRId64 " ms later",
                w.n_committed, w.n_rolled_back, written - started, monotonic_ms() - written);
    th_relay_stop(&scope, pid);

    int64_t *ids;
    size_t n = th_read_stdout_ids(f.out, &ids);
    int64_t previous = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_gt(ids[i], previous, "line %zu: id %" PRId64 " after %" PRId64, i + 1, ids[i],
                     previous);
        cr_assert((size_t)ids[i] < w.cap && w.committed[ids[i]], "line %zu: id %" PRId64 " was %s",
                  i + 1, ids[i],
                  (size_t)ids[i] < w.cap && w.rolled_back[ids[i]] ? "rolled back"
                                                                  : "never committed");
        previous = ids[i];
    }
    /* Strictly increasing and each one committed: equal counts mean each exactly once. */
    cr_assert_eq((int64_t)n, w.n_committed, "%zu lines for %" PRId64 " committed ids", n,
                 w.n_committed);
    cr_assert_not(th_file_contains(f.out, "\"late\""), "settled mode delivered late events");
    cr_assert_eq(th_position(&scope, RELAY_NAME), w.max_committed);
    free(ids);
    free(w.committed);
    free(w.rolled_back);
}

/* A 10 s poll: only a wake-up can deliver an event within the test's bounds. */
#define SLOW_POLL "  mode: settled\n  poll_interval: 10s\n"

/* For the windows in which the reads of a running relay are counted. */
static bool relay_running(void *arg)
{
    return kill(*(pid_t *)arg, 0) == 0;
}

/* How many reads the relay's debug log shows so far. */
static int reads_logged(const char *err_path)
{
    char *log = th_read_file(err_path, NULL);
    int n = 0;
    for (const char *at = log; (at = strstr(at, "-> read")) != NULL; at++)
        n++;
    free(log);
    return n;
}

/* With notify_channel set, migrate installs the trigger and a NOTIFY ends the relay's idle wait. */
Test(gaps, settled_latency_from_notify, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, SLOW_POLL "  notify_channel: outbox_relay\n");
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    /* The first event is read at start; from then on the relay backs off to its 10 s wait. */
    cr_assert_eq(sc_insert_one(scope.conn), 1);
    pid_t pid = sc_start_relay(config, &f);
    sc_wait_passed(f.out, 1);

    int64_t worst = 0;
    for (int64_t id = 2; id <= 6; id++) {
        /* Idle long enough for the poll alone to take seconds. */
        int seen = reads_logged(f.err);
        th_hold_for(&scope, 300, relay_running, &pid, "the relay running idle");
        cr_assert_leq(reads_logged(f.err) - seen, 8, "the idle relay kept reading");
        int64_t committed = monotonic_ms();
        cr_assert_eq(sc_insert_one(scope.conn), id);
        sc_id_goal goal = {f.out, id};
        th_wait_until(&scope, 5000, sc_id_delivered, &goal, "a delivery woken by NOTIFY");
        int64_t latency = monotonic_ms() - committed;
        worst = latency > worst ? latency : worst;
        sc_wait_passed(f.out, id);
    }
    cr_log_info("worst commit-to-output latency: %" PRId64 " ms", worst);
    cr_assert_lt(worst, 500, "an event took %" PRId64 " ms with a 10 s poll: no wake-up", worst);
    th_relay_stop(&scope, pid);
}

/* The default: no trigger, so writers may use two-phase commit; the relay polls, backing off while
 * idle up to poll_interval, which bounds the latency of the first event after a quiet time. */
Test(gaps, two_phase_commit_with_the_default_configuration, .init = setup, .fini = teardown)
{
    cr_assert_gt(th_query_int64(scope.conn, "SELECT current_setting('max_prepared_transactions')"
                                            "::int"),
                 0, "the test server needs max_prepared_transactions > 0 (scripts/test sets it)");
    char config[TH_PATH_MAX];
    sc_write_config(config, "  mode: settled\n  poll_interval: 1s\n");
    th_migrate(config);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM pg_trigger WHERE tgrelid ="
                                            " 'events'::regclass AND NOT tgisinternal"),
                 0, "migrate put a trigger on events by default");
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);

    PGconn *writer = th_scope_connect(&scope);
    char sql[160];
    th_exec(writer, "BEGIN");
    cr_assert_eq(sc_insert_one(writer), 1);
    snprintf(sql, sizeof sql, "PREPARE TRANSACTION 'two-phase-%s'", scope.schema);
    th_exec(writer, sql);
    snprintf(sql, sizeof sql, "COMMIT PREPARED 'two-phase-%s'", scope.schema);
    th_exec(scope.conn, sql);
    sc_wait_delivered(f.out, 1);

    /* Idle for 3 s with a 1 s poll: the waits double from max_wait, so a few reads, not hundreds,
     * and the next event still comes within about a poll. */
    sc_wait_passed(f.out, 1);
    int seen = reads_logged(f.err);
    th_hold_for(&scope, 3000, relay_running, &pid, "the relay running idle");
    int idle_reads = reads_logged(f.err) - seen;
    cr_log_info("%d reads in 3 s idle", idle_reads);
    cr_assert_leq(idle_reads, 15, "%d reads in 3 s idle: the poll does not back off", idle_reads);
    cr_assert_eq(sc_insert_one(scope.conn), 2);
    sc_id_goal second = {f.out, 2};
    th_wait_until(&scope, 2500, sc_id_delivered, &second, "id 2 within about a poll");
    th_relay_stop(&scope, pid);
}

/* Any role may NOTIFY the channel: a flood wakes the relay at most once per max_wait. */
Test(gaps, notify_flood_wakes_at_most_once_per_max_wait, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, SLOW_POLL "  max_wait: 50ms\n  notify_channel: outbox_relay\n");
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    PGconn *flooder = th_scope_connect(&scope);
    int seen = reads_logged(f.err);
    int64_t start = monotonic_ms();
    int sent = 0;
    while (monotonic_ms() - start < 1000) {
        th_exec(flooder, "NOTIFY outbox_relay");
        sent++;
    }
    int reads = reads_logged(f.err) - seen;
    cr_log_info("%d NOTIFYs in 1 s woke %d reads", sent, reads);
    cr_assert_gt(sent, 100, "the flood was too thin to tell");
    cr_assert_leq(reads, 1000 / 50 + 5, "%d reads in 1 s of NOTIFYs with max_wait 50ms", reads);
    th_relay_stop(&scope, pid);
}

/* ---- restart ----------------------------------------------------------------------------- */

Test(gaps, restart_with_open_gaps, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, MARGIN_1S);
    th_migrate(config);
    sc_relay_files first = sc_files_named("relay1"), second = sc_files_named("relay2");
    pid_t pid = sc_start_relay(config, &first);
    PGconn *t1 = th_scope_connect(&scope), *t2 = th_scope_connect(&scope);

    th_exec(t1, "BEGIN");
    cr_assert_eq(sc_insert_one(t1), 1);
    cr_assert_eq(sc_insert_one(t2), 2);
    sc_wait_passed(first.out, 2);
    th_relay_stop(&scope, pid);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_gaps"
                                            " WHERE low_id = 1 AND high_id = 1"),
                 1, "the open gap {1} was not stored at shutdown");

    pid = sc_start_relay(config, &second);
    cr_assert(th_file_contains(second.err, "1 gaps watched"), "the restarted relay watches no gap");
    sc_keep_gap_open(1);
    th_exec(t1, "COMMIT");
    sc_wait_delivered(second.out, 1);
    th_wait_until(&scope, TH_DEADLINE_MS, sc_no_stored_gaps, NULL, "the filled gap to be dropped");
    th_relay_stop(&scope, pid);

    int64_t *ids;
    size_t n = th_read_stdout_ids(second.out, &ids);
    cr_assert(n == 1 && ids[0] == 1, "the second relay wrote %zu lines, expected only id 1", n);
    free(ids);
    char *line = sc_line_of(second.out, 1);
    cr_assert(sc_is_late(line), "id 1 not flagged late: %s", line);
    free(line);
    cr_assert_eq(sc_times_delivered(first.out, 1), 0);
    cr_assert_eq(sc_status_field(config, "late_events"), 1);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 2);
}

/* ---- restore detection and reset --------------------------------------------------------- */

/* Runs a relay that must refuse to start; returns its stderr (caller frees). */
static char *run_refused(const char *config, const sc_relay_files *f)
{
    pid_t pid = th_relay_start(&scope, config, f->out, f->err);
    int code = th_relay_wait(&scope, pid, TH_DEADLINE_MS);
    char *err = th_read_file(f->err, NULL);
    cr_assert_eq(code, 6, "the relay exited %d, expected 6 (checkpoint from elsewhere):\n%s", code,
                 err);
    cr_assert_not_null(strstr(err, "outbox-relay reset"), "stderr does not point to reset:\n%s",
                       err);
    size_t out_len;
    free(th_read_file(f->out, &out_len));
    cr_assert_eq(out_len, 0, "the refused relay delivered events");
    return err;
}

static void reset_ok(const char *config, const char *how, const char *id)
{
    char *out, *err;
    int code = id ? th_run_cli(&out, &err, "reset", "-c", config, how, id)
                  : th_run_cli(&out, &err, "reset", "-c", config, how);
    cr_assert_eq(code, 0, "reset %s exited %d: %s", how, code, err);
    free(out);
    free(err);
}

/* Delivers ids 1..n and stops: a checkpoint at position n. */
static void deliver_and_stop(const char *config, int n)
{
    sc_relay_files f = sc_files_named("before");
    th_insert_events(scope.conn, n, "now() - interval '1 hour'");
    pid_t pid = sc_start_relay(config, &f);
    sc_wait_passed(f.out, n);
    th_relay_stop(&scope, pid);
}

Test(gaps, restore_detected_by_system_identifier, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, "  safety_margin: 0s\n  poll_interval: 50ms\n");
    th_migrate(config);
    deliver_and_stop(config, 5);
    int64_t sysid = th_query_int64(scope.conn, "SELECT system_identifier FROM pg_control_system()");
    cr_assert_eq(th_query_int64(scope.conn, "SELECT system_identifier FROM relay_checkpoints"),
                 sysid, "the checkpoint does not record the system identifier");

    /* As if the checkpoint came from another cluster. */
    th_exec(scope.conn, "UPDATE relay_checkpoints SET system_identifier = 12345");
    sc_relay_files refused = sc_files_named("refused");
    char *err = run_refused(config, &refused);
    cr_assert_not_null(strstr(err, "12345"), "stderr does not name the other database:\n%s", err);
    free(err);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 5);

    reset_ok(config, "--to", "5");
    cr_assert_eq(th_query_int64(scope.conn, "SELECT system_identifier FROM relay_checkpoints"),
                 sysid, "reset did not record this database's system identifier");
    th_insert_events(scope.conn, 2, "now() - interval '1 hour'");
    sc_relay_files after = sc_files_named("after");
    pid_t pid = sc_start_relay(config, &after);
    sc_wait_passed(after.out, 7);
    th_relay_stop(&scope, pid);
    int64_t *ids;
    size_t n = th_read_stdout_ids(after.out, &ids);
    cr_assert(n == 2 && ids[0] == 6 && ids[1] == 7, "after reset --to 5: %zu lines", n);
    free(ids);
}

Test(gaps, truncate_detected_and_reset_latest, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, "  safety_margin: 0s\n  poll_interval: 50ms\n");
    th_migrate(config);
    deliver_and_stop(config, 5);

    th_exec(scope.conn, "TRUNCATE events RESTART IDENTITY");
    /* A stored gap belongs to the old ids: reset must forget it too. */
    th_exec(scope.conn, "INSERT INTO relay_gaps (relay_name, low_id, high_id, first_seen_ms)"
                        " SELECT name, 3, 3, 0 FROM relay_checkpoints");
    sc_relay_files refused = sc_files_named("refused");
    char *err = run_refused(config, &refused);
    cr_assert_not_null(strstr(err, "truncated"), "stderr does not suspect a truncate:\n%s", err);
    free(err);

    reset_ok(config, "--latest", NULL);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 0, "reset --latest on an empty table");
    cr_assert_eq(sc_stored_gaps(), 0, "reset kept the old ids' gaps");

    th_insert_events(scope.conn, 3, "now() - interval '1 hour'");
    sc_relay_files after = sc_files_named("after");
    pid_t pid = sc_start_relay(config, &after);
    sc_wait_passed(after.out, 3);
    th_relay_stop(&scope, pid);
    int64_t *ids;
    size_t n = th_read_stdout_ids(after.out, &ids);
    cr_assert(n == 3 && ids[0] == 1 && ids[2] == 3, "after reset --latest: %zu lines", n);
    free(ids);
}

Test(gaps, reset_refused_while_running, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, "  safety_margin: 0s\n  poll_interval: 50ms\n");
    th_migrate(config);
    th_insert_events(scope.conn, 3, "now() - interval '1 hour'");
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    sc_wait_passed(f.out, 3);

    char *out, *err;
    int code = th_run_cli(&out, &err, "reset", "-c", config, "--to", "0");
    cr_assert_neq(code, 0, "reset succeeded while the relay runs");
    cr_assert_not_null(strstr(err, "running"), "reset's stderr does not say why:\n%s", err);
    free(out);
    free(err);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 3, "the refused reset moved the position");
    th_relay_stop(&scope, pid);

    /* Stopped, the same reset goes through. */
    reset_ok(config, "--to", "1");
    cr_assert_eq(th_position(&scope, RELAY_NAME), 1);
}

/* A reset keeps the ids the relay passed while they were missing below its new position: they may
 * still commit, and only the watch would deliver them. */
Test(gaps, reset_keeps_the_gaps_below_the_new_position, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, "  safety_margin: 0s\n  poll_interval: 50ms\n");
    th_migrate(config);
    th_insert_events(scope.conn, 10, "now() - interval '1 hour'");
    reset_ok(config, "--to", "10");
    th_exec(scope.conn, "INSERT INTO relay_gaps (relay_name, low_id, high_id, first_seen_ms)"
                        " SELECT name, g.low, g.high, 0 FROM relay_checkpoints,"
                        " (VALUES (2, 2), (5, 6), (9, 9)) AS g(low, high)");

    reset_ok(config, "--to", "10");
    cr_assert_eq(sc_stored_gaps(), 3, "reset to the same position dropped watched gaps");

    reset_ok(config, "--to", "5");
    cr_assert_eq(th_position(&scope, RELAY_NAME), 5);
    char *kept = th_query_text(scope.conn, "SELECT string_agg(low_id || '-' || high_id, ','"
                                           " ORDER BY low_id) FROM relay_gaps");
    cr_assert_str_eq(kept, "2-2,5-5", "after reset --to 5 the watch holds %s", kept);
    free(kept);
}

/* ---- a late event refused for good ------------------------------------------------------- */

static void write_refusing_config(char path[TH_PATH_MAX], const char *sink_out, const char *ids)
{
    th_write_config(&scope, path,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  safety_margin: 1s\n"
                    "  poll_interval: 50ms\n"
                    "  batch_size: 1\n"
                    "sink:\n"
                    "  plugin: %s\n"
                    "  options:\n"
                    "    out: %s\n"
                    "    reject_ids: \"%s\"\n"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 200ms\n",
                    RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), sink_out, ids);
}

typedef struct sink_goal {
    const char *path;
    int64_t id;
} sink_goal;

static bool sink_has_id(void *arg)
{
    sink_goal *g = arg;
    int64_t *ids;
    size_t n = th_read_testsink_ids(g->path, &ids);
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
        found = ids[i] == g->id;
    free(ids);
    return found;
}

/*
 * The sink refuses a late event for good (sink.on_reject: stop) while a backlog drains, so that
 * the acknowledged position is stored at the stop: the event's gap must be stored with it, still
 * watched, and the event delivered once the operator fixed the sink.
 */
Test(gaps, late_event_refused_stays_watched, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], sink_out[TH_PATH_MAX];
    th_path(&scope, "sink.out", sink_out);
    write_refusing_config(config, sink_out, "1");
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = th_relay_start(&scope, config, f.out, f.err);
    PGconn *t1 = th_scope_connect(&scope);

    th_exec(t1, "BEGIN");
    cr_assert_eq(sc_insert_one(t1), 1);
    cr_assert_eq(sc_insert_one(scope.conn), 2);
    th_wait_position(&scope, RELAY_NAME, 2);
    /* A backlog of batches of one, each stored only with the next read; id 1 commits while it
     * drains, and its late delivery is refused. */
    th_insert_events(scope.conn, 3000, "now() - interval '1 hour'");
    th_wait_position(&scope, RELAY_NAME, 100);
    th_exec(t1, "COMMIT");
    int code = th_relay_wait(&scope, pid, TH_DEADLINE_MS);
    cr_assert_eq(code, 1, "relay exited %d, expected 1 (sink.on_reject: stop)", code);
    cr_assert(th_file_contains(f.err, "event 1 refused by the sink for good"));
    /* The refusal came while the backlog drained, with a position acknowledged but unstored. */
    int64_t stopped_at = th_position(&scope, RELAY_NAME);
    cr_assert(stopped_at >= 100 && stopped_at < 3002,
              "stopped at %" PRId64 ", not within the backlog", stopped_at);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_gaps"
                                            " WHERE low_id <= 1 AND high_id >= 1"),
                 1, "the refused late event is no longer watched");

    write_refusing_config(config, sink_out, "999999"); /* none of these ids */
    pid = th_relay_start(&scope, config, f.out, f.err);
    sink_goal goal = {sink_out, 1};
    th_wait_until(&scope, TH_DEADLINE_MS, sink_has_id, &goal, "event 1 at the sink");
    th_relay_stop(&scope, pid);
}
