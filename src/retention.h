/*
 * Retention: removing the rows of the outbox table that every relay reading it has delivered.
 *
 * The bound is the highest id that may go: the lowest committed position among the relays
 * registered on the table (their relay_checkpoints rows name it, by oid or by name, or name no
 * table at all: written by a relay older than migration 008, counted on every table), and below
 * the lowest watched gap of any of them (an id in a gap may still commit, and is delivered late).
 * It is computed in the statement that deletes, so from one snapshot: a position is only ever
 * seen together with the gaps stored in the same transaction. See the README's design section.
 *
 * Each round is one short transaction: a DELETE of at most retention.batch_size rows (here), or
 * one partition detached and dropped (retention_partitions.h), under a lock timeout and a
 * statement timeout, so that a conflicting lock fails the round instead of holding the relay.
 */
#ifndef RELAY_RETENTION_H
#define RELAY_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "checkpoint.h"
#include "config.h"
#include "source.h"

/* How long a round waits for a lock (the table's, a row's) before it fails, and how long it may
 * run: the relay delivers nothing meanwhile. */
#define RELAY_RETENTION_LOCK_TIMEOUT "100ms"
#define RELAY_RETENTION_STATEMENT_TIMEOUT "5s"

/*
 * The bound, as common table expressions for a statement whose $1 is the outbox table (quoted,
 * as text): tbl (its oid and name), relays (name, position: those registered on it), holds (what
 * each of them holds the bound at: its position, or just below its lowest gap) and bound (id,
 * held_by, by_gap: the lowest hold; no row when no relay is registered, and then nothing goes).
 */
#define RELAY_RETENTION_BOUND_CTES                                                                 \
    "tbl AS (SELECT c.oid, " RELAY_CHECKPOINT_TABLE_NAME_SQL " AS name FROM pg_class c"            \
    "          JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass),"         \
    " relays AS (SELECT r.name, r.position FROM relay_checkpoints r, tbl"                          \
    "             WHERE r.source_table = tbl.oid OR r.source_table_name = tbl.name"                \
    "                OR (r.source_table IS NULL AND r.source_table_name IS NULL)),"                \
    " holds AS (SELECT name, position AS id, false AS by_gap FROM relays"                          \
    "           UNION ALL"                                                                         \
    "           SELECT relay_name, min(low_id) - 1, true FROM relay_gaps"                          \
    "            WHERE relay_name IN (SELECT name FROM relays) GROUP BY relay_name),"              \
    " bound AS (SELECT id, name AS held_by, by_gap FROM holds ORDER BY id, by_gap DESC, name"      \
    "            LIMIT 1)"

/*
 * Relays that remove rows from one table take turns: a round goes ahead only with this
 * transaction-level advisory lock, keyed by the table's oid (an expression over the tbl CTE).
 */
#define RELAY_RETENTION_TURN_SQL                                                                   \
    "pg_try_advisory_xact_lock(hashtextextended("                                                  \
    "'outbox-relay:retention:' || (SELECT oid FROM tbl)::text, 0))"

typedef struct relay_retention_bound {
    bool known;        /* some relay is registered on the table */
    int64_t id;        /* rows with ids up to this one have been delivered by every such relay */
    char held_by[128]; /* the relay whose position, or gap (by_gap), it is */
    bool by_gap;
} relay_retention_bound;

/*
 * The bound on the table of config, and what the relay of config->name removed so far (rows
 * deleted, partitions dropped; 0 without a checkpoint). Returns 0, or -1 with err; *missing is
 * set when a table or column is missing (not migrated).
 */
int relay_retention_read(PGconn *conn, const relay_config *config, relay_retention_bound *bound,
                         int64_t *deleted, int64_t *partitions, int *missing, char *err,
                         size_t errlen);

/*
 * Relays the bound cannot count: those that keep their positions in a relay_checkpoints of
 * another schema (a search_path of their own) and record this table there.
 * Their schemas go into found, comma-separated ("" when none); those whose relay_checkpoints
 * hold only rows naming no table (older relays), or cannot be read (not migrated, no privilege,
 * dropped meanwhile), into unknown: they may hold such relays. Each buffer holds len bytes.
 * Returns 0, or -1 with err.
 */
int relay_retention_uncounted(PGconn *conn, const char *quoted_table, char *found, char *unknown,
                              size_t len, char *err, size_t errlen);

/*
 * Begins a round's transaction, with the round's lock and statement timeouts. Returns 0, or -1
 * with err (nothing to roll back then).
 */
int relay_retention_begin(PGconn *conn, char *err, size_t errlen);

/* Ends a round's transaction that failed, if one is open. Cannot fail in a way that matters (a
 * broken connection ends it anyway). */
void relay_retention_rollback(PGconn *conn);

/* What a DELETE round did. */
typedef struct relay_retention_round {
    bool turn;       /* false: another relay's round on the table was going on; nothing done */
    int64_t deleted; /* rows */
    bool bounded;    /* some relay is registered on the table; bound is set */
    int64_t bound;
} relay_retention_round;

/*
 * One round: deletes at most retention.batch_size rows within the bound and older than
 * retention.delete_after, in id order, skipping dead letters, in one transaction that also adds
 * them to the relay's count. On a table without an id sequence the row of the highest id stays,
 * so that the table's max id still tells a position above it (a truncate, a restore) at start.
 * Returns 0, or -1 with err (rolled back: nothing deleted).
 */
int relay_retention_delete(PGconn *conn, const relay_config *config, const relay_source_info *info,
                           int64_t epoch, relay_retention_round *out, char *err, size_t errlen);

#endif
