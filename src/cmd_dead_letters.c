#include "commands.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "exit_codes.h"
#include "json_text.h"
#include "redeliver.h"
#include "source.h"

/* Whether the ascending ids hold id. */
static bool holds(const int64_t *ids, size_t n, int64_t id)
{
    size_t low = 0, high = n;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (ids[mid] == id)
            return true;
        if (ids[mid] < id)
            low = mid + 1;
        else
            high = mid;
    }
    return false;
}

/* Logs "what: event 3, event 9" for the ids of wanted that are not in have (both ascending);
 * returns how many. */
static size_t log_missing(const relay_logger *log, const char *what, const int64_t *wanted,
                          size_t n_wanted, const int64_t *have, size_t n_have)
{
    char list[1024] = "";
    size_t missing = 0, used = 0, listed = 0;
    for (size_t i = 0; i < n_wanted; i++) {
        if (holds(have, n_have, wanted[i]))
            continue;
        /* "event " and 20 digits and ", " fit in 32; the rest is counted. */
        if (used < sizeof list - 32) {
            used += (size_t)snprintf(list + used, sizeof list - used, "%sevent %" PRId64,
                                     missing > 0 ? ", " : "", wanted[i]);
            listed++;
        }
        missing++;
    }
    if (missing > listed)
        relay_error(log, "%s: %s and %zu more", what, list, missing - listed);
    else if (missing > 0)
        relay_error(log, "%s: %s", what, list);
    return missing;
}

/*
 * Reads which of opts->ids are dead letters of this relay (FOR UPDATE when locking, so that a
 * drop in the same transaction removes exactly what it checked) and logs the others. Sets
 * *known_out (caller frees) and *n_known. Returns 0 when every id is one, RELAY_EXIT_REFUSED when
 * some are not, RELAY_EXIT_DATABASE with the cause logged.
 */
static int check_known(PGconn *conn, const relay_cli_options *opts, const relay_config *config,
                       const relay_logger *log, bool locking, int64_t **known_out, size_t *n_known)
{
    *known_out = NULL;
    *n_known = 0;
    char err[1024], *array;
    if (relay_db_id_array(opts->ids, opts->n_ids, &array, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    const char *params[2] = {config->name, array};
    PGresult *res = PQexecParams(conn,
                                 locking ? "SELECT event_id FROM relay_dead_letters"
                                           " WHERE relay_name = $1 AND event_id = ANY($2::bigint[])"
                                           "   AND dropped_at IS NULL ORDER BY event_id FOR UPDATE"
                                         : "SELECT DISTINCT event_id FROM relay_dead_letters"
                                           " WHERE relay_name = $1 AND event_id = ANY($2::bigint[])"
                                           "   AND dropped_at IS NULL ORDER BY event_id",
                                 2, NULL, params, NULL, NULL, 0);
    free(array);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "reading the dead letters", err, sizeof err);
        relay_error(log, "%s", err);
        PQclear(res);
        return RELAY_EXIT_DATABASE;
    }
    int n = PQntuples(res);
    int64_t *known = calloc((size_t)n + 1, sizeof *known);
    if (!known) {
        relay_error(log, "out of memory");
        PQclear(res);
        return RELAY_EXIT_DATABASE;
    }
    size_t count = 0;
    for (int i = 0; i < n; i++) {
        int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        if (count == 0 || known[count - 1] != id) /* FOR UPDATE cannot be DISTINCT */
            known[count++] = id;
    }
    PQclear(res);
    char what[256];
    snprintf(what, sizeof what,
             "dead-letters: not a dead letter of '%s' (see dead-letters list), nothing changed",
             config->name);
    if (log_missing(log, what, opts->ids, opts->n_ids, known, count) > 0) {
        free(known);
        return RELAY_EXIT_REFUSED;
    }
    *known_out = known;
    *n_known = count;
    return 0;
}

/* Ends the dead letters of this relay's events ids, in one statement: deleted once delivered
 * (retry), marked dropped otherwise (drop), so that a replay still leaves the event out. Returns
 * 0, or -1 with err. */
