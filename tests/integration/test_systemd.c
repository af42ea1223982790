/*
 * The relay under systemd: the unit as systemd-analyze reads it (it loads, its sandbox's exposure,
 * what runs at start), secrets handed over as credentials ($CREDENTIALS_DIRECTORY), and the log's
 * priorities when stderr is the journal (JOURNAL_STREAM). systemd itself is not needed: the
 * variables it sets are set here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../harness/harness.h"

#define SECRET "Credential-Secret-4711"
#define MAX_EXPOSURE 2.0

static th_scope scope;

static void setup(void)
{
    th_scope_new(&scope);
}

static void teardown(void)
{
    th_scope_free(&scope);
}

TestSuite(systemd, .timeout = 120);

static void unit_path(char out[TH_PATH_MAX])
{
    snprintf(out, TH_PATH_MAX, "%s/systemd/outbox-relay@.service", th_env("RELAY_SOURCE_DIR"));
}

/* Skips the test, saying so, where systemd-analyze is not installed (scripts/deps installs it
 * with the systemd package). */
static void need_systemd_analyze(void)
{
    const char *path = getenv("PATH");
    char candidate[TH_PATH_MAX];
    for (const char *p = path ? path : ""; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(candidate, sizeof candidate, "%.*s/systemd-analyze", (int)n, p);
        if (access(candidate, X_OK) == 0)
            return;
        p += n + (p[n] == ':');
    }
    cr_skip_test("systemd-analyze is not installed (apt-get install systemd): the unit is not "
                 "checked");
}

Test(systemd, the_unit_verifies)
{
    need_systemd_analyze();
    /* verify checks that ExecStart's program exists: a copy names the built binary instead. */
    char unit[TH_PATH_MAX], dir[] = "/tmp/relay-unit-XXXXXX", copy[TH_PATH_MAX];
    unit_path(unit);
    cr_assert_not_null(mkdtemp(dir));
    snprintf(copy, sizeof copy, "%s/outbox-relay@.service", dir);
    char *text = th_read_file(unit, NULL);
    const char *installed = "/usr/bin/outbox-relay";
    cr_assert_not_null(strstr(text, installed), "the unit does not run %s", installed);
    FILE *f = fopen(copy, "w");
    cr_assert_not_null(f);
    const char *p = text;
    for (const char *at; (at = strstr(p, installed)); p = at + strlen(installed))
        fprintf(f, "%.*s%s", (int)(at - p), p, th_env("RELAY_BIN"));
    fputs(p, f);
    fclose(f);

    char *out = NULL, *err = NULL;
    const char *argv[] = {"systemd-analyze", "verify", copy, NULL};
    int code = th_run_program(argv, &out, &err);
    unlink(copy);
    rmdir(dir);
    /* An unknown or misspelt key is only a warning: nothing may be said at all. */
    cr_expect_eq(code, 0, "systemd-analyze verify exited %d: %s%s", code, out, err);
    cr_expect_str_empty(err, "systemd-analyze verify warned: %s", err);
    free(out);
    free(err);
    free(text);
}

Test(systemd, the_units_exposure_is_low)
{
    need_systemd_analyze();
    char unit[TH_PATH_MAX];
    unit_path(unit);
    char *out = NULL, *err = NULL;
    const char *argv[] = {"systemd-analyze", "security", "--offline=yes", "--no-pager", unit, NULL};
    int code = th_run_program(argv, &out, &err);
    cr_assert_eq(code, 0, "systemd-analyze security exited %d: %s", code, err);
    const char *line = strstr(out, "Overall exposure level for ");
    cr_assert_not_null(line, "no overall exposure in: %s", out);
    const char *colon = strstr(line, ": ");
    double exposure = -1;
    cr_assert(colon && sscanf(colon + 2, "%lf", &exposure) == 1, "cannot read: %.80s", line);
    cr_expect_leq(exposure, MAX_EXPOSURE, "exposure %.1f: %s", exposure, out);
    free(out);
    free(err);
}

Test(systemd, the_start_runs_no_backlog_count)
{
    /* check counts the whole backlog: on a large one it outlasts the start timeout, and the unit
     * is restarted in a loop. */
    char unit[TH_PATH_MAX];
    unit_path(unit);
    char *text = th_read_file(unit, NULL);
    for (char *line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        bool runs = strncmp(line, "ExecStartPre=", 13) == 0 || strncmp(line, "ExecStart=", 10) == 0;
        size_t len = strcspn(line, "\n");
        cr_expect(!runs || !memmem(line, len, " check", 6), "the start runs check: %.*s", (int)len,
                  line);
    }
    free(text);
}

