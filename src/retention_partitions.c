#include "retention_partitions.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "retention.h"

int relay_retention_partitioning(PGconn *conn, const relay_config *config, relay_partitioning *out,
                                 char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char table[1300];
    if (relay_db_quote_table(conn, config->table, table, sizeof table, err, errlen) != 0)
        return -1;
    const char *params[2] = {table, config->columns.id};
    /* DETACH PARTITION needs to own the table, DROP TABLE to own the partition. */
    PGresult *res = PQexecParams(
        conn,
        "WITH parts AS (SELECT c.oid, c.relowner, " RELAY_CHECKPOINT_TABLE_NAME_SQL " AS name"
        "                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        "                 JOIN pg_namespace n ON n.oid = c.relnamespace"
        "                WHERE i.inhparent = $1::regclass)"
        " SELECT coalesce((SELECT pt.partstrat = 'r' AND pt.partnatts = 1"
        "                         AND pt.partattrs[0] = a.attnum"
        "                    FROM pg_partitioned_table pt JOIN pg_attribute a"
        "                      ON a.attrelid = pt.partrelid"
        "                   WHERE pt.partrelid = $1::regclass AND a.attname = $2), false),"
        "        (SELECT count(*) FROM parts),"
        "        pg_has_role((SELECT relowner FROM pg_class WHERE oid = $1::regclass), 'USAGE'),"
        "        (SELECT name FROM parts WHERE NOT pg_has_role(relowner, 'USAGE')"
        "          ORDER BY name LIMIT 1)",
        2, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        out->by_id = PQgetvalue(res, 0, 0)[0] == 't';
        out->partitions = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        if (PQgetvalue(res, 0, 2)[0] != 't')
            snprintf(out->not_owned, sizeof out->not_owned, "%s", table);
        else if (!PQgetisnull(res, 0, 3))
            snprintf(out->not_owned, sizeof out->not_owned, "%s", PQgetvalue(res, 0, 3));
        out->owned = out->not_owned[0] == '\0';
    } else {
        relay_db_error(conn, res, "reading how the table is partitioned", err, errlen);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

/*
 * The lowest partition that may go, with the bound and whether the table is partitioned by
 * range of id at all: $1 the table, $2 the id column's name, $3 the id sequence (NULL: none), $4
 * delete_after in ms. Never the partition of the next id (the sequence's), nor, without a
 * sequence, the one of the highest id (the table's max id is then what tells a position from
 * before a truncate, restore.c). A partition's bounds are read from pg_get_expr(relpartbound): "FOR
 * VALUES FROM ('1') TO ('1001')" (bigint; an integer's positive bounds come unquoted), MINVALUE
 * and MAXVALUE, or DEFAULT. Its age is that of
 * its highest id, found through the parent (the range holds exactly that partition's rows): an
 * index probe, where a look at every row would be a scan that holds the relay for its length.
 */
static int candidate_statement(PGconn *conn, const relay_config *config,
                               const relay_source_info *info, char *sql, size_t len, char *err,
                               size_t errlen)
{
    char id[600], created_at[600];
    if (relay_db_quote_ident(conn, config->columns.id, id, sizeof id, err, errlen) != 0 ||
        relay_db_quote_ident(conn, config->columns.created_at, created_at, sizeof created_at, err,
                             errlen) != 0)
        return -1;
    int n = snprintf(
        sql, len,
        "WITH " RELAY_RETENTION_BOUND_CTES ","
        " keyed AS (SELECT pt.partstrat = 'r' AND pt.partnatts = 1 AND pt.partattrs[0] = a.attnum"
        "                  AS by_id"
        "             FROM pg_partitioned_table pt JOIN pg_attribute a ON a.attrelid = pt.partrelid"
        "            WHERE pt.partrelid = $1::regclass AND a.attname = $2),"
        " parts AS (SELECT n.nspname, c.relname, c.reltuples::bigint AS rows, b.lo, b.hi"
        "             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        "             JOIN pg_namespace n ON n.oid = c.relnamespace,"
        "             LATERAL (SELECT substring(e FROM 'FROM \\(''?(-?[0-9]+)''?\\)')::bigint AS "
        "lo,"
        "                             substring(e FROM 'TO \\(''?(-?[0-9]+)''?\\)')::bigint AS hi"
        "                        FROM pg_get_expr(c.relpartbound, c.oid) AS e) b"
        "            WHERE i.inhparent = $1::regclass AND NOT i.inhdetachpending)"
        " SELECT coalesce((SELECT by_id FROM keyed), false), (SELECT id FROM bound),"
        "        p.nspname, p.relname, p.hi, p.rows"
        "   FROM (SELECT 1) one LEFT JOIN LATERAL ("
        "        SELECT * FROM parts"
        "         WHERE (SELECT by_id FROM keyed) AND hi - 1 <= (SELECT id FROM bound)"
        "           AND ($3::oid IS NULL"
        "                OR hi <= coalesce(pg_sequence_last_value($3::oid::regclass), 0) + 1)"
        "           AND ($3::oid IS NOT NULL OR hi <= (SELECT max(t.%s) FROM %s t))"
        "           AND NOT EXISTS (SELECT 1 FROM relay_dead_letters d"
        "                            WHERE d.relay_name IN (SELECT name FROM relays)"
        "                              AND d.dropped_at IS NULL"
        "                              AND d.event_id < hi AND (lo IS NULL OR d.event_id >= lo))"
        "           AND NOT EXISTS (SELECT 1 FROM (SELECT t.%s AS created FROM %s t"
        "                                           WHERE t.%s < hi AND (lo IS NULL OR t.%s >= lo)"
        "                                           ORDER BY t.%s DESC LIMIT 1) newest"
        "                            WHERE newest.created IS NULL OR newest.created >="
        "                                  now() - $4::bigint * interval '1 millisecond')"
        "         ORDER BY hi LIMIT 1) p ON true",
        id, info->quoted_table, created_at, info->quoted_table, id, id, id);
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, errlen, "the partition statement is too long");
        return -1;
    }
    return 0;
}

