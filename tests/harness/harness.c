#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

extern char **environ;

#define TH_POLL_MS 20
#define TH_STDERR_TAIL 16384

static int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void th_pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *th_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        cr_assert_fail("out of memory");
    return p;
}

static char *th_vformat(const char *fmt, va_list ap)
{
    char *out = NULL;
    if (vasprintf(&out, fmt, ap) < 0)
        cr_assert_fail("out of memory");
    return out;
}

static char *th_format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *th_format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = th_vformat(fmt, ap);
    va_end(ap);
    return out;
}

const char *th_env(const char *name)
{
    const char *value = getenv(name);
    if (!value || !*value)
        cr_assert_fail("environment variable %s is not set", name);
    return value;
}

/* ---- conninfo ---------------------------------------------------------------------------- */

/* Writes value between quote characters, escaping the quote and backslash with a backslash: the
 * rule of both libpq conninfo values ('') and YAML double-quoted scalars (""). */
static void th_append_quoted(FILE *f, const char *value, char quote)
{
    fputc(quote, f);
    for (const char *p = value; *p; p++) {
        if (*p == quote || *p == '\\')
            fputc('\\', f);
        fputc(*p, f);
    }
    fputc(quote, f);
}

/*
 * Rewrites base (keyword form or URI) in keyword form, so that options and application_name can
 * be added whatever form the outer script chose. options_first goes before base's own options.
 */
static char *th_conninfo_for(const char *base, const char *options_first,
                             const char *application_name)
{
    char *parse_err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &parse_err);
    if (!opts) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", parse_err ? parse_err : "out of memory");
        PQfreemem(parse_err);
        cr_assert_fail("cannot parse conninfo \"%s\": %s", base, msg);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        cr_assert_fail("out of memory");
    const char *extra_options = "";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "options") == 0) {
            extra_options = o->val;
            continue;
        }
        if (strcmp(o->keyword, "application_name") == 0)
            continue;
        fprintf(f, "%s=", o->keyword);
        th_append_quoted(f, o->val, '\'');
        fputc(' ', f);
    }
    char *options = th_format("%s%s%s", options_first, *extra_options ? " " : "", extra_options);
    fputs("options=", f);
    th_append_quoted(f, options, '\'');
    fputs(" application_name=", f);
    th_append_quoted(f, application_name, '\'');
    fclose(f);
    free(options);
    PQconninfoFree(opts);
    return buf;
}

static PGconn *th_connect(const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn));
        PQfinish(conn);
        cr_assert_fail("cannot connect to \"%s\": %s", conninfo, msg);
    }
    return conn;
}

/* ---- scope ------------------------------------------------------------------------------- */

void th_scope_new(th_scope *s)
{
    th_scope_new_at(s, th_env("RELAY_TEST_CONNINFO"));
}

void th_scope_new_at(th_scope *s, const char *base_conninfo)
{
    static unsigned counter; /* a process may open several scopes */
    memset(s, 0, sizeof *s);
    uint32_t random = 0;
    if (getrandom(&random, sizeof random, 0) != sizeof random)
        random = (uint32_t)th_now_ms();
    snprintf(s->schema, sizeof s->schema, "t_%ld_%u_%08" PRIx32, (long)getpid(), counter++, random);

    char options[160];
    snprintf(options, sizeof options, "-c search_path=%s", s->schema);
    s->conninfo = th_conninfo_for(base_conninfo, options, s->schema);
    /* Quiet too: DROP SCHEMA ... CASCADE lists every table it drops, at NOTICE. In the conninfo,
     * not a SET, so that it survives a reconnection. */
    snprintf(options, sizeof options, "-c search_path=%s -c client_min_messages=warning",
             s->schema);
    char harness_name[80];
    snprintf(harness_name, sizeof harness_name, "%s_harness", s->schema);
    s->harness_conninfo = th_conninfo_for(base_conninfo, options, harness_name);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        cr_assert_fail("out of memory");
    th_append_quoted(f, s->conninfo, '"');
    fclose(f);
    s->conninfo_yaml = buf;

    snprintf(s->dir, sizeof s->dir, "/tmp/relay-it-XXXXXX");
    if (!mkdtemp(s->dir))
        cr_assert_fail("mkdtemp: %s", strerror(errno));

    s->conn = th_connect(s->harness_conninfo);
    char *sql = th_format("CREATE SCHEMA %s", s->schema);
    th_exec(s->conn, sql);
    free(sql);
}

