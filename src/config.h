/*
 * The relay's configuration: a YAML file read with libyaml into a plain struct.
 *
 * Every error names the place and the key: "FILE:LINE:COLUMN: key.path: what is wrong".
 */
#ifndef RELAY_CONFIG_H
#define RELAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct relay_config_option {
    char *key;
    char *value;
} relay_config_option;

/* Column names of the outbox table. version, metadata, aggregate_type and event_id may be NULL:
 * not mapped. */
typedef struct relay_config_columns {
    char *id; /* the integer column that orders the events and holds the position */
    char *created_at;
    char *key;
    char *type;
    char *version;
    char *payload;
    char *metadata;
    char *aggregate_type;
    char *event_id; /* the event's public id, of any SQL type, read as text; NULL: the id column */
    char **headers; /* columns whose values go with each event as headers, in this order */
    size_t n_headers;
} relay_config_columns;

/* What to do with an event the sink's destination refuses for good (see relay_sink_host.reject). */
typedef enum relay_on_reject {
    RELAY_ON_REJECT_STOP = 0,        /* stop, the position just before the event */
    RELAY_ON_REJECT_DEAD_LETTER = 1, /* record it in relay_dead_letters and go on */
} relay_on_reject;

/* How the reader decides that a row can be delivered. */
typedef enum relay_source_mode {
    RELAY_MODE_MARGIN = 0,  /* rows older than safety_margin, in id order (the default) */
    RELAY_MODE_SETTLED = 1, /* no margin: the contiguous run of ids, holding at the first gap */
} relay_source_mode;

typedef struct relay_config {
    char *path; /* the file it was read from, for messages */
    char *name; /* checkpoint key: one position per name */

    char *conninfo;      /* libpq conninfo or URI, ${VAR} already expanded */
    char *password_file; /* NULL when not set; read at connect time, never logged */

    char *table; /* as written: "events" or "schema.events" */
    relay_config_columns columns;
    int64_t safety_margin_ms;
    int64_t poll_interval_ms;
    int64_t max_wait_ms; /* the linger between reads while rows come */
    int batch_size;
    int batch_bytes; /* a batch ends before the row that would take it past this (at least one) */
    relay_source_mode mode;
    bool gap_watch;       /* remember ids missing below the position; deliver them if they appear */
    int64_t gap_floor_ms; /* a gap is never proven dead younger than this (0: the proof alone) */
    bool
        ids_taken_ahead; /* ids may be taken before the insert: gap_floor stands in for the proof */
    int64_t gap_max_age_ms; /* without snapshots (not PostgreSQL): forget a gap after this */
    int max_gaps;           /* the watch holds at most this many gaps (ranges of ids) */
    char *notify_channel;   /* LISTENed for wake-ups; NULL: poll only */
    /* Standbys (application_names, joined with ',') that must have flushed the commits of the
     * rows before they are delivered; NULL: the primary's flush is enough. */
    char *durable_on;
    char *http_listen; /* http.listen, "HOST:PORT" or ":PORT"; NULL: no metrics endpoint */

    char *sink_plugin; /* a name looked up in plugin_dir, or a path containing '/' */
    relay_config_option *sink_options;
    size_t n_sink_options;
    int64_t sink_flush_timeout_ms;
    relay_on_reject sink_on_reject;

    char *plugin_dir; /* NULL: found relative to the executable */

    int64_t retry_initial_ms; /* backoff after a database or sink failure, doubled up to max */
    int64_t retry_max_ms;

    /* Retention: rows every relay of the table delivered are removed once older than this;
     * RELAY_RETENTION_OFF (the default): never. */
    int64_t retention_delete_after_ms;
    int retention_batch_size;       /* rows per DELETE, each its own short transaction */
    int64_t retention_interval_ms;  /* between rounds, unless the last one was full */
    bool retention_drop_partitions; /* drop whole partitions below the bound instead of deleting */

    relay_log_level log_level;
    relay_log_format log_format;
} relay_config;

/* retention.delete_after when it is ~. */
#define RELAY_RETENTION_OFF INT64_C(-1)

/* Whether retention is on. Cannot fail. */
bool relay_retention_enabled(const relay_config *config);

/*
 * Reads and validates the file at path. On success returns 0 and fills *out, which the caller
 * releases with relay_config_free(). On failure returns -1 with the message in err; *out is left
 * zeroed. Environment variables in conninfo (${VAR}) are expanded through getenv().
 */
int relay_config_load(const char *path, relay_config *out, char *err, size_t errlen);

/* Same, from a buffer; path is only used in messages. */
int relay_config_parse(const char *path, const char *text, size_t len, relay_config *out, char *err,
                       size_t errlen);

void relay_config_free(relay_config *config);

/* Whether a reload may change the value of the key, written as in the file ("source.batch_size").
 * A mapping ("retry") may change when every key below it may. False for unknown keys. */
bool relay_config_key_reloadable(const char *dotted_key);

/* A key whose value differs between two configurations (relay_config_diff). */
typedef struct relay_config_change {
    /* dotted, as in the file: "source.table", "sink.options.topic" (an option added, removed or
     * changed; "sink.options" when only their order changed) */
    const char *key;
    bool reloadable; /* relay_config_key_reloadable(key) */
    bool secret;     /* it may hold a password: old_value and new_value are NULL */
    const char *old_value, *new_value; /* as the file would spell them, "~" for none */
} relay_config_change;

/* Told of one change; the strings are valid during the call only. */
typedef void relay_config_change_fn(const relay_config_change *change, void *arg);

/* Calls fn for each key whose value differs from a to b, in the file's order. Cannot fail. */
void relay_config_diff(const relay_config *a, const relay_config *b, relay_config_change_fn *fn,
                       void *arg);

/* Whether both have the same sink.options, in the same order. Cannot fail. */
bool relay_config_same_sink_options(const relay_config *a, const relay_config *b);

/*
 * Swaps the value of every reloadable key between running and fresh: running then holds fresh's
 * values where a reload may change them and its own elsewhere, and relay_config_free(fresh) frees
 * the values running gave up. What points into running's restart-only values (the column names,
 * the name) stays valid. Cannot fail.
 */
void relay_config_adopt(relay_config *running, relay_config *fresh);

/* Swaps the sink options of a and b (a reload that the sink refused is undone with it). */
void relay_config_swap_sink_options(relay_config *a, relay_config *b);

/* A deep copy of src into out, which the caller releases with relay_config_free(). Returns 0, or
 * -1 with err (out of memory; out is then zeroed). */
int relay_config_copy(relay_config *out, const relay_config *src, char *err, size_t errlen);

/* The default of a string key ("source.columns.metadata": "metadata"); NULL when it has none or
 * is not a string key. Cannot fail. */
const char *relay_config_key_default_text(const char *dotted_key);

/* Writes ms as the largest whole unit ("1h", "90s", "250ms"). Cannot fail. */
void relay_duration_format(int64_t ms, char *buf, size_t len);

/* Parses "250ms", "1s", "2m", "1h" (and "0s") into milliseconds; returns 0, or -1 with a reason
 * ("needs a unit", ...) in err. */
int relay_duration_parse(const char *text, int64_t *ms, char *err, size_t errlen);

#endif
