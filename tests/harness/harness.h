/*
 * Integration test harness: drives the real outbox-relay binary against a real PostgreSQL.
 *
 * Every failure here is a test failure (cr_assert_fail), so tests read as a plain list of steps.
 * Each test works inside a th_scope: a schema and a temporary directory of its own, so tests can
 * run in parallel (Criterion runs each test in its own process) against one shared server.
 *
 * Tests never sleep and hope: they wait for a condition with a deadline (th_wait_until), or watch
 * that a condition keeps holding for a stated time (th_hold_for).
 */
#ifndef TH_HARNESS_H
#define TH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>

/* Generous, because CI machines are slow and ASan is slower. */
#define TH_DEADLINE_MS 20000

#define TH_PATH_MAX 512
#define TH_MAX_RELAYS 8
#define TH_MAX_CONNS 8

typedef struct th_relay_record {
    pid_t pid; /* 0 once reaped */
    char stderr_path[TH_PATH_MAX];
} th_relay_record;

typedef struct th_scope {
    char schema[64];
    /* The base conninfo with this scope's search_path (and an application_name naming the
     * schema, to find the relay's sessions in pg_stat_activity). Owned. */
    char *conninfo;
    /* The same, as a double-quoted YAML scalar, ready to paste after "conninfo: ". Owned. */
    char *conninfo_yaml;
    char *harness_conninfo; /* the same with another application_name, for the test's sessions */
    char dir[TH_PATH_MAX];  /* private directory for configs and outputs */
    PGconn *conn;           /* a session in the scope's schema; owned */
    /* Released by th_scope_free even when a test fails half-way. */
    th_relay_record relays[TH_MAX_RELAYS];
    size_t n_relays;
    PGconn *conns[TH_MAX_CONNS];
    size_t n_conns;
    unsigned n_configs;
} th_scope;

/* getenv(name), or fails the test naming the missing variable. */
const char *th_env(const char *name);

/* Creates a scope on the server named by RELAY_TEST_CONNINFO. */
void th_scope_new(th_scope *s);
/* Same, on the server named by base_conninfo. */
void th_scope_new_at(th_scope *s, const char *base_conninfo);
/* Kills relays still running, closes connections, drops the schema, removes the directory.
 * Safe on a zeroed scope and when called twice. */
void th_scope_free(th_scope *s);

/* Another session in the scope's schema, owned by the scope (closed by th_scope_free). */
PGconn *th_scope_connect(th_scope *s);

/* out = scope directory + "/" + name. */
void th_path(const th_scope *s, const char *name, char out[TH_PATH_MAX]);

/* Writes a file from a format. */
void th_write_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes the formatted YAML to a new file in the scope directory; its path goes to path_out. */
void th_write_config(th_scope *s, char path_out[TH_PATH_MAX], const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The usual config, named after the scope's schema (relays lock their name database-wide, so
 * parallel tests need names of their own): the scope's database, the stdout sink, the given safety
 * margin (YAML duration text, e.g. "1s") and batch size; short poll and retry intervals so tests
 * move. */
void th_write_stdout_config(th_scope *s, char path_out[TH_PATH_MAX], const char *safety_margin,
                            int batch_size);

/* The whole content of a file, NUL-terminated; *len_out (may be NULL) gets its length. A missing
 * file reads as empty. Caller frees. */
char *th_read_file(const char *path, size_t *len_out);

/*
 * Runs argv (argv[0] is the program; NULL-terminated) to completion, at most TH_DEADLINE_MS
 * (killed and the test failed past that). Returns the exit code, or 128 + signal number. *out
 * and *err (each may be NULL) get stdout and stderr, caller frees.
 */
int th_run_program(const char *const argv[], char **out, char **err);

/* th_run_program with RELAY_BIN as the program: th_run_cli(&out, &err, "check", "-c", cfg). */
#define th_run_cli(out, err, ...)                                                                  \
    th_run_cli_argv((out), (err), (const char *const[]){__VA_ARGS__, NULL})
int th_run_cli_argv(char **out, char **err, const char *const args[]);

/* Starts `outbox-relay run -c config --log-level debug` with stdout and stderr going to the given
 * files (stdout_path NULL: descriptor 1 closed). The scope remembers it: a timeout prints its
 * stderr, th_scope_free kills it. */
pid_t th_relay_start(th_scope *s, const char *config, const char *stdout_path,
                     const char *stderr_path);
/* The same at a log level of the config's choosing (level NULL: no --log-level), or level's. */
pid_t th_relay_start_at_level(th_scope *s, const char *config, const char *stdout_path,
                              const char *stderr_path, const char *level);
