#include "retention.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

int relay_retention_read(PGconn *conn, const relay_config *config, relay_retention_bound *bound,
                         int64_t *deleted, int64_t *partitions, int *missing, char *err,
                         size_t errlen)
{
    memset(bound, 0, sizeof *bound);
    *deleted = *partitions = 0;
    *missing = 0;
    char table[1300];
    if (relay_db_quote_table(conn, config->table, table, sizeof table, err, errlen) != 0)
        return -1;
    const char *params[2] = {table, config->name};
    PGresult *res =
        PQexecParams(conn,
                     "WITH " RELAY_RETENTION_BOUND_CTES " SELECT b.id, b.held_by, b.by_gap,"
                     "        (SELECT retention_deleted FROM relay_checkpoints WHERE name = $2),"
                     "        (SELECT retention_partitions FROM relay_checkpoints WHERE name = $2)"
                     "   FROM (SELECT 1) one LEFT JOIN bound b ON true",
                     2, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (!ok) {
        *missing = relay_db_is_missing_object(res);
        relay_db_error(conn, res, "reading the retention bound", err, errlen);
        PQclear(res);
        return -1;
    }
    bound->known = !PQgetisnull(res, 0, 0);
    if (bound->known) {
        bound->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(bound->held_by, sizeof bound->held_by, "%s", PQgetvalue(res, 0, 1));
        bound->by_gap = PQgetvalue(res, 0, 2)[0] == 't';
    }
    *deleted = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    *partitions = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    PQclear(res);
    return 0;
}

/* Appends ", text" (or text first) to list, keeping what fits. */
static void list_append(char *list, size_t len, const char *text)
{
    size_t used = strlen(list);
    snprintf(list + used, len - used, "%s%s", used ? ", " : "", text);
}

/* Whether the relay_checkpoints of schema has a row naming table (oid, name): 1; only rows naming
 * no table (older relays, which may read it), or it cannot be read (a table not migrated, no
 * privilege): -1; neither: 0. */
static int records_table(PGconn *conn, const char *schema, const char *oid, const char *name)
{
    char quoted[600], sql[1200];
    char ignored[256];
    if (relay_db_quote_ident(conn, schema, quoted, sizeof quoted, ignored, sizeof ignored) != 0)
        return -1;
    snprintf(sql, sizeof sql,
             "SELECT coalesce(bool_or(source_table = $1::oid OR source_table_name = $2), false),"
             "       coalesce(bool_or(source_table IS NULL AND source_table_name IS NULL), false)"
             "  FROM %s.relay_checkpoints",
             quoted);
    const char *params[2] = {oid, name};
    PGresult *res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        rc = PQgetvalue(res, 0, 0)[0] == 't' ? 1 : PQgetvalue(res, 0, 1)[0] == 't' ? -1 : 0;
    PQclear(res);
    return rc;
}

int relay_retention_uncounted(PGconn *conn, const char *quoted_table, char *found, char *unknown,
                              size_t len, char *err, size_t errlen)
{
    found[0] = unknown[0] = '\0';
    const char *params[1] = {quoted_table};
    PGresult *res = PQexecParams(
        conn,
        "SELECT n.nspname, (SELECT c.oid FROM pg_class c WHERE c.oid = $1::regclass)::text,"
        "       (SELECT " RELAY_CHECKPOINT_TABLE_NAME_SQL " FROM pg_class c"
        "          JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass)"
        "  FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace"
        " WHERE r.relname = 'relay_checkpoints' AND r.relkind IN ('r', 'p')"
        "   AND r.oid IS DISTINCT FROM to_regclass('relay_checkpoints')"
        " ORDER BY n.nspname",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "looking for other relay_checkpoints", err, errlen);
        PQclear(res);
        return -1;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        int records = records_table(conn, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                                    PQgetvalue(res, i, 2));
        if (records != 0)
            list_append(records > 0 ? found : unknown, len, PQgetvalue(res, i, 0));
    }
    PQclear(res);
    return 0;
}

int relay_retention_begin(PGconn *conn, char *err, size_t errlen)
{
    /* Without a lock timeout, a DELETE queued behind a CREATE INDEX (which lets reads through)
     * would hold the relay's reads for as long. */
    if (relay_db_exec(conn, "beginning a retention round",
                      "BEGIN; SET LOCAL lock_timeout = '" RELAY_RETENTION_LOCK_TIMEOUT "';"
                      " SET LOCAL statement_timeout = '" RELAY_RETENTION_STATEMENT_TIMEOUT "'",
                      err, errlen) == 0)
        return 0;
    relay_retention_rollback(conn);
    return -1;
}