static int th_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void th_scope_free(th_scope *s)
{
    for (size_t i = 0; i < s->n_relays; i++) {
        if (s->relays[i].pid > 0) {
            kill(s->relays[i].pid, SIGKILL);
            waitpid(s->relays[i].pid, NULL, 0);
            s->relays[i].pid = 0;
        }
    }
    s->n_relays = 0;
    for (size_t i = 0; i < s->n_conns; i++)
        PQfinish(s->conns[i]);
    s->n_conns = 0;
    if (s->conn) {
        /* The server may have been restarted under the test: one reconnect attempt. */
        if (PQstatus(s->conn) != CONNECTION_OK)
            PQreset(s->conn);
        if (PQstatus(s->conn) == CONNECTION_OK) {
            char *sql = th_format("DROP SCHEMA IF EXISTS %s CASCADE", s->schema);
            PQclear(PQexec(s->conn, sql));
            free(sql);
        }
        PQfinish(s->conn);
        s->conn = NULL;
    }
    if (s->dir[0]) {
        nftw(s->dir, th_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        s->dir[0] = '\0';
    }
    free(s->conninfo);
    free(s->conninfo_yaml);
    free(s->harness_conninfo);
    s->conninfo = s->conninfo_yaml = s->harness_conninfo = NULL;
}

PGconn *th_scope_connect(th_scope *s)
{
    if (s->n_conns == TH_MAX_CONNS)
        cr_assert_fail("more than %d extra connections in one test", TH_MAX_CONNS);
    PGconn *conn = th_connect(s->harness_conninfo);
    s->conns[s->n_conns++] = conn;
    return conn;
}

/* ---- files ------------------------------------------------------------------------------- */

void th_path(const th_scope *s, const char *name, char out[TH_PATH_MAX])
{
    if (snprintf(out, TH_PATH_MAX, "%s/%s", s->dir, name) >= TH_PATH_MAX)
        cr_assert_fail("path too long: %s/%s", s->dir, name);
}

static void th_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        cr_assert_fail("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0)
        cr_assert_fail("cannot write %s: %s", path, strerror(errno));
}

void th_write_file(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = th_vformat(fmt, ap);
    va_end(ap);
    th_write_text(path, text);
    free(text);
}

void th_write_config(th_scope *s, char path_out[TH_PATH_MAX], const char *fmt, ...)
{
    char name[32];
    snprintf(name, sizeof name, "config-%u.yaml", ++s->n_configs);
    th_path(s, name, path_out);
    va_list ap;
    va_start(ap, fmt);
    char *text = th_vformat(fmt, ap);
    va_end(ap);
    th_write_text(path_out, text);
    free(text);
}

void th_write_stdout_config(th_scope *s, char path_out[TH_PATH_MAX], const char *safety_margin,
                            int batch_size)
{
    th_write_config(s, path_out,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "  safety_margin: %s\n"
                    "  batch_size: %d\n"
                    "  poll_interval: 50ms\n"
                    "sink:\n"
                    "  plugin: stdout\n"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 1s\n",
                    s->schema, s->conninfo_yaml, safety_margin, batch_size);
}

char *th_read_file(const char *path, size_t *len_out)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        FILE *mem = open_memstream(&buf, &len);
        if (!mem)
            cr_assert_fail("out of memory");
        char chunk[8192];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            fwrite(chunk, 1, n, mem);
        fclose(mem);
        fclose(f);
    } else if (errno == ENOENT) {
        buf = th_xmalloc(1);
        buf[0] = '\0';
    } else {
        cr_assert_fail("cannot read %s: %s", path, strerror(errno));
    }
    if (len_out)
        *len_out = len;
    return buf;
}

