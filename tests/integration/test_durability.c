/*
 * What the relay delivered must stay true: durable before delivered, and a database whose history
 * went back (a sequence restarted, a restore from a backup, a failover to a standby that lacked
 * the last commits) noticed while the relay runs, instead of new events reusing ids it passed.
 *
 * Most tests here crash, restore or fail over PostgreSQL, so they run clusters of their own
 * (tests/harness/cluster.h); the sequence tests use the shared server.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
static th_cluster primary, standby;
static char reader_role[96]; /* a role the test created, dropped at teardown */

static void setup_shared(void)
{
    th_scope_new(&scope);
    sc_begin(&scope);
}

/* Runs after a failure too: relays killed, the role and schema dropped, clusters stopped and
 * removed. */
static void teardown(void)
{
    if (reader_role[0] && scope.conn && PQstatus(scope.conn) == CONNECTION_OK) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP OWNED BY %s; DROP ROLE IF EXISTS %s", reader_role,
                 reader_role);
        PQclear(PQexec(scope.conn, sql));
        reader_role[0] = '\0';
    }
    th_scope_free(&scope);
    th_clusters_free();
}

TestSuite(durability, .timeout = 120);

/* ---- helpers --------------------------------------------------------------------------------- */

/* Waits for the relay to exit on its own; asserts the code and that its log says text. */
static void expect_exit(pid_t pid, int want, const char *err_path, const char *text)
{
    int code = th_relay_wait(&scope, pid, TH_DEADLINE_MS);
    char *log = th_read_file(err_path, NULL);
    cr_assert_eq(code, want, "relay exited %d, expected %d; its log:\n%s", code, want, log);
    cr_assert(strstr(log, text) != NULL, "the relay's log does not say \"%s\":\n%s", text, log);
    free(log);
}

/* The scope's own session, reconnected after a server restart or a failover. */
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

static void wait_own_session(void)
{
    th_wait_until(&scope, TH_DEADLINE_MS, own_session_back, NULL,
                  "the test's own session to reconnect");
}

/* Asserts that the output holds exactly the ids first..last, once each, in order. */
static void assert_output(const char *out, int64_t first, int64_t last)
{
    int64_t *ids;
    size_t n = th_read_stdout_ids(out, &ids);
    cr_assert_eq((int64_t)n, last - first + 1,
                 "%zu ids in the output, expected %" PRId64 "..%" PRId64, n, first, last);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], first + (int64_t)i, "output line %zu has id %" PRId64, i + 1, ids[i]);
    free(ids);
}

static void assert_nothing_delivered(const char *out)
{
    size_t len;
    char *text = th_read_file(out, &len);
    cr_assert_eq(len, 0, "the relay delivered:\n%s", text);
    free(text);
}

/* The ids handed out by an INSERT ... RETURNING id on conn, in order (at most 16). */
static size_t insert_returning(PGconn *conn, int n, int64_t ids[16])
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body)"
             " SELECT gen_random_uuid()::text, 'order', 1, 'created', '{}'"
             " FROM generate_series(1, %d) RETURNING id",
             n);
    PGresult *res = PQexec(conn, sql);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
    size_t count = (size_t)PQntuples(res);
    cr_assert_leq(count, 16);
    for (size_t i = 0; i < count; i++)
        ids[i] = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
    PQclear(res);
    return count;
}

/* A YAML double-quoted scalar of text. */
static void yaml_quote(const char *text, char *out, size_t len)
{
    size_t at = 0;
    out[at++] = '"';
    for (const char *p = text; *p && at + 3 < len; p++) {
        if (*p == '"' || *p == '\\')
            out[at++] = '\\';
        out[at++] = *p;
    }
    out[at++] = '"';
    out[at] = '\0';
}

/* The current WAL position of the server conn is on, as text (caller frees). */
static char *wal_lsn(PGconn *conn)
{
    return th_query_text(conn, "SELECT pg_current_wal_lsn()::text");
}

