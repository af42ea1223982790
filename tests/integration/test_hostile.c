/*
 * Hostile conditions: what an attacker or an unlucky operator hands the relay (a malformed
 * conninfo with a password in it, a variable that smuggles keywords, a closed stdout, a full
 * disk, a database in another encoding), and what it must do then: say what is wrong without
 * revealing a secret, and lose or garble no event.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* prlimit */
#endif
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <libpq-fe.h>

#include "../harness/harness.h"

#define LONG_AGO "now() - interval '1 hour'"
#define SECRET "Zebra4711xyzzy"

static th_scope scope;

static void setup(void)
{
    th_scope_new(&scope);
}

static void teardown(void)
{
    th_scope_free(&scope);
}

TestSuite(hostile, .init = setup, .fini = teardown, .timeout = 120);

typedef struct text_goal {
    const char *path;
    const char *text;
} text_goal;

static bool file_says(void *arg)
{
    const text_goal *g = arg;
    return th_file_contains(g->path, g->text);
}

/* Waits until the file at path contains text. */
static void wait_for_text(th_scope *s, const char *path, const char *text, const char *what)
{
    text_goal goal = {.path = path, .text = text};
    th_wait_until(s, TH_DEADLINE_MS, file_says, &goal, what);
}

/* A stdout config for the scope with conninfo_yaml as database.conninfo and extra YAML. */
static void write_config(char path[TH_PATH_MAX], const char *conninfo_yaml, const char *extra)
{
    th_write_config(&scope, path,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "%s"
                    "source:\n"
                    "  safety_margin: 100ms\n"
                    "  poll_interval: 50ms\n"
                    "sink:\n"
                    "  plugin: stdout\n"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 200ms\n",
                    scope.schema, conninfo_yaml, extra);
}

/* Runs `check` and `run` on config: both must exit with want, and neither say secret. */
static void assert_refused_without(const char *config, int want, const char *secret,
                                   const char *expected)
{
    const char *commands[] = {"check", "run"};
    for (size_t i = 0; i < 2; i++) {
        char *out = NULL, *err = NULL;
        int code = th_run_cli(&out, &err, commands[i], "-c", config);
        cr_expect_eq(code, want, "%s exited %d, not %d: %s", commands[i], code, want, err);
        cr_expect_null(strstr(out, secret), "%s printed the secret: %s", commands[i], out);
        cr_expect_null(strstr(err, secret), "%s logged the secret: %s", commands[i], err);
        cr_expect_not_null(strstr(err, expected), "%s did not say '%s': %s", commands[i], expected,
                           err);
        free(out);
        free(err);
    }
}

Test(hostile, malformed_uri_names_the_key_not_the_password)
{
    char config[TH_PATH_MAX];
    write_config(config, "\"postgresql://relay:" SECRET "@[::1/db\"", "");
    /* A configuration error (3), at the key, with libpq's reason but not the URI. */
    assert_refused_without(config, 3, SECRET, "database.conninfo");
    assert_refused_without(config, 3, SECRET, "malformed");
}

Test(hostile, unquoted_space_in_keyword_form_hides_the_password)
{
    char config[TH_PATH_MAX];
    /* libpq reads "xyzzy" as a keyword without "=" and quotes it in its message. */
    write_config(config, "\"host=/nonexistent password=Zebra4711 xyzzy\"", "");
    assert_refused_without(config, 3, "xyzzy", "malformed");
    assert_refused_without(config, 3, "Zebra4711", "database.conninfo");
}

Test(hostile, connection_failure_hides_the_password)
{
    char config[TH_PATH_MAX];
    /* Parses, but nothing listens there: a database outage, retried; check says it at once. */
    write_config(config, "\"host=/nonexistent-dir port=1 password=" SECRET "\"", "");
    char *out = NULL, *err = NULL;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 4, "check exited %d: %s", code, err);
    cr_expect_null(strstr(err, SECRET), "check logged the secret: %s", err);
    cr_expect_not_null(strstr(err, "cannot connect"), "%s", err);
    free(out);
    free(err);
}

/* The error `check` prints for a conninfo whose dbname is the value of HOSTILE_DB. */
static char *check_error_with_db(const char *conninfo_yaml, const char *db)
{
    setenv("HOSTILE_DB", db, 1);
    char config[TH_PATH_MAX];
    write_config(config, conninfo_yaml, "");
    char *out = NULL, *err = NULL;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 4, "check exited %d: %s", code, err);
    free(out);
    return err;
}