bool th_file_contains(const char *path, const char *text)
{
    char *content = th_read_file(path, NULL);
    bool found = strstr(content, text) != NULL;
    free(content);
    return found;
}

size_t th_file_count(const char *path, const char *text)
{
    char *content = th_read_file(path, NULL);
    size_t n = 0;
    for (const char *at = content; (at = strstr(at, text)) != NULL; at += strlen(text))
        n++;
    free(content);
    return n;
}

typedef struct th_count_goal {
    const char *path, *text;
    size_t n;
} th_count_goal;

static bool th_count_reached(void *arg)
{
    const th_count_goal *g = arg;
    return th_file_count(g->path, g->text) >= g->n;
}

void th_wait_file_count(th_scope *s, const char *path, const char *text, size_t n)
{
    th_count_goal goal = {path, text, n};
    char what[512];
    snprintf(what, sizeof what, "%zu times '%.400s'", n, text);
    th_wait_until(s, TH_DEADLINE_MS, th_count_reached, &goal, what);
}

static char *th_read_stream(FILE *f)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem)
        cr_assert_fail("out of memory");
    rewind(f);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(mem);
    return buf;
}

size_t th_read_lines(const char *path, char ***lines)
{
    char *text = th_read_file(path, NULL);
    size_t n = 0, cap = 0;
    char **out = NULL;
    char *start = text;
    char *nl;
    /* Only complete lines: a writer may be in the middle of the last one. */
    while ((nl = strchr(start, '\n')) != NULL) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            out = realloc(out, cap * sizeof *out);
            if (!out)
                cr_assert_fail("out of memory");
        }
        out[n++] = strndup(start, (size_t)(nl - start));
        start = nl + 1;
    }
    free(text);
    *lines = out;
    return n;
}

void th_free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

typedef int (*th_line_id_parser)(const char *line, int64_t *id);

static int th_parse_stdout_id(const char *line, int64_t *id)
{
    char comma = 0;
    return sscanf(line, "{\"id\":%" SCNd64 "%c", id, &comma) == 2 && comma == ',';
}

static int th_parse_testsink_id(const char *line, int64_t *id)
{
    return sscanf(line, "%" SCNd64, id) == 1;
}

static size_t th_read_ids(const char *path, int64_t **ids, th_line_id_parser parse)
{
    char **lines;
    size_t n = th_read_lines(path, &lines);
    int64_t *out = n ? th_xmalloc(n * sizeof *out) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (!parse(lines[i], &out[i])) {
            char shown[256];
            snprintf(shown, sizeof shown, "%s", lines[i]);
            th_free_lines(lines, n);
            free(out);
            cr_assert_fail("%s, line %zu: no event id in \"%s\"", path, i + 1, shown);
        }
    }
    th_free_lines(lines, n);
    *ids = out;
    return n;
}

size_t th_read_stdout_ids(const char *path, int64_t **ids)
{
    return th_read_ids(path, ids, th_parse_stdout_id);
}

size_t th_read_testsink_ids(const char *path, int64_t **ids)
{
    return th_read_ids(path, ids, th_parse_testsink_id);
}

/* ---- processes --------------------------------------------------------------------------- */

static int th_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/* Waits for pid until deadline (monotonic ms); returns 1 with *status when it exited. */
static int th_wait_pid(pid_t pid, int64_t deadline, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR)
            cr_assert_fail("waitpid(%ld): %s", (long)pid, strerror(errno));
        if (th_now_ms() >= deadline)
            return 0;
        th_pause_ms(5);
    }
}