typedef struct replay_goal {
    const th_cluster *standby;
    const char *lsn;
} replay_goal;

/* Whether the standby has replayed up to lsn, asked on the standby itself: the primary's
 * pg_stat_replication hears of replay only every wal_receiver_status_interval. */
static bool standby_replayed(void *arg)
{
    const replay_goal *g = arg;
    PGconn *conn = PQconnectdb(g->standby->conninfo);
    bool done = false;
    if (PQstatus(conn) == CONNECTION_OK) {
        const char *params[1] = {g->lsn};
        PGresult *res = PQexecParams(conn, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", 1, NULL,
                                     params, NULL, NULL, 0);
        done = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
               strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
    }
    PQfinish(conn);
    return done;
}

/* Waits until the standby replayed everything the primary (on conn) has written so far. */
static void wait_standby_replayed_all(PGconn *primary_conn)
{
    char *lsn = wal_lsn(primary_conn);
    replay_goal goal = {&standby, lsn};
    char what[128];
    snprintf(what, sizeof what, "the standby to replay the WAL up to %s", lsn);
    th_wait_until(&scope, TH_DEADLINE_MS, standby_replayed, &goal, what);
    free(lsn);
}

static void promote_standby(void)
{
    PGconn *conn = th_cluster_connect(&standby);
    PGresult *res = PQexec(conn, "SELECT pg_promote(true, 60)");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn));
    PQclear(res);
    PQfinish(conn);
    cr_assert(ok, "pg_promote on the standby failed: %s", msg);
}

/* "host=DIR1,DIR2 port=P1,P2 ...": libpq tries both, and takes the one that accepts writes. */
static void both_servers_conninfo(char *out, size_t len)
{
    snprintf(out, len,
             "host=%s,%s port=%d,%d dbname=postgres user=postgres target_session_attrs=read-write",
             primary.dir, standby.dir, primary.port, standby.port);
}

/* ---- 1. durable before delivered ------------------------------------------------------------- */

/* A cluster of the test's own (its extra postgresql.conf lines in conf), the scope on it, the
 * relay's config (source_yaml) in config, migrated, everything so far on disk, and the relay
 * started: only what the test writes next is at stake in a crash. Returns the relay's pid. */
static pid_t relay_on_own_cluster(const char *conf, const char *source_yaml,
                                  char config[TH_PATH_MAX], sc_relay_files *f)
{
    th_cluster_start(&primary, conf);
    th_scope_new_at(&scope, primary.conninfo);
    sc_begin(&scope);
    sc_write_config(config, source_yaml);
    th_migrate(config);
    th_exec(scope.conn, "CHECKPOINT");
    *f = sc_files_named("relay");
    return sc_start_relay(config, f);
}

/*
 * A writer commits with synchronous_commit = off: its row is visible before its WAL is flushed,
 * and with wal_writer_delay = 10s the WAL stays in the server's buffers for seconds. A relay that
 * delivers it then, and a crash (an immediate stop loses what was never written out; pg-tmp's
 * fsync = off keeps what was), leave an event at the destination that the database no longer
 * has, its id free to come back with another event.
 */
static void phantom(const char *source_yaml)
{
    char config[TH_PATH_MAX];
    sc_relay_files f;
    pid_t pid = relay_on_own_cluster("wal_writer_delay = 10s", source_yaml, config, &f);

    PGconn *writer = th_scope_connect(&scope);
    th_exec(writer, "SET synchronous_commit = off");
    PGresult *res = PQexec(writer, "INSERT INTO events (aggregate_id, aggregate_type, "
                                   "aggregate_version, kind, body) VALUES ('phantom-' || "
                                   "gen_random_uuid(), 'order', 1, 'created', '{}') "
                                   "RETURNING id, aggregate_id");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(writer));
    int64_t id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    char key[128];
    snprintf(key, sizeof key, "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    sc_wait_delivered(f.out, id);

    th_cluster_stop(&primary, true);
    th_cluster_restart_stopped(&primary);
    wait_own_session();
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM events WHERE id = %" PRId64 " AND aggregate_id = '%s'", id, key);
    cr_assert_eq(th_query_int64(scope.conn, sql), 1,
                 "event %" PRId64 " (%s) was delivered, then lost in the crash: the relay "
                 "delivered it before its commit was flushed",
                 id, key);

    /* Nothing delivered was lost, so the relay goes on after the crash. */
    int64_t next = sc_insert_one(scope.conn);
    sc_wait_delivered(f.out, next);
    th_relay_stop(&scope, pid);
}

