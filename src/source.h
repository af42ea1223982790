/*
 * Reading the outbox table through the safety-margin window.
 *
 * Rows become visible in commit order, not id order, so the reader only trusts rows older than
 * the margin (measured on the database's clock). It reads the next batch_size rows after the
 * position in id order, each with a flag "older than the margin", and ends the batch at the first
 * row that is not: the position can then never pass a visible row that is still settling, even
 * when a higher id carries an older timestamp.
 */
#ifndef RELAY_SOURCE_H
#define RELAY_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <outbox_relay/sink.h>

#include "config.h"
#include "rows.h"
#include "gaps.h"
#include "relay_plugin_int64.h"
#include "timestamp.h"

/* What each column of source.columns is to the relay, in the order the fetch reads them. */
typedef enum relay_column_role {
    RELAY_COLUMN_ID,
    RELAY_COLUMN_KEY,
    RELAY_COLUMN_TYPE,
    RELAY_COLUMN_VERSION,
    RELAY_COLUMN_PAYLOAD,
    RELAY_COLUMN_METADATA,
    RELAY_COLUMN_CREATED_AT,
    RELAY_COLUMN_AGGREGATE_TYPE,
    RELAY_COLUMN_EVENT_ID,
    RELAY_N_COLUMN_ROLES
} relay_column_role;

typedef struct relay_column_role_info {
    const char *name;            /* its key under source.columns */
    size_t mapped_by;            /* the offset of its column name in relay_config_columns */
    const char *cast;            /* how the fetch reads it */
    Oid read_type;               /* the cast's pg_type OID, as the result carries it */
    const char *const *accepted; /* the catalog types (pg_type.typname) it may have; NULL: any */
    const char *expected;        /* those, for messages */
    /* May be unmapped (~); and left at its default name, it is unmapped on a table without
     * such a column rather than an error, so that a table need not have every optional one. */
    bool optional;
} relay_column_role_info;

/* The role's description. Cannot fail. */
const relay_column_role_info *relay_column_describe(relay_column_role role);

/* The column the configuration maps to role; NULL when unmapped. Cannot fail. */
const char *relay_column_mapped(const relay_config *config, relay_column_role role);

/* What the outbox table looks like, from the catalog. */
typedef struct relay_source_info {
    char quoted_table[1024];                     /* "schema"."table" */
    char column_types[RELAY_N_COLUMN_ROLES][64]; /* format_type() by role; "" when unmapped */
    /* The column in force for each role, borrowed from the configuration; NULL when unmapped. */
    const char *mapped[RELAY_N_COLUMN_ROLES];
    Oid sequence_oid; /* the id column's sequence (ids.h), 0 when it has none */
} relay_source_info;

/*
 * Checks that the table and every mapped column exist and have usable types (an integer id, a
 * timestamp created_at, JSON payload and metadata, an integer version). Returns 0, or -1 with
 * the reason in err; *missing is set when no retry can help (the table or a column does not
 * exist, a column has a type the relay cannot read, the role may not read the table), as opposed
 * to a failed query.
 */
int relay_source_inspect(PGconn *conn, const relay_config *config, relay_source_info *info,
                         int *missing, char *err, size_t errlen);

/* One fetched batch. The events point into rows and the arrays beside it: valid until the next
 * fetch or the free. */
typedef struct relay_batch {
    relay_rows rows;    /* the rows kept: the batch's events, never more than batch_bytes of them */
    size_t keep_bytes;  /* the buffer a clear keeps for the next read */
    size_t event_bytes; /* what the arrays below take for each event */
    relay_sink_event *events;               /* capacity: batch_size */
    char (*created_at)[RELAY_RFC3339_SIZE]; /* the events' created_at, rendered; capacity too */
    char (
        *event_ids)[RELAY_PLUGIN_INT64_SIZE]; /* the ids in decimal, when they are the event ids */
    relay_sink_header *headers;               /* n_headers per event */
    const char *const *header_names;          /* borrowed from the configuration */
    size_t n_headers;
    size_t count;   /* rows older than the margin, a contiguous prefix in id order */
    size_t fetched; /* rows read, including those still inside the margin */
    size_t limit;   /* rows asked for (the caller's, kept by clear): fetched == limit, more wait */
    bool rendered;  /* the events' fields past id and flags are set (relay_batch_render) */
    bool cut; /* ended by source.batch_bytes: the rows after it are not read, as past a LIMIT */

    /* The database at the moment of the read, from the header row each read starts with. Every
     * commit the read saw lies below insert_lsn; they are all durable once the WAL is flushed
     * that far (flush_lsn was the flushed position then). */
    uint64_t insert_lsn, flush_lsn;
    /* The relay's: the read shared its transaction with a store that committed synchronously,
     * after the read: the WAL was flushed past insert_lsn by the time the rows arrived. */
    bool flushed_by_commit;
    bool sequence_called;   /* the id sequence handed out an id since it was (re)started */
    int64_t sequence_value; /* the last one, when sequence_called */
    /* The read's snapshot xmin: every transaction below it had ended. And the newest transaction
     * that wrote one of the batch's events. A batch whose writers all ended before the snapshot
     * of a read made durable is durable too: no wait (relay_make_durable). */
    uint64_t snapshot_xmin, newest_xid;
    int64_t db_now; /* now() of the read, as a PostgreSQL timestamp (microseconds since 2000) */
    /* The bytes of the largest row read (its values as they came), for sizing the next read to
     * source.batch_bytes. */
    size_t largest_row;
    /* The first row the margin held back, when one was: its id and created_at (same unit). */
    bool held;
    int64_t held_id, held_created_at;
    int64_t read_ms;       /* the relay's monotonic clock when the read arrived */
    int64_t stored_before; /* the relay's: the position stored (committed) before the read */
} relay_batch;