int th_run_program(const char *const argv[], char **out, char **err)
{
    FILE *out_file = tmpfile();
    FILE *err_file = tmpfile();
    if (!out_file || !err_file)
        cr_assert_fail("tmpfile: %s", strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, fileno(out_file), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fileno(err_file), STDERR_FILENO);
    /* See th_relay_start: the program may start a server that outlives it. */
    posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &actions, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        cr_assert_fail("cannot run %s: %s", argv[0], strerror(rc));

    int status = 0;
    if (!th_wait_pid(pid, th_now_ms() + TH_DEADLINE_MS, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        char *text = th_read_stream(err_file);
        fprintf(stderr, "---- stderr of %s ----\n%s\n----\n", argv[0], text);
        free(text);
        fclose(out_file);
        fclose(err_file);
        cr_assert_fail("%s %s did not finish within %d ms", argv[0], argv[1] ? argv[1] : "",
                       TH_DEADLINE_MS);
    }
    if (out)
        *out = th_read_stream(out_file);
    if (err)
        *err = th_read_stream(err_file);
    fclose(out_file);
    fclose(err_file);
    return th_status_code(status);
}

int th_run_cli_argv(char **out, char **err, const char *const args[])
{
    size_t n = 0;
    while (args[n])
        n++;
    const char **argv = th_xmalloc((n + 2) * sizeof *argv);
    argv[0] = th_env("RELAY_BIN");
    memcpy(argv + 1, args, (n + 1) * sizeof *argv);
    int code = th_run_program(argv, out, err);
    free(argv);
    return code;
}

pid_t th_relay_start(th_scope *s, const char *config, const char *stdout_path,
                     const char *stderr_path)
{
    return th_relay_start_at_level(s, config, stdout_path, stderr_path, "debug");
}

pid_t th_relay_start_at_level(th_scope *s, const char *config, const char *stdout_path,
                              const char *stderr_path, const char *level)
{
    if (s->n_relays == TH_MAX_RELAYS)
        cr_assert_fail("more than %d relays in one test", TH_MAX_RELAYS);
    const char *argv[] = {th_env("RELAY_BIN"), "run", "-c", config, "--log-level", level, NULL};
    if (!level)
        argv[4] = NULL;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    if (stdout_path)
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout_path,
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
    else
        posix_spawn_file_actions_addclose(&actions, STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    /* Nothing else of the test process: a test may run servers in-process (librdkafka's mock
     * cluster), and a relay holding copies of their sockets would keep connections alive that
     * the server closed. */
    posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &actions, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        cr_assert_fail("cannot run %s: %s", argv[0], strerror(rc));
    th_relay_record *r = &s->relays[s->n_relays++];
    r->pid = pid;
    snprintf(r->stderr_path, sizeof r->stderr_path, "%s", stderr_path);
    return pid;
}

void th_relay_signal(pid_t pid, int sig)
{
    if (kill(pid, sig) != 0)
        cr_assert_fail("kill(%ld, %d): %s", (long)pid, sig, strerror(errno));
}

static void th_dump_relay_stderr(const th_scope *s)
{
    for (size_t i = 0; i < s->n_relays; i++) {
        size_t len;
        char *text = th_read_file(s->relays[i].stderr_path, &len);
        const char *tail = len > TH_STDERR_TAIL ? text + len - TH_STDERR_TAIL : text;
        fprintf(stderr, "---- %s%s ----\n%s\n----\n", s->relays[i].stderr_path,
                tail == text ? "" : " (tail)", tail);
        free(text);
    }
}

static th_relay_record *th_find_relay(th_scope *s, pid_t pid)
{
    for (size_t i = 0; i < s->n_relays; i++) {
        if (s->relays[i].pid == pid)
            return &s->relays[i];
    }
    return NULL;
}

int th_relay_wait(th_scope *s, pid_t pid, int deadline_ms)
{
    th_relay_record *r = th_find_relay(s, pid);
    if (!r)
        cr_assert_fail("relay %ld is not running in this scope", (long)pid);
    int status = 0;
    if (!th_wait_pid(pid, th_now_ms() + deadline_ms, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        r->pid = 0;
        th_dump_relay_stderr(s);
        cr_assert_fail("relay %ld did not exit within %d ms (killed)", (long)pid, deadline_ms);
    }
    r->pid = 0;
    return th_status_code(status);
}

/* A relay that died while a test waits for it to do something makes the wait pointless: say so
 * at once, with its stderr, instead of after the deadline. */
static void th_check_relays_alive(th_scope *s, const char *what)
{
    for (size_t i = 0; i < s->n_relays; i++) {
        int status;
        if (s->relays[i].pid > 0 &&
            waitpid(s->relays[i].pid, &status, WNOHANG) == s->relays[i].pid) {
            long pid = (long)s->relays[i].pid;
            s->relays[i].pid = 0;
            th_dump_relay_stderr(s);
            cr_assert_fail("relay %ld exited (code %d) while waiting for %s", pid,
                           th_status_code(status), what);
        }
    }
}

void th_wait_until(th_scope *s, int deadline_ms, th_predicate predicate, void *arg,
                   const char *what)
{
    int64_t deadline = th_now_ms() + deadline_ms;
    for (;;) {
        if (predicate(arg))
            return;
        th_check_relays_alive(s, what);
        if (th_now_ms() >= deadline) {
            th_dump_relay_stderr(s);
            cr_assert_fail("timed out after %d ms waiting for %s", deadline_ms, what);
        }
        th_pause_ms(TH_POLL_MS);
    }
}

void th_hold_for(th_scope *s, int duration_ms, th_predicate predicate, void *arg, const char *what)
{
    int64_t start = th_now_ms();
    for (;;) {
        if (!predicate(arg)) {
            th_dump_relay_stderr(s);
            cr_assert_fail("%s stopped holding after %" PRId64 " ms (expected %d ms)", what,
                           th_now_ms() - start, duration_ms);
        }
        if (th_now_ms() - start >= duration_ms)
            return;
        th_pause_ms(TH_POLL_MS);
    }
}

/* ---- SQL --------------------------------------------------------------------------------- */

void th_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn));
        PQclear(res);
        cr_assert_fail("SQL failed: %s\n%s", sql, msg);
    }
    PQclear(res);
}

