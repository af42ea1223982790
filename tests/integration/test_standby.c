/*
 * Hot standby, fenced: two relays of one name, the real binary and a real PostgreSQL. The lock
 * makes the second wait; the epoch of the checkpoint row keeps a leader that lost its session
 * from ever moving the position again. The stale write is forced through the relay's own
 * checkpoint code (linked in), against the real server.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "../harness/harness.h"
#include "checkpoint.h"

/* Created outside any safety margin, so that the relay may deliver at once. */
#define LONG_AGO "now() - interval '1 hour'"
/* Relays lock their name database-wide: each test names its relay after its own schema. */
#define RELAY_NAME scope.schema
/* The promise: a standby delivers within 5 s of the leader's death. */
#define TAKEOVER_MS 5000

static th_scope scope;

static void setup(void)
{
    th_scope_new(&scope);
}

static void teardown(void)
{
    th_scope_free(&scope);
}

TestSuite(standby, .timeout = 180);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A testsink config of the scope's relay name with its own out file. */
static void write_config(char config[TH_PATH_MAX], const char *sink_out)
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
                    "  options:\n"
                    "    out: %s\n"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 1s\n",
                    RELAY_NAME, scope.conninfo_yaml, th_env("RELAY_TESTSINK"), sink_out);
}

/* Two relays of the scope's name, each with its config, sink output and log; migrated. */
typedef struct two_relays {
    char cfg[2][TH_PATH_MAX], sink[2][TH_PATH_MAX], err[2][TH_PATH_MAX], out[TH_PATH_MAX];
} two_relays;

static void two_relays_setup(two_relays *t)
{
    static const char *const names[2] = {"a", "b"};
    char file[32];
    for (int i = 0; i < 2; i++) {
        snprintf(file, sizeof file, "%s.sink", names[i]);
        th_path(&scope, file, t->sink[i]);
        snprintf(file, sizeof file, "%s.err", names[i]);
        th_path(&scope, file, t->err[i]);
        write_config(t->cfg[i], t->sink[i]);
    }
    th_path(&scope, "relay.out", t->out);
    th_migrate(t->cfg[0]);
}

/* The relays' sessions on advisory locks (they carry the scope's application_name): granted,
 * or waiting. */
static int64_t lock_sessions(bool granted)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
             " WHERE l.locktype = 'advisory' AND l.granted = %s AND a.application_name = '%s'",
             granted ? "true" : "false", scope.schema);
    return th_query_int64(scope.conn, sql);
}

static int64_t lock_holder_pid(void)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
             " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = '%s'",
             scope.schema);
    return th_query_int64(scope.conn, sql);
}

static int64_t epoch(void)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT epoch FROM relay_checkpoints WHERE name = '%s'",
             scope.schema);
    return th_query_int64(scope.conn, sql);
}

/* One relay leads, the other waits on the lock's request (not polling): the server shows it. */
static bool one_leads_one_waits(void *arg)
{
    (void)arg;
    return lock_sessions(true) == 1 && lock_sessions(false) == 1;
}

typedef struct epoch_goal {
    int64_t above;
} epoch_goal;

static bool one_leads(void *arg)
{
    (void)arg;
    return lock_sessions(true) == 1;
}

static bool epoch_raised(void *arg)
{
    return epoch() > ((epoch_goal *)arg)->above;
}

/* Whether a testsink out file holds every id of first..last (others may be there too). */
static bool holds_ids(const char *path, int64_t first, int64_t last)
{
    int64_t *ids;
    size_t n = th_read_testsink_ids(path, &ids);
    int64_t want = first;
    for (size_t i = 0; i < n && want <= last; i++)
        if (ids[i] == want)
            want++;
    free(ids);
    return want > last;
}

typedef struct ids_goal {
    const char *path;
    int64_t first, last;
} ids_goal;

static bool has_ids(void *arg)
{
    const ids_goal *g = arg;
    return holds_ids(g->path, g->first, g->last);
}

static size_t count_ids(const char *path)
{
    int64_t *ids;
    size_t n = th_read_testsink_ids(path, &ids);
    free(ids);
    return n;
}

typedef struct count_goal {
    const char *path;
    size_t n;
} count_goal;

static bool count_stays(void *arg)
{
    const count_goal *g = arg;
    return count_ids(g->path) == g->n;
}

/* The first id of the standby's output, and that everything 1..last is in one file or the
 * other: the standby carries on from where the leader's stored position left it. */
