/*
 * Retention end to end against a real PostgreSQL: rows go once every relay registered on the
 * table delivered them, never a row in a watched gap or above it, never one younger than
 * delete_after; whole partitions in partition mode; and a failing round is logged and retried
 * while delivery goes on.
 *
 * Each scenario would fail with a wrong bound: the holds (th_hold_for) watch that rows the bound
 * must keep stay for several rounds, and the outputs that every event arrived.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "../harness/harness.h"
#include "scene.h"

#define RELAY_NAME scope.schema
#define LONG_AGO "now() - interval '2 hours'"
/* Rounds every 50 ms: a hold of HOLD_MS watches about ten of them. */
#define RETENTION_NOW "retention:\n  delete_after: 0s\n  batch_size: 5000\n  interval: 50ms\n"
#define HOLD_MS 600

static th_scope scope;
static char relay_role[96];   /* a role a test created, dropped at teardown */
static char extra_schema[96]; /* a schema a test created beside the scope's, dropped too */

static void setup(void)
{
    th_scope_new(&scope);
    sc_begin(&scope);
}

static void teardown(void)
{
    if (relay_role[0] && scope.conn && PQstatus(scope.conn) == CONNECTION_OK) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP OWNED BY %s; DROP ROLE IF EXISTS %s", relay_role,
                 relay_role);
        PQclear(PQexec(scope.conn, sql));
        relay_role[0] = '\0';
    }
    if (extra_schema[0] && scope.conn && PQstatus(scope.conn) == CONNECTION_OK) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", extra_schema);
        PQclear(PQexec(scope.conn, sql));
        extra_schema[0] = '\0';
    }
    th_scope_free(&scope);
}

TestSuite(retention, .timeout = 240);

/* ---- helpers --------------------------------------------------------------------------------- */

static void write_config(char path[TH_PATH_MAX], const char *source_yaml, const char *extra)
{
    sc_write_config_as(path, RELAY_NAME, NULL, source_yaml, extra);
}

/* A text field of `status --json` (caller frees); NULL for a JSON null. */
static char *status_text(const char *config, const char *field)
{
    char *out, *err;
    int code = th_run_cli(&out, &err, "status", "-c", config, "--json");
    cr_assert_eq(code, 0, "status exited %d: %s", code, err);
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", field);
    const char *at = strstr(out, key);
    cr_assert_not_null(at, "status --json has no %s: %s", field, out);
    at += strlen(key);
    char *value = NULL;
    if (*at == '"') {
        size_t len = strcspn(at + 1, "\"");
        value = strndup(at + 1, len);
    }
    free(out);
    free(err);
    return value;
}

/* Asserts that the output holds ids from..to, each exactly once, and nothing else. */
static void assert_each_once(const char *out, int64_t from, int64_t to)
{
    int64_t *ids;
    size_t n = th_read_stdout_ids(out, &ids);
    size_t want = (size_t)(to - from + 1);
    unsigned char *seen = calloc(want, 1);
    cr_assert_not_null(seen);
    for (size_t i = 0; i < n; i++) {
        cr_assert(ids[i] >= from && ids[i] <= to,
                  "line %zu: id %" PRId64 " outside %" PRId64 "..%" PRId64, i + 1, ids[i], from,
                  to);
        cr_assert_eq(seen[ids[i] - from]++, 0, "id %" PRId64 " delivered twice", ids[i]);
    }
    cr_assert_eq(n, want, "%zu lines for ids %" PRId64 "..%" PRId64, n, from, to);
    free(seen);
    free(ids);
}

/* How many lines of a log contain text. */
static size_t lines_with(const char *path, const char *text)
{
    char **lines;
    size_t n = th_read_lines(path, &lines), found = 0;
    for (size_t i = 0; i < n; i++)
        found += strstr(lines[i], text) != NULL;
    th_free_lines(lines, n);
    return found;
}