Test(hostile, variable_is_one_keyword_value)
{
    /* The scope's conninfo, then a dbname from the environment: the last dbname wins. */
    char *conninfo = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&conninfo, &len);
    fprintf(f, "%.*s dbname=${HOSTILE_DB}\"", (int)strlen(scope.conninfo_yaml) - 1,
            scope.conninfo_yaml);
    fclose(f);

    /* Pasted as it is, this would connect to database postgres and pass. */
    char *err = check_error_with_db(conninfo, "nosuchdb dbname=postgres");
    cr_expect_not_null(strstr(err, "database \"nosuchdb dbname=postgres\" does not exist"), "%s",
                       err);
    free(err);
    /* Pasted as it is, libpq would take the backslash as an escape and look for "ab". */
    err = check_error_with_db(conninfo, "a\\b");
    cr_expect_not_null(strstr(err, "database \"a\\b\" does not exist"), "%s", err);
    free(err);
    err = check_error_with_db(conninfo, "it's");
    cr_expect_not_null(strstr(err, "database \"it's\" does not exist"), "%s", err);
    free(err);
    free(conninfo);
}

Test(hostile, variable_is_one_uri_component)
{
    char *error = NULL;
    PQconninfoOption *options = PQconninfoParse(th_env("RELAY_TEST_CONNINFO"), &error);
    cr_assert_not_null(options, "%s", error);
    const char *host = NULL, *port = NULL, *user = NULL;
    for (PQconninfoOption *o = options; o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        if (strcmp(o->keyword, "user") == 0)
            user = o->val;
    }
    cr_assert(host && port && user && host[0] == '/', "the test server is on a unix socket");
    char conninfo[1024];
    snprintf(conninfo, sizeof conninfo, "\"postgresql:///${HOSTILE_DB}?host=%s&port=%s&user=%s\"",
             host, port, user);
    PQconninfoFree(options);

    /* Pasted as it is, "?" would end the path and "&dbname=postgres" add a parameter. */
    char *err = check_error_with_db(conninfo, "x?dbname=postgres");
    cr_expect_not_null(strstr(err, "database \"x?dbname=postgres\" does not exist"), "%s", err);
    free(err);
}

Test(hostile, password_file_that_says_nothing_is_a_config_error)
{
    char config[TH_PATH_MAX], empty[TH_PATH_MAX], extra[TH_PATH_MAX + 64];
    th_path(&scope, "empty-password", empty);
    th_write_file(empty, "\n");
    snprintf(extra, sizeof extra, "  password_file: %s\n", empty);
    /* Retried forever as an outage before; an empty password is never what was meant. */
    write_config(config, scope.conninfo_yaml, extra);
    assert_refused_without(config, 3, SECRET, "its first line is empty");

    snprintf(extra, sizeof extra, "  password_file: %s\n", scope.dir);
    write_config(config, scope.conninfo_yaml, extra);
    assert_refused_without(config, 3, SECRET, "not a regular file");
}

Test(hostile, closed_stdout_is_refused)
{
    char config[TH_PATH_MAX], err_path[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "100ms", 100);
    th_migrate(config);
    th_insert_events(scope.conn, 5, LONG_AGO);
    th_path(&scope, "closed.err", err_path);
    /* Before, the database connection took descriptor 1 and the events were written into it. */
    pid_t pid = th_relay_start(&scope, config, NULL, err_path);
    int code = th_relay_wait(&scope, pid, TH_DEADLINE_MS);
    cr_expect_eq(code, 5, "the relay exited %d, not with the sink's code", code);
    cr_expect(th_file_contains(err_path, "descriptor 1"), "no word about stdout");
    cr_expect(!th_file_contains(err_path, "invalid frontend message"));
    cr_expect_eq(th_position(&scope, scope.schema), 0, "the position moved");
}

typedef struct lines_goal {
    const char *path;
    size_t want;
} lines_goal;

/* Whether the file has at least want whole lines. */
static bool has_lines(void *arg)
{
    const lines_goal *g = arg;
    char **lines = NULL;
    size_t n = th_read_lines(g->path, &lines);
    th_free_lines(lines, n);
    return n >= g->want;
}

