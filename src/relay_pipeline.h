/*
 * The pipeline from the outbox table to the sink, on one connection: which batch is in hand and
 * at what stage, what travels on the connection, and what the acknowledged position rests on.
 *
 * The turn (relay_turn.c) moves it along; the loop (relay.c) opens and closes it, and does every
 * wait in between. Internal to the daemon.
 */
#ifndef RELAY_PIPELINE_H
#define RELAY_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "gaps.h"
#include "lockers.h"
#include "log.h"
#include "metrics.h"
#include "sink_host.h"
#include "source.h"

/*
 * Where the pipeline stands. The hand (see relay_hand) exists from DURABLE on; the stages after
 * SINK say where the next batch is while the hand is with the sink. A hand the sink failed on
 * stays in its stage until it is acknowledged or the connection closes.
 */
typedef enum relay_pipe {
    RELAY_PIPE_CLOSED,      /* no connection; nothing in hand */
    RELAY_PIPE_STANDBY,     /* connected, waiting for the name's lock; nothing read */
    RELAY_PIPE_IDLE,        /* connected; nothing in hand */
    RELAY_PIPE_READ,        /* current holds rows prefetched, not looked at yet */
    RELAY_PIPE_DURABLE,     /* the hand is cut; it waits until its commits are durable */
    RELAY_PIPE_SINK,        /* the hand is durable, and with the sink */
    RELAY_PIPE_PREFETCHING, /* the same, while the next batch's fetch travels (with a store) */
    RELAY_PIPE_PREFETCHED,  /* the same, with the next batch's rows collected into next */
} relay_pipe;

/* The stage's name, for messages. Cannot fail. */
const char *relay_pipe_name(relay_pipe pipe);

/* What delivery rests on: the WAL seen flushed before delivering, the timeline it was on, and a
 * stored position known flushed with it. Zero before anything was delivered. Kept across
 * reconnects, so that a database whose history went back is noticed (relay_durable.c). */
typedef struct relay_history {
    uint64_t durable_lsn;
    uint32_t timeline;
    int64_t durable_position;
    /* A stored position not yet known flushed, and the WAL insert position of a read after it:
     * a later read that finds the WAL flushed past that makes it durable_position. */
    int64_t pending_position;
    uint64_t pending_lsn;
    /* The last event delivered and acknowledged, as the table had it: after a restore, a new
     * event may hold its id. 0: none yet. */
    int64_t last_id;
    char last_created_at[RELAY_RFC3339_SIZE];
} relay_history;

/* How far the wait for a hand's durability went, so that it resumes after the loop's pause. */
typedef struct relay_durable_wait {
    int flush_attempts;     /* looks at the WAL flush position so far */
    bool wal_flushed;       /* on the primary; the standbys may still be waited for */
    int64_t standbys_since; /* monotonic ms of the first look at the standbys; 0: none yet */
    int64_t standbys_wait;  /* the next pause between looks, doubling */
    bool standbys_warned;
} relay_durable_wait;

/* The batch between its cut and its acknowledgement. */
typedef struct relay_hand {
    relay_batch *batch; /* current, or next for late rows */
    /* Late rows (they filled watched gaps) leave the position as it is, and carry the evidence of
     * the look that preceded their read: the gaps it proves dead are forgotten after them. */
    bool late;
    relay_gap_evidence evidence;
    relay_pipe after; /* late: the stage the watch interrupted, to go back to */
    int64_t last_id;  /* the new position, for a batch that is not late */
    int attempts;     /* hand-overs to the sink so far */
    relay_durable_wait durable;
} relay_hand;