typedef struct log_goal {
    const char *path;
    const char *text;
    size_t times;
} log_goal;

static bool log_has(void *arg)
{
    const log_goal *g = arg;
    return lines_with(g->path, g->text) >= g->times;
}

static void wait_log(const char *path, const char *text, size_t times)
{
    log_goal goal = {path, text, times};
    char what[256];
    snprintf(what, sizeof what, "%zu log lines with \"%s\"", times, text);
    th_wait_until(&scope, TH_DEADLINE_MS, log_has, &goal, what);
}

/* ---- 1. the gap holds deletion until its row is delivered --------------------------------- */

/*
 * 100,000 events pass through with delete_after 0s and the table ends empty. In their middle, a
 * transaction takes id 50001 and stays open while the relay passes it: the watched gap holds the
 * bound at 50000, so nothing from the gap up is deleted, until the row commits, is delivered late,
 * and only then goes. A bound at the position would delete the rows above the gap during the hold,
 * and the late row itself once it commits, before the gap watch reads it.
 */
Test(retention, gap_holds_deletion_until_the_late_row_is_delivered, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    write_config(config, "  safety_margin: 1s\n  poll_interval: 50ms\n", RETENTION_NOW);
    th_migrate(config);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    PGconn *t1 = th_scope_connect(&scope);

    th_insert_events(scope.conn, 50000, LONG_AGO);
    th_exec(t1, "BEGIN");
    cr_assert_eq(sc_insert_one(t1), 50001);
    th_insert_events(scope.conn, 50000, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 100001);

    th_wait_query_int64(&scope, "SELECT count(*) FROM events WHERE id < 50001", 0);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_gaps"
                                            " WHERE low_id = 50001 AND high_id = 50001"),
                 1, "the open id is not watched");
    cr_assert_eq(sc_status_field(config, "retention_bound"), 50000);
    char *held_by = status_text(config, "retention_held_by");
    cr_assert_str_eq(held_by, RELAY_NAME);
    free(held_by);
    /* Rounds run all along; none may touch the rows above the gap. */
    th_hold_query_int64(&scope, "SELECT count(*) FROM events WHERE id > 50001", 50000, HOLD_MS);
    cr_assert_eq(sc_status_field(config, "retention_bound"), 50000);

    th_exec(t1, "COMMIT");
    th_wait_query_int64(&scope, "SELECT late_events FROM relay_checkpoints", 1);
    th_wait_query_int64(&scope, "SELECT count(*) FROM events", 0);
    th_relay_stop(&scope, pid);

    char *line = sc_line_of(f.out, 50001);
    cr_assert_not_null(line, "id 50001 was never delivered");
    cr_assert(sc_is_late(line), "id 50001 not flagged late: %s", line);
    free(line);
    assert_each_once(f.out, 1, 100001);
    cr_assert_eq(sc_status_field(config, "retention_deleted"), 100001);
    cr_assert_eq(sc_status_field(config, "retention_bound"), 100001);
}

/* ---- 2. a slower relay holds the bound ---------------------------------------------------- */

/*
 * Relays A (with retention) and B (without) read one table. B delivers 1..1000 and stops; A goes
 * on to 2000: only 1..1000 go, and 1001..2000 stay for as long as B is away. When B comes back
 * and delivers them, they go too.
 */