Test(hostile, full_disk_leaves_no_torn_line)
{
    enum { EVENTS = 2000 };
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "100ms", 500);
    th_migrate(config);
    th_insert_events(scope.conn, EVENTS, LONG_AGO);
    th_path(&scope, "full.out", out);
    th_path(&scope, "full.err", err);

    /* The file size limit stands for a full disk: write(2) writes up to it, then fails with
     * EFBIG, mid-line (no line is 4099 bytes long). The relay inherits the limit and SIGXFSZ
     * ignored; its log has room enough. */
    struct rlimit old, limit;
    getrlimit(RLIMIT_FSIZE, &old);
    limit = old;
    limit.rlim_cur = 40 * 4099;
    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &limit), 0);
    pid_t pid = th_relay_start(&scope, config, out, err);
    setrlimit(RLIMIT_FSIZE, &old);

    wait_for_text(&scope, err, "File too large", "a failed write");
    cr_assert_eq(prlimit(pid, RLIMIT_FSIZE, &old, NULL), 0, "raising the relay's limit");
    lines_goal all = {.path = out, .want = EVENTS};
    th_wait_until(&scope, TH_DEADLINE_MS, has_lines, &all, "every event delivered");
    th_relay_stop(&scope, pid);

    /* Every line one whole event: a half line left behind would glue two events together. */
    char **lines = NULL;
    size_t n = th_read_lines(out, &lines);
    for (size_t i = 0; i < n; i++) {
        const char *first = strstr(lines[i], "{\"id\":");
        cr_assert(first == lines[i], "line %zu does not start an event: %.80s", i + 1, lines[i]);
        cr_assert_null(strstr(first + 1, "{\"id\":"), "line %zu holds two events: %.200s", i + 1,
                       lines[i]);
        size_t len = strlen(lines[i]);
        cr_assert(len > 0 && lines[i][len - 1] == '}', "line %zu is cut: %.80s", i + 1,
                  lines[i] + (len > 80 ? len - 80 : 0));
    }
    th_free_lines(lines, n);
}

/* A database in LATIN1 of its own, dropped by the caller. */
static void create_latin1_database(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "CREATE DATABASE %s ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
             "TEMPLATE template0",
             name);
    th_exec(scope.conn, sql);
}

Test(hostile, latin1_database_reaches_the_sink_as_utf8)
{
    char db[80], base[1024], sql[160];
    snprintf(db, sizeof db, "%s_latin1", scope.schema);
    create_latin1_database(db);
    snprintf(base, sizeof base, "%s dbname=%s", th_env("RELAY_TEST_CONNINFO"), db);

    th_scope latin1;
    th_scope_new_at(&latin1, base);
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_stdout_config(&latin1, config, "100ms", 100);
    th_migrate(config);
    /* The test's session speaks UTF-8; the server stores LATIN1 bytes. */
    th_exec(latin1.conn, "SET client_encoding = 'UTF8'");
    th_exec(latin1.conn,
            "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version,"
            " kind, body, created_at) VALUES ('caf\xc3\xa9', 'order', 1, 'cr\xc3\xa9\xc3\xa9',"
            " '{\"name\": \"\xc3\xa9t\xc3\xa9\"}', now() - interval '1 hour'),"
            " ('b', 'order', 1, 'x', '{}', now() - interval '1 hour')");
    th_path(&latin1, "latin1.out", out);
    th_path(&latin1, "latin1.err", err);
    /* Without the pinned encoding, this made every connection fail and the relay reconnect. */
    setenv("PGCLIENTENCODING", "LATIN1", 1);
    pid_t pid = th_relay_start(&latin1, config, out, err);
    unsetenv("PGCLIENTENCODING");
    lines_goal both = {.path = out, .want = 2};
    th_wait_until(&latin1, TH_DEADLINE_MS, has_lines, &both, "both events delivered");
    th_relay_stop(&latin1, pid);

    char *text = th_read_file(out, NULL);
    cr_expect_not_null(strstr(text, "\"key\":\"caf\xc3\xa9\""), "the key is not UTF-8: %s", text);
    cr_expect_not_null(strstr(text, "\"type\":\"cr\xc3\xa9\xc3\xa9\""), "%s", text);
    cr_expect_not_null(strstr(text, "\"\xc3\xa9t\xc3\xa9\""), "the payload is not UTF-8: %s", text);
    free(text);
    th_scope_free(&latin1);
    snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", db);
    th_exec(scope.conn, sql);
}

Test(hostile, server_warnings_go_through_the_log)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_config(config, scope.conninfo_yaml, "log:\n  format: json\n");
    th_migrate(config);
    /* A WARNING from the server in the relay's own session, each time it stores its position. */
    th_exec(scope.conn, "CREATE FUNCTION warn_on_store() RETURNS trigger LANGUAGE plpgsql AS"
                        " $$BEGIN RAISE WARNING 'checkpoint written'; RETURN NEW; END$$;"
                        "CREATE TRIGGER warn_on_store BEFORE UPDATE ON relay_checkpoints"
                        " FOR EACH ROW EXECUTE FUNCTION warn_on_store()");
    th_insert_events(scope.conn, 3, LONG_AGO);
    th_path(&scope, "warn.out", out);
    th_path(&scope, "warn.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    wait_for_text(&scope, err, "checkpoint written", "the server's warning logged");
    th_relay_stop(&scope, pid);

    /* Every line a JSON record of the log: libpq's own notice printer wrote "WARNING: ..." raw. */
    char **lines = NULL;
    size_t n = th_read_lines(err, &lines);
    for (size_t i = 0; i < n; i++)
        cr_expect(strncmp(lines[i], "{\"ts\":", 6) == 0, "not a JSON log record: %s", lines[i]);
    th_free_lines(lines, n);
}