void th_relay_signal(pid_t pid, int sig);
/* Waits for the relay to exit; returns its exit code, or 128 + signal number. Past deadline_ms
 * the relay is killed with SIGKILL and the test fails. */
int th_relay_wait(th_scope *s, pid_t pid, int deadline_ms);

/* SIGTERM, then asserts the relay exits 0 (it finished and committed the batch in hand). */
void th_relay_stop(th_scope *s, pid_t pid);
/* SIGTERM, then expects exit code 0 within within_ms (past 5 times that, the relay is killed and
 * the test fails): a stop that is honoured whatever the relay waits on. */
void th_relay_stop_within(th_scope *s, pid_t pid, int within_ms);

/* Runs `outbox-relay migrate -c config` and asserts it exits 0. */
void th_migrate(const char *config);

/* Polls predicate(arg) every ~20 ms until it returns true. Past deadline_ms the test fails with
 * "timed out waiting for WHAT", after printing the stderr of the scope's relays. */
typedef bool (*th_predicate)(void *arg);
void th_wait_until(th_scope *s, int deadline_ms, th_predicate predicate, void *arg,
                   const char *what);
/* The opposite check: predicate(arg) must stay true, checked every ~20 ms, for duration_ms. */
void th_hold_for(th_scope *s, int duration_ms, th_predicate predicate, void *arg, const char *what);

/* Runs SQL (one or more statements), failing the test on error. */
void th_exec(PGconn *conn, const char *sql);
/* Runs a query returning one bigint-compatible value (NULL reads as 0). */
int64_t th_query_int64(PGconn *conn, const char *sql);
/* Runs a query returning one text value; caller frees. NULL reads as NULL. */
char *th_query_text(PGconn *conn, const char *sql);

/* relay_checkpoints.position for name, 0 when there is no row. */
int64_t th_position(th_scope *s, const char *name);
/* Whether relay_checkpoints has a row for name. */
bool th_checkpoint_exists(th_scope *s, const char *name);
/* Waits until the position for name reaches want (TH_DEADLINE_MS). */
void th_wait_position(th_scope *s, const char *name, int64_t want);
/* Waits until the one value of sql, run on the scope's session, is want. */
void th_wait_query_int64(th_scope *s, const char *sql, int64_t want);
/* Watches that the one value of sql stays want for ms. */
void th_hold_query_int64(th_scope *s, const char *sql, int64_t want, int ms);
/* Waits until no session of the scope's application_name is left: a killed relay's backend may
 * still be finishing its last statement. */
void th_wait_relay_sessions_gone(th_scope *s);

/*
 * Inserts n events in one statement, created at the SQL expression created_at (e.g.
 * "now() - interval '1 hour'"). Deterministic content derived from the aggregate version, which
 * continues after the highest one of earlier calls: key "agg-(v % 7)", type created/updated/shipped
 * by turn, body {"n": v, "label": "item v"}, metadata {"trace": "t-v"} or NULL every fifth.
 */
void th_insert_events(PGconn *conn, int n, const char *created_at);

/* The ids of the complete lines of a stdout-sink output file ({"id":N,...), in file order.
 * Returns the count; *ids is malloc'ed (caller frees; NULL when the count is 0). */
size_t th_read_stdout_ids(const char *path, int64_t **ids);

/* Whether the file (missing: empty) contains text. */
bool th_file_contains(const char *path, const char *text);
/* How many times text occurs in the file at path (occurrences do not overlap). */
size_t th_file_count(const char *path, const char *text);
/* Waits until text occurs at least n times in the file at path. */
void th_wait_file_count(th_scope *s, const char *path, const char *text, size_t n);

/* The complete lines of a file, without their newlines. Returns the count; free with
 * th_free_lines. */
size_t th_read_lines(const char *path, char ***lines);
void th_free_lines(char **lines, size_t n);

/* systemd's side of sd_notify: a datagram socket bound at the scope's "notify.sock", whose path
 * goes into path (for NOTIFY_SOCKET). Returns its descriptor; the caller closes it. */
int th_notify_socket(th_scope *s, char path[TH_PATH_MAX]);

/* A loopback TCP port nothing listens on now (the kernel's pick for a socket bound to port 0,
 * closed again), for a relay's http.listen. */
int th_free_port(void);

/* The ids of a testsink out file, whose lines are "ID KEY TYPE". Same contract as above. */
size_t th_read_testsink_ids(const char *path, int64_t **ids);

#endif