/* One row, one column, or the test fails. Caller PQclear()s. */
static PGresult *th_query_one(PGconn *conn, const char *sql, int n_params,
                              const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n_params, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn));
        PQclear(res);
        cr_assert_fail("SQL failed: %s\n%s", sql, msg);
    }
    if (PQntuples(res) != 1 || PQnfields(res) != 1) {
        int rows = PQntuples(res);
        PQclear(res);
        cr_assert_fail("SQL returned %d rows, expected one value: %s", rows, sql);
    }
    return res;
}

static int64_t th_result_int64(PGresult *res)
{
    int64_t value = PQgetisnull(res, 0, 0) ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return value;
}

int64_t th_query_int64(PGconn *conn, const char *sql)
{
    return th_result_int64(th_query_one(conn, sql, 0, NULL));
}

char *th_query_text(PGconn *conn, const char *sql)
{
    PGresult *res = th_query_one(conn, sql, 0, NULL);
    char *value = PQgetisnull(res, 0, 0) ? NULL : strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return value;
}

int64_t th_position(th_scope *s, const char *name)
{
    const char *params[] = {name};
    return th_result_int64(th_query_one(
        s->conn, "SELECT coalesce((SELECT position FROM relay_checkpoints WHERE name = $1), 0)", 1,
        params));
}

bool th_checkpoint_exists(th_scope *s, const char *name)
{
    const char *params[] = {name};
    return th_result_int64(th_query_one(
               s->conn, "SELECT count(*) FROM relay_checkpoints WHERE name = $1", 1, params)) > 0;
}

typedef struct th_position_goal {
    th_scope *scope;
    const char *name;
    int64_t want;
} th_position_goal;

static bool th_position_reached(void *arg)
{
    th_position_goal *goal = arg;
    return th_position(goal->scope, goal->name) >= goal->want;
}

