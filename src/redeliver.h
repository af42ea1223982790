/*
 * Delivering events again on an operator's request (`dead-letters retry`, `replay`): what both
 * commands share beside the relay. They read through source.h's rereads on a connection of their
 * own and hand each batch to a sink loaded as `run` loads it; nothing here takes the relay's
 * lock or writes its checkpoint.
 */
#ifndef RELAY_REDELIVER_H
#define RELAY_REDELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "config.h"
#include "sink_host.h"
#include "source.h"

/* A connection with the table inspected and the rereads prepared, and a batch to read into. */
typedef struct relay_redelivery {
    PGconn *conn; /* owned */
    relay_source_info info;
    relay_batch batch;
    relay_sink sink; /* loaded by relay_redelivery_open_sink; zeroed before */
    bool sink_open;
} relay_redelivery;

/* Connects, inspects the table and prepares the rereads. Returns 0, or a relay_exit_code
 * (RELAY_EXIT_DATABASE) with err; r is then closed. log must outlive r. */
int relay_redelivery_open(relay_redelivery *r, const relay_config *config, const relay_logger *log,
                          char *err, size_t errlen);

/* Loads and initialises the configured sink. Returns 0, or RELAY_EXIT_SINK with err. */
int relay_redelivery_open_sink(relay_redelivery *r, const relay_config *config,
                               const relay_logger *log, char *err, size_t errlen);

/* Hands r->batch (read by a reread, so marked redelivered) to the sink and waits for its flush,
 * at most sink.flush_timeout. Returns 0 when the sink acknowledged every event but those it
 * refused for good (r->sink.rejections lists them), or -1 with err when it accepted nothing for
 * sure (a failed deliver or flush, a refusal it could not record). */
int relay_redelivery_deliver(relay_redelivery *r, const relay_config *config, char *err,
                             size_t errlen);

/* Whether the sink refused event id in the last hand-over; *reason then points at why (valid
 * until the next hand-over). Cannot fail. */
bool relay_redelivery_refused(const relay_redelivery *r, int64_t id, const char **reason);

/* Where a command's report goes: out, unless the sink is the stdout sink, whose output out is
 * (a report line among its JSON lines would be read as one); stderr then. Cannot fail. */
FILE *relay_redelivery_report_stream(const relay_redelivery *r, FILE *out);

/* Unloads the sink, frees the batch, closes the connection. Safe on a zeroed r. */
void relay_redelivery_close(relay_redelivery *r);

#endif