/* Starts argv in dir, with what the test process has (its core size limit among it); the caller
 * waits for it with wait_status, for the core dump bit that exit codes do not carry. */
static pid_t spawn_in(const char *dir, const char *const argv[], const char *out, const char *err)
{
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addchdir_np(&actions, dir);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err, O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &actions, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    cr_assert_eq(rc, 0, "cannot run %s: %s", argv[0], strerror(rc));
    return pid;
}

typedef struct exit_goal {
    pid_t pid;
    int status;
} exit_goal;

static bool has_exited(void *arg)
{
    exit_goal *g = arg;
    return waitpid(g->pid, &g->status, WNOHANG) == g->pid;
}

/* The wait status of pid, once it exited. */
static int wait_status(pid_t pid)
{
    exit_goal goal = {.pid = pid};
    th_wait_until(&scope, TH_DEADLINE_MS, has_exited, &goal, "the process to exit");
    return goal.status;
}

Test(hostile, no_core_dump_carries_the_password)
{
    char config[TH_PATH_MAX], password[TH_PATH_MAX], extra[TH_PATH_MAX + 64];
    char out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_path(&scope, "password", password);
    th_write_file(password, SECRET "\n");
    chmod(password, 0600);
    snprintf(extra, sizeof extra, "  password_file: %s\n", password);
    write_config(config, scope.conninfo_yaml, extra);
    th_migrate(config);
    th_path(&scope, "abort.out", out);
    th_path(&scope, "abort.err", err);

    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_CORE, &unlimited), 0);
    /* Whether this machine dumps cores at all: a shell aborting itself must. */
    const char *control[] = {"/bin/sh", "-c", "kill -ABRT $$", NULL};
    int status = wait_status(spawn_in(scope.dir, control, out, err));
    if (!WIFSIGNALED(status) || !WCOREDUMP(status))
        cr_skip_test("this machine writes no core for a process that may dump one "
                     "(/proc/sys/kernel/core_pattern): nothing to compare with");

    /* SIGABRT is what systemd sends when the watchdog times out. */
    const char *relay[] = {th_env("RELAY_BIN"), "run", "-c", config, NULL};
    pid_t pid = spawn_in(scope.dir, relay, out, err);
    wait_for_text(&scope, err, "reading ", "the relay reading");
    kill(pid, SIGABRT);
    status = wait_status(pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    cr_expect(!WCOREDUMP(status), "the relay dumped a core, with the password in it");
}

/* Copies the stdout plugin into the scope, for a test to set its mode. */
static void copy_stdout_plugin(char out[TH_PATH_MAX])
{
    char from[TH_PATH_MAX];
    snprintf(from, sizeof from, "%s/plugins/stdout/stdout.so", th_env("RELAY_BUILD_DIR"));
    size_t len = 0;
    char *bytes = th_read_file(from, &len);
    cr_assert_gt(len, 0, "no plugin at %s", from);
    th_path(&scope, "mysink.so", out);
    FILE *f = fopen(out, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
}

Test(hostile, files_others_may_write_are_refused)
{
    char config[TH_PATH_MAX], plugin[TH_PATH_MAX];
    copy_stdout_plugin(plugin);
    chmod(plugin, 0755);
    /* Relative to the config's directory, wherever the relay runs from. */
    th_write_config(&scope, config,
                    "name: %s\ndatabase:\n  conninfo: %s\nsink:\n  plugin: ./mysink.so\n",
                    scope.schema, scope.conninfo_yaml);
    th_migrate(config);
    cr_assert_eq(chdir("/"), 0);
    char *out = NULL, *err = NULL;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 0, "check exited %d: %s", code, err);
    free(out);
    free(err);

    /* Whoever may write the plugin chooses the code the relay runs. */
    chmod(plugin, 0775);
    code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 5, "check exited %d with a group-writable plugin: %s", code, err);
    cr_expect_not_null(strstr(err, "writable by its group"), "%s", err);
    free(out);
    free(err);
    chmod(plugin, 0755);

    /* And whoever may write the config chooses the plugin. */
    chmod(config, 0666);
    code = th_run_cli(&out, &err, "run", "-c", config);
    cr_expect_eq(code, 3, "run exited %d with a world-writable config: %s", code, err);
    cr_expect_not_null(strstr(err, "writable by anyone"), "%s", err);
    free(out);
    free(err);
}