Test(retention, slower_relay_holds_the_bound, .init = setup, .fini = teardown)
{
    char a_config[TH_PATH_MAX], b_config[TH_PATH_MAX], b_name[96];
    snprintf(b_name, sizeof b_name, "%s_b", RELAY_NAME);
    const char *source = "  safety_margin: 0s\n  poll_interval: 50ms\n";
    write_config(a_config, source, RETENTION_NOW);
    sc_write_config_as(b_config, b_name, NULL, source, "");
    th_migrate(a_config);

    th_insert_events(scope.conn, 1000, LONG_AGO);
    sc_relay_files b1 = sc_files_named("b1"), a = sc_files_named("a"), b2 = sc_files_named("b2");
    pid_t b_pid = sc_start_relay(b_config, &b1);
    th_wait_position(&scope, b_name, 1000);
    th_relay_stop(&scope, b_pid);

    th_insert_events(scope.conn, 1000, LONG_AGO);
    pid_t a_pid = sc_start_relay(a_config, &a);
    th_wait_position(&scope, RELAY_NAME, 2000);
    th_wait_query_int64(&scope, "SELECT count(*) FROM events WHERE id <= 1000", 0);
    cr_assert_eq(sc_status_field(a_config, "retention_bound"), 1000);
    char *held_by = status_text(a_config, "retention_held_by");
    cr_assert_str_eq(held_by, b_name, "the bound is held by %s, not by the stopped relay", held_by);
    free(held_by);
    th_hold_query_int64(&scope, "SELECT count(*) FROM events WHERE id BETWEEN 1001 AND 2000", 1000,
                        HOLD_MS);

    b_pid = sc_start_relay(b_config, &b2);
    th_wait_position(&scope, b_name, 2000);
    th_wait_query_int64(&scope, "SELECT count(*) FROM events", 0);
    th_relay_stop(&scope, b_pid);
    th_relay_stop(&scope, a_pid);
    assert_each_once(b1.out, 1, 1000);
    assert_each_once(b2.out, 1001, 2000);
    assert_each_once(a.out, 1, 2000);
}

/* ---- who is registered on the table ------------------------------------------------------- */

/*
 * A checkpoint names its table by oid and by name; either one matching counts the relay (the oid
 * survives a rename, the name a dump and restore), and one naming no table (an older relay's)
 * counts on every table. `reset` registers a relay before its first run. A relay of another table
 * does not count.
 */
Test(retention, registered_by_oid_by_name_or_none, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], later_config[TH_PATH_MAX], later_name[96];
    snprintf(later_name, sizeof later_name, "%s_later", RELAY_NAME);
    const char *source = "  safety_margin: 0s\n  poll_interval: 50ms\n";
    write_config(config, source, RETENTION_NOW);
    sc_write_config_as(later_config, later_name, NULL, source, "");
    th_migrate(config);
    th_exec(scope.conn, "CREATE TABLE other (id bigint)");
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO relay_checkpoints (name, position, source_table, source_table_name)"
             " VALUES ('legacy', 5, NULL, NULL),"
             "        ('by_oid', 10, 'events'::regclass, 'renamed.events'),"
             "        ('by_name', 15, 0, '%s.events'),"
             "        ('other_table', 1, 'other'::regclass, '%s.other')",
             scope.schema, scope.schema);
    th_exec(scope.conn, sql);
    th_insert_events(scope.conn, 100, LONG_AGO);
    char *out, *err;
    int code = th_run_cli(&out, &err, "reset", "-c", later_config, "--to", "50");
    cr_assert_eq(code, 0, "reset exited %d: %s", code, err);
    free(out);
    free(err);

    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 100);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM relay_checkpoints WHERE name IN ('%s', '%s')"
             " AND source_table = 'events'::regclass AND source_table_name = '%s.events'",
             RELAY_NAME, later_name, scope.schema);
    cr_assert_eq(th_query_int64(scope.conn, sql), 2, "run and reset did not record the table");

    /* Each holder in turn, from the lowest: its rows go, the next ones stay, until it leaves. */
    const struct {
        const char *holder;
        int64_t bound;
    } steps[] = {{"legacy", 5}, {"by_oid", 10}, {"by_name", 15}, {later_name, 50}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        snprintf(sql, sizeof sql, "SELECT count(*) FROM events WHERE id <= %" PRId64,
                 steps[i].bound);
        th_wait_query_int64(&scope, sql, 0);
        th_hold_query_int64(&scope, "SELECT count(*) FROM events", 100 - steps[i].bound, HOLD_MS);
        cr_assert_eq(sc_status_field(config, "retention_bound"), steps[i].bound);
        char *held_by = status_text(config, "retention_held_by");
        cr_assert_str_eq(held_by, steps[i].holder);
        free(held_by);
        snprintf(sql, sizeof sql, "DELETE FROM relay_checkpoints WHERE name = '%s'",
                 steps[i].holder);
        th_exec(scope.conn, sql);
    }
    /* Left: the relay itself and the relay of the other table, at 1, which holds nothing. */
    th_wait_query_int64(&scope, "SELECT count(*) FROM events", 0);
    th_relay_stop(&scope, pid);
    assert_each_once(f.out, 1, 100);
}

