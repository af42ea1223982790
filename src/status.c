#include "status.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "commands.h"
#include "db.h"
#include "exit_codes.h"
#include "json_text.h"

/* Reads who leads and who stands by from the name's advisory lock (a bigint key shows in
 * pg_locks as classid, its high half, and objid, objsubid 1), and the epoch. */
static int read_leadership(PGconn *conn, const relay_config *config, relay_status_info *out,
                           int *missing, char *err, size_t errlen)
{
    const char *params[1] = {config->name};
    PGresult *res = PQexecParams(
        conn,
        "SELECT count(*) FILTER (WHERE l.granted), count(*) FILTER (WHERE NOT l.granted),"
        "       coalesce((SELECT epoch FROM relay_checkpoints WHERE name = $1), 0)"
        "  FROM pg_locks l"
        " WHERE l.locktype = 'advisory' AND l.objsubid = 1"
        "   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        "   AND (l.classid::bigint << 32 | l.objid::bigint) = " RELAY_CHECKPOINT_LOCK_KEY_SQL,
        1, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        out->leaders = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        out->standbys = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        out->epoch = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    } else {
        *missing = relay_db_is_missing_object(res);
        relay_db_error(conn, res, "reading who leads", err, errlen);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_status_read(PGconn *conn, const relay_config *config, relay_status_info *out,
                      int *missing, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    *missing = 0;
    char table[1024], id[600], created_at[600];
    if (relay_db_quote_table(conn, config->table, table, sizeof table, err, errlen) != 0 ||
        relay_db_quote_ident(conn, config->columns.id, id, sizeof id, err, errlen) != 0 ||
        relay_db_quote_ident(conn, config->columns.created_at, created_at, sizeof created_at, err,
                             errlen) != 0)
        return -1;

    /* One scan of the undelivered rows gives both lags; max(id) is an index probe. */
    char sql[8192];
    int n = snprintf(
        sql, sizeof sql,
        "WITH cp AS (SELECT position, updated_at, late_events FROM relay_checkpoints"
        "             WHERE name = $1),"
        " gaps AS (SELECT count(*) AS n, coalesce(sum(high_id - low_id + 1), 0) AS ids"
        "            FROM relay_gaps WHERE relay_name = $1),"
        " lag AS (SELECT count(*) AS n, min(%s) AS oldest FROM %s"
        "          WHERE %s > coalesce((SELECT position FROM cp), 0)),"
        /* The next event, and how far ahead of now() its created_at lies: in margin mode one in
         * the future holds the relay, while the lag says nothing. extract() on each side, since
         * PostgreSQL 15 cannot subtract an infinite timestamp. */
        " next AS (SELECT %s AS id, extract(epoch FROM %s) - extract(epoch FROM now()) AS ahead"
        "           FROM %s WHERE %s > coalesce((SELECT position FROM cp), 0) ORDER BY %s LIMIT 1)"
        " SELECT (SELECT position FROM cp),"
        "        to_char((SELECT updated_at FROM cp), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        "        coalesce((SELECT max(%s) FROM %s), 0),"
        "        lag.n,"
        "        coalesce(extract(epoch FROM now()) - extract(epoch FROM lag.oldest), 0),"
        "        coalesce((SELECT late_events FROM cp), 0), gaps.n, gaps.ids,"
        "        (SELECT id FROM next), (SELECT ahead FROM next)"
        "   FROM lag, gaps",
        created_at, table, id, id, created_at, table, id, id, id, table);
    if (n < 0 || (size_t)n >= sizeof sql) {
        snprintf(err, errlen, "the status statement is too long");
        return -1;
    }
    const char *params[1] = {config->name};
    PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        *missing = relay_db_is_missing_object(res);
        relay_db_error(conn, res, "reading the status", err, errlen);
        PQclear(res);
        return -1;
    }
    out->has_checkpoint = !PQgetisnull(res, 0, 0);
    out->position = out->has_checkpoint ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    snprintf(out->updated_at, sizeof out->updated_at, "%s", PQgetvalue(res, 0, 1));
    out->max_id = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    out->lag_rows = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    out->lag_seconds = strtod(PQgetvalue(res, 0, 4), NULL);
    out->late_events = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
    out->watched_gaps = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
    out->watched_ids = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
    if (out->lag_seconds < 0) /* a created_at in the future; not a lag */
        out->lag_seconds = 0;
    double ahead = PQgetisnull(res, 0, 9) ? 0 : strtod(PQgetvalue(res, 0, 9), NULL);
    if (ahead > 0) {
        out->held_by_future = true;
        out->held_id = strtoll(PQgetvalue(res, 0, 8), NULL, 10);
        out->held_ahead_seconds = ahead;
    }
    PQclear(res);
    if (read_leadership(conn, config, out, missing, err, errlen) != 0)
        return -1;
    return relay_retention_read(conn, config, &out->retention, &out->retention_deleted,
                                &out->retention_partitions, missing, err, errlen);
}

static void print_retention_json(FILE *out, const relay_status_info *status)
{
    const relay_retention_bound *b = &status->retention;
    fprintf(out, ",\"retention_deleted\":%" PRId64 ",\"retention_partitions_dropped\":%" PRId64,
            status->retention_deleted, status->retention_partitions);
    if (!b->known) {
        fprintf(out, ",\"retention_bound\":null,\"retention_held_by\":null");
        return;
    }
    fprintf(out, ",\"retention_bound\":%" PRId64 ",\"retention_held_by\":", b->id);
    relay_json_print_string(out, b->held_by);
    fprintf(out, ",\"retention_held_by_gap\":%s", b->by_gap ? "true" : "false");
}

static void print_retention(FILE *out, const relay_config *config, const relay_status_info *status)
{
    const relay_retention_bound *b = &status->retention;
    char setting[64] = "off", after[32];
    relay_duration_format(config->retention_delete_after_ms, after, sizeof after);
    if (relay_retention_enabled(config))
        snprintf(setting, sizeof setting, "on (delete_after %s%s)", after,
                 config->retention_drop_partitions ? ", by partition" : "");
    if (b->known)
        fprintf(out,
                "retention    %s; bound %" PRId64 " (%s of '%s'); %" PRId64
                " rows deleted, %" PRId64 " partitions dropped\n",
                setting, b->id, b->by_gap ? "below a watched gap" : "the position", b->held_by,
                status->retention_deleted, status->retention_partitions);
    else
        fprintf(out,
                "retention    %s; no relay registered on the table; %" PRId64
                " rows deleted, %" PRId64 " partitions dropped\n",
                setting, status->retention_deleted, status->retention_partitions);
}

/* Seconds as JSON: a number with milliseconds, or null where it is infinite. */
static void json_seconds(double seconds, char *out, size_t outlen)
{
    if (isfinite(seconds))
        snprintf(out, outlen, "%.3f", seconds);
    else
        snprintf(out, outlen, "null");
}

void relay_status_print(FILE *out, const relay_config *config, const relay_status_info *status,
                        bool json)
{
    /* The name is restricted to [A-Za-z0-9_.-] by the config, so it needs no JSON escaping. */
    if (json) {
        char lag[32], ahead[32];
        json_seconds(status->lag_seconds, lag, sizeof lag);
        json_seconds(status->held_ahead_seconds, ahead, sizeof ahead);
        fprintf(out,
                "{\"name\":\"%s\",\"position\":%" PRId64 ",\"max_id\":%" PRId64
                ",\"lag_rows\":%" PRId64 ",\"lag_seconds\":%s,\"late_events\":%" PRId64
                ",\"watched_gaps\":%" PRId64 ",\"watched_ids\":%" PRId64 ",",
                config->name, status->position, status->max_id, status->lag_rows, lag,
                status->late_events, status->watched_gaps, status->watched_ids);
        if (status->held_by_future)
            fprintf(out, "\"held_by\":{\"id\":%" PRId64 ",\"ahead_seconds\":%s},", status->held_id,
                    ahead);
        else
            fprintf(out, "\"held_by\":null,");
        fprintf(out, "\"updated_at\":");
        if (status->has_checkpoint)
            fprintf(out, "\"%s\"", status->updated_at);
        else
            fprintf(out, "null");
        print_retention_json(out, status);
        fprintf(out, ",\"leader_running\":%s,\"standbys\":%" PRId64 ",\"epoch\":%" PRId64 "}\n",
                status->leaders > 0 ? "true" : "false", status->standbys, status->epoch);
        return;
    }
    fprintf(out, "name         %s\n", config->name);
    fprintf(out, "table        %s\n", config->table);
    if (status->has_checkpoint)
        fprintf(out, "position     %" PRId64 " (moved %s)\n", status->position, status->updated_at);
    else
        fprintf(out, "position     none yet (the relay has not run under this name)\n");
    fprintf(out, "max id       %" PRId64 "\n", status->max_id);
    fprintf(out, "lag          %" PRId64 " events, oldest %.3f s\n", status->lag_rows,
            status->lag_seconds);
    if (status->held_by_future && isinf(status->held_ahead_seconds))
        fprintf(out,
                "held by      event %" PRId64 ": created_at is infinity (margin mode waits "
                "for it forever)\n",
                status->held_id);
    else if (status->held_by_future)
        fprintf(out,
                "held by      event %" PRId64 ": created_at %.3f s in the future (margin mode "
                "waits until then)\n",
                status->held_id, status->held_ahead_seconds);
    fprintf(out,
            "gaps         %" PRId64 " watched (%" PRId64 " ids); %" PRId64
            " events delivered late so far\n",
            status->watched_gaps, status->watched_ids, status->late_events);
    print_retention(out, config, status);
    fprintf(out, "leader       %s (epoch %" PRId64 "), %" PRId64 " standing by\n",
            status->leaders > 0 ? "running" : "none running", status->epoch, status->standbys);
}

int relay_cmd_status(const relay_cli_options *opts, const relay_config *config,
                     const relay_logger *log, FILE *out)
{
    char err[1024];
    PGconn *conn = relay_db_connect(config, log, err, sizeof err);
    if (!conn) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    relay_status_info status;
    int missing = 0;
    int rc = relay_status_read(conn, config, &status, &missing, err, sizeof err);
    PQfinish(conn);
    if (rc != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    relay_status_print(out, config, &status, opts->json);
    return RELAY_EXIT_OK;
}