Test(durability, delivered_only_once_flushed_settled, .fini = teardown)
{
    phantom("  mode: settled\n"
            "  poll_interval: 50ms\n");
}

Test(durability, delivered_only_once_flushed_margin, .fini = teardown)
{
    phantom("  safety_margin: 0s\n"
            "  poll_interval: 50ms\n");
}

/* How many times the log at path says text. */
static int times_logged(const char *path, const char *text)
{
    char *log = th_read_file(path, NULL);
    int n = 0;
    for (const char *at = log; (at = strstr(at, text)) != NULL; at += strlen(text))
        n++;
    free(log);
    return n;
}

/* What relay_durable.c logs (at debug) for a batch made durable by the store in its read, for one
 * it flushed the WAL for itself, and relay_turn.c once a batch was delivered. */
#define DURABLE_BY_STORE "durable by the synchronous store of their read"
#define FORCED_FLUSH "forcing the WAL flush past"
#define DELIVERED "debug delivered "

/* The events of the last batches delivered, in a row, durable by the store of their read, no
 * flush of the relay's own since: those whose survival of a crash rests on those stores alone. */
static int64_t events_resting_on_stores(const char *err_path)
{
    char **lines;
    size_t n = th_read_lines(err_path, &lines);
    int64_t events = 0;
    bool by_store = false;
    for (size_t i = 0; i < n; i++) {
        const char *delivered = strstr(lines[i], DELIVERED);
        if (strstr(lines[i], FORCED_FLUSH)) {
            events = 0;
            by_store = false;
        } else if (strstr(lines[i], DURABLE_BY_STORE)) {
            by_store = true;
        } else if (delivered) {
            /* Durable otherwise (flushed already, or older than a flushed read): a run ends. */
            int64_t count = strtoll(delivered + strlen(DELIVERED), NULL, 10);
            events = by_store ? events + count : 0;
            by_store = false;
        }
    }
    th_free_lines(lines, n);
    return events;
}

/* Whether the process is stopped (SIGSTOP took effect): its log and output are final. */
static bool stopped(void *arg)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)*(pid_t *)arg);
    FILE *f = fopen(path, "r");
    size_t len = f ? fread(stat, 1, sizeof stat - 1, f) : 0;
    if (f)
        fclose(f);
    stat[len] = '\0';
    const char *state = strrchr(stat, ')'); /* after "PID (COMM" */
    return state && state[1] == ' ' && (state[2] == 'T' || state[2] == 't');
}

/* Which of the ids (n of them) the table lacks, as "ID ID ..." (caller frees), or NULL. */
static char *ids_missing(PGconn *conn, const int64_t *ids, size_t n)
{
    size_t len = 200 + 21 * n, at = 0;
    char *sql = malloc(len);
    cr_assert_not_null(sql, "out of memory");
    at += (size_t)snprintf(sql + at, len - at,
                           "SELECT string_agg(d::text, ' ' ORDER BY d) FROM unnest('{");
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(sql + at, len - at, "%s%" PRId64, i ? "," : "", ids[i]);
    snprintf(sql + at, len - at,
             "}'::bigint[]) AS d WHERE NOT EXISTS (SELECT FROM events WHERE id = d)");
    char *missing = th_query_text(conn, sql);
    free(sql);
    return missing;
}

