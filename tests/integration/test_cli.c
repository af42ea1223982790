/*
 * The command-line contract: commands, exit codes, and what they print.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif
#include <dirent.h>
#include <inttypes.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "../harness/harness.h"
#include "scene.h"

#define LONG_AGO "now() - interval '1 hour'"
/* Relays lock their name database-wide: each test names its relay after its own schema. */
#define RELAY_NAME scope.schema
#define SECRET "Zebra-Secret-4711-xyzzy"

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

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 120);

/* A config with the scope's database, the given plugin and extra source lines. */
static void write_config(char path[TH_PATH_MAX], const char *plugin, const char *source_extra)
{
    th_write_config(&scope, path,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  table: events\n"
                    "%s"
                    "sink:\n"
                    "  plugin: %s\n",
                    RELAY_NAME, scope.conninfo_yaml, source_extra, plugin);
}

/* How many migrations the source tree has: the binary embeds every .sql file of sql/. */
static int64_t migration_files(void)
{
    char dir[TH_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/sql", th_env("RELAY_SOURCE_DIR"));
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int64_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        n += len > 4 && strcmp(e->d_name + len - 4, ".sql") == 0;
    }
    closedir(d);
    return n;
}

Test(cli, migrate_twice)
{
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 100);

    char *out, *err;
    int code = th_run_cli(&out, &err, "migrate", "-c", config);
    cr_assert_eq(code, 0, "first migrate exited %d: %s", code, err);
    cr_assert(strstr(out, "001_events.sql") && strstr(out, "002_snapshots.sql") &&
                  strstr(out, "003_checkpoints.sql"),
              "first migrate does not list what it applied:\n%s", out);
    free(out);
    free(err);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_migrations"),
                 migration_files());

    code = th_run_cli(&out, &err, "migrate", "-c", config);
    cr_assert_eq(code, 0, "second migrate exited %d: %s", code, err);
    cr_assert_null(strstr(out, ".sql"), "second migrate applied something:\n%s", out);
    free(out);
    free(err);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM relay_migrations"),
                 migration_files());

    /* In the first schema of search_path, i.e. the scope's own. */
    cr_assert_eq(th_query_int64(scope.conn,
                                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
                                " AND tablename IN ('events', 'snapshots', 'relay_checkpoints',"
                                " 'relay_migrations', 'relay_dead_letters')"),
                 5);
}

/* The outbox in a table of the application's beside an unrelated `events`: migrate creates the
 * relay's tables only, puts the wake-up trigger on the configured table alone and only while
 * notify_channel is set, and check says which. */
