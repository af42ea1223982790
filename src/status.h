/* `outbox-relay status`: where the relay stands against its table. */
#ifndef RELAY_STATUS_H
#define RELAY_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "config.h"
#include "retention.h"

typedef struct relay_status_info {
    bool has_checkpoint; /* false until the relay first ran under this name */
    int64_t position;
    int64_t max_id;       /* 0 for an empty table */
    int64_t lag_rows;     /* events after the position, settled or not */
    double lag_seconds;   /* age of the oldest event after the position; 0 when none */
    char updated_at[40];  /* when the position last moved, RFC 3339; "" without checkpoint */
    int64_t late_events;  /* delivered after the position passed them (they filled gaps) */
    int64_t watched_gaps; /* ranges of missing ids below the position, still watched */
    int64_t watched_ids;  /* ids in those ranges */
    /* The next event's created_at lies ahead of the database's clock (by held_ahead_seconds,
     * INFINITY for infinity): in margin mode it holds the relay until then. */
    bool held_by_future;
    int64_t held_id;
    double held_ahead_seconds;
    /* Retention: the highest id every relay registered on the table has delivered, and what
     * this relay's retention removed so far. */
    relay_retention_bound retention;
    int64_t retention_deleted;    /* rows deleted */
    int64_t retention_partitions; /* partitions dropped */
    /* Who holds the name's lock: sessions holding it (0 or 1) and waiting for it (standbys),
     * and the fencing epoch the leader claimed. */
    int64_t leaders;
    int64_t standbys;
    int64_t epoch;
} relay_status_info;

/* Reads the status. Returns 0, or -1 with err; *missing is set when a table does not exist. */
int relay_status_read(PGconn *conn, const relay_config *config, relay_status_info *out,
                      int *missing, char *err, size_t errlen);

/* Prints it as aligned text, or as one JSON object on one line. */
void relay_status_print(FILE *out, const relay_config *config, const relay_status_info *status,
                        bool json);

#endif