typedef struct relay_pipeline {
    const relay_config *config;
    const relay_logger *log;
    relay_sink sink; /* loaded and unloaded by the loop */

    relay_pipe pipe; /* changed only by relay_pipe_change */
    PGconn *conn;    /* non-NULL exactly when pipe is not CLOSED */
    /* The fencing epoch claimed when this relay took its name's lock; 0 while it does not lead
     * (closed, or STANDBY behind another relay). What `outbox_relay_leader` reports: see
     * relay_pipeline_leading. */
    int64_t epoch;
    relay_hand hand;

    /* Two batches: the database reads the next (prefetch) while the sink works on the current. */
    relay_batch batches[2];
    relay_batch *current;
    relay_batch *next;

    relay_source_info source; /* the outbox table, as found at connect */
    uint32_t timeline;        /* the server's, at connect */
    relay_history history;    /* what delivery rests on (relay_durable.c) */
    /* On this connection: every transaction below durable_xmin that committed is flushed (it
     * ended before the snapshot of a read whose WAL position was then flushed). 0: nothing yet. */
    uint64_t durable_xmin;
    relay_lockers lockers; /* the writers of the outbox table, looked at in rounds */
    bool listening;        /* LISTENing on config->notify_channel */
    bool woken;            /* set by the loop when a NOTIFY arrived; taken by the turn */
    int quiet_reads;       /* reads in a row that delivered nothing: the idle poll backs off */
    /* The next read's LIMIT, up to batch_size: about what the last read delivered, so that a
     * caught-up relay does not read again and again the rows that must wait (relay_turn.c). */
    int read_limit;
    /* The stores that travel with reads commit synchronously: the last batch had to wait for the
     * WAL flush (its writers commit asynchronously), so the next one most likely would too. */
    bool sync_reads;
    bool storing_synchronous;

    /* Every id up to position was acknowledged by the sink; stored_position is the latest known
     * committed in the database. While the backlog lasts they differ: the position is stored with
     * the next fetch, in one round trip (`storing` statements travel with it in PREFETCHING, for
     * storing_position). A crash then repeats a batch more, and loses nothing. */
    int64_t position;
    int64_t stored_position;
    int64_t storing_position;
    int storing;
    uint64_t delivered;   /* events acknowledged for the first time by this process */
    uint64_t redelivered; /* acknowledged again: read anew after a reconnect */
    int64_t acked_high;   /* the highest position acknowledged by this process */
    /* Hand-overs the sink acknowledged, and the attempts the last one took, for the loop to tell
     * that a failing sink recovered. */
    uint64_t sink_acks;
    int sink_ack_attempts;
    relay_metrics_counts counts; /* for the metrics endpoint (relay_observe.h) */

    /* Margin mode: ids passed while missing, delivered late if they appear. */
    relay_gaps gaps;
    int64_t next_gap_check; /* monotonic ms; 0: at the next turn */
    bool gaps_full;         /* the watch is at max_gaps: the position holds */
    int64_t future_warned;  /* the last id warned about for a created_at in the future */

    /* Settled mode: the gaps between the rows read after the position, each with the time and
     * round of its first sight, so that their proofs run at the same time rather than one after
     * another. The relay holds at the first; it is "held" when it starts just above the position.
     */
    relay_gaps ahead;
} relay_pipeline;

/*
 * Sets up a closed pipeline with its two batches; the sink is loaded by the caller. Returns 0, or
 * -1 with err (out of memory; nothing to free then).
 */
int relay_pipeline_init(relay_pipeline *p, const relay_config *config, const relay_logger *log,
                        char *err, size_t errlen);

/* Closes the connection, if any, and frees what init and the turns allocated. Not the sink. */
void relay_pipeline_free(relay_pipeline *p);

/*
 * Moves the pipeline to another stage, logged at debug. CLOSED closes the connection and drops
 * whatever was in hand or in flight: the next connection reloads the stored position, so the
 * batches after it are delivered again.
 */
void relay_pipe_change(relay_pipeline *p, relay_pipe to);

/* Whether this relay leads: it holds its name's lock and claimed an epoch. Cannot fail. */
bool relay_pipeline_leading(const relay_pipeline *p);

/* The acknowledged position is not stored yet, nor travelling to be. */
bool relay_pipeline_position_unstored(const relay_pipeline *p);

#endif