Test(cli, migrate_acts_on_the_configured_table)
{
    th_exec(scope.conn, "CREATE TABLE events (unrelated int)");
    th_exec(scope.conn,
            "CREATE TABLE outbox (id bigserial PRIMARY KEY, aggregate_id text NOT NULL,"
            " aggregate_type text, aggregate_version int, kind text NOT NULL, body jsonb NOT NULL,"
            " metadata jsonb, created_at timestamptz NOT NULL DEFAULT clock_timestamp())");
    static const char trigger_on[] =
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
        "   AND c.relname = '%s'";
    char sql[512], with_notify[TH_PATH_MAX], without[TH_PATH_MAX];
    th_write_config(&scope, with_notify,
                    "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  table: outbox\n"
                    "  notify_channel: outbox_wakeups\nsink:\n  plugin: stdout\n",
                    RELAY_NAME, scope.conninfo_yaml);
    th_write_config(&scope, without,
                    "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  table: outbox\n"
                    "sink:\n  plugin: stdout\n",
                    RELAY_NAME, scope.conninfo_yaml);

    char *out, *err;
    int code = th_run_cli(&out, &err, "migrate", "-c", with_notify);
    cr_assert_eq(code, 0, "migrate exited %d: %s", code, err);
    cr_assert(strstr(out, "skipped 001_events.sql") && strstr(out, "skipped 002_snapshots.sql"),
              "migrate did not skip the event store's files:\n%s", out);
    cr_assert(strstr(out, "installed trigger outbox_relay_notify on outbox"),
              "migrate did not say it installed the trigger:\n%s", out);
    free(out);
    free(err);
    cr_assert_eq(th_query_int64(scope.conn, "SELECT count(*) FROM pg_tables WHERE schemaname ="
                                            " current_schema() AND tablename = 'snapshots'"),
                 0, "migrate created the event store's snapshots beside an outbox");
    snprintf(sql, sizeof sql, trigger_on, "events");
    cr_assert_eq(th_query_int64(scope.conn, sql), 0, "migrate put a trigger on events");
    snprintf(sql, sizeof sql, trigger_on, "outbox");
    cr_assert_eq(th_query_int64(scope.conn, sql), 1, "no trigger on the configured table");

    code = th_run_cli(&out, &err, "check", "-c", with_notify);
    cr_assert_eq(code, 0, "check exited %d: %s", code, err);
    cr_assert_not_null(strstr(out, "wake-ups   NOTIFY outbox_wakeups from trigger"),
                       "check does not report the trigger:\n%s", out);
    free(out);
    free(err);

    /* Again: nothing to change. */
    code = th_run_cli(&out, &err, "migrate", "-c", with_notify);
    cr_assert_eq(code, 0, "migrate exited %d: %s", code, err);
    cr_assert_null(strstr(out, "trigger"), "a second migrate touched the trigger:\n%s", out);
    free(out);
    free(err);

    /* notify_channel off (the default): check warns, migrate drops it. */
    code = th_run_cli(&out, &err, "check", "-c", without);
    cr_assert_eq(code, 0, "check exited %d: %s", code, err);
    cr_assert_not_null(strstr(err, "nobody listens to"), "check does not warn:\n%s", err);
    free(out);
    free(err);
    code = th_run_cli(&out, &err, "migrate", "-c", without);
    cr_assert_eq(code, 0, "migrate exited %d: %s", code, err);
    cr_assert_not_null(strstr(out, "dropped trigger outbox_relay_notify on outbox"),
                       "migrate did not drop the trigger:\n%s", out);
    free(out);
    free(err);
    cr_assert_eq(th_query_int64(scope.conn, sql), 0, "the trigger is still there");
    code = th_run_cli(&out, &err, "check", "-c", without);
    cr_assert_eq(code, 0, "check exited %d: %s", code, err);
    cr_assert_not_null(strstr(out, "wake-ups   polls"), "check does not say it polls:\n%s", out);
    free(out);
    free(err);
}

/* The relay's flushes of the WAL rest on its writes to relay_checkpoints being logged. */
Test(cli, an_unlogged_checkpoint_table_is_refused)
{
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 100);
    th_migrate(config);
    th_exec(scope.conn, "ALTER TABLE relay_checkpoints SET UNLOGGED");
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_neq(code, 0, "check passed an unlogged relay_checkpoints:\n%s", out);
    cr_assert_not_null(strstr(err, "relay_checkpoints is UNLOGGED"), "check says:\n%s", err);
    free(out);
    free(err);
    code = th_run_cli(&out, &err, "run", "-c", config);
    cr_assert_eq(code, 4, "run exited %d on an unlogged relay_checkpoints:\n%s", code, err);
    cr_assert_not_null(strstr(err, "relay_checkpoints is UNLOGGED"), "run says:\n%s", err);
    free(out);
    free(err);
}

/* A database migrated by an older release: check names the migration it lacks, run stops at the
 * statement that needs it, and once migrated both go on. */
Test(cli, check_names_a_migration_not_applied)
{
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 100);
    th_migrate(config);
    th_exec(scope.conn, "ALTER TABLE relay_checkpoints DROP COLUMN epoch;"
                        " DELETE FROM relay_migrations WHERE name = '009_fencing_epoch.sql'");
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 4, "check exited %d on a database without 009:\n%s%s", code, out, err);
    cr_assert_not_null(strstr(err, "lacks 1 migration of this relay: 009_fencing_epoch.sql"),
                       "check says:\n%s", err);
    free(out);
    free(err);
    code = th_run_cli(&out, &err, "run", "-c", config);
    cr_assert_eq(code, 4, "run exited %d on a database without 009:\n%s", code, err);
    cr_assert_not_null(strstr(err, "run `outbox-relay migrate`"), "run says:\n%s", err);
    free(out);
    free(err);
    th_migrate(config);
    code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 0, "check exited %d once migrated:\n%s", code, err);
    cr_assert_not_null(strstr(out, "schema     every migration applied"), "check says:\n%s", out);
    free(out);
    free(err);
}

