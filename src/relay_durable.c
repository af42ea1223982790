/*
 * Durable before delivered, and the history that delivery rests on.
 *
 * A commit becomes visible before its WAL is flushed when the writer runs with
 * synchronous_commit = off: a row the relay delivered could then vanish in a crash, and its id
 * come back with another event. Logical decoding never sends unflushed WAL; neither does the
 * relay. Every read tells the WAL insert position after its snapshot, above every commit it saw;
 * the rows go to the sink only once the WAL is flushed that far (and, with source.durable_on, on
 * those standbys too, so that a failover to one of them cannot undo them).
 *
 * What was made durable is remembered: the WAL position and its timeline, and the stored position
 * known flushed with it. When the relay reconnects and the database's history is behind that (a
 * restore from a backup, a failover to a standby that lacked the last commits), the events it
 * delivered may no longer exist and their ids will be handed out again: it stops.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_durable.h"

#include "clock.h"
#include "db.h"
#include "exit_codes.h"

/* How many times the relay waits 1 ms for the server's own WAL flushes before it forces one. */
#define FLUSH_WAITS 1

static void lsn_text(uint64_t lsn, char *out, size_t len)
{
    snprintf(out, len, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

static int parse_lsn(const char *text, uint64_t *lsn)
{
    unsigned hi, lo;
    if (sscanf(text, "%X/%X", &hi, &lo) != 2)
        return -1;
    *lsn = (uint64_t)hi << 32 | lo;
    return 0;
}

/* Runs a query of one row and column; its text goes to out. Returns 0, or -1 with err. */
static int query_text(PGconn *conn, const char *what, const char *sql, int n,
                      const char *const *params, char *out, size_t outlen, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok)
        snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
    else
        relay_db_error(conn, res, what, err, errlen);
    PQclear(res);
    return ok ? 0 : -1;
}

static int read_flush_lsn(PGconn *conn, uint64_t *lsn, char *err, size_t errlen)
{
    char text[64];
    if (query_text(conn, "reading the WAL flush position", "SELECT pg_current_wal_flush_lsn()", 0,
                   NULL, text, sizeof text, err, errlen) != 0)
        return -1;
    return parse_lsn(text, lsn) == 0 ? 0 : (snprintf(err, errlen, "bad LSN %s", text), -1);
}

/*
 * A transaction of the relay's own that writes and commits synchronously flushes the WAL up to
 * its commit record, past everything inserted before it. It must write: a commit that wrote no
 * WAL before its commit record is not flushed, whatever synchronous_commit says
 * (RecordTransactionCommit). It touches the relay's checkpoint row, in one round trip. `local`
 * waits for the local flush only: with synchronous_standby_names set and that standby away, `on`
 * would block the relay inside libpq; the standbys of source.durable_on are waited for apart.
 */
static int force_flush(PGconn *conn, const char *name, int64_t epoch, char *err, size_t errlen)
{
    /* Under the epoch too: a fenced leader learns it here, before it hands the batch over. */
    static const char *const statements[] = {
        "BEGIN", "SET LOCAL synchronous_commit = local",
        "UPDATE relay_checkpoints SET updated_at = clock_timestamp()"
        " WHERE name = $1 AND relay_epoch_holds(name, epoch, $1, $2::bigint)",
        "COMMIT"};
    enum { N = sizeof statements / sizeof statements[0] };
    char epoch_text[24];
    snprintf(epoch_text, sizeof epoch_text, "%" PRId64, epoch);
    const char *params[2] = {name, epoch_text};
    if (relay_db_pipeline_begin(conn, err, errlen) != 0)
        return -1;
    for (int i = 0; i < N; i++) {
        if (!PQsendQueryParams(conn, statements[i], i == 2 ? 2 : 0, NULL, i == 2 ? params : NULL,
                               NULL, NULL, 0)) {
            relay_db_error(conn, NULL, "flushing the WAL", err, errlen);
            return -1;
        }
    }
    if (relay_db_pipeline_send(conn, err, errlen) != 0)
        return -1;
    int ok = 1;
    for (int i = 0; i < N; i++) {
        PGresult *res = PQgetResult(conn);
        if (ok && PQresultStatus(res) != PGRES_COMMAND_OK) {
            relay_db_error(conn, res, "flushing the WAL", err, errlen);
            ok = 0;
        } else if (ok && i == 2 && strcmp(PQcmdTuples(res), "1") != 0) {
            /* No row, no WAL before the commit record: nothing would be flushed. */
            snprintf(err, errlen, "flushing the WAL: the checkpoint row of '%s' is gone", name);
            ok = 0;
        }
        PQclear(res);
        relay_db_discard_results(conn);
    }
    char end_err[256];
    if (relay_db_pipeline_end(conn, ok ? err : end_err, ok ? errlen : sizeof end_err) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static relay_outcome durable(void)
{
    return (relay_outcome){.kind = RELAY_OUTCOME_BUSY};
}

static relay_outcome wait_for(int64_t ms)
{
    return (relay_outcome){.kind = RELAY_OUTCOME_WAIT, .wait_ms = ms};
}

static relay_outcome failed(void)
{
    return (relay_outcome){.kind = RELAY_OUTCOME_DB_FAILED};
}

/* Looks whether the named standbys have flushed lsn; polls, since nothing on the primary tells.
 */
static relay_outcome standbys_flushed(relay_pipeline *p, relay_durable_wait *w, uint64_t lsn,
                                      char *err, size_t errlen)
{
    char lsn_param[40], answer[24];
    lsn_text(lsn, lsn_param, sizeof lsn_param);
    const char *params[2] = {p->config->durable_on, lsn_param};
    if (w->standbys_since == 0) {
        w->standbys_since = relay_now_ms();
        w->standbys_wait = 1;
    }
    if (query_text(p->conn, "reading the standbys' flush positions",
                   "SELECT count(DISTINCT application_name) = cardinality(string_to_array($1,"
                   " ',')) FROM pg_stat_replication WHERE application_name ="
                   " ANY(string_to_array($1, ',')) AND flush_lsn >= $2::pg_lsn",
                   2, params, answer, sizeof answer, err, errlen) != 0)
        return failed();
    if (strcmp(answer, "t") == 0) {
        if (w->standbys_warned)
            relay_info(p->log, "the standbys (%s) have flushed %s; delivering",
                       p->config->durable_on, lsn_param);
        return durable();
    }
    if (!w->standbys_warned && relay_now_ms() - w->standbys_since >= 10000) {
        relay_warn(p->log,
                   "holding delivery: not every standby of source.durable_on (%s) has "
                   "flushed %s; see pg_stat_replication (the relay's role needs pg_monitor "
                   "to read it)",
                   p->config->durable_on, lsn_param);
        w->standbys_warned = true;
    }
    int64_t wait = w->standbys_wait, poll = p->config->poll_interval_ms;
    w->standbys_wait = wait * 2 < poll ? wait * 2 : poll;
    return wait_for(wait);
}

/* The WAL position known flushed once the read's rows arrived. */
static uint64_t flushed_at_read(const relay_batch *b)
{
    return b->flushed_by_commit && b->insert_lsn > b->flush_lsn ? b->insert_lsn : b->flush_lsn;
}

void relay_note_read(relay_pipeline *p, const relay_batch *b)
{
    relay_history *h = &p->history;
    uint64_t flushed = flushed_at_read(b);
    if (h->pending_position > h->durable_position && flushed >= h->pending_lsn)
        h->durable_position = h->pending_position;
    if (b->stored_before > h->durable_position && flushed >= b->insert_lsn)
        h->durable_position = b->stored_before;
    if (b->stored_before > h->pending_position) {
        h->pending_position = b->stored_before;
        h->pending_lsn = b->insert_lsn;
    }
}

/*
 * The server's own flushes usually pass a commit within a millisecond or two (any synchronous
 * commit does): the first look waits that long, then the relay forces a flush. Where the last
 * batch had to wait, the writers commit asynchronously: the next reads carry a synchronous store
 * (p->sync_reads), and a read that carried none forces at once. Called again after the pause it
 * asks for, it reads the flush position anew.
 */
static relay_outcome wal_flushed(relay_pipeline *p, relay_durable_wait *w, const relay_batch *b,
                                 char *err, size_t errlen)
{
    uint64_t flushed = flushed_at_read(b);
    if (flushed >= b->insert_lsn) {
        /* Flushed already at the read: the writers' commits are (no longer) asynchronous. Or
         * by the synchronous store that travelled with the read, at its commit: logged, so that
         * the batches resting on it can be told (tests/integration/test_durability.c counts
         * them). */
        if (b->flush_lsn >= b->insert_lsn) {
            p->sync_reads = false;
        } else {
            char lsn[40];
            lsn_text(b->insert_lsn, lsn, sizeof lsn);
            relay_debug(p->log,
                        "%zu events durable by the synchronous store of their read (the WAL "
                        "flushed past %s at its commit)",
                        b->count, lsn);
        }
        return durable();
    }
    if (w->flush_attempts > 0 && read_flush_lsn(p->conn, &flushed, err, errlen) != 0)
        return failed();
    if (flushed < b->insert_lsn) {
        if (!p->sync_reads && w->flush_attempts++ < FLUSH_WAITS)
            return wait_for(1);
        /* Logged too: it flushes every batch before it, whatever made those durable. */
        char lsn[40];
        lsn_text(b->insert_lsn, lsn, sizeof lsn);
        relay_debug(p->log, "forcing the WAL flush past %s for %zu events", lsn, b->count);
        if (force_flush(p->conn, p->config->name, p->epoch, err, errlen) != 0)
            return failed();
        /* Its commit record lies past everything inserted before it: flushed. */
    }
    p->sync_reads = true;
    return durable();
}

relay_outcome relay_durable_progress(relay_pipeline *p, relay_hand *hand, char *err, size_t errlen)
{
    const relay_batch *b = hand->batch;
    relay_durable_wait *w = &hand->durable;
    /* Rows written by transactions that ended before a read already made durable need nothing:
     * a drain of a backlog waits once, not once a batch for the relay's own checkpoint WAL. */
    if (b->count > 0 && b->newest_xid >= p->durable_xmin) {
        relay_outcome o;
        if (!w->wal_flushed) {
            if ((o = wal_flushed(p, w, b, err, errlen)).kind != RELAY_OUTCOME_BUSY)
                return o;
            w->wal_flushed = true;
        }
        if (p->config->durable_on &&
            (o = standbys_flushed(p, w, b->insert_lsn, err, errlen)).kind != RELAY_OUTCOME_BUSY)
            return o;
        if (b->insert_lsn > p->history.durable_lsn)
            p->history.durable_lsn = b->insert_lsn;
        p->history.timeline = p->timeline;
        if (b->snapshot_xmin > p->durable_xmin)
            p->durable_xmin = b->snapshot_xmin;
    }
    /* Only a flush seen past the read makes the position stored before it durable; rows old
     * enough to need no look say nothing of it. */
    if (w->wal_flushed && b->stored_before > p->history.durable_position)
        p->history.durable_position = b->stored_before;
    return durable();
}

/* The switch point at which timeline `from` ended in the history of timeline `now`, read from
 * its history file. Returns 1 with *at, 0 when `from` is not an ancestor, -1 with err. */
static int switch_point(PGconn *conn, uint32_t now, uint32_t from, uint64_t *at, char *err,
                        size_t errlen)
{
    char path[64];
    snprintf(path, sizeof path, "pg_wal/%08X.history", now);
    const char *params[1] = {path};
    PGresult *res = PQexecParams(conn, "SELECT pg_read_file($1)", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        relay_db_error(conn, res, "reading the timeline history", err, errlen);
        PQclear(res);
        return -1;
    }
    int found = 0;
    char *text = PQgetvalue(res, 0, 0), *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !found;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned tli;
        char lsn[40];
        if (sscanf(line, "%u %39s", &tli, lsn) == 2 && tli == from && parse_lsn(lsn, at) == 0)
            found = 1;
    }
    PQclear(res);
    return found;
}

/* The created_at of the table's event id, rendered as the sink got it; "" when the row is gone
 * (deleted after delivery: that proves nothing) or has none. Returns 0, or -1 with err. */
static int last_event_created_at(relay_pipeline *p, int64_t id, char out[RELAY_RFC3339_SIZE],
                                 char *err, size_t errlen)
{
    char column[600], sql[4096], id_text[24];
    if (relay_db_quote_ident(p->conn, p->config->columns.id, column, sizeof column, err, errlen) !=
        0)
        return -1;
    char created_at[600];
    if (relay_db_quote_ident(p->conn, p->config->columns.created_at, created_at, sizeof created_at,
                             err, errlen) != 0)
        return -1;
    snprintf(sql, sizeof sql, "SELECT t.%s::timestamptz FROM %s t WHERE t.%s = $1", created_at,
             p->source.quoted_table, column);
    snprintf(id_text, sizeof id_text, "%" PRId64, id);
    const char *params[1] = {id_text};
    PGresult *res = PQexecParams(p->conn, sql, 1, NULL, params, NULL, NULL, 1);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        relay_db_error(p->conn, res, "reading the last delivered event", err, errlen);
    else if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) && PQgetlength(res, 0, 0) == 8) {
        relay_timestamp_rfc3339(relay_db_binary_int64(res, 0, 0), out);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

static relay_outcome history_behind(relay_pipeline *p, const char *why, char *err, size_t errlen)
{
    char durable[40];
    lsn_text(p->history.durable_lsn, durable, sizeof durable);
    snprintf(err, errlen,
             "the database's history is behind what the relay delivered: %s (the relay saw "
             "WAL up to %s on timeline %u flushed before it delivered). Restored from a backup, "
             "or failed over to a server that lacked the last commits: events delivered may "
             "no longer exist, and their ids will be handed out again. Check the "
             "destination, then run `outbox-relay reset -c %.200s --to ID`",
             why, durable, p->history.timeline, p->config->path);
    return (relay_outcome){.kind = RELAY_OUTCOME_FATAL, .exit_code = RELAY_EXIT_CHECKPOINT};
}

relay_outcome relay_check_history(relay_pipeline *p, int64_t stored_position, char *err,
                                  size_t errlen)
{
    char text[128];
    if (query_text(p->conn, "reading the WAL position",
                   "SELECT pg_walfile_name(l) || ' ' || l FROM pg_current_wal_insert_lsn() AS l", 0,
                   NULL, text, sizeof text, err, errlen) != 0)
        return failed();
    char walfile[32], lsn_now_text[40];
    uint64_t lsn_now = 0;
    if (sscanf(text, "%24s %39s", walfile, lsn_now_text) != 2 ||
        parse_lsn(lsn_now_text, &lsn_now) != 0) {
        snprintf(err, errlen, "reading the WAL position: unexpected answer '%s'", text);
        return failed();
    }
    walfile[8] = '\0';
    p->timeline = (uint32_t)strtoul(walfile, NULL, 16);

    const relay_history *h = &p->history;
    if (h->timeline == 0)
        return durable(); /* nothing delivered yet by this process */
    char why[512];
    if (p->timeline == h->timeline && lsn_now < h->durable_lsn) {
        snprintf(why, sizeof why, "its WAL insert position is %s", lsn_now_text);
        return history_behind(p, why, err, errlen);
    }
    if (p->timeline != h->timeline) {
        uint64_t at = 0;
        int found = switch_point(p->conn, p->timeline, h->timeline, &at, err, errlen);
        if (found < 0) {
            snprintf(why, sizeof why,
                     "it runs on timeline %u and the relay cannot read its history (%.300s; the "
                     "relay's role needs pg_read_server_files to check a failover)",
                     p->timeline, err);
            return history_behind(p, why, err, errlen);
        }
        if (!found || at < h->durable_lsn) {
            char at_text[40];
            lsn_text(at, at_text, sizeof at_text);
            snprintf(why, sizeof why,
                     found ? "its timeline %u forked from timeline %u at %s"
                           : "its timeline %u does not descend from timeline %u%s",
                     p->timeline, h->timeline, found ? at_text : "");
            return history_behind(p, why, err, errlen);
        }
        relay_info(p->log, "timeline %u forked from timeline %u after every delivered commit",
                   p->timeline, h->timeline);
    }
    if (h->last_id > 0 && h->last_created_at[0]) {
        char now[RELAY_RFC3339_SIZE] = "";
        if (last_event_created_at(p, h->last_id, now, err, errlen) != 0)
            return failed();
        if (now[0] && strcmp(now, h->last_created_at) != 0) {
            snprintf(why, sizeof why,
                     "event %" PRId64 ", the last one delivered, was created at %s; the table's "
                     "event %" PRId64 " was created at %s",
                     h->last_id, h->last_created_at, h->last_id, now);
            return history_behind(p, why, err, errlen);
        }
    }
    if (stored_position < h->durable_position) {
        snprintf(why, sizeof why,
                 "the stored position is %" PRId64 ", below %" PRId64 " which was flushed",
                 stored_position, h->durable_position);
        return history_behind(p, why, err, errlen);
    }
    return durable();
}
