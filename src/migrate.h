/*
 * Schema migrations: the ordered files of sql/, embedded in the binary at build time
 * (scripts/embed-sql.py), applied once each and recorded in relay_migrations.
 */
#ifndef RELAY_MIGRATE_H
#define RELAY_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

typedef struct relay_migration {
    const char *name; /* the file name, e.g. "001_events.sql": also its identity */
    const char *sql;
} relay_migration;

/* Generated, in file name order. */
extern const relay_migration relay_migrations[];
extern const size_t relay_migrations_count;

/*
 * Applies every migration not yet recorded, each in a transaction of its own together with its
 * record, under an advisory lock so that two relays starting at once do not race. Prints one line
 * per applied file to out. Sets *applied. Returns 0, or -1 with err (earlier files stay applied).
 */
int relay_migrate(PGconn *conn, FILE *out, int *applied, char *err, size_t errlen);

#endif