/* Whether the WAL from lsn on lies in the page still being filled. An asynchronous commit wakes
 * the WAL writer as soon as a page is full, and it writes the full pages out: an immediate stop
 * loses none of them (fsync = off or not, the kernel has them), only the page being filled, which
 * nothing but a flush writes out. */
static bool in_page_being_filled(PGconn *conn, const char *lsn)
{
    const char *params[1] = {lsn};
    PGresult *res =
        PQexecParams(conn,
                     "SELECT i - i % current_setting('wal_block_size')::numeric"
                     "       <= $1::pg_lsn - '0/0'::pg_lsn"
                     "  FROM (SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn) AS w(i)",
                     1, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
    bool in = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return in;
}

/* Enough batches through the store's path that the relay is in its steady state there, and
 * enough again after a pause to be back in it. */
#define STEADY_STORE_BATCHES 20
#define STEADY_STORE_BATCHES_AGAIN 3
/* A bound on the writer: a few hundred events make the STEADY_STORE_BATCHES on a quiet machine;
 * with other suites running beside it the relay's reads grow, and a clean-clone CI run once took
 * more than 3000 (19 batches). Reaching the bound only means the scene was not built. */
#define STEADY_MAX_EVENTS 20000
/* The writer looks at the relay's log every so many events. */
#define STEADY_CHECK_EVERY 10

/*
 * The steady state under asynchronous writers: once a batch had to wait for the WAL flush, the
 * position stored with each next read commits with synchronous_commit = local, and the batch read
 * in that transaction counts as flushed when the pipeline ends, with no flush of its own. A
 * writer commits one event per transaction with synchronous_commit = off, without pause, while
 * the relay delivers, until that path made many batches durable; the relay delivers the last
 * event, then is frozen, and the server crashes. Every event the relay delivered must have
 * survived: a store that does not flush (committed asynchronously, or a batch counted flushed
 * without it) leaves delivered events that the database no longer has.
 *
 * The crash loses only the page of WAL being filled (in_page_being_filled; wal_writer_delay =
 * 10s keeps the WAL writer from flushing it meanwhile, autovacuum off keeps others from it). So
 * the crash comes when the last event lies wholly in that page, and the batches that delivered
 * the last events were durable by the stores of their reads alone, with no flush of the relay's
 * own since (a forced one, for a read that carried no store, would have flushed them all).
 * Otherwise (the relay's own records after the last event filled the page, or its last read
 * carried no store) the writer goes on for a few batches more and the relay is looked at again.
 * Frozen, the relay neither flushes after the fact nor notices the lost history before the test
 * looks.
 */
static void steady_async_writer(const char *source_yaml)
{
    char config[TH_PATH_MAX];
    sc_relay_files f;
    pid_t pid =
        relay_on_own_cluster("wal_writer_delay = 10s\nautovacuum = off", source_yaml, config, &f);

    /* No pause between commits: each read of the relay (every max_wait, 5ms) finds new rows, so
     * each carries the store of the batch before it. */
    PGconn *writer = th_scope_connect(&scope);
    th_exec(writer, "SET synchronous_commit = off");
    int written = 0, looks = 0, want = STEADY_STORE_BATCHES;
    int64_t at_stake = 0;
    for (;;) {
        char *before_last = NULL;
        int64_t last = 0;
        while (times_logged(f.err, DURABLE_BY_STORE) < want) {
            cr_assert_lt(written, STEADY_MAX_EVENTS,
                         "%d events written, and only %d batches durable by the store of their "
                         "read",
                         written, times_logged(f.err, DURABLE_BY_STORE));
            for (int i = 0; i < STEADY_CHECK_EVERY - 1; i++)
                sc_insert_one(writer);
            free(before_last);
            before_last = th_query_text(writer, "SELECT pg_current_wal_insert_lsn()::text");
            last = sc_insert_one(writer);
            written += STEADY_CHECK_EVERY;
        }
        sc_wait_delivered(f.out, last);
        th_relay_signal(pid, SIGSTOP);
        th_wait_until(&scope, TH_DEADLINE_MS, stopped, &pid, "the relay to freeze");
        looks++;
        at_stake = events_resting_on_stores(f.err);
        bool lost_unflushed = in_page_being_filled(scope.conn, before_last);
        free(before_last);
        if (at_stake > 0 && lost_unflushed)
            break;
        th_relay_signal(pid, SIGCONT);
        want = times_logged(f.err, DURABLE_BY_STORE) + STEADY_STORE_BATCHES_AGAIN;
    }
    int by_store = times_logged(f.err, DURABLE_BY_STORE);
    int batches = times_logged(f.err, DELIVERED);
    int forced = times_logged(f.err, FORCED_FLUSH);

    th_cluster_stop(&primary, true);
    th_cluster_restart_stopped(&primary);
    wait_own_session();
    int64_t *ids;
    size_t n = th_read_stdout_ids(f.out, &ids);
    cr_log_info("%d events written, %zu delivered in %d batches: %d durable by the store of their "
                "read, %d by a forced flush; at the crash (look %d), %" PRId64
                " resting on the stores alone; %" PRId64 " events left after it",
                written, n, batches, by_store, forced, looks, at_stake,
                th_query_int64(scope.conn, "SELECT count(*) FROM events"));
    char *missing = ids_missing(scope.conn, ids, n);
    free(ids);
    cr_assert_null(missing,
                   "events delivered, then lost in the crash (%" PRId64 " resting on the "
                   "synchronous stores of their reads alone): %.400s",
                   at_stake, missing ? missing : "");

    /* Nothing delivered was lost, so the relay goes on after the crash. */
    th_relay_signal(pid, SIGCONT);
    int64_t next = sc_insert_one(scope.conn);
    sc_wait_delivered(f.out, next);
    th_relay_stop(&scope, pid);
}

Test(durability, delivered_only_once_flushed_steady_settled, .fini = teardown)
{
    steady_async_writer("  mode: settled\n"
                        "  poll_interval: 50ms\n");
}

Test(durability, delivered_only_once_flushed_steady_margin, .fini = teardown)
{
    steady_async_writer("  safety_margin: 0s\n"
                        "  poll_interval: 50ms\n");
}

/* ---- 2. the sequence went back ----------------------------------------------------------------
 */

/* While the relay runs, the table is emptied and its sequence restarted: new events take ids 1..3,
 * at or below the position, and would be passed by for good. The relay must stop. */
/*
 * A late row (its gap watched, its commit asynchronous) read by the gap watch into a batch struct
 * whose last read was durable by its synchronous store: the late read carried no store, so its
 * rows wait for a flush like any. The relay once took the struct's old mark for this read's, and
 * delivered the late row before its commit was flushed; a crash then erased it.
 */
Test(durability, late_row_waits_for_its_flush, .fini = teardown)
{
    char config[TH_PATH_MAX];
    sc_relay_files f;
    pid_t pid = relay_on_own_cluster("wal_writer_delay = 10s\nautovacuum = off",
                                     "  safety_margin: 0s\n  poll_interval: 50ms\n", config, &f);

    PGconn *late = th_scope_connect(&scope), *writer = th_scope_connect(&scope);
    th_exec(late, "SET synchronous_commit = off");
    th_exec(writer, "SET synchronous_commit = off");
    th_exec(late, "BEGIN");
    int64_t late_id = sc_insert_one(late);
    /* Asynchronous writers until the batch last delivered was durable by its store: its struct
     * is the one the gap watch reads into next. */
    for (int i = 0; i < 300 && (times_logged(f.err, DURABLE_BY_STORE) == 0 ||
                                events_resting_on_stores(f.err) == 0);
         i++)
        sc_wait_delivered(f.out, sc_insert_one(writer));
    cr_assert_gt(events_resting_on_stores(f.err), 0, "no batch was durable by its store");
    cr_assert_eq(sc_times_delivered(f.out, late_id), 0, "the open transaction's row went out");

    char *before_commit = th_query_text(late, "SELECT pg_current_wal_insert_lsn()::text");
    th_exec(late, "COMMIT");
    sc_wait_delivered(f.out, late_id);
    th_relay_signal(pid, SIGSTOP);
    th_wait_until(&scope, TH_DEADLINE_MS, stopped, &pid, "the relay stopped (SIGSTOP)");
    const char *params[1] = {before_commit};
    PGresult *res = PQexecParams(scope.conn, "SELECT pg_current_wal_flush_lsn() > $1::pg_lsn", 1,
                                 NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(scope.conn));
    bool flushed = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);

    th_cluster_stop(&primary, true);
    th_cluster_restart_stopped(&primary);
    wait_own_session();
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM events WHERE id = %" PRId64, late_id);
    int64_t survived = th_query_int64(scope.conn, sql);
    th_relay_signal(pid, SIGKILL);
    cr_assert(flushed,
              "late event %" PRId64 " was delivered before its commit (after %s) was "
              "flushed",
              late_id, before_commit);
    cr_assert_eq(survived, 1, "late event %" PRId64 " was delivered, then erased by the crash",
                 late_id);
    free(before_commit);
}

