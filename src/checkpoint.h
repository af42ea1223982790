/*
 * The relay's position, kept in PostgreSQL (table relay_checkpoints, one row per relay name): the
 * highest event id the sink acknowledged. It only ever moves after a successful flush.
 */
#ifndef RELAY_CHECKPOINT_H
#define RELAY_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "gaps.h"
#include "sink_rejection.h"

/*
 * Takes the session-level advisory lock for this name, so that two relays configured with the same
 * name cannot both advance it: the second one stands by until the first stops or loses its
 * connection. The key is the name and the schema of the relay_checkpoints table the session sees:
 * relays whose search_path leads to different ones are independent. Sets *acquired. Returns 0, or
 * -1 with err.
 */
int relay_checkpoint_try_lock(PGconn *conn, const char *name, int *acquired, char *err,
                              size_t errlen);

/* The lock's key for the name bound as $1, as an SQL expression: the name and the schema of the
 * checkpoint table the session sees (unlike its oid, that stays when the table is dropped and
 * re-created, or restored). */
#define RELAY_CHECKPOINT_LOCK_KEY_SQL                                                              \
    "hashtextextended('outbox-relay:' || $1,"                                                      \
    " hashtext(coalesce((SELECT n.nspname FROM pg_class c"                                         \
    "                     JOIN pg_namespace n ON n.oid = c.relnamespace"                           \
    "                    WHERE c.oid = to_regclass('relay_checkpoints')),"                         \
    "                   current_schema(), '')))"

/*
 * The same lock, waited for: sends pg_advisory_lock under a lock_timeout of
 * RELAY_CHECKPOINT_LOCK_WAIT_MS (set for the session: nothing else runs on it meanwhile), without
 * waiting for the answer. A waiting standby takes the lock the moment the leader's session ends,
 * and the server's own wait ends soon after the relay is gone, even if it never says so. Returns
 * 0, or -1 with err.
 */
int relay_checkpoint_send_lock(PGconn *conn, const char *name, char *err, size_t errlen);
#define RELAY_CHECKPOINT_LOCK_WAIT_MS 1000

/*
 * Reads the answer to relay_checkpoint_send_lock if it has come, never blocking on the server:
 * *answered says whether it had, *acquired whether the lock is held (the session's lock_timeout
 * is then reset). A lock_timeout is an answer without the lock: send again. Returns 0, or -1 with
 * err.
 */
int relay_checkpoint_receive_lock(PGconn *conn, int *answered, int *acquired, char *err,
                                  size_t errlen);

/* SQLSTATE of relay_epoch_holds (sql/009_fencing_epoch.sql): another relay took the name over. */
#define RELAY_SQLSTATE_FENCED "RF001"

/* Confirms that the session is alive and still holds the lock: a relay whose session was ended
 * (and whose lock a standby may hold now) must hand nothing more to its sink. Returns 0, or -1
 * with err. */
int relay_checkpoint_confirm_lock(PGconn *conn, char *err, size_t errlen);

typedef struct relay_checkpoint {
    int64_t position;
    int64_t system_identifier; /* of the database it was written in; -1: not recorded yet */
    int64_t late_events;       /* events delivered late so far (they filled watched gaps) */
    /* The fencing epoch this relay claimed by loading the row: every later write names it, and
     * is refused (RELAY_SQLSTATE_FENCED) once another relay claimed a newer one. */
    int64_t epoch;
} relay_checkpoint;

/*
 * How a checkpoint names the table its relay reads, as an SQL expression over pg_class c and
 * pg_namespace n: schema-qualified and quoted, so that the same table read as "events" through a
 * search_path and as "app.events" gives the same name.
 */
#define RELAY_CHECKPOINT_TABLE_NAME_SQL "quote_ident(n.nspname) || '.' || quote_ident(c.relname)"

