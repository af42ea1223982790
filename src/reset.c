#include "commands.h"

#include <inttypes.h>

#include "checkpoint.h"
#include "db.h"
#include "exit_codes.h"
#include "restore.h"
#include "source.h"

static int reset_locked(PGconn *conn, const relay_config *config, const relay_logger *log,
                        int64_t to, bool latest, FILE *out)
{
    char err[2048];
    relay_source_info info;
    relay_checkpoint cp = {.position = 0, .system_identifier = -1};
    relay_gaps gaps = {0};
    int64_t sysid = -1;
    int missing = 0;
    if (relay_source_inspect(conn, config, &info, &missing, err, sizeof err) != 0 ||
        relay_restore_system_identifier(conn, &sysid, err, sizeof err) != 0 ||
        (latest && relay_restore_max_id(conn, config, &info, &to, err, sizeof err) != 0) ||
        relay_checkpoint_load(conn, config->name, info.quoted_table, &cp, &gaps, &missing, err,
                              sizeof err) != 0 ||
        relay_checkpoint_reset(conn, config->name, cp.epoch, to, sysid, err, sizeof err) != 0) {
        relay_gaps_free(&gaps);
        relay_error(log, "reset: %s", err);
        return RELAY_EXIT_DATABASE;
    }
    int64_t kept = 0;
    for (size_t i = 0; i < gaps.count; i++)
        if (gaps.items[i].low <= to)
            kept += (gaps.items[i].high < to ? gaps.items[i].high : to) - gaps.items[i].low + 1;
    relay_warn(log,
               "reset: the position of '%s' moved from %" PRId64 " to %" PRId64 " (%" PRId64
               " of %" PRId64 " watched ids below it kept, system identifier %" PRId64 ")",
               config->name, cp.position, to, kept, relay_gaps_ids(&gaps), sysid);
    fprintf(out, "%s: position %" PRId64 " -> %" PRId64 "\n", config->name, cp.position, to);
    relay_gaps_free(&gaps);
    return RELAY_EXIT_OK;
}

int relay_cmd_reset(const relay_cli_options *opts, const relay_config *config,
                    const relay_logger *log, FILE *out)
{
    char err[1024];
    PGconn *conn = relay_db_connect(config, log, err, sizeof err);
    if (!conn) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    int locked = 0;
    int rc = RELAY_EXIT_DATABASE;
    if (relay_checkpoint_try_lock(conn, config->name, &locked, err, sizeof err) != 0)
        relay_error(log, "%s", err);
    else if (!locked)
        relay_error(log, "reset: a relay named '%s' is running; stop it first", config->name);
    else
        rc = reset_locked(conn, config, log, opts->reset_position, opts->reset_latest, out);
    PQfinish(conn); /* ends the session, and with it the lock */
    return rc;
}
