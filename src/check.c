#include "check.h"

#include <inttypes.h>
#include <string.h>

#include "db.h"
#include "exit_codes.h"
#include "ids.h"
#include "plugin.h"
#include "source.h"
#include "status.h"

static int check_database(const relay_config *config, const relay_logger *log, FILE *out)
{
    char err[1024];
    PGconn *conn = relay_db_connect(config, err, sizeof err);
    if (!conn) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    const char *version = PQparameterStatus(conn, "server_version");
    fprintf(out, "database   connected: database %s on %s, PostgreSQL %s\n", PQdb(conn),
            PQhost(conn), version ? version : "(unknown version)");

    relay_source_info info;
    int missing = 0;
    if (relay_source_inspect(conn, config, &info, &missing, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        PQfinish(conn);
        return RELAY_EXIT_DATABASE;
    }
    static const char *const roles[] = {"id",      "created_at", "key",     "type",
                                        "version", "payload",    "metadata"};
    fprintf(out, "table      %s:", info.quoted_table);
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        fprintf(out, " %s=%s", roles[i], info.column_types[i][0] ? info.column_types[i] : "-");
    fprintf(out, "\n");

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

    relay_status_info status;
    if (relay_status_read(conn, config, &status, &missing, err, sizeof err) != 0) {
        relay_error(log, "%s%s", err,
                    missing ? " (run `outbox-relay migrate` to create relay_checkpoints)" : "");
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
    char path[4096], err[1024];
    relay_sink sink;
    memset(&sink, 0, sizeof sink);
    if (relay_plugin_resolve(config->sink_plugin, config->plugin_dir, path, sizeof path, err,
                             sizeof err) != 0 ||
        relay_sink_load(&sink, path, log, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_SINK;
    }
    int rc = RELAY_EXIT_OK;
    if (relay_sink_init(&sink, config->sink_options, config->n_sink_options, err, sizeof err) !=
        RELAY_SINK_OK) {
        relay_error(log, "sink init failed: %s", err);
        rc = RELAY_EXIT_SINK;
    } else {
        fprintf(out, "sink       %s (%s): initialised\n", sink.api->name, path);
    }
    relay_sink_unload(&sink);
    return rc;
}

int relay_check(const relay_config *config, const relay_logger *log, FILE *out)
{
    fprintf(out, "config     %s: ok\n", config->path);
    int rc = check_database(config, log, out);
    if (rc == RELAY_EXIT_OK)
        rc = check_sink(config, log, out);
    if (rc == RELAY_EXIT_OK)
        fprintf(out, "ok\n");
    return rc;
}
