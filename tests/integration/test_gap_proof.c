/*
 * The proof that a missing id is dead, attacked: transactions that hold a gap's id while others
 * with later xids or later ids commit around them, in both modes, against a real PostgreSQL.
 *
 * Each scenario first shows that the relay holds the gap while its transaction is open (margin
 * mode: the gap stays watched well past the margin; settled mode: nothing after it is delivered),
 * then ends the transaction and checks the outcome. A relay that judges gaps by snapshot xmax
 * (one past the latest *completed* xid) fails the first half of each: the transaction holding the
 * id got its xid after one that completed, so it looks finished.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "../harness/harness.h"
#include "scene.h"

#define MARGIN "  safety_margin: 200ms\n  poll_interval: 50ms\n"
#define SETTLED "  mode: settled\n  poll_interval: 50ms\n"

/* How long settled mode must keep holding an open gap: many polls, and past 1 s, so that a relay
 * that releases a gap by its age (a 1 s floor) fails. */
#define HOLD_MS 2000

static th_scope scope;

static void setup(void)
{
    th_scope_new(&scope);
    sc_begin(&scope);
    th_exec(scope.conn, "CREATE TABLE orders (id serial PRIMARY KEY, note text)");
}

static void teardown(void)
{
    /* A prepared transaction left by a failed test would hold the schema's tables for good. */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'gap-proof-%s'",
             scope.schema);
    if (scope.conn && th_query_int64(scope.conn, sql) > 0) {
        snprintf(sql, sizeof sql, "ROLLBACK PREPARED 'gap-proof-%s'", scope.schema);
        th_exec(scope.conn, sql);
    }
    th_scope_free(&scope);
}

TestSuite(gap_proof, .timeout = 180);

/* One relay under test, in a mode. */
typedef struct scene {
    bool settled;
    char config[TH_PATH_MAX];
    sc_relay_files files;
    pid_t pid;
} scene;

static void scene_start(scene *sc, bool settled, const char *extra_yaml)
{
    char source[512];
    snprintf(source, sizeof source, "%s%s", settled ? SETTLED : MARGIN, extra_yaml);
    sc->settled = settled;
    sc_write_config(sc->config, source);
    th_migrate(sc->config);
    sc->files = sc_files_named("relay");
    sc->pid = sc_start_relay(sc->config, &sc->files);
}

typedef struct position_at {
    int64_t want;
} position_at;

static bool position_is(void *arg)
{
    const position_at *p = arg;
    return th_position(&scope, scope.schema) == p->want;
}

/*
 * The relay has seen `later` (committed) while `open_id` is held by an open transaction: margin
 * mode delivers `later` and must keep watching open_id; settled mode must deliver nothing from
 * open_id on. Asserts that for a good while, the relay polling all along.
 */
static void assert_gap_held(scene *sc, int64_t open_id, int64_t later)
{
    if (!sc->settled) {
        sc_wait_passed(sc->files.out, later);
        sc_keep_gap_open(open_id);
        return;
    }
    sc_id_goal absent = {sc->files.out, open_id};
    position_at before = {open_id - 1};
    th_wait_until(&scope, TH_DEADLINE_MS, position_is, &before, "the position before the gap");
    th_hold_for(&scope, HOLD_MS, sc_id_absent, &absent, "the open id not delivered");
    sc_id_goal behind = {sc->files.out, later};
    cr_assert(sc_id_absent(&behind), "settled mode delivered id %" PRId64 " past open id %" PRId64,
              later, open_id);
    cr_assert_eq(th_position(&scope, scope.schema), open_id - 1,
                 "settled mode moved past the open id %" PRId64, open_id);
}

/* Every id in ids[] delivered once; in settled mode, the output is exactly ids[] in order. */
static void assert_delivered(scene *sc, const int64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sc_wait_delivered(sc->files.out, ids[i]);
    sc_wait_passed(sc->files.out, ids[n - 1] > ids[0] ? ids[n - 1] : ids[0]);
    th_relay_stop(&scope, sc->pid);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(sc_times_delivered(sc->files.out, ids[i]), 1,
                     "id %" PRId64 " delivered %zu times", ids[i],
                     sc_times_delivered(sc->files.out, ids[i]));
    if (sc->settled) {
        int64_t *got;
        size_t lines = th_read_stdout_ids(sc->files.out, &got);
        for (size_t i = 0; i < lines; i++)
            cr_assert_eq(got[i], (int64_t)i + 1, "settled: line %zu has id %" PRId64, i + 1,
                         got[i]);
        free(got);
    }
}

