#include "scene.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

static th_scope *sc_scope;

void sc_begin(th_scope *scope)
{
    sc_scope = scope;
}

/* A stdout-sink config for this scope; source_yaml is the body of the source: section. */
void sc_write_config_as(char path[TH_PATH_MAX], const char *name, const char *conninfo_yaml,
                        const char *source_yaml, const char *extra)
{
    th_write_config(sc_scope, path,
                    "name: %s\n"
                    "database:\n"
                    "  conninfo: %s\n"
                    "source:\n"
                    "%s"
                    "sink:\n"
                    "  plugin: stdout\n"
                    "retry:\n"
                    "  initial: 50ms\n"
                    "  max: 1s\n"
                    "%s",
                    name, conninfo_yaml ? conninfo_yaml : sc_scope->conninfo_yaml, source_yaml,
                    extra);
}

void sc_write_config(char path[TH_PATH_MAX], const char *source_yaml)
{
    sc_write_config_as(path, sc_scope->schema, NULL, source_yaml, "");
}

/* The relay named in a log, with its output files. */

sc_relay_files sc_files_named(const char *stem)
{
    sc_relay_files f;
    char name[64];
    snprintf(name, sizeof name, "%s.out", stem);
    th_path(sc_scope, name, f.out);
    snprintf(name, sizeof name, "%s.err", stem);
    th_path(sc_scope, name, f.err);
    return f;
}

bool sc_log_says_reading(void *arg)
{
    const sc_relay_files *f = arg;
    return th_file_contains(f->err, "reading ");
}

/* Starts a relay and waits until it has loaded its checkpoint and gaps and listens. */
pid_t sc_start_relay(const char *config, sc_relay_files *f)
{
    pid_t pid = th_relay_start(sc_scope, config, f->out, f->err);
    th_wait_until(sc_scope, TH_DEADLINE_MS, sc_log_says_reading, f, "the relay to start reading");
    return pid;
}

/* How many lines of the output carry id. */
size_t sc_times_delivered(const char *out, int64_t id)
{
    int64_t *ids;
    size_t n = th_read_stdout_ids(out, &ids);
    size_t times = 0;
    for (size_t i = 0; i < n; i++)
        times += ids[i] == id;
    free(ids);
    return times;
}

/* The output line of id (caller frees), or NULL. */
char *sc_line_of(const char *out, int64_t id)
{
    char **lines;
    size_t n = th_read_lines(out, &lines);
    char *found = NULL;
    for (size_t i = 0; i < n && !found; i++) {
        int64_t line_id;
        if (sscanf(lines[i], "{\"id\":%" SCNd64 ",", &line_id) == 1 && line_id == id)
            found = strdup(lines[i]);
    }
    th_free_lines(lines, n);
    return found;
}

bool sc_is_late(const char *line)
{
    const char *suffix = ",\"late\":true}";
    size_t len = strlen(line), suffix_len = strlen(suffix);
    return len >= suffix_len && strcmp(line + len - suffix_len, suffix) == 0;
}

bool sc_id_delivered(void *arg)
{
    const sc_id_goal *goal = arg;
    return sc_times_delivered(goal->out, goal->id) > 0;
}

bool sc_id_absent(void *arg)
{
    return !sc_id_delivered(arg);
}

void sc_wait_delivered(const char *out, int64_t id)
{
    sc_id_goal goal = {out, id};
    char what[64];
    snprintf(what, sizeof what, "id %" PRId64 " in the output", id);
    th_wait_until(sc_scope, TH_DEADLINE_MS, sc_id_delivered, &goal, what);
}

/* Inserts one event on conn and returns its id. */
int64_t sc_insert_one(PGconn *conn)
{
    return th_query_int64(conn, SC_INSERT_ONE);
}

int64_t sc_stored_gaps(void)
{
    return th_query_int64(sc_scope->conn, "SELECT count(*) FROM relay_gaps");
}

bool sc_no_stored_gaps(void *arg)
{
    (void)arg;
    return sc_stored_gaps() == 0;
}

/* One number of `status --json`. */
int64_t sc_status_field(const char *config, const char *field)
{
    char *out, *err;
    int code = th_run_cli(&out, &err, "status", "-c", config, "--json");
    cr_assert_eq(code, 0, "status exited %d: %s", code, err);
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", field);
    const char *at = strstr(out, key);
    cr_assert_not_null(at, "status --json has no %s: %s", field, out);
    int64_t value = strtoll(at + strlen(key), NULL, 10);
    free(out);
    free(err);
    return value;
}

/* The sum of N over the log's "forgot N missing id(s)" lines. */
int64_t sc_ids_forgotten(const char *err_path)
{
    char **lines;
    size_t n = th_read_lines(err_path, &lines);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        const char *at = strstr(lines[i], "forgot ");
        int64_t count;
        if (at && sscanf(at, "forgot %" SCNd64 " missing id", &count) == 1)
            sum += count;
    }
    th_free_lines(lines, n);
    return sum;
}

bool sc_forgot_all(void *arg)
{
    const sc_forgotten_goal *goal = arg;
    return sc_ids_forgotten(goal->err) >= goal->ids && sc_stored_gaps() == 0;
}

typedef struct sc_position_goal {
    const char *out;
    int64_t id; /* delivered, and the position at least there */
} sc_position_goal;

static bool sc_delivered_and_passed(void *arg)
{
    const sc_position_goal *goal = arg;
    return th_position(sc_scope, sc_scope->schema) >= goal->id &&
           sc_times_delivered(goal->out, goal->id) > 0;
}

void sc_wait_passed(const char *out, int64_t id)
{
    sc_position_goal goal = {out, id};
    char what[96];
    snprintf(what, sizeof what, "id %" PRId64 " delivered and the position past it", id);
    th_wait_until(sc_scope, TH_DEADLINE_MS, sc_delivered_and_passed, &goal, what);
}

static bool sc_gap_old_or_gone(void *arg)
{
    const int64_t *id = arg;
    char sql[256];
    snprintf(
        sql, sizeof sql,
        "SELECT (count(*) = 0 OR bool_and((extract(epoch FROM clock_timestamp()) * 1000)::bigint"
        " - first_seen_ms >= %d))::int FROM relay_gaps WHERE %" PRId64
        " BETWEEN low_id AND high_id",
        SC_GAP_AGE_MS, *id);
    return th_query_int64(sc_scope->conn, sql);
}

/* Keeps id's transaction open until its gap is older than SC_GAP_AGE_MS on the database's clock
 * (the one the relay judges by), the relay polling it all along; asserts it is still watched. */
void sc_keep_gap_open(int64_t id)
{
    char what[96], sql[128];
    snprintf(what, sizeof what, "the watched gap of id %" PRId64 " to age past the margin", id);
    th_wait_until(sc_scope, TH_DEADLINE_MS, sc_gap_old_or_gone, &id, what);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM relay_gaps WHERE %" PRId64 " BETWEEN low_id AND high_id", id);
    cr_assert_eq(th_query_int64(sc_scope->conn, sql), 1,
                 "the gap of id %" PRId64 " forgotten while its transaction is open", id);
}
