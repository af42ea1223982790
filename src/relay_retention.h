/*
 * Retention as the relay loop runs it: one bounded round at a time (retention.h,
 * retention_partitions.h), between two turns, on the pipeline's own connection while nothing is
 * in flight on it. The turn never waits for it, and delivery waits for one short round at most.
 */
#ifndef RELAY_RETENTION_LOOP_H
#define RELAY_RETENTION_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "relay_pipeline.h"

typedef struct relay_retention {
    int64_t next_ms; /* monotonic: when the next round is due; 0: at the first chance */
    /* The last round removed a full batch (or a partition): more is probably waiting, and the next
     * round may run as soon as the relay has nothing else to do. */
    bool more;
    /* Failures are logged when they start and end, not at every retry. */
    bool failing;
    int attempts;
    bool warned_not_partitioned;
} relay_retention;

/*
 * Runs a round if retention is on, one is due and the pipeline is connected with nothing in
 * flight (IDLE or READ). idle: the turn said there is nothing to deliver for a while; only then
 * does a round follow a full one at once, so that while a backlog lasts, delivery comes first and
 * a round runs once per retention.interval. A failed round is logged (see above) and retried at
 * the next interval; it never touches the position. Cannot fail: a broken connection is left for
 * the next turn to find.
 */
void relay_retention_tick(relay_retention *r, relay_pipeline *p, bool idle);

#endif
