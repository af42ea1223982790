#include "commands.h"

#include <inttypes.h>
#include <stdlib.h>

#include "db.h"
#include "exit_codes.h"
#include "redeliver.h"

/* Reads the stored position of config->name into *position; *stored is false when there is none.
 * Returns 0, or -1 with err. */
static int read_position(PGconn *conn, const relay_config *config, bool *stored, int64_t *position,
                         char *err, size_t errlen)
{
    const char *params[1] = {config->name};
    PGresult *res = PQexecParams(conn, "SELECT position FROM relay_checkpoints WHERE name = $1", 1,
                                 NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (ok) {
        *stored = PQntuples(res) == 1;
        *position = *stored ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    } else {
        relay_db_error(conn, res, "reading the position", err, errlen);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

/* Whether [from, to] lies at or below the position: what lies above is not delivered yet, and
 * the relay will deliver it. Logs why not. */
static bool range_delivered(const relay_config *config, const relay_logger *log, bool stored,
                            int64_t position, int64_t from, int64_t to)
{
    if (!stored) {
        relay_error(log, "replay: '%s' has no position yet: nothing was delivered under this name",
                    config->name);
        return false;
    }
    if (to > position) {
        relay_error(log,
                    "replay: --to %" PRId64 " is above the position %" PRId64 " of '%s': the "
                    "events after it are not delivered yet (the relay delivers them); replay "
                    "--from %" PRId64 " --to %" PRId64 " at most",
                    to, position, config->name, from, position);
        return false;
    }
    return true;
}

int relay_cmd_replay(const relay_cli_options *opts, const relay_config *config,
                     const relay_logger *log, FILE *out)
{
    char err[2048];
    const int64_t from = opts->replay_from, to = opts->replay_to;
    relay_redelivery r;
    int rc = relay_redelivery_open(&r, config, log, err, sizeof err);
    if (rc != 0) {
        relay_error(log, "replay: %s", err);
        return rc;
    }
    bool stored;
    int64_t position;
    if (read_position(r.conn, config, &stored, &position, err, sizeof err) != 0) {
        relay_error(log, "replay: %s", err);
        relay_redelivery_close(&r);
        return RELAY_EXIT_DATABASE;
    }
    if (!range_delivered(config, log, stored, position, from, to)) {
        relay_redelivery_close(&r);
        return RELAY_EXIT_REFUSED;
    }
    rc = relay_redelivery_open_sink(&r, config, log, err, sizeof err);
    if (rc != 0) {
        relay_error(log, "replay: %s", err);
        relay_redelivery_close(&r);
        return rc;
    }

    int64_t replayed = 0, next = from;
    bool done = false;
    while (!done && rc == 0) {
        if (relay_source_fetch_range(r.conn, config, &r.info, next, to, &r.batch, err,
                                     sizeof err) != 0) {
            relay_error(log, "replay: %s", err);
            rc = RELAY_EXIT_DATABASE;
            break;
        }
        const relay_batch *b = &r.batch;
        if (b->count == 0)
            break;
        if (relay_redelivery_deliver(&r, config, err, sizeof err) != 0) {
            relay_error(log, "replay: the sink failed on the events from %" PRId64 ": %s", next,
                        err);
            rc = RELAY_EXIT_RUNTIME;
            break;
        }
        /* A refusal ends the replay at its batch: that event was delivered once (the relay's
         * dead letters are not replayed), so the destination changed its mind. */
        int64_t first_refused = INT64_MAX;
        for (size_t i = 0; i < r.sink.n_rejections; i++) {
            const relay_sink_rejection *refusal = &r.sink.rejections[i];
            relay_error(log, "replay: the sink refused event %" PRId64 ": %s", refusal->event_id,
                        refusal->reason);
            first_refused = refusal->event_id < first_refused ? refusal->event_id : first_refused;
            rc = RELAY_EXIT_RUNTIME;
        }
        replayed += (int64_t)b->count - (int64_t)r.sink.n_rejections;
        int64_t last = b->events[b->count - 1].id;
        done = last >= to || (!b->cut && b->fetched < (size_t)config->batch_size);
        next = rc == 0 ? last + 1 : first_refused;
    }
    FILE *report = relay_redelivery_report_stream(&r, out);
    if (rc == 0) {
        fprintf(report,
                "replayed %" PRId64 " event%s of '%s' in ids %" PRId64 "..%" PRId64
                " (position %" PRId64 ", not moved)\n",
                replayed, replayed == 1 ? "" : "s", config->name, from, to, position);
        relay_info(log,
                   "replay: %" PRId64 " event(s) of '%s' in ids %" PRId64 "..%" PRId64
                   " delivered again",
                   replayed, config->name, from, to);
    } else {
        fprintf(report,
                "replayed %" PRId64 " event%s of '%s' in ids %" PRId64 "..%" PRId64
                ", then failed: run again with --from %" PRId64 " --to %" PRId64 "\n",
                replayed, replayed == 1 ? "" : "s", config->name, from, to, next, to);
    }
    relay_redelivery_close(&r);
    return rc;
}