void relay_retention_rollback(PGconn *conn)
{
    /* A ROLLBACK outside a transaction would only draw a WARNING onto stderr. */
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        relay_db_rollback(conn);
}

/* The DELETE of one round: $1 the table, $2 delete_after (ms), $3 batch_size, $4 the relay's
 * name. Returns 0, or -1 with err when it does not fit. */
static int delete_statement(PGconn *conn, const relay_config *config, const relay_source_info *info,
                            char *sql, size_t len, char *err, size_t errlen)
{
    char id[600], created_at[600], keep_last[2400] = "";
    const char *t = info->quoted_table;
    if (relay_db_quote_ident(conn, config->columns.id, id, sizeof id, err, errlen) != 0 ||
        relay_db_quote_ident(conn, config->columns.created_at, created_at, sizeof created_at, err,
                             errlen) != 0)
        return -1;
    /* Without a sequence, the table's max id is the only witness of how far ids went (restore.c):
     * an empty table would make every position look like one from before a truncate. */
    if (info->sequence_oid == 0 &&
        snprintf(keep_last, sizeof keep_last, " AND t.%s < (SELECT max(%s) FROM %s)", id, id, t) >=
            (int)sizeof keep_last) {
        snprintf(err, errlen, "the retention statement is too long");
        return -1;
    }
    /* Dead letters stay: relay_dead_letters keeps their ids, the table their contents, which the
     * operator needs to send them again (unless the operator dropped them). A NULL created_at has
     * no age, and stays too. */
    int n = snprintf(
        sql, len,
        "WITH " RELAY_RETENTION_BOUND_CTES ","
        " turn AS (SELECT " RELAY_RETENTION_TURN_SQL " AS mine),"
        " gone AS (DELETE FROM %s WHERE %s IN ("
        "   SELECT t.%s FROM %s t"
        "    WHERE t.%s <= (SELECT id FROM bound) AND (SELECT mine FROM turn)"
        "      AND t.%s < now() - $2::bigint * interval '1 millisecond'%s"
        "      AND NOT EXISTS (SELECT 1 FROM relay_dead_letters d"
        "                       WHERE d.event_id = t.%s AND d.dropped_at IS NULL"
        "                         AND d.relay_name IN (SELECT name FROM relays))"
        "    ORDER BY t.%s LIMIT $3::int)"
        "   RETURNING 1),"
        " counted AS (UPDATE relay_checkpoints"
        "                SET retention_deleted = retention_deleted + (SELECT count(*) FROM gone)"
        "              WHERE name = $4 AND EXISTS (SELECT 1 FROM gone)"
        "                AND relay_epoch_holds(name, epoch, $4, $5::bigint))"
        " SELECT (SELECT mine FROM turn), (SELECT count(*) FROM gone), (SELECT id FROM bound)",
        t, id, id, t, id, created_at, keep_last, id, id);
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, errlen, "the retention statement is too long");
        return -1;
    }
    return 0;
}

int relay_retention_delete(PGconn *conn, const relay_config *config, const relay_source_info *info,
                           int64_t epoch, relay_retention_round *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char sql[12000], after[24], batch[24], epoch_text[24];
    if (delete_statement(conn, config, info, sql, sizeof sql, err, errlen) != 0)
        return -1;
    snprintf(after, sizeof after, "%" PRId64, config->retention_delete_after_ms);
    snprintf(batch, sizeof batch, "%d", config->retention_batch_size);
    snprintf(epoch_text, sizeof epoch_text, "%" PRId64, epoch);
    /* A fenced relay's round fails (relay_epoch_holds) and deletes nothing. */
    const char *params[5] = {info->quoted_table, after, batch, config->name, epoch_text};

    if (relay_retention_begin(conn, err, errlen) != 0)
        return -1;
    PGresult *res = PQexecParams(conn, sql, 5, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        out->turn = PQgetvalue(res, 0, 0)[0] == 't';
        out->deleted = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        out->bounded = !PQgetisnull(res, 0, 2);
        out->bound = out->bounded ? strtoll(PQgetvalue(res, 0, 2), NULL, 10) : 0;
    } else {
        relay_db_error(conn, res, "deleting delivered rows", err, errlen);
    }
    PQclear(res);
    if (ok && relay_db_exec(conn, "committing the deletion of delivered rows", "COMMIT", err,
                            errlen) == 0)
        return 0;
    relay_retention_rollback(conn);
    memset(out, 0, sizeof *out);
    return -1;
}