/* ---- delete_after ------------------------------------------------------------------------- */

/* Delivered rows younger than delete_after stay; the older ones go. */
Test(retention, only_rows_older_than_delete_after, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    write_config(config, "  safety_margin: 0s\n  poll_interval: 50ms\n",
                 "retention:\n  delete_after: 1h\n  interval: 50ms\n");
    th_migrate(config);
    th_insert_events(scope.conn, 300, LONG_AGO);
    th_insert_events(scope.conn, 200, "now() - interval '30 minutes'");
    th_insert_events(scope.conn, 100, LONG_AGO);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 600);
    th_wait_query_int64(
        &scope, "SELECT count(*) FROM events WHERE created_at < now() - interval '1 hour'", 0);
    th_hold_query_int64(&scope, "SELECT count(*) FROM events WHERE id BETWEEN 301 AND 500", 200,
                        HOLD_MS);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events"), 200);
    th_relay_stop(&scope, pid);
    assert_each_once(f.out, 1, 600);
    cr_assert_eq(sc_status_field(config, "retention_deleted"), 400);
}

/* ---- 3. partitions ------------------------------------------------------------------------ */

#define OUTBOX_INSERT                                                                              \
    "INSERT INTO outbox (aggregate_id, kind, body, created_at)"                                    \
    " SELECT 'agg-' || g, 'created', '{}', " LONG_AGO " FROM generate_series(1, %d) g"

static void insert_outbox(int n)
{
    char sql[512];
    snprintf(sql, sizeof sql, OUTBOX_INSERT, n);
    th_exec(scope.conn, sql);
}

/* The README's partitioned outbox: ranges of 1000 ids, the last one open-ended; id_type is
 * bigserial or serial (whose bounds the catalog prints unquoted). */
static void create_partitioned_outbox(const char *id_type)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE TABLE outbox ("
             "  id %s, aggregate_id text NOT NULL, kind text NOT NULL, body jsonb NOT NULL,"
             "  created_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (id)"
             ") PARTITION BY RANGE (id);"
             "CREATE TABLE outbox_1 PARTITION OF outbox FOR VALUES FROM (MINVALUE) TO (1001);"
             "CREATE TABLE outbox_2 PARTITION OF outbox FOR VALUES FROM (1001) TO (2001);"
             "CREATE TABLE outbox_3 PARTITION OF outbox FOR VALUES FROM (2001) TO (3001);"
             "CREATE TABLE outbox_4 PARTITION OF outbox FOR VALUES FROM (3001) TO (MAXVALUE)",
             id_type);
    th_exec(scope.conn, sql);
}

static bool partition_exists(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT (to_regclass('%s') IS NOT NULL)::int", name);
    return th_query_int64(scope.conn, sql) != 0;
}

#define PARTITIONS "  table: outbox\n  safety_margin: 1s\n  poll_interval: 50ms\n"
#define RETENTION_PARTITIONS                                                                       \
    "retention:\n  delete_after: 0s\n  interval: 50ms\n  drop_partitions: true\n"