/* Finds the partition to drop, if any, into out. Returns 0 (out->partition empty: none), or -1
 * with err. */
static int find_candidate(PGconn *conn, const relay_config *config, const relay_source_info *info,
                          relay_partition_round *out, char *err, size_t errlen)
{
    char sql[12000], sequence[16], after[24];
    if (candidate_statement(conn, config, info, sql, sizeof sql, err, errlen) != 0)
        return -1;
    snprintf(sequence, sizeof sequence, "%u", info->sequence_oid);
    snprintf(after, sizeof after, "%" PRId64, config->retention_delete_after_ms);
    const char *params[4] = {info->quoted_table, config->columns.id,
                             info->sequence_oid ? sequence : NULL, after};
    PGresult *res = PQexecParams(conn, sql, 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        relay_db_error(conn, res, "looking for partitions to drop", err, errlen);
        PQclear(res);
        return -1;
    }
    out->by_id = PQgetvalue(res, 0, 0)[0] == 't';
    out->bounded = !PQgetisnull(res, 0, 1);
    out->bound = out->bounded ? strtoll(PQgetvalue(res, 0, 1), NULL, 10) : 0;
    int rc = 0;
    if (!PQgetisnull(res, 0, 2)) {
        char schema[600], name[600];
        rc = relay_db_quote_ident(conn, PQgetvalue(res, 0, 2), schema, sizeof schema, err,
                                  errlen) != 0 ||
                     relay_db_quote_ident(conn, PQgetvalue(res, 0, 3), name, sizeof name, err,
                                          errlen) != 0
                 ? -1
                 : 0;
        if (rc == 0)
            snprintf(out->partition, sizeof out->partition, "%s.%s", schema, name);
        out->below = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
        out->rows = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
    }
    PQclear(res);
    return rc;
}

/* Runs a statement with parameters; returns its result when it has the status wanted, else NULL
 * with err. */
static PGresult *run(PGconn *conn, const char *what, const char *sql, int n,
                     const char *const *params, ExecStatusType wanted, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == wanted)
        return res;
    relay_db_error(conn, res, what, err, errlen);
    PQclear(res);
    return NULL;
}

/*
 * Detaches and drops out->partition within the round's transaction; sets out->turn and
 * out->dropped. The bound is read again once the table's lock is held: it only ever falls when
 * a relay registers, or a reset moves one back, meanwhile, and then the partition stays.
 */
static int drop(PGconn *conn, const relay_config *config, const relay_source_info *info,
                int64_t epoch, relay_partition_round *out, char *err, size_t errlen)
{
    const char *t = info->quoted_table;
    char below[24], epoch_text[24], sql[4000];
    snprintf(below, sizeof below, "%" PRId64, out->below);
    snprintf(epoch_text, sizeof epoch_text, "%" PRId64, epoch);
    const char *table_param[1] = {t};
    PGresult *res = run(conn, "taking the retention turn",
                        "WITH " RELAY_RETENTION_BOUND_CTES " SELECT " RELAY_RETENTION_TURN_SQL, 1,
                        table_param, PGRES_TUPLES_OK, err, errlen);
    if (!res)
        return -1;
    out->turn = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!out->turn)
        return 0;

    /* The lock DETACH takes on the table (ACCESS EXCLUSIVE) queues writers behind it: the lock
     * timeout bounds how long, and the transaction ends within a few round trips. */
    snprintf(sql, sizeof sql, "ALTER TABLE %s DETACH PARTITION %s", t, out->partition);
    if (relay_db_exec(conn, "detaching a partition", sql, err, errlen) != 0)
        return -1;
    snprintf(sql, sizeof sql, "DROP TABLE %s", out->partition);
    if (relay_db_exec(conn, "dropping a detached partition", sql, err, errlen) != 0)
        return -1;
    /* Under the epoch: a fenced relay's drop fails, and the partition stays. */
    const char *params[4] = {t, config->name, below, epoch_text};
    res = run(conn, "counting a dropped partition",
              "WITH " RELAY_RETENTION_BOUND_CTES
              " UPDATE relay_checkpoints SET retention_partitions = retention_partitions + 1"
              "  WHERE name = $2 AND (SELECT id FROM bound) >= $3::bigint - 1"
              "    AND relay_epoch_holds(name, epoch, $2, $4::bigint)",
              4, params, PGRES_COMMAND_OK, err, errlen);
    if (!res)
        return -1;
    out->dropped = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return 0;
}

int relay_retention_drop_partition(PGconn *conn, const relay_config *config,
                                   const relay_source_info *info, int64_t epoch,
                                   relay_partition_round *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->rows = -1;
    if (find_candidate(conn, config, info, out, err, errlen) != 0)
        return -1;
    out->turn = true;
    if (!out->partition[0])
        return 0;
    if (relay_retention_begin(conn, err, errlen) != 0)
        return -1;
    if (drop(conn, config, info, epoch, out, err, errlen) != 0) {
        relay_retention_rollback(conn);
        out->dropped = false;
        return -1;
    }
    if (!out->dropped) {
        relay_retention_rollback(conn);
        return 0;
    }
    if (relay_db_exec(conn, "committing a dropped partition", "COMMIT", err, errlen) == 0)
        return 0;
    relay_retention_rollback(conn);
    out->dropped = false;
    return -1;
}