Test(hostile, secrets_others_may_read_are_named)
{
    char config[TH_PATH_MAX], password[TH_PATH_MAX], extra[TH_PATH_MAX + 64];
    th_path(&scope, "password", password);
    th_write_file(password, "pw\n");
    chmod(password, 0644);
    snprintf(extra, sizeof extra, "  password_file: %s\n", password);
    write_config(config, scope.conninfo_yaml, extra);
    th_migrate(config);
    char *out = NULL, *err = NULL;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 0, "check exited %d: %s", code, err);
    cr_expect_not_null(strstr(err, "password_file"), "no warning: %s", err);
    cr_expect_not_null(strstr(err, "can be read by anyone"), "no warning: %s", err);
    free(out);
    free(err);

    chmod(password, 0600);
    code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 0, "check exited %d: %s", code, err);
    cr_expect_null(strstr(err, "can be read"), "a warning for a 0600 file: %s", err);
    free(out);
    free(err);
}

/* A login role of the test's own, named after its schema; dropped by drop_role. */
static void create_role(char role[80], const char *grants)
{
    snprintf(role, 80, "%s_role", scope.schema);
    char *sql = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&sql, &len);
    fprintf(f, "CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA %s TO %s; %s", role, scope.schema, role,
            grants);
    fclose(f);
    th_exec(scope.conn, sql);
    free(sql);
}

static void drop_role(const char *role)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP OWNED BY %s; DROP ROLE %s", role, role);
    th_exec(scope.conn, sql);
}

Test(hostile, missing_privilege_is_named_not_retried)
{
    char config[TH_PATH_MAX], role[80], conninfo[2048], grants[1024];
    write_config(config, scope.conninfo_yaml, "");
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    /* Everything but UPDATE on relay_checkpoints. */
    snprintf(grants, sizeof grants,
             "GRANT SELECT ON events TO %s_role;"
             " GRANT SELECT, INSERT ON relay_checkpoints TO %s_role;"
             " GRANT ALL ON relay_gaps, relay_dead_letters TO %s_role;"
             " GRANT USAGE ON SEQUENCE events_id_seq TO %s_role",
             scope.schema, scope.schema, scope.schema, scope.schema);
    create_role(role, grants);
    snprintf(conninfo, sizeof conninfo, "%.*s user=%s\"", (int)strlen(scope.conninfo_yaml) - 1,
             scope.conninfo_yaml, role);
    write_config(config, conninfo, "");

    char *out = NULL, *err = NULL;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 4, "check exited %d: %s%s", code, out, err);
    cr_expect_not_null(strstr(err, "permission denied for table relay_checkpoints"), "%s", err);
    cr_expect_not_null(strstr(err, "SQLSTATE 42501"), "%s", err);
    free(out);
    free(err);

    /* Retried forever as "database unavailable" before. */
    code = th_run_cli(&out, &err, "run", "-c", config);
    cr_expect_eq(code, 4, "run exited %d: %s", code, err);
    cr_expect_not_null(strstr(err, "lacks a privilege"), "%s", err);
    free(out);
    free(err);
    drop_role(role);
}

typedef struct attempts_goal {
    const char *err;
    int attempts;
} attempts_goal;

static bool failed_attempts(void *arg)
{
    const attempts_goal *g = arg;
    char mark[64];
    snprintf(mark, sizeof mark, "database still failing (attempt %d)", g->attempts);
    return th_file_contains(g->err, mark);
}

Test(hostile, an_error_on_every_connection_backs_off)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_config(&scope, config,
                    "name: %s\ndatabase:\n  conninfo: %s\nsink:\n  plugin: stdout\n"
                    "retry:\n  initial: 50ms\n  max: 1s\n",
                    scope.schema, scope.conninfo_yaml);
    th_migrate(config);
    /* The connect goes through; the first position the relay stores fails, on every fresh
     * connection, as a statement_timeout or an encoding error would. */
    th_exec(scope.conn, "CREATE FUNCTION refuse_store() RETURNS trigger LANGUAGE plpgsql AS"
                        " $$BEGIN IF NEW.position > 0 THEN RAISE EXCEPTION 'store refused';"
                        " END IF; RETURN NEW; END$$;"
                        "CREATE TRIGGER refuse_store BEFORE UPDATE ON relay_checkpoints"
                        " FOR EACH ROW EXECUTE FUNCTION refuse_store()");
    th_insert_events(scope.conn, 3, LONG_AGO);
    th_path(&scope, "storm.out", out);
    th_path(&scope, "storm.err", err);
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid_t pid = th_relay_start(&scope, config, out, err);
    attempts_goal goal = {.err = err, .attempts = 6};
    th_wait_until(&scope, TH_DEADLINE_MS, failed_attempts, &goal, "six failed attempts");
    clock_gettime(CLOCK_MONOTONIC, &end);
    th_relay_stop(&scope, pid);

    /* retry.initial 50ms doubling, each wait at least half its step: after five waits at least
     * 25 + 50 + 100 + 200 + 400 ms. Starting over at every connect, the waits stay at 25-50 ms. */
    int64_t ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
    cr_expect_geq(ms, 775, "six attempts within %" PRId64 " ms: the backoff started over", ms);
    cr_expect(th_file_contains(err, "store refused (SQLSTATE P0001)"), "no SQLSTATE in the log");
    /* Three events, handed over once per connection: delivered counts them once. */
    cr_expect(th_file_contains(err, "after delivering 3 events (and "), "redeliveries counted in");
}

