#include "checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

int relay_checkpoint_session_setup(PGconn *conn, char *err, size_t errlen)
{
    /* At-least-once tolerates a lost checkpoint (it repeats the batch), never a lost event; the
     * events themselves are committed by the application. Waiting for a WAL flush per batch would
     * buy nothing but a slower relay. */
    return relay_db_exec(conn, "setting synchronous_commit", "SET synchronous_commit = off", err,
                         errlen);
}

int relay_checkpoint_try_lock(PGconn *conn, const char *name, int *acquired, char *err,
                              size_t errlen)
{
    const char *params[1] = {name};
    PGresult *res =
        PQexecParams(conn,
                     "SELECT pg_try_advisory_lock(hashtextextended('outbox-relay:' || $1,"
                     " coalesce(to_regclass('relay_checkpoints')::oid::bigint, 0)))",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "taking the relay lock", err, errlen);
        PQclear(res);
        return -1;
    }
    *acquired = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

int relay_checkpoint_load(PGconn *conn, const char *name, int64_t *position, int *missing_table,
                          char *err, size_t errlen)
{
    const char *params[1] = {name};
    *missing_table = 0;
    /* The no-op update makes RETURNING yield the existing row too, in one statement. */
    PGresult *res = PQexecParams(conn,
                                 "INSERT INTO relay_checkpoints (name) VALUES ($1)"
                                 " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
                                 " RETURNING position",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        *missing_table = relay_db_is_missing_object(res);
        if (*missing_table)
            snprintf(err, errlen,
                     "table relay_checkpoints does not exist: run `outbox-relay migrate` first");
        else
            relay_db_error(conn, res, "reading the checkpoint", err, errlen);
        PQclear(res);
        return -1;
    }
    *position = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return 0;
}

int relay_checkpoint_store(PGconn *conn, const char *name, int64_t position, char *err,
                           size_t errlen)
{
    char position_text[24];
    snprintf(position_text, sizeof position_text, "%" PRId64, position);
    const char *params[2] = {name, position_text};
    PGresult *res = PQexecParams(conn,
                                 "UPDATE relay_checkpoints"
                                 "   SET position = $2, updated_at = clock_timestamp()"
                                 " WHERE name = $1",
                                 2, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        relay_db_error(conn, res, "storing the checkpoint", err, errlen);
    else if (strcmp(PQcmdTuples(res), "1") != 0) {
        snprintf(err, errlen, "storing the checkpoint: the row for '%s' is gone", name);
        ok = 0;
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_checkpoint_store_dead_letters(PGconn *conn, const char *name, int64_t position,
                                        const relay_sink_rejection *rejected, size_t n_rejected,
                                        char *err, size_t errlen)
{
    if (relay_db_exec(conn, "recording dead letters", "BEGIN", err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < n_rejected; i++) {
        char id_text[24];
        snprintf(id_text, sizeof id_text, "%" PRId64, rejected[i].event_id);
        const char *params[3] = {name, id_text, rejected[i].reason};
        PGresult *res = PQexecParams(conn,
                                     "INSERT INTO relay_dead_letters (relay_name, event_id, reason)"
                                     " VALUES ($1, $2, $3)",
                                     3, NULL, params, NULL, NULL, 0);
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            relay_db_error(conn, res, "recording a dead letter", err, errlen);
        PQclear(res);
        if (!ok)
            goto rollback;
    }
    if (relay_checkpoint_store(conn, name, position, err, errlen) != 0 ||
        relay_db_exec(conn, "recording dead letters", "COMMIT", err, errlen) != 0)
        goto rollback;
    return 0;

rollback:;
    char ignored[256];
    relay_db_exec(conn, "rollback", "ROLLBACK", ignored, sizeof ignored);
    return -1;
}
