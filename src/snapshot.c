#include "snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"

int relay_snapshot_supported(PGconn *conn, bool *supported, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, "SELECT to_regproc('pg_current_snapshot') IS NOT NULL");
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok)
        *supported = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    else
        relay_db_error(conn, res, "looking for pg_current_snapshot", err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_snapshot_read(PGconn *conn, bool supported, relay_snapshot *out, char *err, size_t errlen)
{
    /* xid8 has no cast to bigint, but its text is the decimal 64-bit xid. */
    PGresult *res =
        PQexec(conn, supported ? "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,"
                                 " pg_snapshot_xmin(s)::text::bigint,"
                                 " pg_snapshot_xmax(s)::text::bigint"
                                 " FROM pg_current_snapshot() AS s"
                               : "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,"
                                 " -1, -1");
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        out->now_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        out->xmin = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        out->xmax = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    } else {
        relay_db_error(conn, res, "reading the snapshot", err, errlen);
    }
    PQclear(res);
    return ok ? 0 : -1;
}
