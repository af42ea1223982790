#include "restore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

/* Runs a one-value query; NULL reads as fallback. Returns 0, or -1 with err. */
static int query_int64(PGconn *conn, const char *what, const char *sql, int n,
                       const char *const *params, int64_t fallback, int64_t *out, char *err,
                       size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok)
        *out = PQgetisnull(res, 0, 0) ? fallback : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else
        relay_db_error(conn, res, what, err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_restore_system_identifier(PGconn *conn, int64_t *sysid, char *err, size_t errlen)
{
    return query_int64(conn, "reading the system identifier",
                       "SELECT CASE WHEN to_regproc('pg_control_system') IS NOT NULL"
                       " THEN (SELECT system_identifier FROM pg_control_system()) END",
                       0, NULL, -1, sysid, err, errlen);
}

int relay_restore_max_id(PGconn *conn, const relay_config *config, const relay_source_info *info,
                         int64_t *max_id, char *err, size_t errlen)
{
    char id[600], sql[2048];
    if (relay_db_quote_ident(conn, config->columns.id, id, sizeof id, err, errlen) != 0)
        return -1;
    snprintf(sql, sizeof sql, "SELECT max(%s) FROM %s", id, info->quoted_table);
    return query_int64(conn, "reading the table's max id", sql, 0, NULL, 0, max_id, err, errlen);
}

int relay_restore_high_water(PGconn *conn, const relay_config *config,
                             const relay_source_info *info, int64_t *high, char *err, size_t errlen)
{
    const char *params[2] = {info->quoted_table, config->columns.id};
    int64_t last_value = -1;
    /* pg_get_serial_sequence parses the table name as SQL (quoted) but takes the column as is. */
    if (query_int64(conn, "reading the id sequence",
                    "SELECT CASE WHEN s IS NOT NULL AND has_sequence_privilege(s, 'SELECT, USAGE')"
                    " THEN pg_sequence_last_value(s) END"
                    " FROM (SELECT pg_get_serial_sequence($1, $2)::regclass AS s) AS q",
                    2, params, -1, &last_value, err, errlen) != 0)
        return -1;
    if (last_value >= 0) {
        *high = last_value;
        return 0;
    }
    return relay_restore_max_id(conn, config, info, high, err, errlen);
}