Test(durability, truncate_restart_identity_while_running, .init = setup_shared, .fini = teardown)
{
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "0s", 64);
    th_migrate(config);
    th_insert_events(scope.conn, 5, LONG_AGO);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 5);

    th_exec(scope.conn, "TRUNCATE events RESTART IDENTITY");
    th_insert_events(scope.conn, 3, LONG_AGO);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT max(id) FROM events"), 3);

    expect_exit(pid, 6, f.err, "went back");
    cr_assert(th_file_contains(f.err, "id sequence"), "the log does not name the id sequence");
    /* 1..5 once: the new 1..3 were neither delivered nor passed silently. */
    assert_output(f.out, 1, 5);
}

/* The sequence restarted while the relay was stopped, the old rows still there (delivered ones
 * pruned below, so that ids come free): the relay started again must refuse before the first new
 * id, and keep refusing once new ids at or below its position are taken. */
Test(durability, sequence_restarted_with_rows_left, .init = setup_shared, .fini = teardown)
{
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "0s", 64);
    th_migrate(config);
    th_insert_events(scope.conn, 5, LONG_AGO);
    sc_relay_files first = sc_files_named("first");
    pid_t pid = sc_start_relay(config, &first);
    th_wait_position(&scope, RELAY_NAME, 5);
    th_relay_stop(&scope, pid);
    assert_output(first.out, 1, 5);

    th_exec(scope.conn, "DELETE FROM events WHERE id <= 3; ALTER SEQUENCE events_id_seq RESTART");
    sc_relay_files second = sc_files_named("second");
    pid = th_relay_start(&scope, config, second.out, second.err);
    expect_exit(pid, 6, second.err, "went back");
    assert_nothing_delivered(second.out);

    int64_t ids[16];
    size_t n = insert_returning(scope.conn, 3, ids);
    cr_assert(n == 3 && ids[0] == 1 && ids[2] == 3,
              "the restarted sequence handed out %" PRId64 "..%" PRId64, ids[0], ids[n - 1]);
    sc_relay_files third = sc_files_named("third");
    pid = th_relay_start(&scope, config, third.out, third.err);
    /* Refused at start now (the position is above the sequence) or at the first read. */
    expect_exit(pid, 6, third.err, "outbox-relay reset -c");
    assert_nothing_delivered(third.out);
}

