/*
 * The writers that may still fill a gap, and the evidence that they are gone.
 *
 * An INSERT takes RowExclusiveLock on its target table while it is parsed (or, for a cached plan,
 * before it runs), before the column default takes the id from the sequence, and keeps it until
 * its transaction ends; PostgreSQL leaves a transaction's snapshot horizon
 * (ProcArrayEndTransaction) before it lets go of its locks. So a transaction that holds the id of a
 * gap the relay saw, and was still running then, either holds that lock on the outbox table (or one
 * of its partitions or children) at any later look at pg_locks, or has ended and its row, if it
 * committed, is visible to any snapshot taken after that look. CREATE INDEX CONCURRENTLY waits for
 * writers the same way (WaitForLockers in lmgr.c).
 *
 * The relay looks at pg_locks in rounds. Each writer is remembered with the first round of the
 * unbroken run of rounds that saw it; a gap gets the first round after its sight; and a gap is
 * cleared once every writer present at the latest round was first seen after the gap's round. A
 * writer that drops the lock and takes it again gets a new first round, which is sound: the lock
 * only goes before the end of its transaction when the subtransaction that took it rolls back,
 * and with it every row written under it. A prepared transaction (pid NULL in pg_locks) could be
 * any earlier writer that ran PREPARE TRANSACTION between two rounds, so while one holds the lock
 * no gap is cleared.
 */
#ifndef RELAY_LOCKERS_H
#define RELAY_LOCKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "gaps.h"

typedef struct relay_locker {
    char vxid[32]; /* pg_locks.virtualtransaction; a reused one only makes gaps wait longer */
    int64_t since; /* the first round of the unbroken run of rounds that saw it */
    bool prepared; /* a prepared transaction: no backend */
} relay_locker;

typedef struct relay_lockers {
    char table[1024];    /* the outbox table, quoted */
    bool supported;      /* the server has pg_locks; without it only a gap's age can tell */
    relay_locker *items; /* present at the latest round, ascending by vxid (bytewise) */
    size_t count;
    size_t cap;
    int64_t round;           /* rounds so far; 0 before the first */
    int64_t now_ms;          /* the database's clock at the latest round */
    int64_t clock_offset_ms; /* database clock minus this host's CLOCK_REALTIME, at that round */
    /* The rounds whose gaps a writer gone since relay_lockers_take_departures last ran could have
     * filled: from the first round of the earliest such writer (0 for a prepared one) to the
     * last round that saw the latest. Empty when from > to. */
    int64_t departed_from;
    int64_t departed_to;
} relay_lockers;

/*
 * Prepares the look at pg_locks on conn for the outbox table (quoted, as in relay_source_info) and
 * finds out whether the server has pg_locks. Once per connection; the writers seen so far are
 * kept (a transaction id is never reused, so they stay what they were). Returns 0, or -1 with
 * err.
 */
int relay_lockers_prepare(PGconn *conn, const char *quoted_table, relay_lockers *l, char *err,
                          size_t errlen);

/* Looks at the writers now: one round. Returns 0, or -1 with err (then l is as it was). */
int relay_lockers_observe(PGconn *conn, relay_lockers *l, char *err, size_t errlen);

/*
 * The span of rounds whose gaps may have been filled since the last call: a gap can only fill
 * when a writer of its round ends, and every writer that ended since is in it. Returns whether
 * any writer ended, with the span in *from..*to, and starts a new one.
 */
bool relay_lockers_take_departures(relay_lockers *l, int64_t *from, int64_t *to);

/* The round a gap seen now belongs to: the next one, which is sure to come after the sight. */
int64_t relay_lockers_next_round(const relay_lockers *l);

/* The database's clock now, estimated from this host's clock and the latest round's offset. */
int64_t relay_lockers_db_now_ms(const relay_lockers *l);

/* The evidence of the latest round, for relay_gap_is_dead. */
relay_gap_evidence relay_lockers_evidence(const relay_lockers *l);

void relay_lockers_free(relay_lockers *l);

#endif