/* Sets the fields of the batch's events that a read leaves for later (all but id and flags):
 * before they go to a sink. Idempotent. Cannot fail. */
void relay_batch_render(relay_batch *batch);

/* Allocates the arrays for batch_size rows with the configured headers; the batch borrows the
 * header names from config. Returns 0, or -1 with err (out of memory). */
int relay_batch_init(relay_batch *batch, const relay_config *config, char *err, size_t errlen);
void relay_batch_clear(relay_batch *batch); /* drops the rows, keeps the array */
void relay_batch_free(relay_batch *batch);

/*
 * Prepares the window query on conn (once per connection). Returns 0, or -1 with err.
 */
int relay_source_prepare(PGconn *conn, const relay_config *config, const relay_source_info *info,
                         char *err, size_t errlen);

/*
 * Reads at most limit (1..batch_size) rows after position, in two halves, so that the database
 * reads the next batch while the sink works on this one, or the store of a position travels with
 * the read: send, then receive before sending anything else on conn. Each returns 0, or -1 with
 * err (the connection may be broken: check PQstatus).
 */
int relay_source_send_fetch(PGconn *conn, const relay_source_info *info, int64_t position,
                            int limit, char *err, size_t errlen);
int relay_source_receive_fetch(PGconn *conn, const relay_config *config, relay_batch *batch,
                               char *err, size_t errlen);

/* The margin in force: safety_margin in margin mode, 0 in settled mode. */
int64_t relay_source_margin_ms(const relay_config *config);

/* Reads rows whose ids fall in the watched gaps (they committed late), marked
 * RELAY_SINK_EVENT_LATE, in id order, at most batch_size. Returns 0, or -1 with err. */
int relay_source_fetch_gaps(PGconn *conn, const relay_config *config, const relay_source_info *info,
                            const relay_gaps *gaps, relay_batch *batch, char *err, size_t errlen);

/*
 * Reading events again, for the operator's commands rather than the relay: every row counts as
 * settled, and each comes marked RELAY_SINK_EVENT_REDELIVERED. relay_source_prepare_reread
 * prepares both reads on conn (once per connection). relay_source_fetch_range reads the next
 * rows of [from, to] in id order, at most batch_size and cut by batch_bytes (batch->cut), leaving
 * out this relay's dead letters and watched gaps (they were never acknowledged); a batch with
 * fewer rows than batch_size and not cut is the range's last. relay_source_fetch_ids reads the
 * rows of ids (1 to batch_size of them) that exist, in id order, cut by batch_bytes too: when
 * batch->cut, the ids above the batch's last were not read. Each returns 0, or -1 with err.
 */
int relay_source_prepare_reread(PGconn *conn, const relay_config *config,
                                const relay_source_info *info, char *err, size_t errlen);
int relay_source_fetch_range(PGconn *conn, const relay_config *config,
                             const relay_source_info *info, int64_t from, int64_t to,
                             relay_batch *batch, char *err, size_t errlen);
int relay_source_fetch_ids(PGconn *conn, const relay_config *config, const relay_source_info *info,
                           const int64_t *ids, size_t n_ids, relay_batch *batch, char *err,
                           size_t errlen);

/* The created_at of the batch's event i (i < count) in PostgreSQL's microseconds; false when
 * it is NULL. Cannot fail. */
bool relay_batch_created_us(const relay_batch *batch, size_t i, int64_t *us);

/* How many ms from now until the row the margin held leaves a margin of margin_ms, by the
 * database's clock at the read; 0 when none was held. */
int64_t relay_batch_held_settles_in(const relay_batch *batch, int64_t margin_ms);

#endif