/* ---- credentials ---- */

/* A directory as systemd makes $CREDENTIALS_DIRECTORY, in the scope, set in the environment;
 * each credential a root-owned file of the given mode. */
static void make_credentials(char dir[TH_PATH_MAX])
{
    th_path(&scope, "credentials", dir);
    cr_assert_eq(mkdir(dir, 0700), 0, "mkdir %s: %s", dir, strerror(errno));
    cr_assert_eq(setenv("CREDENTIALS_DIRECTORY", dir, 1), 0);
}

static void add_credential(const char *dir, const char *id, mode_t mode, const char *text)
{
    char path[TH_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, id);
    th_write_file(path, "%s", text);
    cr_assert_eq(chmod(path, mode), 0);
    /* root-owned as the relay finds them (the tests run as root; as another user, its own) */
    if (geteuid() == 0)
        cr_assert_eq(chown(path, 0, 0), 0);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads n bytes from fd by deadline; false on end of file or timeout. */
static bool read_within(int fd, void *buf, size_t n, int64_t deadline)
{
    for (size_t got = 0; got < n;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return false;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Plays a PostgreSQL server that asks for a cleartext password, for one connection on listener:
 * what the client sends as password goes to password; the test fails when none comes by the
 * deadline. The real test server trusts every connection, so it cannot tell whether a password
 * came at all.
 */
static void capture_password(int listener, char *password, size_t size)
{
    password[0] = '\0';
    int64_t deadline = now_ms() + TH_DEADLINE_MS;
    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    cr_assert_gt(poll(&pfd, 1, TH_DEADLINE_MS), 0, "the relay did not connect");
    int conn = accept(listener, NULL, NULL);
    cr_assert_geq(conn, 0);
    unsigned char head[8], body[1024];
    cr_assert(read_within(conn, head, 4, deadline), "no startup packet");
    uint32_t len = be32(head);
    cr_assert(len >= 8 && len - 4 <= sizeof body, "startup packet of %" PRIu32 " bytes", len);
    cr_assert(read_within(conn, body, len - 4, deadline));
    cr_assert_eq(be32(body), 196608u, "not a protocol 3.0 startup (sslmode=disable is set)");

    static const unsigned char cleartext[] = {'R', 0, 0, 0, 8, 0, 0, 0, 3};
    cr_assert_eq(write(conn, cleartext, sizeof cleartext), (ssize_t)sizeof cleartext);
    cr_assert(read_within(conn, head, 5, deadline), "no answer to the password request");
    cr_assert_eq(head[0], 'p', "answered '%c', not a password message", head[0]);
    len = be32(head + 1);
    cr_assert(len > 4 && len - 4 <= sizeof body && len - 4 <= size);
    cr_assert(read_within(conn, body, len - 4, deadline));
    memcpy(password, body, len - 4);
    password[len - 5] = '\0';

    static const char refusal[] = "SFATAL\0C28P01\0Mpassword authentication failed\0";
    unsigned char reply[64] = {'E'};
    uint32_t n = 4 + sizeof refusal; /* sizeof counts the terminating NUL of the field list */
    reply[1] = (unsigned char)(n >> 24), reply[2] = (unsigned char)(n >> 16);
    reply[3] = (unsigned char)(n >> 8), reply[4] = (unsigned char)n;
    memcpy(reply + 5, refusal, sizeof refusal);
    cr_assert_eq(write(conn, reply, 1 + n), (ssize_t)(1 + n));
    close(conn);
}

Test(systemd, a_root_only_credential_is_the_password_sent, .init = setup, .fini = teardown)
{
    char credentials[TH_PATH_MAX];
    make_credentials(credentials);
    add_credential(credentials, "password", 0600, SECRET "\n");

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int port = 5999;
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/.s.PGSQL.%d", scope.dir, port);
    cr_assert_lt((size_t)n, sizeof addr.sun_path, "a socket path too long: %s", scope.dir);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0, "%s", strerror(errno));
    cr_assert_eq(listen(listener, 4), 0);

    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_config(&scope, config,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: \"host=%s port=%d dbname=x user=x sslmode=disable "
                    "gssencmode=disable\"\n"
                    "  password_file: ${CREDENTIALS_DIRECTORY}/password\n"
                    "sink:\n"
                    "  plugin: stdout\n",
                    scope.schema, scope.dir, port);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    pid_t pid = th_relay_start(&scope, config, out, err);
    char password[256];
    capture_password(listener, password, sizeof password);
    cr_expect_str_eq(password, SECRET);
    th_relay_stop(&scope, pid);
    close(listener);
    char *logged = th_read_file(err, NULL);
    cr_expect_null(strstr(logged, SECRET), "the relay logged the password: %s", logged);
    free(logged);
}

Test(systemd, a_config_given_as_a_credential_runs, .init = setup, .fini = teardown)
{
    /* LoadCredential=relay.yaml:/etc/outbox-relay/%i.yaml, password_file beside it: systemd gives
     * the files mode 0400, or 0440 where an ACL grants the unit's user read access (stat shows
     * the ACL's mask as the group's bits), which is no reason for a warning. */
    char credentials[TH_PATH_MAX], config[TH_PATH_MAX];
    make_credentials(credentials);
    add_credential(credentials, "password", 0440, "unused by a server that trusts\n");
    /* migrated through a config of its own: the relative password_file is the credential's */
    th_write_config(&scope, config, "name: %s\ndatabase:\n  conninfo: %s\nsink: {plugin: stdout}\n",
                    scope.schema, scope.conninfo_yaml);
    th_migrate(config);
    char *yaml = NULL;
    cr_assert_geq(asprintf(&yaml,
                           "name: %s\n"
                           "database:\n"
                           "  conninfo: %s\n"
                           "  password_file: password\n"
                           "sink:\n"
                           "  plugin: stdout\n",
                           scope.schema, scope.conninfo_yaml),
                  0);
    add_credential(credentials, "relay.yaml", 0400, yaml);
    free(yaml);

    char given[TH_PATH_MAX + 16], *out = NULL, *err = NULL;
    snprintf(given, sizeof given, "%s/relay.yaml", credentials);
    int code = th_run_cli(&out, &err, "check", "-c", given);
    cr_expect_eq(code, 0, "check exited %d: %s", code, err);
    cr_expect_not_null(strstr(out, given), "check did not read %s: %s", given, out);
    cr_expect_null(strstr(err, "can be read by"), "a warning about a credential: %s", err);
    free(out);
    free(err);

    /* The same file outside the credentials is the warning it always was. */
    unsetenv("CREDENTIALS_DIRECTORY");
    code = th_run_cli(&out, &err, "check", "-c", given);
    cr_expect_eq(code, 0, "check exited %d: %s", code, err);
    cr_expect_not_null(strstr(err, "database.password_file"), "no warning: %s", err);
    free(out);
    free(err);
}

/* ---- the journal ---- */

static bool has_started(void *err_path)
{
    return th_file_contains(err_path, "' started");
}

Test(systemd, records_to_the_journal_carry_their_priority, .init = setup, .fini = teardown)
{
    char config[TH_PATH_MAX], out[TH_PATH_MAX], err[TH_PATH_MAX];
    th_write_stdout_config(&scope, config, "0s", 100);
    th_migrate(config);
    th_path(&scope, "relay.out", out);
    th_path(&scope, "relay.err", err);
    /* The relay's stderr is opened with O_TRUNC on this file: the same inode. */
    th_write_file(err, "%s", "");
    struct stat st;
    cr_assert_eq(stat(err, &st), 0);
    char stream[64];
    snprintf(stream, sizeof stream, "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
    cr_assert_eq(setenv("JOURNAL_STREAM", stream, 1), 0);
    pid_t pid = th_relay_start(&scope, config, out, err);
    th_wait_until(&scope, TH_DEADLINE_MS, has_started, err, "the relay starting");
    th_relay_stop(&scope, pid);

    char **lines = NULL;
    size_t n = th_read_lines(err, &lines);
    cr_assert_gt(n, 0);
    bool started = false;
    for (size_t i = 0; i < n; i++) {
        cr_expect(lines[i][0] == '<' && strchr("3467", lines[i][1]) && lines[i][2] == '>',
                  "no priority: %s", lines[i]);
        started |= strncmp(lines[i], "<6>", 3) == 0 && strstr(lines[i], "started");
    }
    cr_expect(started, "no '<6>... started' line");
    th_free_lines(lines, n);
}
