/*
 * Schema migrations: the ordered files of sql/, embedded in the binary at build time
 * (scripts/embed-sql.py), applied once each and recorded in relay_migrations.
 */
#ifndef RELAY_MIGRATE_H
#define RELAY_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "config.h"

typedef struct relay_migration {
    const char *name; /* the file name, e.g. "001_events.sql": also its identity */
    const char *sql;
} relay_migration;

/* Generated, in file name order. */
extern const relay_migration relay_migrations[];
extern const size_t relay_migrations_count;

/*
 * Applies every migration not yet recorded, each in a transaction of its own together with its
 * record, under an advisory lock so that two relays starting at once do not race. The event
 * store's files (the events and snapshots tables) apply only where source.table is that store's
 * `events`: another table is the application's. Then the wake-up trigger on source.table is made
 * to match source.notify_channel: installed when it is set, dropped when it is not. Prints one
 * line per change to out. Sets *applied (files applied and trigger changes). Returns 0, or -1
 * with err (earlier files stay applied).
 */
int relay_migrate(PGconn *conn, const relay_config *config, FILE *out, int *applied, char *err,
                  size_t errlen);

/*
 * Which of the embedded migrations this database lacks (the event store's files count only where
 * source.table is `events`, as relay_migrate applies them): writes their names, comma-separated,
 * into pending (truncated to pendinglen) and their number into *count; all of them when
 * relay_migrations does not exist. Returns 0, or -1 with err (42501: the role may not read
 * relay_migrations).
 */
int relay_migrate_pending(PGconn *conn, const relay_config *config, char *pending,
                          size_t pendinglen, int *count, char *err, size_t errlen);

/* The name of the wake-up trigger that migrate puts on source.table. */
#define RELAY_NOTIFY_TRIGGER "outbox_relay_notify"

/* Whether the wake-up trigger is on source.table, and whether it notifies
 * source.notify_channel. Returns 0, or -1 with err. */
int relay_migrate_trigger_state(PGconn *conn, const relay_config *config, int *installed,
                                int *matches, char *err, size_t errlen);

#endif