Test(cli, check_good_config)
{
    char config[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 100);
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 0, "check exited %d: %s", code, err);
    cr_assert(strstr(out, "events") && strstr(out, "stdout"),
              "the summary names neither table nor sink:\n%s", out);
    free(out);
    free(err);
}

/* A pipe cannot acknowledge: check (whose stdout is a pipe here) says so; a relay writing to a
 * regular file syncs it before it acknowledges. */
Test(cli, stdout_sink_says_what_it_writes_to)
{
    char config[TH_PATH_MAX], out_path[TH_PATH_MAX], err_path[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 100);
    th_migrate(config);
    /* The relay's stdout into a pipe, as in `outbox-relay run | reader`. */
    char command[3 * TH_PATH_MAX];
    snprintf(command, sizeof command, "\"$RELAY_BIN\" check -c '%s' | cat", config);
    char *out, *err;
    int code = th_run_program((const char *const[]){"/bin/sh", "-c", command, NULL}, &out, &err);
    cr_assert_eq(code, 0, "check exited %d: %s", code, err);
    cr_assert_not_null(strstr(err, "stdout is a pipe: it cannot acknowledge"),
                       "check does not warn that a pipe cannot acknowledge:\n%s", err);
    free(out);
    free(err);

    th_path(&scope, "relay.out", out_path);
    th_path(&scope, "relay.err", err_path);
    pid_t pid = th_relay_start(&scope, config, out_path, err_path);
    sc_begin(&scope);
    sc_relay_files files;
    snprintf(files.out, sizeof files.out, "%s", out_path);
    snprintf(files.err, sizeof files.err, "%s", err_path);
    th_wait_until(&scope, TH_DEADLINE_MS, sc_log_says_reading, &files, "the relay to read");
    th_relay_stop(&scope, pid);
    cr_assert(th_file_contains(err_path, "stdout is a regular file: a flush is acknowledged after "
                                         "fsync"));
}

/* check names each standby of source.durable_on and says that delivery waits for one away. */
Test(cli, check_names_the_standbys_delivery_waits_for)
{
    char config[TH_PATH_MAX];
    th_write_config(&scope, config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  durable_on: [nowhere]\n"
                    "sink:\n"
                    "  plugin: stdout\n",
                    scope.schema, scope.conninfo_yaml);
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 0, "check exited %d: %s", code, err);
    cr_assert_not_null(strstr(out, "durable on nowhere: not connected"), "check said:\n%s", out);
    cr_assert_not_null(strstr(err, "delivery will wait for it"), "no warning:\n%s", err);
    free(out);
    free(err);
}

Test(cli, check_missing_column)
{
    char config[TH_PATH_MAX];
    write_config(config, "stdout", "  columns:\n    type: nope\n");
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 4, "check exited %d, expected 4: %s", code, err);
    cr_assert_not_null(strstr(err, "nope"), "stderr does not name the column:\n%s", err);
    free(out);
    free(err);
}

/* The same for the columns that only some tables have: the error names the key that maps them. */
static void assert_check_names_missing(const char *columns, const char *column, const char *key)
{
    char config[TH_PATH_MAX];
    write_config(config, "stdout", columns);
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 4, "check with%s exited %d, expected 4: %s", columns, code, err);
    cr_assert_not_null(strstr(err, column), "stderr does not name the column %s:\n%s", column, err);
    cr_assert_not_null(strstr(err, key), "stderr does not name %s:\n%s", key, err);
    free(out);
    free(err);
}

Test(cli, check_missing_event_id_aggregate_type_or_header_column)
{
    assert_check_names_missing("  columns:\n    event_id: public_id\n", "\"public_id\"",
                               "source.columns.event_id");
    /* Its default name may be missing (it is then unmapped), a name given may not. */
    assert_check_names_missing("  columns:\n    aggregate_type: aggregatetype\n",
                               "\"aggregatetype\"", "source.columns.aggregate_type");
    assert_check_names_missing("  columns:\n    headers: [kind, tenant_id]\n", "\"tenant_id\"",
                               "source.columns.headers");
}

