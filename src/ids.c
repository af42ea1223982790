#include "ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

/* The table's smallest id (1 when it is empty): one probe of the primary key. */
static int smallest_id(PGconn *conn, const relay_config *config, const relay_source_info *info,
                       int64_t *smallest, char *err, size_t errlen)
{
    char id[600], sql[2048];
    if (relay_db_quote_ident(conn, config->columns.id, id, sizeof id, err, errlen) != 0)
        return -1;
    snprintf(sql, sizeof sql, "SELECT coalesce(min(%s), 1) FROM %s", id, info->quoted_table);
    PGresult *res = PQexec(conn, sql);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok)
        *smallest = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else
        relay_db_error(conn, res, "reading the smallest id", err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_ids_inspect(PGconn *conn, const relay_config *config, relay_source_info *info,
                      relay_ids_verdict *verdict, char *msg, size_t msglen, char *err,
                      size_t errlen)
{
    /* The sequence: the column's own (serial or identity), else the one its default depends on. */
    const char *params[2] = {info->quoted_table, config->columns.id};
    PGresult *res = PQexecParams(
        conn,
        "SELECT a.attidentity <> '', coalesce(pg_get_expr(d.adbin, d.adrelid) ~ '^nextval\\(',"
        "       false), s.seqrelid::regclass::text, s.seqcache, s.seqmin, s.seqincrement,"
        "       s.seqrelid, has_sequence_privilege(s.seqrelid, 'SELECT, USAGE')"
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
    char sequence_name[512];
    snprintf(sequence_name, sizeof sequence_name, "%s", PQgetvalue(res, 0, 2));
    const char *sequence = PQgetisnull(res, 0, 2) ? NULL : sequence_name;
    int64_t cache = PQgetisnull(res, 0, 3) ? 0 : strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    int64_t seqmin = PQgetisnull(res, 0, 4) ? 1 : strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    int64_t increment = PQgetisnull(res, 0, 5) ? 1 : strtoll(PQgetvalue(res, 0, 5), NULL, 10);
    info->sequence_oid = sequence ? (Oid)strtoul(PQgetvalue(res, 0, 6), NULL, 10) : 0;
    bool readable = sequence && strcmp(PQgetvalue(res, 0, 7), "t") == 0;
    PQclear(res);
    int64_t smallest = 1;
    if (smallest_id(conn, config, info, &smallest, err, errlen) != 0)
        return -1;

    *verdict = RELAY_IDS_OK;
    msg[0] = '\0';
    /* A new position starts at 0 and the relay reads the ids above it. */
    if (smallest <= 0) {
        *verdict = RELAY_IDS_REFUSE;
        snprintf(msg, msglen,
                 "table %s has ids at or below 0 (the smallest is %lld): the relay delivers only "
                 "ids above 0, in increasing order, and would pass these by",
                 config->table, (long long)smallest);
    } else if (sequence && !readable) {
        *verdict = RELAY_IDS_REFUSE;
        snprintf(msg, msglen,
                 "table %s: the relay's role cannot read the id sequence %s: it reads it with "
                 "every batch to notice a restart (TRUNCATE ... RESTART IDENTITY), which would "
                 "make new events reuse ids it passed. GRANT USAGE ON SEQUENCE %s TO the role",
                 config->table, sequence, sequence);
    } else if (sequence && (increment < 0 || seqmin <= 0)) {
        *verdict = RELAY_IDS_REFUSE;
        snprintf(msg, msglen,
                 "table %s: the id sequence %s %s: the relay delivers only ids above 0, in "
                 "increasing order; ALTER SEQUENCE %s %s",
                 config->table, sequence,
                 increment < 0 ? "counts down (a negative INCREMENT)"
                               : "may hand out ids at or below 0 (MINVALUE)",
                 sequence, increment < 0 ? "INCREMENT BY 1" : "MINVALUE 1");
    } else if (config->ids_taken_ahead) {
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
    return 0;
}
