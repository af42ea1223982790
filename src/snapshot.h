/*
 * The database's clock and transaction horizon, the evidence the gap watch uses: a gap first seen
 * under xmax X is dead once xmin has passed X (every transaction running then has ended).
 */
#ifndef RELAY_SNAPSHOT_H
#define RELAY_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

typedef struct relay_snapshot {
    int64_t now_ms; /* clock_timestamp(), ms since the epoch */
    int64_t xmin;   /* pg_snapshot_xmin(pg_current_snapshot()), or -1 without snapshots */
    int64_t xmax;   /* pg_snapshot_xmax(...), or -1 */
} relay_snapshot;

/* Whether the server has pg_current_snapshot() (PostgreSQL 13 and later). Returns 0 with
 * *supported set, or -1 with err. */
int relay_snapshot_supported(PGconn *conn, bool *supported, char *err, size_t errlen);

/* Reads the clock, and the horizon when supported. Returns 0, or -1 with err. */
int relay_snapshot_read(PGconn *conn, bool supported, relay_snapshot *out, char *err,
                        size_t errlen);

#endif