Test(cli, check_unreachable_database)
{
    char config[TH_PATH_MAX];
    th_write_config(&scope, config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: \"host=/nonexistent-relay-socket-dir dbname=postgres\"\n"
                    "sink:\n"
                    "  plugin: stdout\n",
                    RELAY_NAME);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 4, "check exited %d, expected 4: %s", code, err);
    cr_assert_neq(err[0], '\0', "no reason on stderr");
    free(out);
    free(err);
}

/* Runs check with the plugin at the path in env_name; returns its stderr (caller frees). */
static char *check_with_plugin(const char *env_name, int expected_code)
{
    char config[TH_PATH_MAX];
    write_config(config, th_env(env_name), "");
    th_migrate(config);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, expected_code, "check with %s exited %d, expected %d: %s", env_name, code,
                 expected_code, err);
    free(out);
    return err;
}

Test(cli, abi_version_mismatch)
{
    char *err = check_with_plugin("RELAY_BADABI_VERSION", 5);
    /* Both versions, so that the operator knows which side is behind. */
    regex_t relay_version;
    cr_assert_eq(regcomp(&relay_version, "(^|[^0-9])2([^0-9]|$)", REG_EXTENDED | REG_NOSUB), 0);
    int has_relay_version = regexec(&relay_version, err, 0, NULL, 0) == 0;
    regfree(&relay_version);
    cr_assert(strcasestr(err, "abi") && strstr(err, "999") && has_relay_version,
              "stderr does not give both ABI versions:\n%s", err);
    free(err);
}

/* A plugin built for ABI 1 is refused by `check` and by `run`, before anything is read. */
Test(cli, abi_1_plugin_is_refused)
{
    char *err = check_with_plugin("RELAY_BADABI_V1", 5);
    cr_assert(strstr(err, "speaks sink ABI 1, this relay speaks 2"),
              "check does not name both versions:\n%s", err);
    free(err);

    char config[TH_PATH_MAX], *out;
    write_config(config, th_env("RELAY_BADABI_V1"), "");
    int code = th_run_cli(&out, &err, "run", "-c", config);
    cr_assert_eq(code, 5, "run with an ABI 1 plugin exited %d: %s", code, err);
    cr_assert(strstr(err, "speaks sink ABI 1, this relay speaks 2"),
              "run does not name both versions:\n%s", err);
    free(out);
    free(err);
}

Test(cli, abi_struct_too_short)
{
    char *err = check_with_plugin("RELAY_BADABI_SHORT", 5);
    cr_assert_neq(err[0], '\0', "no reason on stderr");
    free(err);
}

Test(cli, abi_no_entry_symbol)
{
    char *err = check_with_plugin("RELAY_BADABI_NOSYM", 5);
    cr_assert_not_null(strstr(err, "relay_sink_entry"), "stderr does not name the symbol:\n%s",
                       err);
    free(err);
}

Test(cli, config_unknown_key)
{
    char config[TH_PATH_MAX];
    write_config(config, "stdout", "  frobnicate: 12\n");
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_assert_eq(code, 3, "check exited %d, expected 3: %s", code, err);
    /* Line 6 of the file, indented by two: see write_config. */
    char expected[TH_PATH_MAX + 64];
    snprintf(expected, sizeof expected, "%s:6:3: source.frobnicate: unknown key", config);
    cr_assert_not_null(strstr(err, expected), "stderr lacks \"%s\":\n%s", expected, err);
    free(out);
    free(err);
}

/* The integer value of "key": in a one-line JSON object, or the test fails. */
static int64_t json_int(const char *json, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(json, pattern);
    cr_assert_not_null(at, "no %s in %s", key, json);
    int64_t value;
    cr_assert_eq(sscanf(at + strlen(pattern), " %" SCNd64, &value), 1, "%s is not an integer in %s",
                 key, json);
    return value;
}