void th_wait_position(th_scope *s, const char *name, int64_t want)
{
    th_position_goal goal = {s, name, want};
    char what[128];
    snprintf(what, sizeof what, "position of %s to reach %" PRId64, name, want);
    th_wait_until(s, TH_DEADLINE_MS, th_position_reached, &goal, what);
}

typedef struct th_query_goal {
    th_scope *s;
    const char *sql;
    int64_t want;
} th_query_goal;

static bool th_query_is(void *arg)
{
    const th_query_goal *g = arg;
    return th_query_int64(g->s->conn, g->sql) == g->want;
}

void th_wait_query_int64(th_scope *s, const char *sql, int64_t want)
{
    th_query_goal goal = {s, sql, want};
    char what[1200];
    snprintf(what, sizeof what, "%.1000s to be %" PRId64, sql, want);
    th_wait_until(s, TH_DEADLINE_MS, th_query_is, &goal, what);
}

void th_hold_query_int64(th_scope *s, const char *sql, int64_t want, int ms)
{
    th_query_goal goal = {s, sql, want};
    char what[1200];
    snprintf(what, sizeof what, "%.1000s staying %" PRId64, sql, want);
    th_hold_for(s, ms, th_query_is, &goal, what);
}

static bool th_relay_sessions_gone(void *arg)
{
    th_scope *s = arg;
    const char *params[] = {s->schema};
    return th_result_int64(th_query_one(
               s->conn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", 1,
               params)) == 0;
}

void th_wait_relay_sessions_gone(th_scope *s)
{
    th_wait_until(s, TH_DEADLINE_MS, th_relay_sessions_gone, s,
                  "the relay's database sessions to end");
}

void th_insert_events(PGconn *conn, int n, const char *created_at)
{
    char *sql = th_format(
        "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body, "
        "metadata, created_at) "
        "SELECT 'agg-' || (b.base + g) %% 7, 'order', b.base + g, "
        "(ARRAY['created', 'updated', 'shipped'])[(b.base + g) %% 3 + 1], "
        "jsonb_build_object('n', b.base + g, 'label', 'item ' || (b.base + g)), "
        "CASE WHEN (b.base + g) %% 5 = 0 THEN NULL "
        "ELSE jsonb_build_object('trace', 't-' || (b.base + g)) END, "
        "%s "
        "FROM (SELECT coalesce(max(aggregate_version), 0) AS base FROM events "
        "      WHERE aggregate_id LIKE 'agg-%%') b, "
        "generate_series(1, %d) g ORDER BY g",
        created_at, n);
    th_exec(conn, sql);
    free(sql);
}

void th_relay_stop(th_scope *s, pid_t pid)
{
    th_relay_signal(pid, SIGTERM);
    int code = th_relay_wait(s, pid, TH_DEADLINE_MS);
    cr_assert_eq(code, 0, "relay exited %d after SIGTERM", code);
}

void th_relay_stop_within(th_scope *s, pid_t pid, int within_ms)
{
    int64_t start = th_now_ms();
    th_relay_signal(pid, SIGTERM);
    int code = th_relay_wait(s, pid, 5 * within_ms);
    int64_t ms = th_now_ms() - start;
    cr_expect_eq(code, 0, "the relay exited %d on SIGTERM", code);
    cr_expect_leq(ms, within_ms, "the relay took %" PRId64 " ms to stop", ms);
}

void th_migrate(const char *config)
{
    char *out, *err;
    int code = th_run_cli(&out, &err, "migrate", "-c", config);
    cr_assert_eq(code, 0, "migrate exited %d: %s", code, err);
    free(out);
    free(err);
}

int th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                  getsockname(fd, (struct sockaddr *)&a, &len) == 0,
              "no free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

int th_notify_socket(th_scope *s, char path[TH_PATH_MAX])
{
    th_path(s, "notify.sock", path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    cr_assert_lt(strlen(path), sizeof addr.sun_path, "socket path too long");
    memcpy(addr.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0, "bind %s", path);
    return fd;
}
