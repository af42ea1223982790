/* An event the sink's destination refused for good, as the sink reported it through host.reject:
 * what the checkpoint records as a dead letter. */
#ifndef RELAY_SINK_REJECTION_H
#define RELAY_SINK_REJECTION_H

#include <stdint.h>

typedef struct relay_sink_rejection {
    int64_t event_id;
    char reason[256];
} relay_sink_rejection;

#endif