static int remove_dead_letters(PGconn *conn, const relay_config *config, const int64_t *ids,
                               size_t n, bool delivered, int64_t *removed, char *err, size_t errlen)
{
    *removed = 0;
    if (n == 0)
        return 0;
    char *array;
    if (relay_db_id_array(ids, n, &array, err, errlen) != 0)
        return -1;
    const char *params[2] = {config->name, array};
    PGresult *res =
        PQexecParams(conn,
                     delivered ? "DELETE FROM relay_dead_letters"
                                 " WHERE relay_name = $1 AND event_id = ANY($2::bigint[])"
                                 "   AND dropped_at IS NULL"
                               : "UPDATE relay_dead_letters SET dropped_at = clock_timestamp()"
                                 " WHERE relay_name = $1 AND event_id = ANY($2::bigint[])"
                                 "   AND dropped_at IS NULL",
                     2, NULL, params, NULL, NULL, 0);
    free(array);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (ok)
        *removed = strtoll(PQcmdTuples(res), NULL, 10);
    else
        relay_db_error(conn, res, "removing the dead letters", err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

static int list(PGconn *conn, const relay_cli_options *opts, const relay_config *config,
                const relay_logger *log, FILE *out)
{
    char err[1024], table[1024], id[600];
    if (relay_db_quote_table(conn, config->table, table, sizeof table, err, sizeof err) != 0 ||
        relay_db_quote_ident(conn, config->columns.id, id, sizeof id, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    char sql[4096];
    snprintf(sql, sizeof sql,
             "SELECT d.id, d.event_id, to_char(d.created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
             "       d.reason, EXISTS (SELECT 1 FROM %s t WHERE t.%s = d.event_id)"
             "  FROM relay_dead_letters d WHERE d.relay_name = $1 AND d.dropped_at IS NULL"
             " ORDER BY d.event_id, d.id",
             table, id);
    const char *params[1] = {config->name};
    PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        relay_db_error(conn, res, "listing the dead letters", err, sizeof err);
        relay_error(log, "%s", err);
        PQclear(res);
        return RELAY_EXIT_DATABASE;
    }
    int n = PQntuples(res);
    if (!opts->json)
        fprintf(out, "%d dead letter%s of '%s'%s\n", n, n == 1 ? "" : "s", config->name,
                n > 0 ? ":" : "");
    if (!opts->json && n > 0)
        fprintf(out, "%-8s %-12s %-27s %-8s %s\n", "ID", "EVENT", "RECORDED", "IN TABLE", "REASON");
    for (int i = 0; i < n; i++) {
        bool in_table = strcmp(PQgetvalue(res, i, 4), "t") == 0;
        if (opts->json) {
            /* The name is restricted to [A-Za-z0-9_.-] by the config: no escaping. */
            fprintf(out, "{\"id\":%s,\"event_id\":%s,\"relay\":\"%s\",\"created_at\":\"%s\",",
                    PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), config->name,
                    PQgetvalue(res, i, 2));
            fputs("\"reason\":", out);
            relay_json_print_string(out, PQgetvalue(res, i, 3));
            fprintf(out, ",\"in_table\":%s}\n", in_table ? "true" : "false");
        } else {
            fprintf(out, "%-8s %-12s %-27s %-8s ", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                    PQgetvalue(res, i, 2), in_table ? "yes" : "no");
            relay_text_print_escaped(out, PQgetvalue(res, i, 3));
            fputc('\n', out);
        }
    }
    PQclear(res);
    return RELAY_EXIT_OK;
}

static int drop(PGconn *conn, const relay_cli_options *opts, const relay_config *config,
                const relay_logger *log, FILE *out)
{
    char err[1024];
    if (relay_db_exec(conn, "beginning the drop", "BEGIN", err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    int64_t *known, removed = 0;
    size_t n_known;
    int rc = check_known(conn, opts, config, log, true, &known, &n_known);
    if (rc == 0 &&
        (remove_dead_letters(conn, config, known, n_known, false, &removed, err, sizeof err) != 0 ||
         relay_db_exec(conn, "committing the drop", "COMMIT", err, sizeof err) != 0)) {
        relay_error(log, "%s", err);
        rc = RELAY_EXIT_DATABASE;
    }
    free(known);
    if (rc != 0) {
        relay_db_rollback(conn);
        return rc;
    }
    relay_info(log, "dead-letters: dropped %" PRId64 " dead letter(s) of '%s'", removed,
               config->name);
    fprintf(out, "dropped %" PRId64 " dead letter%s of '%s' (%zu event%s)\n", removed,
            removed == 1 ? "" : "s", config->name, opts->n_ids, opts->n_ids == 1 ? "" : "s");
    return RELAY_EXIT_OK;
}

/* What a retry did, event by event. */
typedef struct retry_outcome {
    int64_t *delivered; /* acknowledged by the sink: their dead letters go */
    size_t n_delivered;
    size_t refused, gone;
    bool sink_failed;
} retry_outcome;

/* Delivers the events ids[0..n) (at most batch_size, all dead letters) that are still in the
 * table, recording what became of each in o. Returns 0, or an exit code with the cause logged
 * (the sink's failure is o->sink_failed, not an error here). */
static int retry_batch(relay_redelivery *r, const relay_config *config, const relay_logger *log,
                       const int64_t *ids, size_t n, size_t *taken, retry_outcome *o)
{
    char err[2048];
    *taken = n;
    if (relay_source_fetch_ids(r->conn, config, &r->info, ids, n, &r->batch, err, sizeof err) !=
        0) {
        relay_error(log, "dead-letters retry: %s", err);
        return RELAY_EXIT_DATABASE;
    }
    /* Cut by batch_bytes: the ids above its last event are read by the next batch (the ids are
     * in order, as the rows are). */
    if (r->batch.cut && r->batch.count > 0) {
        int64_t last = r->batch.events[r->batch.count - 1].id;
        *taken = 0;
        while (*taken < n && ids[*taken] <= last)
            ++*taken;
        n = *taken;
    }
    int64_t *found = calloc(r->batch.count + 1, sizeof *found);
    if (!found) {
        relay_error(log, "out of memory");
        return RELAY_EXIT_DATABASE;
    }
    for (size_t i = 0; i < r->batch.count; i++)
        found[i] = r->batch.events[i].id;
    char what[1024 + 256];
    snprintf(what, sizeof what,
             "dead-letters retry: no longer in %s (retention removed it?), its dead letter "
             "stays ('dead-letters drop' removes it)",
             config->table);
    o->gone += log_missing(log, what, ids, n, found, r->batch.count);
    free(found);
    if (r->batch.count == 0)
        return 0;
    int rc = relay_redelivery_open_sink(r, config, log, err, sizeof err);
    if (rc != 0) {
        relay_error(log, "dead-letters retry: %s", err);
        return rc;
    }
    if (relay_redelivery_deliver(r, config, err, sizeof err) != 0) {
        relay_error(log,
                    "dead-letters retry: the sink did not accept the events, their dead "
                    "letters stay: %s",
                    err);
        o->sink_failed = true;
        return 0;
    }
    for (size_t i = 0; i < r->batch.count; i++) {
        const char *reason;
        int64_t id = r->batch.events[i].id;
        if (relay_redelivery_refused(r, id, &reason)) {
            relay_error(log,
                        "dead-letters retry: the sink refused event %" PRId64
                        " again, its dead letter stays: %s",
                        id, reason);
            o->refused++;
        } else {
            o->delivered[o->n_delivered++] = id;
        }
    }
    return 0;
}

static int retry(relay_redelivery *r, const relay_cli_options *opts, const relay_config *config,
                 const relay_logger *log, FILE *out)
{
    int64_t *known;
    size_t n_known;
    int rc = check_known(r->conn, opts, config, log, false, &known, &n_known);
    if (rc != 0)
        return rc;
    retry_outcome o = {.delivered = calloc(n_known + 1, sizeof *o.delivered)};
    if (!o.delivered) {
        free(known);
        relay_error(log, "out of memory");
        return RELAY_EXIT_DATABASE;
    }
    size_t step = (size_t)config->batch_size, taken = 0;
    for (size_t at = 0; at < n_known && rc == 0 && !o.sink_failed; at += taken)
        rc = retry_batch(r, config, log, known + at, n_known - at < step ? n_known - at : step,
                         &taken, &o);
    free(known);

    /* What the sink acknowledged loses its dead letter, whatever failed after it: else the next
     * retry would deliver it once more. */
    char err[1024];
    int64_t removed = 0;
    if (remove_dead_letters(r->conn, config, o.delivered, o.n_delivered, true, &removed, err,
                            sizeof err) != 0) {
        relay_error(log, "dead-letters retry: the sink acknowledged %zu event(s), but %s",
                    o.n_delivered, err);
        free(o.delivered);
        return RELAY_EXIT_DATABASE;
    }
    FILE *report = relay_redelivery_report_stream(r, out);
    fprintf(report, "retried %zu event%s of '%s': %zu delivered (dead letters removed)",
            opts->n_ids, opts->n_ids == 1 ? "" : "s", config->name, o.n_delivered);
    if (o.refused > 0)
        fprintf(report, ", %zu refused again", o.refused);
    if (o.gone > 0)
        fprintf(report, ", %zu no longer in the table", o.gone);
    if (o.sink_failed)
        fprintf(report, ", then the sink failed");
    fputc('\n', report);
    relay_info(log, "dead-letters retry: %zu event(s) of '%s' redelivered", o.n_delivered,
               config->name);
    free(o.delivered);
    if (rc != 0)
        return rc;
    if (o.sink_failed || o.refused > 0)
        return RELAY_EXIT_RUNTIME;
    return o.gone > 0 ? RELAY_EXIT_REFUSED : RELAY_EXIT_OK;
}

int relay_cmd_dead_letters(const relay_cli_options *opts, const relay_config *config,
                           const relay_logger *log, FILE *out)
{
    char err[2048];
    relay_redelivery r;
    int rc = relay_redelivery_open(&r, config, log, err, sizeof err);
    if (rc != 0) {
        relay_error(log, "dead-letters: %s", err);
        return rc;
    }
    switch (opts->dead_letters_action) {
    case RELAY_DEAD_LETTERS_LIST:
        rc = list(r.conn, opts, config, log, out);
        break;
    case RELAY_DEAD_LETTERS_DROP:
        rc = drop(r.conn, opts, config, log, out);
        break;
    case RELAY_DEAD_LETTERS_RETRY:
        rc = retry(&r, opts, config, log, out);
        break;
    }
    relay_redelivery_close(&r);
    return rc;
}