/* ---- open behind a commit: A writes first, B takes the id, A takes the next and commits ---- */

/*
 * A: BEGIN and a first write (a_first: a business row, or just an xid); B: BEGIN and inserts id 1
 * (with an xid after A's), inside a savepoint it then releases if one is named; A inserts id 2
 * and commits. B stays open: its id 1 is behind a completed transaction with an older xid.
 */
static void open_behind_a_commit(PGconn *a, PGconn *b, const char *a_first, const char *savepoint)
{
    char sql[128];
    th_exec(a, "BEGIN");
    th_exec(a, a_first);
    th_exec(b, "BEGIN");
    if (savepoint) {
        snprintf(sql, sizeof sql, "SAVEPOINT %s", savepoint);
        th_exec(b, sql);
    }
    cr_assert_eq(sc_insert_one(b), 1);
    if (savepoint) {
        snprintf(sql, sizeof sql, "RELEASE SAVEPOINT %s", savepoint);
        th_exec(b, sql);
    }
    cr_assert_eq(sc_insert_one(a), 2);
    th_exec(a, "COMMIT");
}

/* B commits a while after A: its id 1 must arrive. */
static void a_then_b(bool settled, const char *a_first)
{
    scene sc;
    scene_start(&sc, settled, "");
    PGconn *a = th_scope_connect(&scope), *b = th_scope_connect(&scope);
    open_behind_a_commit(a, b, a_first, NULL);

    assert_gap_held(&sc, 1, 2);
    th_exec(b, "COMMIT");
    const int64_t ids[] = {1, 2};
    assert_delivered(&sc, ids, 2);
    if (!settled) {
        char *line = sc_line_of(sc.files.out, 1);
        cr_assert(sc_is_late(line), "id 1 not flagged late: %s", line);
        free(line);
    }
}

Test(gap_proof, business_write_first_margin, .init = setup, .fini = teardown)
{
    a_then_b(false, "INSERT INTO orders (note) VALUES ('placed')");
}

Test(gap_proof, business_write_first_settled, .init = setup, .fini = teardown)
{
    a_then_b(true, "INSERT INTO orders (note) VALUES ('placed')");
}

Test(gap_proof, xid_first_margin, .init = setup, .fini = teardown)
{
    a_then_b(false, "SELECT pg_current_xact_id()");
}

Test(gap_proof, xid_first_settled, .init = setup, .fini = teardown)
{
    a_then_b(true, "SELECT pg_current_xact_id()");
}

/* ---- B inserts twice, around A's commit ---------------------------------------------------- */

static void b_inserts_twice(bool settled)
{
    scene sc;
    scene_start(&sc, settled, "");
    PGconn *a = th_scope_connect(&scope), *b = th_scope_connect(&scope);
    open_behind_a_commit(a, b, "SELECT pg_current_xact_id()", NULL);
    assert_gap_held(&sc, 1, 2);
    /* B's second event comes after the committed one; both must wait for B. */
    cr_assert_eq(sc_insert_one(b), 3);
    cr_assert_eq(sc_insert_one(scope.conn), 4);
    if (!settled)
        sc_wait_passed(sc.files.out, 4);
    assert_gap_held(&sc, 1, 2);
    th_exec(b, "COMMIT");
    const int64_t ids[] = {1, 2, 3, 4};
    assert_delivered(&sc, ids, 4);
}

Test(gap_proof, b_inserts_twice_margin, .init = setup, .fini = teardown)
{
    b_inserts_twice(false);
}

Test(gap_proof, b_inserts_twice_settled, .init = setup, .fini = teardown)
{
    b_inserts_twice(true);
}

/* ---- three overlapping transactions in a chain --------------------------------------------- */

/*
 * T1 takes an xid, T2 takes id 1, T3 takes id 2, T1 takes id 3 and commits; then T3 commits
 * (id 1 still open), then T2. Each commit leaves the next-older id open behind a completed xid.
 */
