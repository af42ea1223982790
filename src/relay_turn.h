/*
 * One turn of the relay: deliver rows that filled watched gaps, read the next batch, cut it where
 * it must not go further, make it durable, hand it to the sink, and move the position once the
 * sink acknowledged. A turn never waits: it does what it can now and says what it needs next.
 */
#ifndef RELAY_TURN_H
#define RELAY_TURN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay_pipeline.h"

typedef enum relay_outcome_kind {
    /* Work was done and more may be ready: turn again at once. */
    RELAY_OUTCOME_BUSY,
    /* Nothing to do for wait_ms; when wake_on_notify, a NOTIFY may end the wait early, though not
     * before linger_ms. */
    RELAY_OUTCOME_WAIT,
    /* The database failed (err says how): close the connection, back off, connect again. */
    RELAY_OUTCOME_DB_FAILED,
    /* The sink failed in a way retrying may cure (err): the hand stays; back off, turn again. */
    RELAY_OUTCOME_SINK_RETRY,
    /* Another relay of this name holds the lock (from relay_connect only): the pipeline is in
     * STANDBY, its lock request in flight; wait up to wait_ms for its socket, then connect on. */
    RELAY_OUTCOME_STANDBY,
    /* Retrying cannot help (err): stop with exit_code. */
    RELAY_OUTCOME_FATAL,
} relay_outcome_kind;

typedef struct relay_outcome {
    relay_outcome_kind kind;
    int64_t wait_ms;     /* WAIT, STANDBY */
    bool wake_on_notify; /* WAIT */
    int64_t linger_ms;   /* WAIT: waited in full, even when a NOTIFY comes */
    int exit_code;       /* FATAL: a relay_exit_code */
} relay_outcome;

/*
 * Runs one turn on a connected pipeline (pipe is not CLOSED). For DB_FAILED, SINK_RETRY and FATAL
 * the message is in err; for DB_FAILED the caller closes the pipeline. Takes p->woken.
 */
relay_outcome relay_turn(relay_pipeline *p, char *err, size_t errlen);

/* Stores the acknowledged position if it is unstored; the connection must be idle (not
 * PREFETCHING). Returns 0, or -1 with err. */
int relay_turn_store_position(relay_pipeline *p, char *err, size_t errlen);

#endif
