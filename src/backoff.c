#include "backoff.h"

#include <sys/random.h>
#include <time.h>

static uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

void relay_backoff_init(relay_backoff *b, int64_t initial_ms, int64_t max_ms)
{
    b->initial_ms = initial_ms > 0 ? initial_ms : 1;
    b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
    b->ceiling_ms = b->initial_ms;
    /* Jitter only has to differ between relays restarted together; the clock is a fine fallback. */
    if (getrandom(&b->rng, sizeof b->rng, GRND_NONBLOCK) != (ssize_t)sizeof b->rng)
        b->rng = (uint64_t)time(NULL);
    if (b->rng == 0)
        b->rng = 0x9e3779b97f4a7c15u;
}

int64_t relay_backoff_next(relay_backoff *b)
{
    /* Half fixed, half random: never hammers a recovering server, and relays restarted at the same
     * moment spread out instead of reconnecting in lockstep. */
    int64_t half = b->ceiling_ms / 2;
    int64_t delay = half + (int64_t)(xorshift64(&b->rng) % (uint64_t)(b->ceiling_ms - half + 1));
    b->ceiling_ms = b->ceiling_ms > b->max_ms / 2 ? b->max_ms : b->ceiling_ms * 2;
    return delay;
}

void relay_backoff_configure(relay_backoff *b, int64_t initial_ms, int64_t max_ms)
{
    b->initial_ms = initial_ms > 0 ? initial_ms : 1;
    b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
    b->ceiling_ms = b->ceiling_ms < b->initial_ms ? b->initial_ms
                    : b->ceiling_ms > b->max_ms   ? b->max_ms
                                                  : b->ceiling_ms;
}

void relay_backoff_reset(relay_backoff *b)
{
    b->ceiling_ms = b->initial_ms;
}
