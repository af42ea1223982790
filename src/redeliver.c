#include "redeliver.h"

#include <string.h>

#include "db.h"
#include "exit_codes.h"

int relay_redelivery_open(relay_redelivery *r, const relay_config *config, const relay_logger *log,
                          char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->conn = relay_db_connect(config, log, err, errlen);
    if (!r->conn)
        return RELAY_EXIT_DATABASE;
    int missing = 0;
    if (relay_source_inspect(r->conn, config, &r->info, &missing, err, errlen) != 0 ||
        relay_source_prepare_reread(r->conn, config, &r->info, err, errlen) != 0) {
        relay_redelivery_close(r);
        return RELAY_EXIT_DATABASE;
    }
    if (relay_batch_init(&r->batch, config, err, errlen) != 0) {
        relay_redelivery_close(r);
        return RELAY_EXIT_DATABASE;
    }
    return 0;
}

int relay_redelivery_open_sink(relay_redelivery *r, const relay_config *config,
                               const relay_logger *log, char *err, size_t errlen)
{
    if (r->sink_open)
        return 0;
    if (relay_sink_open(&r->sink, config, log, err, errlen) != 0)
        return RELAY_EXIT_SINK;
    r->sink_open = true;
    return 0;
}

int relay_redelivery_deliver(relay_redelivery *r, const relay_config *config, char *err,
                             size_t errlen)
{
    relay_batch_render(&r->batch);
    const relay_sink_batch batch = {
        .events = r->batch.events, .count = r->batch.count, .event_size = sizeof(relay_sink_event)};
    if (relay_sink_deliver(&r->sink, &batch, err, errlen) != RELAY_SINK_OK ||
        relay_sink_flush(&r->sink, (int)config->sink_flush_timeout_ms, err, errlen) !=
            RELAY_SINK_OK)
        return -1;
    if (r->sink.rejections_lost) {
        snprintf(err, errlen,
                 "the sink refused an event that could not be recorded (out of "
                 "memory): the batch counts as not delivered");
        return -1;
    }
    return 0;
}

bool relay_redelivery_refused(const relay_redelivery *r, int64_t id, const char **reason)
{
    for (size_t i = 0; i < r->sink.n_rejections; i++) {
        if (r->sink.rejections[i].event_id == id) {
            *reason = r->sink.rejections[i].reason;
            return true;
        }
    }
    return false;
}

FILE *relay_redelivery_report_stream(const relay_redelivery *r, FILE *out)
{
    return r->sink.api && strcmp(r->sink.api->name, "stdout") == 0 ? stderr : out;
}

void relay_redelivery_close(relay_redelivery *r)
{
    if (r->sink_open)
        relay_sink_unload(&r->sink);
    relay_batch_free(&r->batch);
    if (r->conn)
        PQfinish(r->conn);
    memset(r, 0, sizeof *r);
}
