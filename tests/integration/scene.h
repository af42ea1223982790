/*
 * The scene of the gap tests: one relay with the stdout sink in a harness scope, sessions that
 * insert one event each, and the waits and counts the scenarios are written in.
 *
 * sc_begin names the scope every other function works in (each Criterion test runs in a process
 * of its own, with one scope).
 */
#ifndef SC_SCENE_H
#define SC_SCENE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../harness/harness.h"

/* Each event an aggregate of its own: (aggregate_id, aggregate_version) is unique, and two open
 * transactions inserting the same pair would wait for each other. */
#define SC_INSERT_ONE                                                                              \
    "INSERT INTO events (aggregate_id, aggregate_type, aggregate_version, kind, body)"             \
    " VALUES (gen_random_uuid()::text, 'order', 1, 'created', '{}') RETURNING id"

void sc_begin(th_scope *scope);

/* A stdout-sink config for the scope, named after its schema; source_yaml is the body of the
 * source: section. */
void sc_write_config(char path[TH_PATH_MAX], const char *source_yaml);
/* The same for a relay named name, on conninfo_yaml (the scope's when NULL), with more top-level
 * YAML in extra ("" for none). */
void sc_write_config_as(char path[TH_PATH_MAX], const char *name, const char *conninfo_yaml,
                        const char *source_yaml, const char *extra);

/* The relay named in a log, with its output files. */
typedef struct sc_relay_files {
    char out[TH_PATH_MAX];
    char err[TH_PATH_MAX];
} sc_relay_files;

sc_relay_files sc_files_named(const char *stem);

/* Whether the relay of an sc_relay_files has started reading. */
bool sc_log_says_reading(void *arg);

/* Starts a relay and waits until it has loaded its checkpoint and gaps and listens. */
pid_t sc_start_relay(const char *config, sc_relay_files *f);

/* How many lines of the output carry id. */
size_t sc_times_delivered(const char *out, int64_t id);
/* The output line of id (caller frees), or NULL. */
char *sc_line_of(const char *out, int64_t id);
bool sc_is_late(const char *line);

typedef struct sc_id_goal {
    const char *out;
    int64_t id;
} sc_id_goal;
/* Predicates over an sc_id_goal. */
bool sc_id_delivered(void *arg);
bool sc_id_absent(void *arg);

void sc_wait_delivered(const char *out, int64_t id);
/* Waits until id is delivered and the position is at least there. */
void sc_wait_passed(const char *out, int64_t id);

/* Inserts one event on conn and returns its id. */
int64_t sc_insert_one(PGconn *conn);

/* Rows of relay_gaps in the scope. */
int64_t sc_stored_gaps(void);
bool sc_no_stored_gaps(void *arg);

/* One number of `status --json`. */
int64_t sc_status_field(const char *config, const char *field);

/* The sum of N over the log's "forgot N missing id(s)" lines. */
int64_t sc_ids_forgotten(const char *err_path);
typedef struct sc_forgotten_goal {
    const char *err;
    int64_t ids;
} sc_forgotten_goal;
bool sc_forgot_all(void *arg);

/* How long a gap must stay open before a test fills it: well past the margin that is its
 * minimum age, so that a relay forgetting it by age alone is caught. */
#define SC_GAP_AGE_MS 2000

/* Keeps id's transaction open until its gap is older than SC_GAP_AGE_MS on the database's clock
 * (the one the relay judges by), the relay polling it all along; asserts it is still watched. */
void sc_keep_gap_open(int64_t id);

#endif
