#include "relay_pipeline.h"

#include <string.h>

#include "relay_observe.h"
#include "signals.h"

const char *relay_pipe_name(relay_pipe pipe)
{
    switch (pipe) {
    case RELAY_PIPE_CLOSED:
        return "closed";
    case RELAY_PIPE_STANDBY:
        return "standby";
    case RELAY_PIPE_IDLE:
        return "idle";
    case RELAY_PIPE_READ:
        return "read";
    case RELAY_PIPE_DURABLE:
        return "durable";
    case RELAY_PIPE_SINK:
        return "sink";
    case RELAY_PIPE_PREFETCHING:
        return "prefetching";
    case RELAY_PIPE_PREFETCHED:
        return "prefetched";
    }
    return "?";
}

int relay_pipeline_init(relay_pipeline *p, const relay_config *config, const relay_logger *log,
                        char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->config = config;
    p->log = log;
    p->pipe = RELAY_PIPE_CLOSED;
    p->current = &p->batches[0];
    p->next = &p->batches[1];
    p->counts.sequence_last = -1;
    if (relay_batch_init(p->current, config, err, errlen) != 0)
        return -1;
    if (relay_batch_init(p->next, config, err, errlen) != 0) {
        relay_batch_free(p->current);
        return -1;
    }
    return 0;
}

void relay_pipeline_free(relay_pipeline *p)
{
    relay_pipe_change(p, RELAY_PIPE_CLOSED);
    relay_batch_free(p->current);
    relay_batch_free(p->next);
    relay_gaps_free(&p->gaps);
    relay_gaps_free(&p->ahead);
    relay_lockers_free(&p->lockers);
}

void relay_pipe_change(relay_pipeline *p, relay_pipe to)
{
    if (p->pipe != to)
        relay_debug(p->log, "pipeline: %s -> %s", relay_pipe_name(p->pipe), relay_pipe_name(to));
    p->pipe = to;
    if (to == RELAY_PIPE_CLOSED) {
        relay_signals_set_stop_socket(-1);
        PQfinish(p->conn);
        p->conn = NULL;
        relay_batch_clear(p->current);
        relay_batch_clear(p->next);
        p->storing = 0;
        p->listening = false;
        p->epoch = 0; /* the lock went with the session */
        /* The next connection reloads the stored position: what was acknowledged after it is
         * delivered again. */
        p->position = p->stored_position;
    }
    if (to < RELAY_PIPE_DURABLE) {
        memset(&p->hand, 0, sizeof p->hand);
        relay_observe_hand_dropped(&p->counts);
    }
}

bool relay_pipeline_leading(const relay_pipeline *p)
{
    return p->epoch > 0 && p->pipe != RELAY_PIPE_CLOSED && p->pipe != RELAY_PIPE_STANDBY;
}

bool relay_pipeline_position_unstored(const relay_pipeline *p)
{
    return relay_pipeline_leading(p) && p->position != p->stored_position &&
           !(p->pipe == RELAY_PIPE_PREFETCHING && p->storing > 0);
}