static void chain_of_three(bool settled)
{
    scene sc;
    scene_start(&sc, settled, "");
    PGconn *t1 = th_scope_connect(&scope), *t2 = th_scope_connect(&scope),
           *t3 = th_scope_connect(&scope);
    th_exec(t1, "BEGIN");
    th_exec(t1, "SELECT pg_current_xact_id()");
    th_exec(t2, "BEGIN");
    cr_assert_eq(sc_insert_one(t2), 1);
    th_exec(t3, "BEGIN");
    cr_assert_eq(sc_insert_one(t3), 2);
    cr_assert_eq(sc_insert_one(t1), 3);
    th_exec(t1, "COMMIT");
    assert_gap_held(&sc, 1, 3);
    th_exec(t3, "COMMIT");
    if (!settled)
        sc_wait_delivered(sc.files.out, 2);
    assert_gap_held(&sc, 1, 3);
    th_exec(t2, "COMMIT");
    const int64_t ids[] = {1, 2, 3};
    assert_delivered(&sc, ids, 3);
}

Test(gap_proof, chain_of_three_margin, .init = setup, .fini = teardown)
{
    chain_of_three(false);
}

Test(gap_proof, chain_of_three_settled, .init = setup, .fini = teardown)
{
    chain_of_three(true);
}

/* ---- the gap's transaction ends without its row -------------------------------------------- */

typedef struct release_goal {
    scene *sc;
    int64_t later; /* settled: delivered once the gap is released */
} release_goal;

static bool gap_released(void *arg)
{
    const release_goal *g = arg;
    if (g->sc->settled) {
        sc_id_goal later = {g->sc->files.out, g->later};
        return sc_id_delivered(&later);
    }
    return sc_stored_gaps() == 0 && sc_ids_forgotten(g->sc->files.err) >= 1;
}

/*
 * A long writing transaction on another table (C) stays open throughout: it has nothing to do
 * with the outbox, and must not hold the gap. B takes id 1 and ends by `end` (a rollback, or its
 * backend killed); the gap is released soon after, while C is still open.
 */
static void b_ends_without_row(bool settled, bool kill_backend)
{
    scene sc;
    scene_start(&sc, settled, "");
    PGconn *a = th_scope_connect(&scope), *b = th_scope_connect(&scope),
           *c = th_scope_connect(&scope);
    th_exec(c, "BEGIN");
    th_exec(c, "INSERT INTO orders (note) VALUES ('long-running')");
    open_behind_a_commit(a, b, "SELECT pg_current_xact_id()", NULL);
    assert_gap_held(&sc, 1, 2);

    int64_t b_pid = PQbackendPID(b);
    if (kill_backend) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%" PRId64 ", 10000)::int", b_pid);
        cr_assert_eq(th_query_int64(scope.conn, sql), 1, "pg_terminate_backend failed");
    } else {
        th_exec(b, "ROLLBACK");
    }
    int64_t ended = th_query_int64(scope.conn, "SELECT (extract(epoch FROM clock_timestamp())"
                                               " * 1000)::bigint");
    release_goal goal = {&sc, 2};
    /* Soon: a few polls, and no floor; C is still open all along. */
    th_wait_until(&scope, 5000, gap_released, &goal, "the dead gap to be released");
    int64_t released = th_query_int64(scope.conn, "SELECT (extract(epoch FROM clock_timestamp())"
                                                  " * 1000)::bigint");
    cr_log_info("gap released %" PRId64 " ms after its transaction ended", released - ended);
    cr_assert_eq(th_query_int64(c, "SELECT count(*) FROM orders WHERE note = 'long-running'"), 1,
                 "the unrelated transaction is no longer open");
    th_exec(c, "COMMIT");
    sc_wait_passed(sc.files.out, 2);
    th_relay_stop(&scope, sc.pid);
    cr_assert_eq(sc_times_delivered(sc.files.out, 1), 0, "the dead id 1 was delivered");
    cr_assert_eq(sc_times_delivered(sc.files.out, 2), 1);
}

Test(gap_proof, rolled_back_released_soon_margin, .init = setup, .fini = teardown)
{
    b_ends_without_row(false, false);
}

Test(gap_proof, rolled_back_released_soon_settled, .init = setup, .fini = teardown)
{
    b_ends_without_row(true, false);
}

Test(gap_proof, killed_backend_margin, .init = setup, .fini = teardown)
{
    b_ends_without_row(false, true);
}