/* The relay reads the sequence with every batch: a role that may read the table but not the
 * sequence is refused by `check`, which names the grant. */
Test(durability, check_needs_the_sequence_privilege, .init = setup_shared, .fini = teardown)
{
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "0s", 64);
    th_migrate(config);
    th_insert_events(scope.conn, 2, LONG_AGO);

    snprintf(reader_role, sizeof reader_role, "%s_reader", scope.schema);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA %s TO %s;"
             " GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO %s",
             reader_role, scope.schema, reader_role, scope.schema, reader_role);
    th_exec(scope.conn, sql);
    char conninfo[2048], conninfo_yaml[4200];
    snprintf(conninfo, sizeof conninfo, "%s user=%s", scope.conninfo, reader_role);
    yaml_quote(conninfo, conninfo_yaml, sizeof conninfo_yaml);
    char reader_config[TH_PATH_MAX];
    th_write_config(&scope, reader_config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "sink:\n"
                    "  plugin: stdout\n",
                    RELAY_NAME, conninfo_yaml);

    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", reader_config);
    cr_assert_eq(code, 4, "check exited %d, expected 4:\n%s%s", code, out, err);
    cr_assert(strstr(err, "GRANT USAGE ON SEQUENCE") != NULL,
              "check does not name the privilege it needs:\n%s", err);
    free(out);
    free(err);

    /* The grant it names is the one missing. */
    snprintf(sql, sizeof sql, "GRANT USAGE ON SEQUENCE %s.events_id_seq TO %s", scope.schema,
             reader_role);
    th_exec(scope.conn, sql);
    code = th_run_cli(&out, &err, "check", "-c", reader_config);
    cr_assert_eq(code, 0, "check exited %d after the grant:\n%s%s", code, out, err);
    free(out);
    free(err);
}

