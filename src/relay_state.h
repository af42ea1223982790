/*
 * The relay loop's state, shared by relay.c (lifecycle: connecting, waiting, failing) and
 * relay_turn.c (one turn: read, cut, deliver, commit). Internal to the daemon.
 */
#ifndef RELAY_STATE_H
#define RELAY_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "backoff.h"
#include "config.h"
#include "gaps.h"
#include "lockers.h"
#include "log.h"
#include "plugin.h"
#include "source.h"

/* What the relay delivered rests on: the WAL it saw flushed before it delivered, the timeline it
 * was on, and a stored position known flushed with it. Zero before anything was delivered. Kept
 * across reconnects, so that a database whose history went back is noticed. */
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

typedef struct relay_state {
    const relay_config *config;
    const relay_logger *log;
    relay_sink sink;
    relay_backoff backoff;

    /* Two batches: the database reads the next (prefetch) while the sink works on the current. */
    relay_batch batches[2];
    relay_batch *current;
    relay_batch *next;
    bool current_ready; /* current holds a fetched batch not yet delivered */
    bool prefetching;   /* a fetch into next was sent; its result is not collected yet */
    bool next_ready;    /* next holds the collected prefetch */

    PGconn *conn;             /* NULL while the database is unreachable */
    relay_source_info source; /* the outbox table, as found at connect */
    uint32_t timeline;        /* the server's, at connect */
    relay_history history;    /* what delivery rests on (relay_durable.c) */
    /* On this connection: every transaction below durable_xmin that committed is flushed (it
     * ended before the snapshot of a read whose WAL position was then flushed). 0: nothing yet. */
    uint64_t durable_xmin;
    int64_t stored_position;  /* the latest position known committed in the database */
    int64_t storing_position; /* the one travelling with the prefetch (see storing) */
    relay_lockers lockers;    /* the writers of the outbox table, looked at in rounds */
    bool listening;           /* LISTENing on config->notify_channel */
    bool woken;               /* a NOTIFY arrived: new rows committed */
    int64_t position;         /* every id up to it was acknowledged by the sink */
    /* While the backlog lasts, a position is stored in one round trip with the next fetch:
     * position_unstored says it waits for that fetch, storing how many statements travel with it
     * (their results are read when the prefetch is collected). Either way the stored position is
     * the one before, so a crash repeats a batch more, and loses nothing. */
    bool position_unstored;
    int storing;
    uint64_t delivered;

    /* Margin mode: ids passed while missing, delivered late if they appear. */
    relay_gaps gaps;
    int64_t next_gap_check; /* monotonic ms */
    bool gaps_full;         /* the watch is at max_gaps: the position holds */

    /* Settled mode: the gaps between the rows read after the position, each with the time and
     * horizon of its first sight, so that their floors run at the same time rather than one after
     * another. The relay holds at the first; it is "held" when it starts just above the position.
     */
    relay_gaps ahead;

    /* Failures are logged when the state changes, not at every retry. */
    bool db_failing;
    bool sink_failing;
    bool standing_by;
    int attempts;

    int exit_code; /* set by the step that returns STEP_FATAL */

    int64_t watchdog_ms; /* systemd's WatchdogSec in ms, 0 when off */
    int64_t last_watchdog;
    int64_t last_status;
} relay_state;

typedef enum step { STEP_OK, STEP_RETRY, STEP_STOP, STEP_FATAL } step;

/* Monotonic milliseconds. */
int64_t relay_now_ms(void);

/* Waits ms, or less when a stop is requested (then returns true) or, if wake_on_notify, when a
 * NOTIFY arrives (then returns false). Any NOTIFY taken sets s->woken. Feeds the watchdog. */
bool relay_pause(relay_state *s, int64_t ms, bool wake_on_notify);

/* A database step failed: logs it if this starts an outage, drops the connection, backs off. */
step relay_database_failed(relay_state *s, const char *err);

/* Updates systemd's STATUS= at most once a second. */
void relay_report_status(relay_state *s);

/* Stores a position left unstored (see position_unstored), if any; conn must be idle. Returns 0,
 * or -1 with err. */
int relay_store_position(relay_state *s, char *err, size_t errlen);

/* Waits until the commits the batch came from are flushed (and on the standbys of
 * source.durable_on), forcing a flush when the server's own do not come soon
 * (relay_durable.c). */
step relay_make_durable(relay_state *s, const relay_batch *b);

/* A read came back: what its header proves flushed (relay_durable.c). */
void relay_note_read(relay_state *s, const relay_batch *b);

/* At connect: reads the server's timeline, and stops (exit 6) when its history is behind what
 * this process delivered, or the stored position (as loaded) below one known flushed. */
step relay_check_history(relay_state *s, int64_t stored_position);

/* One turn of the loop, connected: read, cut, deliver, commit (relay_turn.c). */
step relay_turn(relay_state *s);

#endif