/*
 * Partitions of 1000 ids; ids 1..2500 but 1500, rolled back while the relay passes it. The
 * floor keeps its gap watched for 4 s with no writer holding a lock (an open writer would block
 * every DETACH on the table's lock: see the lock test). outbox_1 goes; outbox_2 holds the gap and
 * stays while it is watched; outbox_3 is where new ids go and stays, rows and all (no DELETE in
 * partition mode), until its last id is delivered; outbox_4, open-ended, always stays.
 */
Test(retention, partitions_dropped_current_kept, .init = setup, .fini = teardown)
{
    create_partitioned_outbox("bigserial");
    char config[TH_PATH_MAX];
    write_config(config, PARTITIONS "  gap_floor: 4s\n", RETENTION_PARTITIONS);
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 0, "check exited %d:\n%s%s", code, out, err);
    cr_assert(strstr(out, "by partition: 4 partitions") != NULL, "check says:\n%s", out);
    free(out);
    free(err);

    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    insert_outbox(1499);
    th_exec(scope.conn, "BEGIN");
    cr_assert_eq(th_query_int64(scope.conn, "INSERT INTO outbox (aggregate_id, kind, body)"
                                            " VALUES ('gone', 'created', '{}') RETURNING id"),
                 1500);
    th_exec(scope.conn, "ROLLBACK");
    insert_outbox(1000);
    th_wait_position(&scope, RELAY_NAME, 2500);

    th_wait_query_int64(&scope, "SELECT (to_regclass('outbox_1') IS NULL)::int", 1);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_gaps"
                                            " WHERE low_id = 1500 AND high_id = 1500"),
                 1, "the rolled-back id is not watched");
    th_hold_query_int64(&scope, "SELECT count(*) FROM outbox_2", 999, 1500);
    cr_assert_eq(sc_status_field(config, "retention_bound"), 1499);

    /* The floor passed, the gap is dead: outbox_2 goes; outbox_3 takes the next ids. */
    th_wait_query_int64(&scope, "SELECT (to_regclass('outbox_2') IS NULL)::int", 1);
    th_hold_query_int64(&scope, "SELECT count(*) FROM outbox_3", 500, HOLD_MS);

    insert_outbox(500);
    th_wait_position(&scope, RELAY_NAME, 3000);
    th_wait_query_int64(&scope, "SELECT (to_regclass('outbox_3') IS NULL)::int", 1);
    insert_outbox(10);
    th_wait_position(&scope, RELAY_NAME, 3010);
    th_hold_query_int64(&scope, "SELECT count(*) FROM outbox_4", 10, HOLD_MS);
    th_relay_stop(&scope, pid);

    cr_assert(partition_exists("outbox_4"));
    int64_t *ids;
    size_t n = th_read_stdout_ids(f.out, &ids);
    cr_assert_eq(n, 3009, "%zu events delivered, expected 3009", n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], (int64_t)i + 1 + (i >= 1499), "line %zu: id %" PRId64, i + 1, ids[i]);
    free(ids);
    cr_assert_eq(sc_status_field(config, "retention_partitions_dropped"), 3);
    cr_assert_eq(sc_status_field(config, "retention_deleted"), 0);
    cr_assert_eq(lines_with(f.err, "retention: dropped partition"), 3);
}

/* A partition every id of which was delivered stays while its newest row is younger than
 * delete_after. With an integer id. */
Test(retention, partition_kept_until_old_enough, .init = setup, .fini = teardown)
{
    create_partitioned_outbox("serial");
    char config[TH_PATH_MAX];
    write_config(config, PARTITIONS,
                 "retention:\n  delete_after: 1h\n  interval: 50ms\n  drop_partitions: true\n");
    th_migrate(config);
    insert_outbox(1000);
    th_exec(scope.conn, "INSERT INTO outbox (aggregate_id, kind, body, created_at)"
                        " SELECT 'agg', 'created', '{}', now() - interval '10 minutes'"
                        " FROM generate_series(1, 1001)");
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 2001);
    th_wait_query_int64(&scope, "SELECT (to_regclass('outbox_1') IS NULL)::int", 1);
    th_hold_query_int64(&scope, "SELECT count(*) FROM outbox_2", 1000, HOLD_MS);
    th_relay_stop(&scope, pid);
    cr_assert_eq(sc_status_field(config, "retention_partitions_dropped"), 1);
}

