#include "checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

#define STORE_POSITION_STATEMENT "relay_store_position"

int relay_checkpoint_session_setup(PGconn *conn, char *err, size_t errlen)
{
    /* At-least-once tolerates a lost checkpoint (it repeats the batch), never a lost event; the
     * events themselves are committed by the application. Waiting for a WAL flush per batch would
     * buy nothing but a slower relay. */
    if (relay_db_exec(conn, "setting synchronous_commit", "SET synchronous_commit = off", err,
                      errlen) != 0)
        return -1;
    /* The gap probe's plan over thousands of gaps is costed high enough for JIT, which then spends
     * a hundred milliseconds compiling a loop of index probes that takes twenty. */
    if (relay_db_exec(conn, "turning JIT off", "SET jit = off", err, errlen) != 0)
        return -1;
    /* A read's plan is the same for every position and limit (an index scan from the position),
     * but the plan cache never settles on it: the custom plan of `LIMIT $2` always looks cheaper
     * than the generic one, so each read of a drain was planned anew. */
    if (relay_db_exec(conn, "fixing the plans", "SET plan_cache_mode = force_generic_plan", err,
                      errlen) != 0)
        return -1;
    /* Every read is an index scan of a batch, where workers cost more than they bring; and a
     * read's header row comes first only from a plain, serial Append. */
    if (relay_db_exec(conn, "turning parallel query off", "SET max_parallel_workers_per_gather = 0",
                      err, errlen) != 0)
        return -1;
    /* Run once per batch: pgbench puts it at 0.08 ms prepared (-M prepared), 0.13 ms parsed and
     * planned each time (-M extended). */
    /* set_config(..., true) is SET LOCAL as an expression: it sets synchronous_commit for the
     * commit of this statement's transaction, which in a pipeline is also the read's, with no
     * statement of its own. */
    PGresult *res = PQprepare(conn, STORE_POSITION_STATEMENT,
                              "UPDATE relay_checkpoints"
                              "   SET position = $2, updated_at = clock_timestamp(),"
                              "       late_events = late_events + $3"
                              " WHERE name = $1 AND relay_epoch_holds(name, epoch, $1, $5)"
                              "   AND set_config('synchronous_commit', $4, true) IS NOT NULL",
                              5, NULL);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        relay_db_error(conn, res, "preparing the checkpoint update", err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_checkpoint_try_lock(PGconn *conn, const char *name, int *acquired, char *err,
                              size_t errlen)
{
    const char *params[1] = {name};
    PGresult *res =
        PQexecParams(conn, "SELECT pg_try_advisory_lock(" RELAY_CHECKPOINT_LOCK_KEY_SQL ")", 1,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "taking the relay lock", err, errlen);
        PQclear(res);
        return -1;
    }
    *acquired = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

#define STR_(x) #x
#define STR(x) STR_(x)

int relay_checkpoint_send_lock(PGconn *conn, const char *name, char *err, size_t errlen)
{
    /* Bounded on the server too: a relay that stops (or whose host vanishes) while it waits
     * leaves a backend in the lock's queue, which would otherwise take the lock once the leader
     * goes and hold it, idle, until it notices that nobody is there. */
    if (relay_db_exec(conn, "waiting for the relay lock",
                      "SET lock_timeout = " STR(RELAY_CHECKPOINT_LOCK_WAIT_MS), err, errlen) != 0)
        return -1;
    const char *params[1] = {name};
    if (!PQsendQueryParams(conn, "SELECT pg_advisory_lock(" RELAY_CHECKPOINT_LOCK_KEY_SQL ")", 1,
                           NULL, params, NULL, NULL, 0)) {
        relay_db_error(conn, NULL, "waiting for the relay lock", err, errlen);
        return -1;
    }
    return 0;
}

/* SQLSTATE lock_not_available: the lock_timeout of the wait. */
#define SQLSTATE_LOCK_NOT_AVAILABLE "55P03"

int relay_checkpoint_receive_lock(PGconn *conn, int *answered, int *acquired, char *err,
                                  size_t errlen)
{
    *answered = *acquired = 0;
    if (!PQconsumeInput(conn)) {
        relay_db_error(conn, NULL, "waiting for the relay lock", err, errlen);
        return -1;
    }
    if (PQisBusy(conn))
        return 0;
    *answered = 1;
    PGresult *res = PQgetResult(conn);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    int timed_out = !ok && state && strcmp(state, SQLSTATE_LOCK_NOT_AVAILABLE) == 0;
    if (!ok && !timed_out)
        relay_db_error(conn, res, "waiting for the relay lock", err, errlen);
    PQclear(res);
    relay_db_discard_results(conn);
    if (!ok)
        return timed_out ? 0 : -1;
    *acquired = 1;
    return relay_db_exec(conn, "taking the relay lock", "RESET lock_timeout", err, errlen);
}

int relay_checkpoint_confirm_lock(PGconn *conn, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                 " AND pid = pg_backend_pid() AND granted");
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (!ok)
        relay_db_error(conn, res, "confirming the relay lock", err, errlen);
    else if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        snprintf(err, errlen, "confirming the relay lock: this session no longer holds it");
        ok = 0;
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_checkpoint_logged(PGconn *conn, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, "SELECT relpersistence FROM pg_class"
                                 " WHERE oid = to_regclass('relay_checkpoints')");
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        relay_db_error(conn, res, "reading how relay_checkpoints is stored", err, errlen);
    else if (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] != 'p') {
        snprintf(err, errlen,
                 "relay_checkpoints is UNLOGGED (or temporary): the relay flushes the WAL past "
                 "what it delivers by writing to it, which such a table does not log; run ALTER "
                 "TABLE relay_checkpoints SET LOGGED");
        ok = 0;
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_checkpoint_load(PGconn *conn, const char *name, const char *quoted_table,
                          relay_checkpoint *out, relay_gaps *gaps, int *missing_table, char *err,
                          size_t errlen)
{
    const char *params[2] = {name, quoted_table};
    *missing_table = 0;
    /* The update makes RETURNING yield the existing row too, in one statement. The table is
     * written at every connect: a relay reconfigured for another table, a table renamed, or
     * restored with another oid, is counted by retention on the table it reads now. */
    PGresult *res =
        PQexecParams(conn,
                     "INSERT INTO relay_checkpoints (name, source_table, source_table_name, epoch)"
                     " SELECT $1, c.oid, " RELAY_CHECKPOINT_TABLE_NAME_SQL ", 1 FROM pg_class c"
                     "   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $2::regclass"
                     " ON CONFLICT (name) DO UPDATE SET source_table = EXCLUDED.source_table,"
                     "     source_table_name = EXCLUDED.source_table_name,"
                     "     epoch = relay_checkpoints.epoch + 1"
                     " RETURNING position, coalesce(system_identifier, -1), late_events, epoch",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        *missing_table = relay_db_is_missing_object(res);
        if (*missing_table)
            snprintf(err, errlen,
                     "the relay's tables are missing or out of date: run `outbox-relay migrate`");
        else
            relay_db_error(conn, res, "reading the checkpoint", err, errlen);
        PQclear(res);
        return -1;
    }
    out->position = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    out->system_identifier = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    out->late_events = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    out->epoch = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    PQclear(res);

    relay_gaps_free(gaps);
    res = PQexecParams(conn,
                       "SELECT low_id, high_id, first_seen_ms"
                       " FROM relay_gaps WHERE relay_name = $1 ORDER BY low_id",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "reading the watched gaps", err, errlen);
        PQclear(res);
        return -1;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        /* Their writers are looked at anew (see relay_gaps_set_round). */
        relay_gap gap = {strtoll(PQgetvalue(res, i, 0), NULL, 10),
                         strtoll(PQgetvalue(res, i, 1), NULL, 10),
                         strtoll(PQgetvalue(res, i, 2), NULL, 10), 0, true};
        if (relay_gaps_append(gaps, gap) != 0) {
            snprintf(err, errlen, "out of memory loading %d watched gaps", PQntuples(res));
            PQclear(res);
            relay_gaps_free(gaps);
            return -1;
        }
    }
    PQclear(res);
    if (relay_gaps_mark_stored(gaps, INT64_MAX) != 0) {
        snprintf(err, errlen, "out of memory loading %zu watched gaps", gaps->count);
        relay_gaps_free(gaps);
        return -1;
    }
    return 0;
}

/* Runs a statement with text parameters that returns no rows. Returns 0, or -1 with err. */
static int exec_params(PGconn *conn, const char *what, const char *sql, int n,
                       const char *const *params, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        relay_db_error(conn, res, what, err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

/* Sends a statement into the pipeline and counts it. Returns 0, or -1 with err. */
static int send_statement(PGconn *conn, const char *what, const char *sql, int n,
                          const char *const *params, int *statements, char *err, size_t errlen)
{
    if (!PQsendQueryParams(conn, sql, n, NULL, params, NULL, NULL, 0)) {
        relay_db_error(conn, NULL, what, err, errlen);
        return -1;
    }
    ++*statements;
    return 0;
}

static int send_dead_letters(PGconn *conn, const char *name, const relay_checkpoint_update *u,
                             int *statements, char *err, size_t errlen)
{
    for (size_t i = 0; i < u->n_dead_letters; i++) {
        char id_text[24];
        snprintf(id_text, sizeof id_text, "%" PRId64, u->dead_letters[i].event_id);
        const char *params[3] = {name, id_text, u->dead_letters[i].reason};
        if (send_statement(conn, "recording a dead letter",
                           "INSERT INTO relay_dead_letters (relay_name, event_id, reason)"
                           " VALUES ($1, $2, $3)",
                           3, params, statements, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Writes what changed in the watched gaps since they were last stored, in one statement: the
 * deleted and the upserted low ids never overlap, so neither half sees the other's rows. */
static int send_gaps(PGconn *conn, const char *name, relay_gaps *gaps, int64_t position,
                     int *statements, char *err, size_t errlen)
{
    relay_gaps_changes c;
    if (relay_gaps_changes_build(gaps, position, &c) != 0) {
        snprintf(err, errlen, "out of memory storing the watched gaps");
        return -1;
    }
    int rc = 0;
    if (c.n_deleted > 0 || c.n_upserted > 0) {
        const char *params[5] = {name, c.deleted_lows, c.lows, c.highs, c.first_seen};
        rc = send_statement(
            conn, "storing the watched gaps",
            "WITH gone AS (DELETE FROM relay_gaps"
            "               WHERE relay_name = $1 AND low_id = ANY($2::bigint[]))"
            " INSERT INTO relay_gaps (relay_name, low_id, high_id, first_seen_ms)"
            " SELECT $1, * FROM unnest($3::bigint[], $4::bigint[], $5::bigint[])"
            " ON CONFLICT (relay_name, low_id) DO UPDATE"
            " SET high_id = EXCLUDED.high_id, first_seen_ms = EXCLUDED.first_seen_ms",
            5, params, statements, err, errlen);
    }
    relay_gaps_changes_free(&c);
    /* Taken as stored once sent: if the pipeline fails, the connection is dropped and the gaps
     * are loaded again from what the database has. */
    if (rc == 0 && relay_gaps_mark_stored(gaps, position) != 0) {
        snprintf(err, errlen, "out of memory keeping the stored gaps");
        rc = -1;
    }
    return rc;
}

int relay_checkpoint_send(PGconn *conn, const char *name, const relay_checkpoint_update *u,
                          int *statements, char *err, size_t errlen)
{
    *statements = 0;
    if (send_dead_letters(conn, name, u, statements, err, errlen) != 0 ||
        (u->gaps && send_gaps(conn, name, u->gaps, u->position, statements, err, errlen) != 0))
        return -1;

    char position_text[24], late_text[24], epoch_text[24];
    snprintf(position_text, sizeof position_text, "%" PRId64, u->position);
    snprintf(late_text, sizeof late_text, "%" PRId64, u->late_events);
    snprintf(epoch_text, sizeof epoch_text, "%" PRId64, u->epoch);
    const char *params[5] = {name, position_text, late_text, u->synchronous ? "local" : "off",
                             epoch_text};
    if (!PQsendQueryPrepared(conn, STORE_POSITION_STATEMENT, 5, params, NULL, NULL, 0)) {
        relay_db_error(conn, NULL, "storing the checkpoint", err, errlen);
        return -1;
    }
    ++*statements;
    return 0;
}

int relay_checkpoint_receive(PGconn *conn, const char *name, int statements, char *err,
                             size_t errlen)
{
    /* Every result is read, to the sync point's, even after the first error: the pipeline must
     * be left clean. The first error is the one that tells. */
    int ok = 1;
    for (int i = 0; i < statements; i++) {
        PGresult *res = PQgetResult(conn);
        if (ok && PQresultStatus(res) != PGRES_COMMAND_OK) {
            relay_db_error(conn, res, "storing the checkpoint", err, errlen);
            ok = 0;
        } else if (ok && i == statements - 1 && strcmp(PQcmdTuples(res), "1") != 0) {
            /* The position's update comes last. */
            snprintf(err, errlen, "storing the checkpoint: the row for '%s' is gone", name);
            ok = 0;
        }
        PQclear(res);
        relay_db_discard_results(conn);
    }
    return ok ? 0 : -1;
}

int relay_checkpoint_commit(PGconn *conn, const char *name, const relay_checkpoint_update *u,
                            char *err, size_t errlen)
{
    /* The statements between two sync points of a pipeline are one implicit transaction: all of
     * them or none, in one round trip. */
    int statements = 0;
    if (relay_db_pipeline_begin(conn, err, errlen) != 0 ||
        relay_checkpoint_send(conn, name, u, &statements, err, errlen) != 0 ||
        relay_db_pipeline_send(conn, err, errlen) != 0)
        return -1;
    int rc = relay_checkpoint_receive(conn, name, statements, err, errlen);
    /* The sync point is read after an error too, so that the connection stays usable. */
    char end_err[256];
    if (relay_db_pipeline_end(conn, rc == 0 ? err : end_err, rc == 0 ? errlen : sizeof end_err) !=
        0)
        rc = -1;
    return rc;
}

int relay_checkpoint_set_system(PGconn *conn, const char *name, int64_t epoch,
                                int64_t system_identifier, char *err, size_t errlen)
{
    char sysid_text[24], epoch_text[24];
    snprintf(sysid_text, sizeof sysid_text, "%" PRId64, system_identifier);
    snprintf(epoch_text, sizeof epoch_text, "%" PRId64, epoch);
    const char *params[3] = {name, sysid_text, epoch_text};
    return exec_params(conn, "recording the system identifier",
                       "UPDATE relay_checkpoints SET system_identifier = $2"
                       " WHERE name = $1 AND relay_epoch_holds(name, epoch, $1, $3)",
                       3, params, err, errlen);
}

int relay_checkpoint_reset(PGconn *conn, const char *name, int64_t epoch, int64_t position,
                           int64_t system_identifier, char *err, size_t errlen)
{
    char position_text[24], sysid_text[24], epoch_text[24];
    snprintf(position_text, sizeof position_text, "%" PRId64, position);
    snprintf(sysid_text, sizeof sysid_text, "%" PRId64, system_identifier);
    snprintf(epoch_text, sizeof epoch_text, "%" PRId64, epoch);
    const char *params[4] = {name, position_text, system_identifier < 0 ? NULL : sysid_text,
                             epoch_text};
    /* The row's update comes first: under a superseded epoch it fails, and with it the
     * transaction, before the gaps are touched. */
    if (relay_db_exec(conn, "resetting the checkpoint", "BEGIN", err, errlen) == 0 &&
        exec_params(conn, "resetting the checkpoint",
                    "UPDATE relay_checkpoints"
                    "   SET position = $2, system_identifier = $3, updated_at = clock_timestamp()"
                    " WHERE name = $1 AND relay_epoch_holds(name, epoch, $1, $4::bigint)",
                    4, params, err, errlen) == 0 &&
        /* Gaps below the new position are still ids the relay passed while they were missing;
         * those above it are ahead again, and will be read as rows or seen anew as gaps. */
        exec_params(conn, "resetting the checkpoint",
                    "DELETE FROM relay_gaps WHERE relay_name = $1 AND low_id > $2", 2, params, err,
                    errlen) == 0 &&
        exec_params(conn, "resetting the checkpoint",
                    "UPDATE relay_gaps SET high_id = $2 WHERE relay_name = $1 AND high_id > $2", 2,
                    params, err, errlen) == 0 &&
        relay_db_exec(conn, "resetting the checkpoint", "COMMIT", err, errlen) == 0)
        return 0;
    relay_db_rollback(conn);
    return -1;
}