Test(gap_proof, killed_backend_settled, .init = setup, .fini = teardown)
{
    b_ends_without_row(true, true);
}

/* ---- two-phase commit ---------------------------------------------------------------------- */

/*
 * B takes id 1 and, once the relay has seen the gap, prepares: its locks move to a prepared
 * transaction with no backend. Seconds later another session commits it.
 */
static void prepared_then_committed(bool settled)
{
    cr_assert_gt(th_query_int64(scope.conn, "SELECT current_setting('max_prepared_transactions')"
                                            "::int"),
                 0, "the test server needs max_prepared_transactions > 0 (scripts/test sets it)");
    scene sc;
    /* The default configuration: no wake-up trigger, whose NOTIFY would forbid the PREPARE. */
    scene_start(&sc, settled, "");
    PGconn *a = th_scope_connect(&scope), *b = th_scope_connect(&scope);
    open_behind_a_commit(a, b, "SELECT pg_current_xact_id()", NULL);
    if (!settled)
        sc_wait_passed(sc.files.out, 2);

    char sql[160];
    snprintf(sql, sizeof sql, "PREPARE TRANSACTION 'gap-proof-%s'", scope.schema);
    th_exec(b, sql);
    assert_gap_held(&sc, 1, 2);
    snprintf(sql, sizeof sql, "COMMIT PREPARED 'gap-proof-%s'", scope.schema);
    th_exec(scope.conn, sql);
    const int64_t ids[] = {1, 2};
    assert_delivered(&sc, ids, 2);
}

Test(gap_proof, prepared_transaction_margin, .init = setup, .fini = teardown)
{
    prepared_then_committed(false);
}

Test(gap_proof, prepared_transaction_settled, .init = setup, .fini = teardown)
{
    prepared_then_committed(true);
}

/* ---- savepoints ---------------------------------------------------------------------------- */

/* An insert in a savepoint that is released belongs to the transaction: its gap is held. One in a
 * savepoint rolled back is dead at once, while the transaction goes on. */
static void savepoints(bool settled)
{
    scene sc;
    scene_start(&sc, settled, "");
    PGconn *a = th_scope_connect(&scope), *b = th_scope_connect(&scope);
    open_behind_a_commit(a, b, "SELECT pg_current_xact_id()", "kept");
    assert_gap_held(&sc, 1, 2);
    th_exec(b, "COMMIT");
    const int64_t first[] = {1, 2};
    for (size_t i = 0; i < 2; i++)
        sc_wait_delivered(sc.files.out, first[i]);

    /* A fresh transaction whose only insert is in a savepoint rolled back. */
    th_exec(b, "BEGIN");
    th_exec(b, "SAVEPOINT dropped");
    cr_assert_eq(sc_insert_one(b), 3);
    th_exec(b, "ROLLBACK TO SAVEPOINT dropped");
    cr_assert_eq(sc_insert_one(scope.conn), 4);
    release_goal goal = {&sc, 4};
    th_wait_until(&scope, 5000, gap_released, &goal, "the rolled-back savepoint's id released");
    th_exec(b, "COMMIT");
    sc_wait_passed(sc.files.out, 4);
    th_relay_stop(&scope, sc.pid);
    cr_assert_eq(sc_times_delivered(sc.files.out, 3), 0, "the rolled-back id 3 was delivered");
}

Test(gap_proof, savepoints_margin, .init = setup, .fini = teardown)
{
    savepoints(false);
}

Test(gap_proof, savepoints_settled, .init = setup, .fini = teardown)
{
    savepoints(true);
}

/* ---- a gap seen before a restart, filled after it ------------------------------------------ */

