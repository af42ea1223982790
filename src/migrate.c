#include "migrate.h"

#include <stdio.h>
#include <string.h>

#include "db.h"

#define MIGRATE_LOCK "SELECT pg_advisory_lock(hashtextextended('outbox-relay:migrate', 0))"
#define MIGRATE_UNLOCK "SELECT pg_advisory_unlock(hashtextextended('outbox-relay:migrate', 0))"

/* Whether name is recorded. Returns 0 with *done set, or -1 with err. */
static int is_applied(PGconn *conn, const char *name, int *done, char *err, size_t errlen)
{
    const char *params[1] = {name};
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM relay_migrations WHERE name = $1", 1, NULL,
                                 params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "reading relay_migrations", err, errlen);
        PQclear(res);
        return -1;
    }
    *done = PQntuples(res) > 0;
    PQclear(res);
    return 0;
}

/* Runs one file and records it, atomically. Returns 0, or -1 with err (rolled back). */
static int apply_one(PGconn *conn, const relay_migration *m, char *err, size_t errlen)
{
    char what[128];
    snprintf(what, sizeof what, "applying %s", m->name);
    if (relay_db_exec(conn, what, "BEGIN", err, errlen) != 0)
        return -1;

    /* PQexec, not PQexecParams: a migration file may hold several statements. */
    if (relay_db_exec(conn, what, m->sql, err, errlen) != 0)
        goto rollback;

    const char *params[1] = {m->name};
    PGresult *res = PQexecParams(conn, "INSERT INTO relay_migrations (name) VALUES ($1)", 1, NULL,
                                 params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        relay_db_error(conn, res, what, err, errlen);
    PQclear(res);
    if (!ok)
        goto rollback;
    return relay_db_exec(conn, what, "COMMIT", err, errlen);

rollback:
    relay_db_rollback(conn);
    return -1;
}

int relay_migrate(PGconn *conn, FILE *out, int *applied, char *err, size_t errlen)
{
    *applied = 0;
    if (relay_db_exec(conn, "taking the migration lock", MIGRATE_LOCK, err, errlen) != 0)
        return -1;

    int rc = relay_db_exec(conn, "creating relay_migrations",
                           "CREATE TABLE IF NOT EXISTS relay_migrations ("
                           " name text PRIMARY KEY,"
                           " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())",
                           err, errlen);
    for (size_t i = 0; rc == 0 && i < relay_migrations_count; i++) {
        int done = 0;
        rc = is_applied(conn, relay_migrations[i].name, &done, err, errlen);
        if (rc != 0 || done)
            continue;
        rc = apply_one(conn, &relay_migrations[i], err, errlen);
        if (rc == 0) {
            fprintf(out, "applied %s\n", relay_migrations[i].name);
            (*applied)++;
        }
    }

    char ignored[256];
    relay_db_exec(conn, "releasing the migration lock", MIGRATE_UNLOCK, ignored, sizeof ignored);
    return rc;
}