Test(hostile, null_key_type_and_time_are_json_null)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_config(config, scope.conninfo_yaml, "");
    th_migrate(config);
    th_exec(scope.conn, "ALTER TABLE events ALTER COLUMN aggregate_id DROP NOT NULL,"
                        " ALTER COLUMN kind DROP NOT NULL, ALTER COLUMN created_at DROP NOT NULL;"
                        "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind,"
                        " body, created_at) VALUES (NULL, 'order', 1, NULL, '{}', NULL)");
    th_path(&scope, "null.out", out);
    th_path(&scope, "null.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    lines_goal one = {.path = out, .want = 1};
    th_wait_until(&scope, TH_DEADLINE_MS, has_lines, &one, "the event delivered");
    th_relay_stop(&scope, pid);
    char *text = th_read_file(out, NULL);
    /* "" would be a key and a type that some event could really have. */
    cr_expect_not_null(strstr(text, "\"key\":null,\"type\":null,"), "%s", text);
    cr_expect_not_null(strstr(text, "\"created_at\":null"), "%s", text);
    free(text);
}

Test(hostile, a_created_at_in_the_future_is_named)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_config(config, scope.conninfo_yaml, "");
    th_migrate(config);
    th_insert_events(scope.conn, 2, LONG_AGO);
    int64_t held = th_query_int64(
        scope.conn, "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind,"
                    " body, created_at) VALUES ('a', 'order', 1, 'x', '{}', 'infinity')"
                    " RETURNING id");
    th_insert_events(scope.conn, 1, LONG_AGO);
    th_path(&scope, "future.out", out);
    th_path(&scope, "future.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    /* Silent before: the relay held, and status said lag 0.000 s. */
    wait_for_text(&scope, err, "is infinity on the database's clock", "a warning naming the row");
    char mark[64];
    snprintf(mark, sizeof mark, "event %" PRId64 " holds the relay", held);
    cr_expect(th_file_contains(err, mark), "the warning does not name event %" PRId64, held);
    th_wait_position(&scope, scope.schema, held - 1);

    char *text = NULL, *errors = NULL;
    int code = th_run_cli(&text, &errors, "status", "-c", config);
    cr_expect_eq(code, 0, "%s", errors);
    snprintf(mark, sizeof mark, "held by      event %" PRId64 ": created_at is infinity", held);
    cr_expect_not_null(strstr(text, mark), "%s", text);
    free(text);
    free(errors);
    code = th_run_cli(&text, &errors, "status", "-c", config, "--json");
    cr_expect_eq(code, 0, "%s", errors);
    snprintf(mark, sizeof mark, "\"held_by\":{\"id\":%" PRId64 ",\"ahead_seconds\":null}", held);
    cr_expect_not_null(strstr(text, mark), "%s", text);
    free(text);
    free(errors);
    th_relay_stop(&scope, pid);
}

Test(hostile, check_warns_about_a_timestamp_without_time_zone)
{
    char config[TH_PATH_MAX];
    write_config(config, scope.conninfo_yaml, "");
    th_migrate(config);
    th_exec(scope.conn, "ALTER TABLE events ALTER COLUMN created_at TYPE timestamp");
    char *out = NULL, *err = NULL;
    int code = th_run_cli(&out, &err, "check", "-c", config);
    cr_expect_eq(code, 0, "check exited %d: %s", code, err);
    cr_expect_not_null(strstr(err, "is timestamp without time zone, not timestamptz"), "%s", err);
    free(out);
    free(err);
}

/* The pid of the relay's session on the server (its application_name is the schema). */
static int64_t relay_backend(void)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE application_name = '%s'",
             scope.schema);
    return th_query_int64(scope.conn, sql);
}

static bool relay_waits_on_a_lock(void *arg)
{
    (void)arg;
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'"
             " AND wait_event_type = 'Lock'",
             scope.schema);
    return th_query_int64(scope.conn, sql) > 0;
}