static void restart_between(bool settled)
{
    scene sc;
    scene_start(&sc, settled, "");
    PGconn *a = th_scope_connect(&scope), *b = th_scope_connect(&scope);
    open_behind_a_commit(a, b, "SELECT pg_current_xact_id()", NULL);
    if (settled) {
        position_at before = {0};
        th_wait_until(&scope, TH_DEADLINE_MS, position_is, &before, "the relay to read");
    } else {
        sc_wait_passed(sc.files.out, 2);
    }
    th_relay_stop(&scope, sc.pid);

    /* The second relay, with output files of its own. */
    sc_relay_files first = sc.files;
    sc.files = sc_files_named("relay2");
    sc.pid = sc_start_relay(sc.config, &sc.files);
    if (settled)
        assert_gap_held(&sc, 1, 2);
    else
        sc_keep_gap_open(1); /* id 2 went out before the restart */
    th_exec(b, "COMMIT");
    if (settled) {
        const int64_t ids[] = {1, 2};
        assert_delivered(&sc, ids, 2);
        cr_assert_eq(sc_times_delivered(first.out, 1) + sc_times_delivered(first.out, 2), 0,
                     "settled mode delivered past the open id before the restart");
    } else {
        const int64_t ids[] = {1};
        assert_delivered(&sc, ids, 1);
        cr_assert_eq(sc_times_delivered(first.out, 2), 1);
        cr_assert_eq(sc_times_delivered(sc.files.out, 2), 0);
    }
}

Test(gap_proof, restart_between_sight_and_commit_margin, .init = setup, .fini = teardown)
{
    restart_between(false);
}

Test(gap_proof, restart_between_sight_and_commit_settled, .init = setup, .fini = teardown)
{
    restart_between(true);
}

/* ---- ids not taken by the insert ------------------------------------------------------------ */

/* Runs `check`, returns its exit code; *err gets its stderr (caller frees). */
static int run_check(const char *config, char **err)
{
    char *out;
    int code = th_run_cli(&out, err, "check", "-c", config);
    free(out);
    return code;
}

Test(gap_proof, cached_sequence_refused_by_check_and_run, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, MARGIN);
    th_migrate(config);
    th_exec(scope.conn, "ALTER SEQUENCE events_id_seq CACHE 20");
    char *err;
    int code = run_check(config, &err);
    cr_assert_eq(code, 4, "check exited %d:\n%s", code, err);
    cr_assert_not_null(strstr(err, "CACHE 20"), "check does not say why:\n%s", err);
    cr_assert_not_null(strstr(err, "ids_taken_ahead"), "check does not say what to do:\n%s", err);
    free(err);

    sc_relay_files f = sc_files_named("refused");
    pid_t pid = th_relay_start(&scope, config, f.out, f.err);
    code = th_relay_wait(&scope, pid, TH_DEADLINE_MS);
    cr_assert_eq(code, 4, "run exited %d with a cached sequence", code);
    cr_assert(th_file_contains(f.err, "CACHE 20"));

    /* CACHE 1 again: both go through. */
    th_exec(scope.conn, "ALTER SEQUENCE events_id_seq CACHE 1");
    code = run_check(config, &err);
    cr_assert_eq(code, 0, "check exited %d:\n%s", code, err);
    free(err);
}

Test(gap_proof, id_default_not_a_sequence_warned, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, MARGIN);
    th_migrate(config);
    th_exec(scope.conn, "ALTER TABLE events ALTER COLUMN id DROP DEFAULT");
    char *err;
    int code = run_check(config, &err);
    cr_assert_eq(code, 0, "check exited %d:\n%s", code, err);
    cr_assert_not_null(strstr(err, "neither nextval() nor an identity"),
                       "check does not warn of ids it cannot see:\n%s", err);
    free(err);

    /* An identity column is a sequence default too. */
    th_exec(scope.conn, "DROP TABLE events CASCADE");
    th_exec(scope.conn,
            "CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " aggregate_id text NOT NULL, aggregate_type text NOT NULL,"
            " aggregate_version integer NOT NULL, kind text NOT NULL, body jsonb NOT NULL,"
            " metadata jsonb, created_at timestamptz NOT NULL DEFAULT clock_timestamp())");
    code = run_check(config, &err);
    cr_assert_eq(code, 0, "check exited %d:\n%s", code, err);
    cr_assert_null(strstr(err, "neither nextval()"), "an identity column was warned of:\n%s", err);
    free(err);
}

/*
 * The application takes ids ahead (a sequence with CACHE 20, as a pooled optimizer would): A's
 * session takes 1 and holds 2..20; B's takes 21. The opted-in relay watches the gap 2..20 for at
 * least gap_floor; A's id 2, inserted in a later transaction within it, is still delivered.
 */
