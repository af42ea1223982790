#include "lockers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"

#define OBSERVE_STATEMENT "relay_observe_writers"

/* This host's CLOCK_REALTIME in ms since the epoch. */
static int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int relay_lockers_prepare(PGconn *conn, const char *quoted_table, relay_lockers *l, char *err,
                          size_t errlen)
{
    if (l->round == 0) {
        l->departed_from = INT64_MAX;
        l->departed_to = -1;
    }
    if (snprintf(l->table, sizeof l->table, "%s", quoted_table) >= (int)sizeof l->table) {
        snprintf(err, errlen, "the table's name is too long");
        return -1;
    }
    PGresult *res = PQexec(conn, "SELECT to_regclass('pg_catalog.pg_locks') IS NOT NULL"
                                 " AND to_regclass('pg_catalog.pg_inherits') IS NOT NULL");
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok)
        l->supported = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    else
        relay_db_error(conn, res, "looking for pg_locks", err, errlen);
    PQclear(res);
    if (!ok)
        return -1;

    /*
     * The clock, then one row per writer holding RowExclusiveLock on the table or on any table
     * below it (partitions and inheritance children take inserts of their own). Only granted
     * locks: a writer waits for the lock before its default takes an id, so one still waiting
     * holds none. The table is a parameter, looked up at every round, so that partitions added
     * since are watched too.
     */
    const char *sql =
        l->supported
            ? "WITH RECURSIVE tree(oid) AS ("
              "   SELECT $1::regclass::oid"
              "   UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid)"
              " SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint, NULL, NULL"
              " UNION ALL"
              " SELECT NULL, l.virtualtransaction, bool_or(l.pid IS NULL)"
              "   FROM pg_locks l"
              "  WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' AND l.granted"
              "    AND l.database = (SELECT oid FROM pg_database"
              "                       WHERE datname = current_database())"
              "    AND l.relation IN (SELECT oid FROM tree)"
              "    AND l.pid IS DISTINCT FROM pg_backend_pid()"
              "  GROUP BY l.virtualtransaction"
            : "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint, NULL, NULL"
              " WHERE $1::text IS NOT NULL";
    res = PQprepare(conn, OBSERVE_STATEMENT, sql, 1, NULL);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        relay_db_error(conn, res, "preparing the look at the writers", err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

/* A writer seen at the latest round is gone: the gaps of the rounds it was there for may have
 * filled. A prepared one may be any earlier writer (see relay_lockers_evidence). */
static void note_departure(relay_lockers *l, const relay_locker *gone)
{
    int64_t from = gone->prepared ? 0 : gone->since;
    if (from < l->departed_from)
        l->departed_from = from;
    if (l->round > l->departed_to)
        l->departed_to = l->round;
}

bool relay_lockers_take_departures(relay_lockers *l, int64_t *from, int64_t *to)
{
    *from = l->departed_from;
    *to = l->departed_to;
    l->departed_from = INT64_MAX;
    l->departed_to = -1;
    return *from <= *to;
}

static int by_vxid(const void *a, const void *b)
{
    return strcmp(((const relay_locker *)a)->vxid, ((const relay_locker *)b)->vxid);
}

int relay_lockers_observe(PGconn *conn, relay_lockers *l, char *err, size_t errlen)
{
    const char *params[1] = {l->table};
    PGresult *res = PQexecPrepared(conn, OBSERVE_STATEMENT, 1, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1 || PQgetisnull(res, 0, 0)) {
        relay_db_error(conn, res, "looking at the writers", err, errlen);
        PQclear(res);
        return -1;
    }
    size_t n = (size_t)PQntuples(res) - 1;
    relay_locker *seen = calloc(n + 1, sizeof *seen);
    if (!seen) {
        snprintf(err, errlen, "out of memory looking at %zu writers", n);
        PQclear(res);
        return -1;
    }
    int64_t round = l->round + 1;
    int64_t now_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    for (size_t i = 0; i < n; i++) {
        int row = (int)i + 1;
        snprintf(seen[i].vxid, sizeof seen[i].vxid, "%s", PQgetvalue(res, row, 1));
        seen[i].prepared = strcmp(PQgetvalue(res, row, 2), "t") == 0;
        seen[i].since = round;
    }
    PQclear(res);

    /* Writers seen at the round before keep their first round; the rest start now; those no
     * longer there have ended (or rolled back the savepoint that took the lock). Both lists
     * ascend by vxid, so one merge does it. */
    qsort(seen, n, sizeof *seen, by_vxid);
    for (size_t i = 0, j = 0; j < l->count;) {
        int c = i < n ? strcmp(seen[i].vxid, l->items[j].vxid) : 1;
        if (c == 0) {
            seen[i].since = l->items[j].since;
        } else if (c > 0) {
            note_departure(l, &l->items[j]);
        }
        i += c <= 0;
        j += c >= 0;
    }
    free(l->items);
    l->items = seen;
    l->count = l->cap = n;
    l->round = round;
    l->now_ms = now_ms;
    l->clock_offset_ms = now_ms - realtime_ms();
    return 0;
}

int64_t relay_lockers_next_round(const relay_lockers *l)
{
    return l->round + 1;
}

int64_t relay_lockers_db_now_ms(const relay_lockers *l)
{
    return realtime_ms() + l->clock_offset_ms;
}

relay_gap_evidence relay_lockers_evidence(const relay_lockers *l)
{
    relay_gap_evidence ev = {.now_ms = l->now_ms,
                             .writers_known = l->supported,
                             .round = l->round,
                             .oldest_since = INT64_MAX};
    for (size_t i = 0; i < l->count; i++) {
        /* A prepared transaction may be any writer seen before, whose PREPARE moved its locks
         * to a new virtual transaction id between two rounds. */
        int64_t since = l->items[i].prepared ? 0 : l->items[i].since;
        if (since < ev.oldest_since)
            ev.oldest_since = since;
    }
    return ev;
}

void relay_lockers_free(relay_lockers *l)
{
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}
