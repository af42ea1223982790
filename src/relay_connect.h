/* Opening the pipeline's connection: what must hold before the relay reads a row. */
#ifndef RELAY_CONNECT_H
#define RELAY_CONNECT_H

#include <stddef.h>

#include "relay_pipeline.h"
#include "relay_turn.h"

/*
 * Connects a closed pipeline, checks the table and its ids, takes the name's lock, claims the
 * fencing epoch, reads the position and the watched gaps, and checks that they belong to this
 * database and its history. When another relay of the name holds the lock, the pipeline waits for
 * it in STANDBY, with the lock's request in flight; called on a STANDBY pipeline, it takes the
 * lead if the lock came. Returns BUSY with the pipeline IDLE, leading; STANDBY (wait wait_ms on
 * the connection's socket, then call again);
 * DB_FAILED, or FATAL when no retrying can fix it (a missing table or column, a checkpoint from
 * another database), with err. On DB_FAILED and FATAL the pipeline is left for the caller to close.
 */
relay_outcome relay_connect(relay_pipeline *p, char *err, size_t errlen);

#endif
