/*
 * The relay's position, kept in PostgreSQL (table relay_checkpoints, one row per relay name): the
 * highest event id the sink acknowledged. It only ever moves after a successful flush.
 */
#ifndef RELAY_CHECKPOINT_H
#define RELAY_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "plugin.h"

/*
 * Takes the session-level advisory lock for this name, so that two relays configured with the same
 * name cannot both advance it: the second one stands by until the first stops or loses its
 * connection. The key is the name and the checkpoint table's oid: relays whose search_path leads to
 * different relay_checkpoints tables are independent. Sets *acquired. Returns 0, or -1 with err.
 */
int relay_checkpoint_try_lock(PGconn *conn, const char *name, int *acquired, char *err,
                              size_t errlen);

/*
 * Reads the position for name, creating the row at 0 when there is none. Returns 0, or -1 with
 * err; *missing_table is set when relay_checkpoints does not exist (not migrated yet).
 */
int relay_checkpoint_load(PGconn *conn, const char *name, int64_t *position, int *missing_table,
                          char *err, size_t errlen);

/*
 * Moves the position for name to position. Returns 0, or -1 with err. The session's
 * synchronous_commit is off (see relay_checkpoint_session_setup), so this does not wait for the WAL
 * flush: a checkpoint lost in a server crash only means the last batches are delivered again.
 */
int relay_checkpoint_store(PGconn *conn, const char *name, int64_t position, char *err,
                           size_t errlen);

/*
 * Records events the sink refused for good in relay_dead_letters and moves the position, in one
 * transaction: an event is either recorded or still ahead of the position. Returns 0, or -1 with
 * err (then neither happened).
 */
int relay_checkpoint_store_dead_letters(PGconn *conn, const char *name, int64_t position,
                                        const relay_sink_rejection *rejected, size_t n_rejected,
                                        char *err, size_t errlen);

/* Session settings for the relay's connection. Returns 0, or -1 with err. */
int relay_checkpoint_session_setup(PGconn *conn, char *err, size_t errlen);

#endif