Test(hostile, sigterm_is_honoured_in_a_lock_wait)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_config(config, scope.conninfo_yaml, "");
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    th_path(&scope, "lock.out", out);
    th_path(&scope, "lock.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, scope.schema, 3);

    /* The next read waits for the table's lock, inside libpq, which retries its poll on EINTR. */
    PGconn *locker = th_scope_connect(&scope);
    th_exec(locker, "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
    th_wait_until(&scope, TH_DEADLINE_MS, relay_waits_on_a_lock, NULL, "the relay in a lock wait");
    th_relay_stop_within(&scope, pid, 2000);
    th_exec(locker, "ROLLBACK");
    cr_expect_eq(th_position(&scope, scope.schema), 3, "the position moved");
}

static bool backend_stopped(void *arg)
{
    char path[64], state = 0;
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)*(int64_t *)arg);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
            state = 0;
        fclose(f);
    }
    return state == 'T';
}

/* A backend the test stopped; continued by the test's teardown even when it failed half-way, or
 * it would hold every later DROP DATABASE of the server. */
static pid_t stopped_backend;

static void continue_backend(void)
{
    if (stopped_backend > 0)
        kill(stopped_backend, SIGCONT);
    teardown();
}

Test(hostile, sigterm_is_honoured_with_the_server_stopped, .fini = continue_backend)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    write_config(config, scope.conninfo_yaml, "");
    th_migrate(config);
    th_insert_events(scope.conn, 3, LONG_AGO);
    th_path(&scope, "sigstop.out", out);
    th_path(&scope, "sigstop.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, scope.schema, 3);

    /* The server is on this machine: its backend stopped, every answer waits forever. */
    int64_t backend = relay_backend();
    cr_assert_gt(backend, 0, "no session of the relay");
    stopped_backend = (pid_t)backend;
    cr_assert_eq(kill((pid_t)backend, SIGSTOP), 0, "SIGSTOP to the backend");
    th_wait_until(&scope, TH_DEADLINE_MS, backend_stopped, &backend, "the backend stopped");
    th_insert_events(scope.conn, 2, LONG_AGO);
    th_relay_stop_within(&scope, pid, 2000);
    kill((pid_t)backend, SIGCONT);
    cr_expect_eq(th_position(&scope, scope.schema), 3, "the position moved");
}

/* Runs the relay's CLI with argv; asserts the exit code and that stderr says expected. */
static void assert_cli_refuses(const char *const argv[], int want, const char *expected)
{
    char *out = NULL, *err = NULL;
    int code = th_run_cli_argv(&out, &err, argv);
    cr_expect_eq(code, want, "%s ... exited %d, not %d: %s", argv[0], code, want, err);
    cr_expect_not_null(strstr(err, expected), "%s ...: no '%s' in: %s", argv[0], expected, err);
    free(out);
    free(err);
}

Test(hostile, command_line_mistakes_are_usage_errors)
{
    char config[TH_PATH_MAX];
    write_config(config, scope.conninfo_yaml, "");
    const char *bogus[] = {"bogus", NULL};
    assert_cli_refuses(bogus, 2, "unknown command 'bogus'");
    const char *level[] = {"check", "-c", "/nonexistent.yaml", "--log-level", "bogus", NULL};
    assert_cli_refuses(level, 2, "--log-level: unknown level 'bogus'");
    const char *to[] = {"reset", "-c", config, "--to", " +5", NULL};
    assert_cli_refuses(to, 2, "--to: expected an id");
    const char *status[] = {"status", "-c", config, "--to", "7", "--latest", NULL};
    assert_cli_refuses(status, 2, "--to is not an option of status");
    /* A config that cannot be read is reported in the format asked for. */
    const char *json[] = {"check", "-c", "/nonexistent.yaml", "--log-format", "json", NULL};
    assert_cli_refuses(json, 3, "{\"ts\":");
}

Test(hostile, a_batch_ends_at_batch_bytes)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    /* 40 events of about 200 kB each, in batches of up to 100 events or 1 MB. */
    th_write_config(&scope, config,
                    "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  safety_margin: 0s\n"
                    "  batch_size: 100\n  batch_bytes: 1000000\nsink:\n  plugin: stdout\n",
                    scope.schema, scope.conninfo_yaml);
    th_migrate(config);
    th_exec(scope.conn, "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind,"
                        " body, created_at) SELECT 'a' || g, 'order', 1, 'x',"
                        " jsonb_build_object('blob', repeat(md5(g::text), 6250)),"
                        " now() - interval '1 hour' FROM generate_series(1, 40) g");
    th_path(&scope, "bytes.out", out);
    th_path(&scope, "bytes.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_position(&scope, scope.schema, 40);
    th_relay_stop(&scope, pid);

    /* Each batch is what 1 MB holds of 200 kB rows: 4 at most (the first read after a connect is
     * 16 rows, cut at the cap too). Before, one batch of 40: 8 MB in memory at once. */
    char **lines = NULL;
    size_t n = th_read_lines(err, &lines), batches = 0;
    for (size_t i = 0; i < n; i++) {
        const char *at = strstr(lines[i], "delivered ");
        long events = at ? strtol(at + strlen("delivered "), NULL, 10) : 0;
        if (at && strstr(at, " events, position ")) {
            batches++;
            cr_expect_leq(events, 4, "a batch of %ld events of 200 kB: %s", events, lines[i]);
        }
    }
    th_free_lines(lines, n);
    cr_expect_geq(batches, 10, "40 events in %zu batches", batches);
}