/* ---- 3. a restore from a backup, the relay up ------------------------------------------------ */

typedef struct restore_goal {
    const char *out;
    const char *err;
} restore_goal;

/* The relay noticed (its log says so), or went on: it delivered more than the six lines. */
static bool noticed_or_went_on(void *arg)
{
    const restore_goal *g = arg;
    char **lines;
    size_t n = th_read_lines(g->out, &lines);
    th_free_lines(lines, n);
    return n > 6 || th_file_contains(g->err, "history is behind");
}

/*
 * Events 1..3 delivered, a base backup taken, 4..6 delivered; then the database is restored from
 * the backup in place (same port). 4..6 no longer exist and their ids come free. The relay stays
 * up: when it reconnects, it must stop. With writers_first, the application writes into the
 * restored database before the relay reconnects (the relay frozen meanwhile: a relay in a long
 * backoff, applications faster to reconnect).
 */
static void restore_scene(bool writers_first)
{
    th_cluster_start(&primary, NULL);
    th_scope_new_at(&scope, primary.conninfo);
    sc_begin(&scope);
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "0s", 64);
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 3);

    char backup[TH_PATH_MAX + 16];
    snprintf(backup, sizeof backup, "%s/backup", primary.dir);
    th_cluster_base_backup(&primary, backup, NULL);

    th_insert_events(scope.conn, 3, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 6);
    assert_output(f.out, 1, 6);

    if (writers_first)
        th_relay_signal(pid, SIGSTOP);
    /* Restored in place, on the same port: the relay's conninfo still reaches it. */
    th_cluster_stop(&primary, false);
    th_cluster_swap_data(&primary, backup);
    th_cluster_restart_stopped(&primary);

    if (writers_first) {
        wait_own_session();
        cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE id > 3"), 0,
                     "the restored database has events after the backup");
        int64_t ids[16];
        size_t n = insert_returning(scope.conn, 3, ids);
        cr_log_info("after the restore, new events took ids %" PRId64 "..%" PRId64, ids[0],
                    ids[n - 1]);
        th_relay_signal(pid, SIGCONT);
        restore_goal goal = {f.out, f.err};
        th_wait_until(&scope, TH_DEADLINE_MS, noticed_or_went_on, &goal,
                      "the relay to notice the restore, or to deliver again");
    }
    expect_exit(pid, 6, f.err, "history is behind");
    assert_output(f.out, 1, 6);
    if (!writers_first) {
        wait_own_session();
        cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE id > 3"), 0,
                     "the restored database has events after the backup");
    }
}