/* ---- 4. a failing DELETE ------------------------------------------------------------------ */

/* A role for the relay with what it needs, DELETE on events aside; its conninfo into yaml. */
static void create_relay_role(char *yaml, size_t len)
{
    snprintf(relay_role, sizeof relay_role, "%s_relay", scope.schema);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA %s TO %s;"
             " GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO %s;"
             " GRANT USAGE ON ALL SEQUENCES IN SCHEMA %s TO %s;"
             " REVOKE DELETE ON events FROM %s",
             relay_role, scope.schema, relay_role, scope.schema, relay_role, scope.schema,
             relay_role, relay_role);
    th_exec(scope.conn, sql);
    char conninfo[2048];
    snprintf(conninfo, sizeof conninfo, "%s user=%s", scope.conninfo, relay_role);
    size_t at = 0;
    yaml[at++] = '"';
    for (const char *p = conninfo; *p && at + 3 < len; p++) {
        if (*p == '"' || *p == '\\')
            yaml[at++] = '\\';
        yaml[at++] = *p;
    }
    yaml[at++] = '"';
    yaml[at] = '\0';
}

/*
 * The relay's role may not delete: `check` says which grant is missing; `run` delivers all the
 * same, logs the failure once, retries every interval, and once DELETE is granted, logs that it
 * works again and empties the table. The position follows the sink throughout.
 */
Test(retention, failing_delete_is_logged_and_retried, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], conninfo_yaml[4200];
    write_config(config, "  safety_margin: 0s\n", "");
    th_migrate(config);
    create_relay_role(conninfo_yaml, sizeof conninfo_yaml);
    sc_write_config_as(config, RELAY_NAME, conninfo_yaml,
                       "  safety_margin: 0s\n  poll_interval: 50ms\n", RETENTION_NOW);

    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 4, "check exited %d, expected 4:\n%s%s", code, out, err);
    cr_assert(strstr(err, "GRANT DELETE ON") != NULL, "check does not name the grant:\n%s", err);
    free(out);
    free(err);

    th_insert_events(scope.conn, 500, LONG_AGO);
    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 500);
    wait_log(f.err, "retention still failing", 3);
    /* Delivery goes on while it fails. */
    th_insert_events(scope.conn, 500, LONG_AGO);
    th_wait_position(&scope, RELAY_NAME, 1000);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events"), 1000);
    cr_assert_eq(lines_with(f.err, "warn  retention failed: "), 1,
                 "the failure is not logged once, when it starts");
    cr_assert(th_file_contains(f.err, "permission denied for table events"));

    char sql[256];
    snprintf(sql, sizeof sql, "GRANT DELETE ON events TO %s", relay_role);
    th_exec(scope.conn, sql);
    th_wait_query_int64(&scope, "SELECT count(*) FROM events", 0);
    wait_log(f.err, "retention works again after", 1);
    cr_assert_eq(lines_with(f.err, "retention failed: "), 1);
    th_relay_stop(&scope, pid);
    assert_each_once(f.out, 1, 1000);
    cr_assert_eq(th_position(&scope, RELAY_NAME), 1000);
    cr_assert_eq(sc_status_field(config, "retention_deleted"), 1000);
}

/*
 * A lock the DELETE cannot get (SHARE, as CREATE INDEX takes, which lets reads through): each
 * round gives up after its lock timeout rather than hold the relay behind it, the backlog is
 * delivered meanwhile, and once the lock goes, so do the rows.
 */