Test(cli, status_json)
{
    char config[TH_PATH_MAX], relay_out[TH_PATH_MAX], relay_err[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "1s", 100);
    th_path(&scope, "relay.out", relay_out);
    th_path(&scope, "relay.err", relay_err);
    th_migrate(config);
    th_insert_events(scope.conn, 5, LONG_AGO);
    pid_t pid = th_relay_start(&scope, config, relay_out, relay_err);
    th_wait_position(&scope, RELAY_NAME, 5);
    th_relay_signal(pid, SIGTERM);
    cr_assert_eq(th_relay_wait(&scope, pid, TH_DEADLINE_MS), 0);
    th_insert_events(scope.conn, 3, LONG_AGO);

    char *out, *err;
    int code = th_run_cli(&out, &err, "status", "-c", config, "--json");
    cr_assert_eq(code, 0, "status exited %d: %s", code, err);
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "not one line:\n%s", out);
    char name_field[96];
    snprintf(name_field, sizeof name_field, "\"name\":\"%s\"", RELAY_NAME);
    cr_assert_not_null(strstr(out, name_field), "%s", out);
    cr_assert_eq(json_int(out, "position"), 5);
    cr_assert_eq(json_int(out, "max_id"), 8);
    cr_assert_eq(json_int(out, "lag_rows"), 3);
    cr_assert_not_null(strstr(out, "\"lag_seconds\":"), "%s", out);
    cr_assert_null(strstr(out, "\"updated_at\":null"), "the relay committed, yet:\n%s", out);
    free(out);
    free(err);
}

Test(cli, version)
{
    char *out, *err;
    int code = th_run_cli(&out, &err, "--version");
    cr_assert_eq(code, 0, "--version exited %d: %s", code, err);
    regex_t version;
    cr_assert_eq(regcomp(&version, "[0-9]+\\.[0-9]+", REG_EXTENDED | REG_NOSUB), 0);
    int match = regexec(&version, out, 0, NULL, 0);
    regfree(&version);
    cr_assert_eq(match, 0, "no version in:\n%s", out);
    free(out);
    free(err);
}

Test(cli, unknown_command)
{
    char *out, *err;
    int code = th_run_cli(&out, &err, "frobnicate", "-c", "/nonexistent.yaml");
    cr_assert_eq(code, 2, "an unknown command exited %d: %s", code, err);
    free(out);
    free(err);
}

static void assert_no_secret(const char *text, const char *where)
{
    cr_assert_null(strstr(text, SECRET), "the password appears in %s:\n%s", where, text);
}

static bool relay_is_up(void *arg)
{
    (void)arg;
    return th_checkpoint_exists(&scope, RELAY_NAME);
}

Test(cli, password_never_logged)
{
    char secret_file[TH_PATH_MAX], unreachable[TH_PATH_MAX], reachable[TH_PATH_MAX];
    th_path(&scope, "password", secret_file);
    th_write_file(secret_file, "%s\n", SECRET);

    /* The failure path, where a careless message would quote the connection parameters. */
    th_write_config(&scope, unreachable,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: \"host=/nonexistent-relay-socket-dir dbname=postgres user=x\"\n"
                    "  password_file: %s\n"
                    "sink:\n"
                    "  plugin: stdout\n",
                    RELAY_NAME, secret_file);
    char *out, *err;
    int code = th_run_cli(&out, &err, "check", "-c", unreachable, "--log-level", "debug");
    cr_assert_eq(code, 4, "check exited %d, expected 4: %s", code, err);
    assert_no_secret(out, "stdout of check");
    assert_no_secret(err, "stderr of check");
    free(out);
    free(err);

    /* The success path (the test server trusts, so the password is sent but not needed), where a
     * summary or a debug log could print the conninfo. */
    th_write_config(&scope, reachable,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "  password_file: %s\n"
                    "sink:\n"
                    "  plugin: stdout\n",
                    RELAY_NAME, scope.conninfo_yaml, secret_file);
    th_migrate(reachable);
    code = th_run_cli(&out, &err, "check", "-c", reachable, "--log-level", "debug");
    cr_assert_eq(code, 0, "check exited %d: %s", code, err);
    assert_no_secret(out, "stdout of check");
    assert_no_secret(err, "stderr of check");
    free(out);
    free(err);

    char relay_out[TH_PATH_MAX], relay_err[TH_PATH_MAX];
    th_path(&scope, "relay.out", relay_out);
    th_path(&scope, "relay.err", relay_err);
    pid_t pid = th_relay_start(&scope, reachable, relay_out, relay_err);
    th_wait_until(&scope, TH_DEADLINE_MS, relay_is_up, NULL, "the relay to load its checkpoint");
    th_relay_signal(pid, SIGTERM);
    cr_assert_eq(th_relay_wait(&scope, pid, TH_DEADLINE_MS), 0);
    char *log = th_read_file(relay_err, NULL);
    assert_no_secret(log, "the relay's log");
    free(log);
}
