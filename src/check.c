#include "commands.h"

#include <inttypes.h>
#include <string.h>

#include "checkpoint.h"
#include "db.h"
#include "exit_codes.h"
#include "ids.h"
#include "migrate.h"
#include "retention.h"
#include "retention_partitions.h"
#include "sink_host.h"
#include "source.h"
#include "status.h"

/* source.durable_on: whether each named standby streams, and whether its flush position can be
 * read (pg_stat_replication hides it from roles without pg_monitor). A standby that is away is a
 * warning: delivery waits for it, which may be what the operator wants. Returns 0, or -1 after an
 * error message. */
static int check_standbys(PGconn *conn, const relay_config *config, const relay_logger *log,
                          FILE *out)
{
    const char *params[1] = {config->durable_on};
    PGresult *res = PQexecParams(
        conn,
        "SELECT n, coalesce(r.state, 'not connected'), r.flush_lsn IS NOT NULL OR r.state IS NULL"
        "  FROM unnest(string_to_array($1, ',')) AS n"
        "  LEFT JOIN pg_stat_replication r ON r.application_name = n ORDER BY n",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char err[1024];
        relay_db_error(conn, res, "reading pg_stat_replication", err, sizeof err);
        relay_error(log, "%s", err);
        PQclear(res);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *name = PQgetvalue(res, i, 0), *state = PQgetvalue(res, i, 1);
        fprintf(out, "durable on %s: %s\n", name, state);
        if (strcmp(PQgetvalue(res, i, 2), "t") != 0) {
            relay_error(log,
                        "standby %s: its flush position cannot be read by the relay's role; "
                        "GRANT pg_monitor TO it (source.durable_on waits for that position)",
                        name);
            rc = -1;
        } else if (strcmp(state, "streaming") != 0) {
            relay_warn(log, "standby %s is %s: delivery will wait for it (source.durable_on)", name,
                       state);
        }
    }
    PQclear(res);
    return rc;
}

/* Says how the relay learns of new rows, and warns where the trigger does not match the config.
 */
