/*
 * What the turns tell the metrics (metrics.h): batches, latencies, late events, dead letters, and
 * which event is the oldest not delivered yet. Called on the loop's thread; cannot fail.
 */
#ifndef RELAY_OBSERVE_H
#define RELAY_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "source.h"

/* A read came back: its first event, or the row the margin held, is the oldest not delivered,
 * unless a hand is with the sink (that one is older). Notes the id sequence's last value. */
void relay_observe_read(relay_metrics_counts *c, const relay_batch *b);

/* b goes to the sink: its first event is now the oldest not delivered. */
void relay_observe_hand(relay_metrics_counts *c, const relay_batch *b);

/* The hand was dropped with the connection: the next read says again what is oldest. */
void relay_observe_hand_dropped(relay_metrics_counts *c);

/* The sink acknowledged b (late: rows of watched gaps), of which n_rejected were refused and
 * recorded as dead letters; now_ms is the relay's monotonic clock. */
void relay_observe_ack(relay_metrics_counts *c, const relay_batch *b, bool late, size_t n_rejected,
                       int64_t now_ms);

#endif
