#include "migrate.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "db.h"

#define MIGRATE_LOCK "SELECT pg_advisory_lock(hashtextextended('outbox-relay:migrate', 0))"
#define MIGRATE_UNLOCK "SELECT pg_advisory_unlock(hashtextextended('outbox-relay:migrate', 0))"

/* Whether name is recorded. Returns 0 with *done set, or -1 with err. */
static int is_applied(PGconn *conn, const char *name, int *done, char *err, size_t errlen)
{
    const char *params[1] = {name};
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM relay_migrations WHERE name = $1", 1, NULL,
                                 params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "reading relay_migrations", err, errlen);
        PQclear(res);
        return -1;
    }
    *done = PQntuples(res) > 0;
    PQclear(res);
    return 0;
}

/* Runs one file and records it, atomically. Returns 0, or -1 with err (rolled back). */
static int apply_one(PGconn *conn, const relay_migration *m, char *err, size_t errlen)
{
    char what[128];
    snprintf(what, sizeof what, "applying %s", m->name);
    if (relay_db_exec(conn, what, "BEGIN", err, errlen) != 0)
        return -1;

    /* PQexec, not PQexecParams: a migration file may hold several statements. */
    if (relay_db_exec(conn, what, m->sql, err, errlen) != 0)
        goto rollback;

    const char *params[1] = {m->name};
    PGresult *res = PQexecParams(conn, "INSERT INTO relay_migrations (name) VALUES ($1)", 1, NULL,
                                 params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        relay_db_error(conn, res, what, err, errlen);
    PQclear(res);
    if (!ok)
        goto rollback;
    return relay_db_exec(conn, what, "COMMIT", err, errlen);

rollback:
    relay_db_rollback(conn);
    return -1;
}

/* Whether file is one of the event store's, applied only where source.table is `events`. */
static int is_event_store_file(const char *file)
{
    return strcmp(file, "001_events.sql") == 0 || strcmp(file, "002_snapshots.sql") == 0;
}

/* Whether source.table is the event store's table, which the event store's files create. */
static int table_is_event_store(const relay_config *config)
{
    return strcmp(config->table, "events") == 0;
}

static int read_trigger(PGconn *conn, const char *quoted_table, const char *channel,
                        int *table_exists, int *trigger_exists, int *matches, char *err,
                        size_t errlen)
{
    const char *params[3] = {quoted_table, RELAY_NOTIFY_TRIGGER, channel ? channel : ""};
    PGresult *res = PQexecParams(
        conn,
        "SELECT to_regclass($1) IS NOT NULL, t.oid IS NOT NULL,"
        "       coalesce(t.tgnargs = 1 AND t.tgargs = convert_to($3, 'UTF8') || '\\x00'::bytea,"
        "                false)"
        "  FROM (SELECT 1) one"
        "  LEFT JOIN pg_trigger t ON t.tgrelid = to_regclass($1) AND t.tgname = $2",
        3, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        *table_exists = PQgetvalue(res, 0, 0)[0] == 't';
        *trigger_exists = PQgetvalue(res, 0, 1)[0] == 't';
        *matches = PQgetvalue(res, 0, 2)[0] == 't';
    } else {
        relay_db_error(conn, res, "reading the wake-up trigger", err, errlen);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int relay_migrate_trigger_state(PGconn *conn, const relay_config *config, int *installed,
                                int *matches, char *err, size_t errlen)
{
    char table[1300];
    int table_exists;
    if (relay_db_quote_table(conn, config->table, table, sizeof table, err, errlen) != 0)
        return -1;
    return read_trigger(conn, table, config->notify_channel, &table_exists, installed, matches, err,
                        errlen);
}

/*
 * Makes the wake-up trigger match source.notify_channel. It is off by default: a NOTIFY takes a
 * cluster-wide lock at commit, which queues every inserting transaction behind the others, and a
 * transaction that ran one cannot be prepared (two-phase commit). Returns 0, or -1 with err.
 */
static int sync_trigger(PGconn *conn, const relay_config *config, FILE *out, int *changed,
                        char *err, size_t errlen)
{
    const char *channel = config->notify_channel;
    char table[1300], sql[3000];
    if (relay_db_quote_table(conn, config->table, table, sizeof table, err, errlen) != 0)
        return -1;
    int table_exists, trigger_exists, matches;
    if (read_trigger(conn, table, channel, &table_exists, &trigger_exists, &matches, err, errlen) !=
        0)
        return -1;
    if (!channel) {
        if (!trigger_exists)
            return 0;
        snprintf(sql, sizeof sql, "DROP TRIGGER " RELAY_NOTIFY_TRIGGER " ON %s", table);
        if (relay_db_exec(conn, "dropping the wake-up trigger", sql, err, errlen) != 0)
            return -1;
        fprintf(out, "dropped trigger %s on %s: source.notify_channel is off\n",
                RELAY_NOTIFY_TRIGGER, config->table);
        ++*changed;
        return 0;
    }
    if (matches)
        return 0;
    if (!table_exists) {
        snprintf(err, errlen,
                 "cannot install the wake-up trigger: table %s does not exist (create it, then "
                 "run migrate again)",
                 config->table);
        return -1;
    }
    char *literal = PQescapeLiteral(conn, channel, strlen(channel));
    if (!literal) {
        relay_db_error(conn, NULL, "quoting source.notify_channel", err, errlen);
        return -1;
    }
    /* Replaced in one transaction, so that no insert runs between without its wake-up. */
    snprintf(sql, sizeof sql,
             "BEGIN; DROP TRIGGER IF EXISTS " RELAY_NOTIFY_TRIGGER " ON %s;"
             " CREATE TRIGGER " RELAY_NOTIFY_TRIGGER " AFTER INSERT ON %s"
             " FOR EACH STATEMENT EXECUTE FUNCTION relay_notify(%s); COMMIT",
             table, table, literal);
    PQfreemem(literal);
    if (relay_db_exec(conn, "installing the wake-up trigger", sql, err, errlen) != 0) {
        relay_db_rollback(conn);
        return -1;
    }
    fprintf(out, "installed trigger %s on %s: NOTIFY %s on insert\n", RELAY_NOTIFY_TRIGGER,
            config->table, channel);
    ++*changed;
    return 0;
}

int relay_migrate_pending(PGconn *conn, const relay_config *config, char *pending,
                          size_t pendinglen, int *count, char *err, size_t errlen)
{
    *count = 0;
    pending[0] = '\0';
    PGresult *res = PQexec(conn, "SELECT name FROM relay_migrations");
    bool none = relay_db_is_missing_object(res);
    if (!none && PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "reading relay_migrations", err, errlen);
        PQclear(res);
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; i < relay_migrations_count; i++) {
        const char *name = relay_migrations[i].name;
        if (is_event_store_file(name) && !table_is_event_store(config))
            continue;
        bool applied = false;
        for (int row = 0; !none && !applied && row < PQntuples(res); row++)
            applied = strcmp(PQgetvalue(res, row, 0), name) == 0;
        if (applied)
            continue;
        int n = snprintf(pending + used, pendinglen - used, "%s%s", *count ? ", " : "", name);
        if (n > 0)
            used = (size_t)n >= pendinglen - used ? pendinglen - 1 : used + (size_t)n;
        ++*count;
    }
    PQclear(res);
    return 0;
}

int relay_migrate(PGconn *conn, const relay_config *config, FILE *out, int *applied, char *err,
                  size_t errlen)
{
    *applied = 0;
    if (relay_db_exec(conn, "taking the migration lock", MIGRATE_LOCK, err, errlen) != 0)
        return -1;

    int rc = relay_db_exec(conn, "creating relay_migrations",
                           "CREATE TABLE IF NOT EXISTS relay_migrations ("
                           " name text PRIMARY KEY,"
                           " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())",
                           err, errlen);
    for (size_t i = 0; rc == 0 && i < relay_migrations_count; i++) {
        int done = 0;
        rc = is_applied(conn, relay_migrations[i].name, &done, err, errlen);
        if (rc != 0 || done)
            continue;
        if (is_event_store_file(relay_migrations[i].name) && !table_is_event_store(config)) {
            fprintf(out, "skipped %s: source.table is %s, not the event store's events\n",
                    relay_migrations[i].name, config->table);
            continue;
        }
        rc = apply_one(conn, &relay_migrations[i], err, errlen);
        if (rc == 0) {
            fprintf(out, "applied %s\n", relay_migrations[i].name);
            (*applied)++;
        }
    }

    if (rc == 0)
        rc = sync_trigger(conn, config, out, applied, err, errlen);

    char ignored[256];
    relay_db_exec(conn, "releasing the migration lock", MIGRATE_UNLOCK, ignored, sizeof ignored);
    return rc;
}