/*
 * Reads the checkpoint for name, creating it at 0 when there is none, raises its epoch (call it
 * only with the name's lock held: it makes this session the one whose writes count), records that
 * it belongs to quoted_table (its oid and its name, RELAY_CHECKPOINT_TABLE_NAME_SQL: what retention
 * counts the relay on), and reads the watched gaps into gaps (replacing its contents). Returns 0,
 * or -1 with err; *missing_table is set when the relay's tables do not exist or lack columns (not
 * migrated).
 */
int relay_checkpoint_load(PGconn *conn, const char *name, const char *quoted_table,
                          relay_checkpoint *out, relay_gaps *gaps, int *missing_table, char *err,
                          size_t errlen);

/* What moves together when a batch is acknowledged. */
typedef struct relay_checkpoint_update {
    int64_t epoch; /* the one claimed at load: the update is refused under another */
    int64_t position;
    const relay_sink_rejection *dead_letters; /* recorded in relay_dead_letters */
    size_t n_dead_letters;
    /* Non-NULL: what changed in the gaps since they were last stored is written, and they are
     * marked stored (borrowed, updated). */
    relay_gaps *gaps;
    int64_t late_events; /* added to the count */
    /* The commit waits for the local WAL flush (synchronous_commit = local): whatever was read in
     * the same transaction is then durable, with no flush of its own (relay_durable.c). */
    bool synchronous;
} relay_checkpoint_update;

/* Refuses a relay_checkpoints that is not logged (UNLOGGED, say, to save WAL): the proof that a
 * delivered row is durable rests on the relay's own writes to it being in the WAL. Returns 0, or
 * -1 with err. */
int relay_checkpoint_logged(PGconn *conn, char *err, size_t errlen);

/*
 * Stores an update in one transaction and one round trip: an event is either recorded as a dead
 * letter, watched as a gap, or still ahead of the position, never none of these. The session's
 * synchronous_commit is off (see relay_checkpoint_session_setup): a checkpoint lost in a server
 * crash only means the last batches are delivered again. conn must have had
 * relay_checkpoint_session_setup. Returns 0, or -1 with err: then nothing was stored, and the
 * caller drops the connection (the gaps may be marked stored already; they are loaded again).
 * Under an epoch another relay superseded, err carries (SQLSTATE RELAY_SQLSTATE_FENCED), and
 * nothing of the update is stored: not the position, nor gaps, nor dead letters.
 */
int relay_checkpoint_commit(PGconn *conn, const char *name, const relay_checkpoint_update *update,
                            char *err, size_t errlen);

/*
 * The same in two halves, so that it can share a pipeline with the next fetch: send into a
 * pipeline the caller began (it ends it with a sync point), then, once the sync is sent, receive
 * the results of the *statements it sent before those of anything sent after them. Each returns
 * 0, or -1 with err (the caller drops the connection, as above).
 */
int relay_checkpoint_send(PGconn *conn, const char *name, const relay_checkpoint_update *update,
                          int *statements, char *err, size_t errlen);
int relay_checkpoint_receive(PGconn *conn, const char *name, int statements, char *err,
                             size_t errlen);

/* Records which database the position belongs to, under epoch. Returns 0, or -1 with err. */
int relay_checkpoint_set_system(PGconn *conn, const char *name, int64_t epoch,
                                int64_t system_identifier, char *err, size_t errlen);

/* Moves the position deliberately (`outbox-relay reset`, with the lock held and epoch claimed by
 * relay_checkpoint_load): sets it and the system identifier (-1: unknown), and forgets the
 * watched ids above it. Returns 0, or -1 with err. */
int relay_checkpoint_reset(PGconn *conn, const char *name, int64_t epoch, int64_t position,
                           int64_t system_identifier, char *err, size_t errlen);

/* Session settings for the relay's connection, and the statement relay_checkpoint_commit uses:
 * call it on a connection before committing on it. Returns 0, or -1 with err. */
int relay_checkpoint_session_setup(PGconn *conn, char *err, size_t errlen);

#endif