/* Whether this build runs under AddressSanitizer, whose shadow memory is data too. */
#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOSTILE_ASAN 1
#endif
#endif

Test(hostile, a_read_that_meets_large_rows_keeps_only_batch_bytes)
{
#ifdef HOSTILE_ASAN
    cr_skip_test("AddressSanitizer's shadow memory counts against RLIMIT_DATA: the plain build "
                 "runs this test");
#endif
    char config[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_config(&scope, config,
                    "name: %s\ndatabase:\n  conninfo: %s\nsource:\n  safety_margin: 0s\n"
                    "  batch_size: 20000\n  batch_bytes: 1000000\nsink:\n  plugin: stdout\n",
                    scope.schema, scope.conninfo_yaml);
    th_migrate(config);
    /* 20,000 small events size the reads at about 2,800 rows; behind them, 40 events of 4 MB.
     * One such read held all 40 in libpq's result (160 MB); a batch of 1 MB keeps one. */
    th_exec(scope.conn, "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind,"
                        " body, created_at) SELECT 's' || g, 'order', 1, 'x',"
                        " jsonb_build_object('n', g), now() - interval '1 hour'"
                        " FROM generate_series(1, 20000) g");
    th_exec(scope.conn, "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind,"
                        " body, created_at) SELECT 'l' || g, 'order', 1, 'x',"
                        " jsonb_build_object('blob', repeat(md5(g::text), 131072)),"
                        " now() - interval '1 hour' FROM generate_series(1, 40) g");
    th_path(&scope, "large.err", err);

    /* 64 MB of data for the relay, which it inherits: its base takes about 18 MB, and what the
     * two batches keep, with libpq's one row, about 20 MB more. A read past that fails with "out
     * of memory for query result". */
    struct rlimit old, limit;
    getrlimit(RLIMIT_DATA, &old);
    limit = old;
    limit.rlim_cur = 64 * 1024 * 1024;
    cr_assert_eq(setrlimit(RLIMIT_DATA, &limit), 0);
    pid_t pid = th_relay_start(&scope, config, "/dev/null", err);
    setrlimit(RLIMIT_DATA, &old);
    th_wait_position(&scope, scope.schema, 20040);
    th_relay_stop(&scope, pid);

    char **lines = NULL;
    size_t n = th_read_lines(err, &lines);
    for (size_t i = 0; i < n; i++)
        cr_expect_null(strstr(lines[i], "unavailable"), "the relay failed a read: %s", lines[i]);
    th_free_lines(lines, n);
}

Test(hostile, a_column_of_the_wrong_type_stops_the_relay)
{
    char config[TH_PATH_MAX];
    write_config(config, scope.conninfo_yaml, "");
    th_migrate(config);
    th_exec(scope.conn, "ALTER TABLE events ALTER COLUMN body TYPE text");
    /* Retried forever as an outage before: no retry changes a column's type. */
    char *out = NULL, *err = NULL;
    int code = th_run_cli(&out, &err, "run", "-c", config);
    cr_expect_eq(code, 4, "run exited %d: %s", code, err);
    cr_expect_not_null(strstr(err, "is text, expected json or jsonb"), "%s", err);
    free(out);
    free(err);
}

static bool has_pending_connection(void *arg)
{
    struct pollfd pfd = {.fd = *(int *)arg, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0;
}

Test(hostile, sigterm_is_honoured_while_connecting)
{
    /* A server that takes the connection and never answers: libpq waits for its reply, for
     * connect_timeout, retrying its poll() on EINTR. */
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    cr_assert_eq(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0);
    cr_assert_eq(listen(listener, 4), 0);
    cr_assert_eq(getsockname(listener, (struct sockaddr *)&addr, &len), 0);

    char config[TH_PATH_MAX], conninfo[256], out[TH_PATH_MAX], err[TH_PATH_MAX];
    snprintf(conninfo, sizeof conninfo,
             "\"host=127.0.0.1 port=%d dbname=x user=x connect_timeout=60\"", ntohs(addr.sin_port));
    write_config(config, conninfo, "");
    th_path(&scope, "connect.out", out);
    th_path(&scope, "connect.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_until(&scope, TH_DEADLINE_MS, has_pending_connection, &listener,
                  "the relay connecting");
    th_relay_stop_within(&scope, pid, 2000);
    close(listener);
}