static void assert_nothing_lost(const char *leader_out, const char *standby_out, int64_t last)
{
    int64_t *a, *b;
    size_t na = th_read_testsink_ids(leader_out, &a), nb = th_read_testsink_ids(standby_out, &b);
    cr_assert_gt(nb, 0, "the standby delivered nothing");
    for (size_t i = 1; i < nb; i++)
        cr_assert_eq(b[i], b[i - 1] + 1, "the standby's ids jump from %" PRId64 " to %" PRId64,
                     b[i - 1], b[i]);
    cr_assert_eq(b[nb - 1], last, "the standby ends at %" PRId64, b[nb - 1]);
    cr_assert(holds_ids(leader_out, 1, b[0] - 1),
              "ids below the standby's first (%" PRId64 ") are missing from the leader's output",
              b[0]);
    free(a);
    free(b);
    (void)na;
}

/* The leader dies with kill -9 while the standby waits: its backend ends with its socket, the
 * lock goes to the standby's waiting request, and the standby delivers the rest within 5 s of
 * the kill, from the stored position: nothing is lost. */
Test(standby, leader_killed_standby_delivers_within_5s, .init = setup, .fini = teardown)
{
    two_relays t;
    two_relays_setup(&t);
    const char *leader_out = t.sink[0], *standby_out = t.sink[1], *standby_err = t.err[1];
    th_insert_events(scope.conn, 20, LONG_AGO);

    pid_t leader = th_relay_start(&scope, t.cfg[0], t.out, t.err[0]);
    th_wait_position(&scope, RELAY_NAME, 20);
    pid_t standby = th_relay_start(&scope, t.cfg[1], t.out, standby_err);
    th_wait_until(&scope, TH_DEADLINE_MS, one_leads_one_waits, NULL,
                  "the standby to wait on the lock");

    th_insert_events(scope.conn, 10, LONG_AGO);
    int64_t killed_at = now_ms();
    th_relay_signal(leader, SIGKILL);
    th_relay_wait(&scope, leader, TH_DEADLINE_MS);
    th_insert_events(scope.conn, 10, LONG_AGO);
    ids_goal all = {standby_out, 40, 40};
    int64_t left = TAKEOVER_MS - (now_ms() - killed_at);
    th_wait_until(&scope, (int)(left > 0 ? left : 0), has_ids, &all,
                  "the standby to deliver up to id 40 within 5 s of the kill");
    cr_log_info("the standby delivered id 40 %" PRId64 " ms after the kill", now_ms() - killed_at);
    cr_assert(th_file_contains(standby_err, "leading"));
    assert_nothing_lost(leader_out, standby_out, 40);
    th_wait_position(&scope, RELAY_NAME, 40);
    th_relay_stop(&scope, standby);
}

/*
 * The leader's session is ended while the standby waits: the standby takes the lock and a new
 * epoch; the old leader reconnects, finds the lock taken and waits in its turn, so exactly one
 * relay delivers from then on. A write under the old leader's epoch (what it would do had it
 * reconnected and written without the lock) is refused whole: no position, no dead letter.
 * When the new leader stops, the old one takes over again.
 */