Test(retention, lock_timeout_fails_the_round_not_delivery, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    write_config(config, "  safety_margin: 0s\n  poll_interval: 50ms\n  batch_size: 100\n",
                 RETENTION_NOW);
    th_migrate(config);
    th_insert_events(scope.conn, 3000, LONG_AGO);
    PGconn *locker = th_scope_connect(&scope);
    th_exec(locker, "BEGIN; LOCK TABLE events IN SHARE MODE");

    sc_relay_files f = sc_files_named("relay");
    pid_t pid = sc_start_relay(config, &f);
    th_wait_position(&scope, RELAY_NAME, 3000);
    wait_log(f.err, "retention still failing", 3);
    cr_assert(th_file_contains(f.err, "lock timeout"), "the rounds did not time out on the lock");
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM events"), 3000);
    cr_assert_eq(lines_with(f.err, "retention failed: "), 1);

    th_exec(locker, "COMMIT");
    th_wait_query_int64(&scope, "SELECT count(*) FROM events", 0);
    wait_log(f.err, "retention works again after", 1);
    th_relay_stop(&scope, pid);
    assert_each_once(f.out, 1, 3000);
}

/* ---- check -------------------------------------------------------------------------------- */

static void check_refuses(const char *config, const char *why)
{
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 4, "check exited %d, expected 4:\n%s%s", code, out, err);
    cr_assert(strstr(err, why) != NULL, "check does not say \"%s\":\n%s", why, err);
    free(out);
    free(err);
}

/* What drop_partitions needs: a table partitioned by range of id, owned by the relay's role. */
Test(retention, check_verifies_what_drop_partitions_needs, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    write_config(config, "  table: events\n", RETENTION_PARTITIONS);
    th_migrate(config);
    check_refuses(config, "is not partitioned by range of id");

    create_partitioned_outbox("bigserial");
    char conninfo_yaml[4200];
    create_relay_role(conninfo_yaml, sizeof conninfo_yaml);
    char sql[256];
    snprintf(sql, sizeof sql, "GRANT SELECT ON outbox TO %s", relay_role);
    th_exec(scope.conn, sql);
    sc_write_config_as(config, RELAY_NAME, conninfo_yaml, "  table: outbox\n",
                       RETENTION_PARTITIONS);
    check_refuses(config, "does not own");

    /* Retention off: nothing is asked of the role. */
    sc_write_config_as(config, RELAY_NAME, conninfo_yaml, "  table: outbox\n", "");
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 0, "check exited %d:\n%s%s", code, out, err);
    cr_assert(strstr(out, "retention  off") != NULL, "check says:\n%s", out);
    free(out);
    free(err);
}

/*
 * A relay that keeps its position in another schema's relay_checkpoints (its own search_path) is
 * invisible to the bound: `check` refuses retention while one records the table, and only warns
 * of one that records no table.
 */
Test(retention, check_refuses_relays_it_cannot_count, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX];
    write_config(config, "  table: events\n", RETENTION_NOW);
    th_migrate(config);
    snprintf(extra_schema, sizeof extra_schema, "%s_x", scope.schema);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE SCHEMA %s; CREATE TABLE %s.relay_checkpoints (name text, position bigint,"
             " source_table oid, source_table_name text);"
             " INSERT INTO %s.relay_checkpoints VALUES ('elsewhere', 0, NULL, NULL)",
             extra_schema, extra_schema, extra_schema);
    th_exec(scope.conn, sql);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 0, "check exited %d:\n%s%s", code, out, err);
    cr_assert(strstr(err, extra_schema) != NULL, "check does not warn of %s:\n%s", extra_schema,
              err);
    free(out);
    free(err);

    snprintf(sql, sizeof sql,
             "INSERT INTO %s.relay_checkpoints VALUES ('reader', 0, 'events'::regclass, 'x.y')",
             extra_schema);
    th_exec(scope.conn, sql);
    check_refuses(config, "retention does not count");
}
