#include "ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

int relay_ids_inspect(PGconn *conn, const relay_config *config, const relay_source_info *info,
                      relay_ids_verdict *verdict, char *msg, size_t msglen, char *err,
                      size_t errlen)
{
    /* The sequence: the column's own (serial or identity), else the one its default depends on. */
    const char *params[2] = {info->quoted_table, config->columns.id};
    PGresult *res = PQexecParams(
        conn,
        "SELECT a.attidentity <> '', coalesce(pg_get_expr(d.adbin, d.adrelid) ~ '^nextval\\(',"
        "       false), s.seqrelid::regclass::text, s.seqcache"
        "  FROM pg_attribute a"
        "  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        "  LEFT JOIN pg_sequence s ON s.seqrelid = coalesce("
        "       pg_get_serial_sequence($1, $2)::regclass::oid,"
        "       (SELECT dep.refobjid FROM pg_depend dep"
        "          JOIN pg_class c ON c.oid = dep.refobjid AND c.relkind = 'S'"
        "         WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid"
        "           AND dep.refclassid = 'pg_class'::regclass LIMIT 1))"
        " WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
        2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        relay_db_error(conn, res, "reading how the ids are assigned", err, errlen);
        PQclear(res);
        return -1;
    }
    bool identity = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    bool nextval = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    const char *sequence = PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2);
    int64_t cache = PQgetisnull(res, 0, 3) ? 0 : strtoll(PQgetvalue(res, 0, 3), NULL, 10);

    *verdict = RELAY_IDS_OK;
    msg[0] = '\0';
    if (config->ids_taken_ahead) {
        /* The user said so: the floor decides, and nothing here changes that. */
    } else if (sequence && cache > 1) {
        *verdict = RELAY_IDS_REFUSE;
        snprintf(msg, msglen,
                 "table %s: the id sequence %s has CACHE %lld: every session takes ids ahead "
                 "and may insert one long after, so a missing id can never be proven dead and "
                 "events could be lost or arrive out of order. Run ALTER SEQUENCE %s CACHE 1, "
                 "or, if the application takes ids ahead on purpose, set "
                 "source.ids_taken_ahead: true with a source.gap_floor",
                 config->table, sequence, (long long)cache, sequence);
    } else if (!identity && !nextval) {
        *verdict = RELAY_IDS_WARN;
        snprintf(msg, msglen,
                 "table %s: the default of the id column \"%s\" is neither nextval() nor an "
                 "identity: the relay proves a missing id dead only for ids the INSERT takes "
                 "itself. If the application takes its ids before inserting, set "
                 "source.ids_taken_ahead: true with a source.gap_floor",
                 config->table, config->columns.id);
    }
    PQclear(res);
    return 0;
}