Test(durability, restore_while_running, .fini = teardown)
{
    restore_scene(false);
}

Test(durability, restore_while_running_writers_first, .fini = teardown)
{
    restore_scene(true);
}

/* ---- 4. failover ----------------------------------------------------------------------------- */

/* The standby stops streaming; the primary commits 4..6 (delivered), then dies; the standby is
 * promoted without them. The relay, reconnecting to it, must stop: 4..6 are gone and their ids
 * can come back. */
Test(durability, failover_to_a_standby_that_lacked_commits, .fini = teardown)
{
    th_cluster_start(&primary, NULL);
    th_cluster_start_standby(&standby, &primary, "stby");
    char both[2 * TH_PATH_MAX + 128];
    both_servers_conninfo(both, sizeof both);
    th_scope_new_at(&scope, both);
    sc_begin(&scope);
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "0s", 64);
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 3);
    wait_standby_replayed_all(scope.conn);

    th_cluster_stop(&standby, false);
    th_insert_events(scope.conn, 3, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 6);
    assert_output(f.out, 1, 6);
    th_cluster_stop(&primary, true);
    th_cluster_restart_stopped(&standby);
    promote_standby();

    expect_exit(pid, 6, f.err, "forked");
    cr_assert(th_file_contains(f.err, "history is behind"), "the log does not say why");
    wait_own_session();
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events WHERE id > 3"), 0,
                 "the promoted standby has the events it was meant to lack");
}

/* The standby had replayed everything delivered: the relay goes on on the promoted standby. */
Test(durability, failover_to_a_standby_that_had_everything, .fini = teardown)
{
    th_cluster_start(&primary, NULL);
    th_cluster_start_standby(&standby, &primary, "stby");
    char both[2 * TH_PATH_MAX + 128];
    both_servers_conninfo(both, sizeof both);
    th_scope_new_at(&scope, both);
    sc_begin(&scope);
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "0s", 64);
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 3);
    wait_standby_replayed_all(scope.conn);

    th_cluster_stop(&primary, true);
    promote_standby();
    wait_own_session();
    /* The promoted sequence continues from what its WAL logged ahead, not necessarily 4. */
    int64_t ids[16];
    size_t n = insert_returning(scope.conn, 2, ids);
    for (size_t i = 0; i < n; i++)
        sc_wait_delivered(f.out, ids[i]);
    cr_assert(th_file_contains(f.err, "after every delivered commit"),
              "the relay did not check the new timeline");
    th_relay_stop(&scope, pid);
}

/* ---- 5. source.durable_on -------------------------------------------------------------------- */

typedef struct held_goal {
    sc_id_goal id;
    const char *err;
} held_goal;

static bool held_quietly(void *arg)
{
    const held_goal *g = arg;
    return sc_id_absent((void *)&g->id) && !th_file_contains(g->err, " error ");
}

Test(durability, durable_on_a_standby, .fini = teardown)
{
    th_cluster_start(&primary, NULL);
    th_cluster_start_standby(&standby, &primary, "stby");
    th_scope_new_at(&scope, primary.conninfo);
    sc_begin(&scope);
    char config[TH_PATH_MAX];
    sc_write_config(config, "  mode: settled\n"
                            "  poll_interval: 50ms\n"
                            "  durable_on: [stby]\n");
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);

    int64_t streamed = sc_insert_one(scope.conn);
    sc_wait_delivered(f.out, streamed);

    th_cluster_stop(&standby, false);
    int64_t held = sc_insert_one(scope.conn);
    held_goal goal = {{f.out, held}, f.err};
    th_hold_for(&scope, 1500, held_quietly, &goal,
                "the event held (and nothing logged at error) while the standby is down");

    th_cluster_restart_stopped(&standby);
    sc_wait_delivered(f.out, held);
    th_relay_stop(&scope, pid);
    assert_output(f.out, streamed, held);
}