static void ids_taken_ahead(bool settled)
{
    scene sc;
    scene_start(&sc, settled, "  ids_taken_ahead: true\n  gap_floor: 4s\n");
    th_exec(scope.conn, "ALTER SEQUENCE events_id_seq CACHE 20");
    PGconn *a = th_scope_connect(&scope), *b = th_scope_connect(&scope);
    cr_assert_eq(sc_insert_one(a), 1);
    cr_assert_eq(sc_insert_one(b), 21);
    if (settled) {
        sc_wait_passed(sc.files.out, 1);
        sc_id_goal behind = {sc.files.out, 21};
        th_hold_for(&scope, 1500, sc_id_absent, &behind, "id 21 held behind the ids taken ahead");
    } else {
        sc_wait_passed(sc.files.out, 21);
        cr_assert_eq(sc_stored_gaps(), 1);
    }
    /* No transaction holds id 2 now: only the floor keeps it. */
    cr_assert_eq(sc_insert_one(a), 2);
    sc_wait_delivered(sc.files.out, 2);
    sc_wait_passed(sc.files.out, 21);
    th_relay_stop(&scope, sc.pid);
    for (int64_t id = 1; id <= 21; id += id == 2 ? 19 : 1)
        cr_assert_eq(sc_times_delivered(sc.files.out, id), 1, "id %" PRId64, id);
}

Test(gap_proof, ids_taken_ahead_watched_for_the_floor_margin, .init = setup, .fini = teardown)
{
    ids_taken_ahead(false);
}

Test(gap_proof, ids_taken_ahead_watched_for_the_floor_settled, .init = setup, .fini = teardown)
{
    ids_taken_ahead(true);
}

/* ---- ids at the ends of bigint --------------------------------------------------------------- */

Test(gap_proof, ids_at_or_below_zero_refused, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_write_config(config, MARGIN);
    th_migrate(config);
    th_exec(scope.conn, "INSERT INTO events (id, aggregate_id, aggregate_type, aggregate_version,"
                        " kind, body) VALUES (-4, 'a', 'order', 1, 'created', '{}')");
    char *err;
    int code = run_check(config, &err);
    cr_assert_eq(code, 4, "check exited %d with an id of -4:\n%s", code, err);
    cr_assert_not_null(strstr(err, "the smallest is -4"), "check does not say why:\n%s", err);
    free(err);
    sc_relay_files f = sc_files_named("refused");
    pid_t pid = th_relay_start(&scope, config, f.out, f.err);
    cr_assert_eq(th_relay_wait(&scope, pid, TH_DEADLINE_MS), 4);

    /* A sequence that may hand such ids out is refused before any exists. */
    th_exec(scope.conn, "DELETE FROM events");
    th_exec(scope.conn, "ALTER SEQUENCE events_id_seq MINVALUE -10");
    code = run_check(config, &err);
    cr_assert_eq(code, 4, "check exited %d with MINVALUE -10:\n%s", code, err);
    cr_assert_not_null(strstr(err, "MINVALUE"), "check does not say why:\n%s", err);
    free(err);
}

/* The last ids of bigint are delivered, and the arithmetic around them stays defined (the
 * sanitized build of this test fails on an overflow). */
static void ids_near_the_top(bool settled)
{
    scene sc;
    scene_start(&sc, settled, "");
    th_exec(scope.conn,
            "INSERT INTO events (id, aggregate_id, aggregate_type, aggregate_version, kind, body)"
            " VALUES (1, 'a', 'order', 1, 'created', '{}'),"
            " (9223372036854775806, 'b', 'order', 1, 'created', '{}'),"
            " (9223372036854775807, 'c', 'order', 1, 'created', '{}')");
    /* As if the sequence had handed them out (it is read with every batch). */
    th_exec(scope.conn, "SELECT setval('events_id_seq', 9223372036854775807)");
    sc_wait_passed(sc.files.out, INT64_MAX);
    th_relay_stop(&scope, sc.pid);
    int64_t *ids;
    size_t n = th_read_stdout_ids(sc.files.out, &ids);
    cr_assert_eq(n, 3, "%zu lines", n);
    cr_assert(ids[0] == 1 && ids[1] == INT64_MAX - 1 && ids[2] == INT64_MAX);
    free(ids);
}

Test(gap_proof, ids_near_the_top_margin, .init = setup, .fini = teardown)
{
    ids_near_the_top(false);
}

Test(gap_proof, ids_near_the_top_settled, .init = setup, .fini = teardown)
{
    ids_near_the_top(true);
}
