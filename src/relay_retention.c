#include "relay_retention.h"

#include <inttypes.h>
#include <stdio.h>

#include "clock.h"
#include "retention.h"
#include "retention_partitions.h"

/* A round that could run: logs what it did, and says whether more is probably waiting. */
static bool note_delete(relay_pipeline *p, const relay_retention_round *round)
{
    if (!round->turn) {
        relay_debug(p->log, "retention: another relay's round on %s is going on",
                    p->source.quoted_table);
        return false;
    }
    if (round->deleted > 0)
        relay_debug(p->log, "retention: deleted %" PRId64 " rows (bound %" PRId64 ")",
                    round->deleted, round->bound);
    return round->deleted == p->config->retention_batch_size;
}

static bool note_partition(relay_pipeline *p, const relay_partition_round *round)
{
    if (!round->turn) {
        relay_debug(p->log, "retention: another relay's round on %s is going on",
                    p->source.quoted_table);
        return false;
    }
    if (round->dropped && round->rows >= 0)
        relay_info(p->log,
                   "retention: dropped partition %s (ids below %" PRId64 ", about %" PRId64
                   " rows; bound %" PRId64 ")",
                   round->partition, round->below, round->rows, round->bound);
    else if (round->dropped)
        relay_info(p->log,
                   "retention: dropped partition %s (ids below %" PRId64 "; bound %" PRId64 ")",
                   round->partition, round->below, round->bound);
    else if (round->partition[0])
        relay_debug(p->log, "retention: partition %s kept: the bound fell meanwhile",
                    round->partition);
    return round->dropped;
}

/* One round: a partition when the table is partitioned by range of id and drop_partitions is on,
 * else a DELETE. Returns 0 with *more, or -1 with err. */
static int run_round(relay_retention *r, relay_pipeline *p, bool *more, char *err, size_t errlen)
{
    const relay_config *c = p->config;
    if (c->retention_drop_partitions) {
        relay_partition_round round;
        if (relay_retention_drop_partition(p->conn, c, &p->source, p->epoch, &round, err, errlen) !=
            0)
            return -1;
        if (round.by_id) {
            *more = note_partition(p, &round);
            return 0;
        }
        if (!r->warned_not_partitioned)
            relay_warn(p->log,
                       "retention.drop_partitions: %s is not partitioned by range of %s; "
                       "deleting rows instead",
                       p->source.quoted_table, c->columns.id);
        r->warned_not_partitioned = true;
    }
    relay_retention_round round;
    if (relay_retention_delete(p->conn, c, &p->source, p->epoch, &round, err, errlen) != 0)
        return -1;
    *more = note_delete(p, &round);
    return 0;
}

void relay_retention_tick(relay_retention *r, relay_pipeline *p, bool idle)
{
    if (!relay_retention_enabled(p->config) ||
        (p->pipe != RELAY_PIPE_IDLE && p->pipe != RELAY_PIPE_READ))
        return;
    int64_t now = relay_now_ms();
    if (now < r->next_ms && !(r->more && idle))
        return;

    char err[1024];
    bool more = false;
    int rc = run_round(r, p, &more, err, sizeof err);
    r->next_ms = relay_now_ms() + p->config->retention_interval_ms;
    r->more = rc == 0 && more;
    if (rc == 0) {
        if (r->failing)
            relay_info(p->log, "retention works again after %d failed round%s", r->attempts,
                       r->attempts == 1 ? "" : "s");
        r->failing = false;
        r->attempts = 0;
        return;
    }
    /* The connection broke: the next turn finds it and the loop reconnects, as for any query. */
    if (PQstatus(p->conn) == CONNECTION_BAD)
        return;
    r->attempts++;
    char interval[32];
    relay_duration_format(p->config->retention_interval_ms, interval, sizeof interval);
    if (!r->failing)
        relay_warn(p->log,
                   "retention failed: %s; retrying every %s (retention.interval), delivery goes "
                   "on and the position moves only with the sink's acknowledgements",
                   err, interval);
    else
        relay_debug(p->log, "retention still failing (round %d): %s", r->attempts, err);
    r->failing = true;
}