Test(standby, terminated_leader_is_fenced, .init = setup, .fini = teardown)
{
    two_relays t;
    two_relays_setup(&t);
    th_insert_events(scope.conn, 5, LONG_AGO);

    pid_t a = th_relay_start(&scope, t.cfg[0], t.out, t.err[0]);
    th_wait_position(&scope, RELAY_NAME, 5);
    pid_t b = th_relay_start(&scope, t.cfg[1], t.out, t.err[1]);
    th_wait_until(&scope, TH_DEADLINE_MS, one_leads_one_waits, NULL,
                  "the standby to wait on the lock");
    int64_t old_epoch = epoch();
    cr_assert_gt(old_epoch, 0);
    size_t a_delivered = count_ids(t.sink[0]);

    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%" PRId64 ", 10000)::int",
             lock_holder_pid());
    cr_assert_eq(th_query_int64(scope.conn, sql), 1);
    epoch_goal raised = {old_epoch};
    th_wait_until(&scope, TH_DEADLINE_MS, epoch_raised, &raised, "the standby to take over");
    /* The old leader is back, waiting: one granted, one waiting, again. */
    th_wait_until(&scope, TH_DEADLINE_MS, one_leads_one_waits, NULL,
                  "the old leader to wait on the lock");
    int64_t new_epoch = epoch();

    th_insert_events(scope.conn, 5, LONG_AGO);
    ids_goal more = {t.sink[1], 6, 10};
    th_wait_until(&scope, TH_DEADLINE_MS, has_ids, &more, "the new leader to deliver 6..10");
    th_wait_position(&scope, RELAY_NAME, 10);
    cr_assert_eq(count_ids(t.sink[0]), a_delivered,
                 "the old leader delivered after its session ended");
    /* status says who leads, under which epoch, and that one relay stands by. */
    char *status_out, *status_err, leader_line[128];
    cr_assert_eq(th_run_cli(&status_out, &status_err, "status", "-c", t.cfg[0]), 0, "%s",
                 status_err);
    snprintf(leader_line, sizeof leader_line,
             "leader       running (epoch %" PRId64 "), 1 standing by", new_epoch);
    cr_assert(strstr(status_out, leader_line), "status says:\n%s", status_out);
    free(status_out);
    free(status_err);

    /* The old leader's write, forced: its epoch against the real server. */
    PGconn *stale = th_scope_connect(&scope);
    char err[1024] = "";
    cr_assert_eq(relay_checkpoint_session_setup(stale, err, sizeof err), 0, "%s", err);
    relay_sink_rejection dead = {.event_id = 11, .reason = "from the old leader"};
    relay_checkpoint_update u = {
        .epoch = old_epoch, .position = 1000, .dead_letters = &dead, .n_dead_letters = 1};
    cr_assert_eq(relay_checkpoint_commit(stale, RELAY_NAME, &u, err, sizeof err), -1,
                 "a write under epoch %" PRId64 " (now %" PRId64 ") was accepted", old_epoch,
                 new_epoch);
    cr_assert(strstr(err, "another relay took over") && strstr(err, "(SQLSTATE RF001)"), "%s", err);
    char why[64];
    snprintf(why, sizeof why, "epoch %" PRId64 ", ours %" PRId64, new_epoch, old_epoch);
    cr_assert(strstr(err, why), "the refusal names the epochs: %s", err);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 10, "the stale write moved the position");
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_dead_letters"), 0,
                 "the stale write recorded a dead letter");
    /* The session stays usable, and the same write under the current epoch goes through: the
     * refusal is the epoch's, nothing else. */
    relay_checkpoint_update current = {.epoch = new_epoch, .position = 10};
    cr_assert_eq(relay_checkpoint_commit(stale, RELAY_NAME, &current, err, sizeof err), 0, "%s",
                 err);
    /* A reset is refused the same way under the old epoch. */
    cr_assert_eq(relay_checkpoint_reset(stale, RELAY_NAME, old_epoch, 0, -1, err, sizeof err), -1);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 10, "the stale reset moved the position");

    /* Still one deliverer. */
    th_insert_events(scope.conn, 3, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 13);
    count_goal unchanged = {t.sink[0], a_delivered};
    th_hold_for(&scope, 300, count_stays, &unchanged, "the old leader to deliver nothing");

    /* The new leader stops: the old one, waiting, takes over under a newer epoch still. */
    th_relay_stop(&scope, b);
    epoch_goal again = {new_epoch};
    th_wait_until(&scope, TH_DEADLINE_MS, epoch_raised, &again, "the old leader to take over");
    th_insert_events(scope.conn, 2, LONG_AGO);
    ids_goal back = {t.sink[0], 14, 15};
    th_wait_until(&scope, TH_DEADLINE_MS, has_ids, &back, "the old leader to deliver 14..15");
    th_relay_stop(&scope, a);
}

/* A standby waiting on the lock stops within 2 s of SIGTERM, and its server session is gone
 * soon after (the server's wait is bounded too), leaving the leader alone on the lock. */
Test(standby, standby_stops_on_sigterm, .init = setup, .fini = teardown)
{
    two_relays t;
    two_relays_setup(&t);
    pid_t a = th_relay_start(&scope, t.cfg[0], t.out, t.err[0]);
    th_wait_until(&scope, TH_DEADLINE_MS, one_leads, NULL, "the first relay to lead");
    pid_t b = th_relay_start(&scope, t.cfg[1], t.out, t.err[1]);
    th_wait_until(&scope, TH_DEADLINE_MS, one_leads_one_waits, NULL,
                  "the standby to wait on the lock");
    th_relay_stop_within(&scope, b, 2000);
    cr_assert(th_file_contains(t.err[1], "standing by"));
    th_relay_stop(&scope, a);
}
