/* Capped exponential backoff with jitter, for reconnecting to the database and retrying a sink. */
#ifndef RELAY_BACKOFF_H
#define RELAY_BACKOFF_H

#include <stdint.h>

typedef struct relay_backoff {
    int64_t initial_ms;
    int64_t max_ms;
    int64_t ceiling_ms; /* the current cap before jitter; doubles after each failure */
    uint64_t rng;       /* xorshift state, seeded from getrandom() */
} relay_backoff;

void relay_backoff_init(relay_backoff *b, int64_t initial_ms, int64_t max_ms);
/* The delay before the next attempt: uniform in [ceiling/2, ceiling], then the ceiling doubles. */
int64_t relay_backoff_next(relay_backoff *b);
/* A reload's new bounds: the waits go on from where they are, within them. Cannot fail. */
void relay_backoff_configure(relay_backoff *b, int64_t initial_ms, int64_t max_ms);
/* After a success: start again from initial_ms. */
void relay_backoff_reset(relay_backoff *b);

#endif