static int check_wakeups(PGconn *conn, const relay_config *config, const relay_logger *log,
                         FILE *out)
{
    char err[1024];
    int installed = 0, matches = 0;
    if (relay_migrate_trigger_state(conn, config, &installed, &matches, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return -1;
    }
    const char *channel = config->notify_channel;
    if (!channel && installed)
        relay_warn(log,
                   "trigger %s on %s sends NOTIFYs that nobody listens to (notify_channel is off), "
                   "and a transaction that ran it cannot be prepared: run `outbox-relay migrate` "
                   "to drop it",
                   RELAY_NOTIFY_TRIGGER, config->table);
    else if (channel && !matches)
        relay_warn(log,
                   "notify_channel is %s but %s has no trigger %s notifying it: the relay only "
                   "polls; run `outbox-relay migrate` to install it",
                   channel, config->table, RELAY_NOTIFY_TRIGGER);
    if (channel && matches)
        fprintf(out, "wake-ups   NOTIFY %s from trigger %s on %s, and polls\n", channel,
                RELAY_NOTIFY_TRIGGER, config->table);
    else
        fprintf(out,
                "wake-ups   polls: every max_wait while rows come, up to poll_interval idle\n");
    return 0;
}

/* Whether the role may delete from the table. Returns 1, 0, or -1 after an error message. */
static int may_delete(PGconn *conn, const relay_source_info *info, const relay_logger *log)
{
    const char *params[1] = {info->quoted_table};
    PGresult *res = PQexecParams(conn, "SELECT has_table_privilege($1::regclass, 'DELETE')", 1,
                                 NULL, params, NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0)[0] == 't' : -1;
    if (rc < 0) {
        char err[1024];
        relay_db_error(conn, res, "reading the DELETE privilege", err, sizeof err);
        relay_error(log, "%s", err);
    }
    PQclear(res);
    return rc;
}

/*
 * Runs the writes the relay makes, in a transaction rolled back: privileges are checked when a
 * statement runs, not when the relay connects, and a role without UPDATE on relay_checkpoints
 * would otherwise pass `check` and fail at the first position. Returns 0, or -1 after an error.
 */
static int check_writes(PGconn *conn, const relay_config *config, const relay_logger *log,
                        FILE *out)
{
    static const char *const writes[] = {
        "INSERT INTO relay_checkpoints (name) VALUES ($1)"
        " ON CONFLICT (name) DO UPDATE SET updated_at = relay_checkpoints.updated_at",
        "WITH gone AS (DELETE FROM relay_gaps WHERE relay_name = $1 AND low_id < 0)"
        " INSERT INTO relay_gaps (relay_name, low_id, high_id, first_seen_ms)"
        " VALUES ($1, -1, -1, 0) ON CONFLICT (relay_name, low_id) DO UPDATE SET high_id = -1",
        "UPDATE relay_gaps SET high_id = high_id WHERE relay_name = $1 AND low_id < 0",
        "INSERT INTO relay_dead_letters (relay_name, event_id, reason) VALUES ($1, -1, 'check')",
    };
    size_t n = sizeof writes / sizeof writes[0];
    if (config->sink_on_reject != RELAY_ON_REJECT_DEAD_LETTER)
        n--; /* the last one only with dead letters */
    const char *params[1] = {config->name};
    char err[1024] = "";
    if (relay_db_exec(conn, "checking the writes", "BEGIN", err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return -1;
    }
    for (size_t i = 0; i < n && !err[0]; i++) {
        PGresult *res = PQexecParams(conn, writes[i], 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            relay_db_error(conn, res, "writing the relay's tables (rolled back)", err, sizeof err);
        PQclear(res);
    }
    relay_db_rollback(conn);
    if (err[0]) {
        relay_error(log, "%s", err);
        return -1;
    }
    fprintf(out, "writes     relay_checkpoints, relay_gaps%s: allowed (tried, rolled back)\n",
            n == sizeof writes / sizeof writes[0] ? ", relay_dead_letters" : "");
    return 0;
}

/* retention.drop_partitions: the table must be partitioned by range of id, and the role must own
 * it and its partitions (DETACH PARTITION, DROP TABLE). Returns 0, or -1 after an error. */
static int check_partitions(PGconn *conn, const relay_config *config, const relay_logger *log,
                            FILE *out)
{
    char err[1024];
    relay_partitioning parts;
    if (relay_retention_partitioning(conn, config, &parts, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return -1;
    }
    if (!parts.by_id) {
        relay_error(log,
                    "retention.drop_partitions: %s is not partitioned by range of %s (CREATE "
                    "TABLE ... PARTITION BY RANGE (%s)); the relay would delete rows instead",
                    config->table, config->columns.id, config->columns.id);
        return -1;
    }
    if (!parts.owned) {
        relay_error(log,
                    "retention.drop_partitions: the relay's role does not own %s: detaching a "
                    "partition needs to own the table, dropping it to own the partition",
                    parts.not_owned);
        return -1;
    }
    fprintf(out, "retention  by partition: %" PRId64 " partitions of %s, owned by the role\n",
            parts.partitions, config->table);
    return 0;
}

/* Retention: what it removes and whether the role may; and relays it could not count. */
static int check_retention(PGconn *conn, const relay_config *config, const relay_source_info *info,
                           const relay_logger *log, FILE *out)
{
    if (!relay_retention_enabled(config)) {
        fprintf(out, "retention  off: rows stay in the table\n");
        return 0;
    }
    char after[32], interval[32], err[1024];
    relay_duration_format(config->retention_delete_after_ms, after, sizeof after);
    relay_duration_format(config->retention_interval_ms, interval, sizeof interval);
    if (config->retention_drop_partitions) {
        if (check_partitions(conn, config, log, out) != 0)
            return -1;
    } else {
        int ok = may_delete(conn, info, log);
        if (ok < 0)
            return -1;
        if (!ok) {
            relay_error(log,
                        "retention: the relay's role may not delete from %s: GRANT DELETE ON %s "
                        "TO it, or turn retention off (retention.delete_after: ~)",
                        config->table, info->quoted_table);
            return -1;
        }
        fprintf(out, "retention  DELETE allowed, at most %d rows per transaction\n",
                config->retention_batch_size);
    }
    char found[512], unknown[512];
    if (relay_retention_uncounted(conn, info->quoted_table, found, unknown, sizeof found, err,
                                  sizeof err) != 0) {
        relay_error(log, "%s", err);
        return -1;
    }
    if (found[0]) {
        relay_error(log,
                    "retention: relay_checkpoints in schema %s records relays of %s that "
                    "retention does not count, and would delete rows before they deliver them: "
                    "keep every relay of a table on one relay schema",
                    found, config->table);
        return -1;
    }
    if (unknown[0])
        relay_warn(log,
                   "retention: relay_checkpoints in schema %s holds relays that record no "
                   "table, or cannot be read (no privilege, not migrated): if any of them reads "
                   "this table, retention does not count it",
                   unknown);
    relay_retention_bound bound;
    int64_t deleted, partitions;
    int missing = 0;
    if (relay_retention_read(conn, config, &bound, &deleted, &partitions, &missing, err,
                             sizeof err) != 0) {
        relay_error(log, "%s%s", err, missing ? " (run `outbox-relay migrate`)" : "");
        return -1;
    }
    fprintf(out, "retention  rows older than %s, every %s, up to ", after, interval);
    if (bound.known)
        fprintf(out, "id %" PRId64 " now (%s of '%s')\n", bound.id,
                bound.by_gap ? "below a watched gap" : "the position", bound.held_by);
    else
        fprintf(out, "the lowest position of the relays on the table (none yet)\n");
    return 0;
}

/* Names the migrations this database lacks: run would stop at the first statement that needs one.
 * A role that may not read relay_migrations is warned about, not refused: the relay itself does not
 * read it. Returns 0, or -1 after an error message. */
static int check_schema(PGconn *conn, const relay_config *config, const relay_logger *log,
                        FILE *out)
{
    char err[1024], pending[512];
    int count = 0;
    if (relay_migrate_pending(conn, config, pending, sizeof pending, &count, err, sizeof err) !=
        0) {
        if (!relay_db_error_is(err, "42501")) {
            relay_error(log, "%s", err);
            return -1;
        }
        relay_warn(log, "%s: cannot tell whether every migration is applied", err);
        fprintf(out, "schema     not known (relay_migrations cannot be read)\n");
        return 0;
    }
    if (count > 0) {
        relay_error(log,
                    "the database lacks %d migration%s of this relay: %s (run `outbox-relay "
                    "migrate`)",
                    count, count == 1 ? "" : "s", pending);
        return -1;
    }
    fprintf(out, "schema     every migration applied\n");
    return 0;
}

static int check_database(const relay_config *config, const relay_logger *log, FILE *out)
{
    char err[1024];
    PGconn *conn = relay_db_connect(config, log, err, sizeof err);
    if (!conn) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    const char *version = PQparameterStatus(conn, "server_version");
    fprintf(out, "database   connected: database %s on %s, PostgreSQL %s\n", PQdb(conn),
            PQhost(conn), version ? version : "(unknown version)");
    if (check_schema(conn, config, log, out) != 0) {
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }

    relay_source_info info;
    int missing = 0;
    if (relay_source_inspect(conn, config, &info, &missing, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }
    fprintf(out, "table      %s:", info.quoted_table);
    for (int role = 0; role < RELAY_N_COLUMN_ROLES; role++)
        fprintf(out, " %s=%s", relay_column_describe(role)->name,
                info.column_types[role][0] ? info.column_types[role] : "-");
    for (size_t h = 0; h < config->columns.n_headers; h++)
        fprintf(out, "%s%s", h == 0 ? " headers=" : ",", config->columns.headers[h]);
    fprintf(out, "\n");
    const char *created_type = info.column_types[RELAY_COLUMN_CREATED_AT];
    if (strcmp(created_type, "timestamp with time zone") != 0)
        relay_warn(log,
                   "%s.%s is %s, not timestamptz: the relay reads it as UTC, so a writer in "
                   "another zone writes times in the past or the future, and one in the future "
                   "holds margin mode until it comes. Use timestamptz DEFAULT clock_timestamp()",
                   info.quoted_table, config->columns.created_at, created_type);

    relay_ids_verdict ids;
    char why[1024];
    if (relay_ids_inspect(conn, config, &info, &ids, why, sizeof why, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }
    if (ids == RELAY_IDS_REFUSE) {
        relay_error(log, "%s", why);
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }
    if (ids == RELAY_IDS_WARN)
        relay_warn(log, "%s", why);
    fprintf(out, "ids        %s\n",
            config->ids_taken_ahead ? "taken ahead by the application: gaps die by gap_floor"
            : ids == RELAY_IDS_OK   ? "assigned by the insert: missing ids are proven dead"
                                    : "not assigned by a sequence default (see the warning)");

    if (check_wakeups(conn, config, log, out) != 0) {
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }

    if (config->durable_on && check_standbys(conn, config, log, out) != 0) {
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }

    if (check_writes(conn, config, log, out) != 0 ||
        check_retention(conn, config, &info, log, out) != 0) {
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }

    relay_status_info status;
    if (relay_status_read(conn, config, &status, &missing, err, sizeof err) != 0) {
        relay_error(log, "%s%s", err,
                    missing ? " (run `outbox-relay migrate` to create relay_checkpoints)" : "");
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }
    if (relay_checkpoint_logged(conn, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }
    if (status.has_checkpoint)
        fprintf(out, "checkpoint %s at %" PRId64 ", %" PRId64 " events behind\n", config->name,
                status.position, status.lag_rows);
    else
        fprintf(out,
                "checkpoint %s: none yet, will start from the first event (%" PRId64 " waiting)\n",
                config->name, status.lag_rows);
    PQfinish(conn);
    return RELAY_EXIT_OK;
}

static int check_sink(const relay_config *config, const relay_logger *log, FILE *out)
{
    char err[1024];
    relay_sink sink;
    if (relay_sink_open(&sink, config, log, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_SINK;
    }
    fprintf(out, "sink       %s (%s): initialised\n", sink.api->name, sink.path);
    /* Initialised is not reached: a Kafka producer starts without a single broker up. */
    const relay_sink_api *api = sink.api;
    int rc = RELAY_EXIT_OK;
    if (RELAY_SINK_HAS(relay_sink_api, api->struct_size, check) && api->check) {
        int timeout_ms =
            config->sink_flush_timeout_ms < 10000 ? (int)config->sink_flush_timeout_ms : 10000;
        if (api->check(sink.state, timeout_ms, err, sizeof err) != RELAY_SINK_OK) {
            relay_error(log, "sink %s: %s", api->name, err);
            rc = RELAY_EXIT_SINK;
        } else {
            fprintf(out, "sink       %s: reached\n", api->name);
        }
    }
    relay_sink_unload(&sink);
    return rc;
}

int relay_cmd_check(const relay_cli_options *opts, const relay_config *config,
                    const relay_logger *log, FILE *out)
{
    (void)opts; /* check has no options of its own */
    fprintf(out, "config     %s: ok\n", config->path);
    int rc = check_database(config, log, out);
    if (rc == RELAY_EXIT_OK)
        rc = check_sink(config, log, out);
    if (rc == RELAY_EXIT_OK)
        fprintf(out, "ok\n");
    return rc;
}
