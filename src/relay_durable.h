/*
 * Durable before delivered, and the history that delivery rests on (relay_durable.c). Like the
 * turn, these never wait: a wait is handed back to the loop as an outcome.
 */
#ifndef RELAY_DURABLE_H
#define RELAY_DURABLE_H

#include <stddef.h>
#include <stdint.h>

#include "relay_pipeline.h"
#include "relay_turn.h"

/*
 * Moves the hand towards durable: its commits flushed on the primary (forcing a flush when the
 * server's own do not come soon) and on the standbys of source.durable_on. Returns BUSY once it
 * is durable, WAIT when it must be called again after the pause, DB_FAILED with err.
 */
relay_outcome relay_durable_progress(relay_pipeline *p, relay_hand *hand, char *err, size_t errlen);

/* A read came back: what its header proves flushed. Cannot fail. */
void relay_note_read(relay_pipeline *p, const relay_batch *b);

/*
 * At connect: reads the server's timeline, and refuses (FATAL, exit 6) a history behind what
 * this process delivered, or a stored position (as loaded) below one known flushed. Returns BUSY
 * when it holds, FATAL or DB_FAILED with err.
 */
relay_outcome relay_check_history(relay_pipeline *p, int64_t stored_position, char *err,
                                  size_t errlen);

#endif
