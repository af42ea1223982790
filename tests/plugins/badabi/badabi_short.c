/* A sink from a hypothetical older ABI whose API struct is shorter than the relay reads. */
#include <outbox_relay/sink.h>

static relay_sink_status badabi_short_init(const relay_sink_host *host,
                                           const relay_sink_option *options, size_t n_options,
                                           void **state, char *err, size_t errlen)
{
    (void)host;
    (void)options;
    (void)n_options;
    (void)err;
    (void)errlen;
    *state = NULL;
    return RELAY_SINK_OK;
}

static relay_sink_status badabi_short_deliver(void *state, const relay_sink_batch *batch, char *err,
                                              size_t errlen)
{
    (void)state;
    (void)batch;
    (void)err;
    (void)errlen;
    return RELAY_SINK_OK;
}

static relay_sink_status badabi_short_flush(void *state, int timeout_ms, char *err, size_t errlen)
{
    (void)state;
    (void)timeout_ms;
    (void)err;
    (void)errlen;
    return RELAY_SINK_OK;
}

static void badabi_short_destroy(void *state)
{
    (void)state;
}

static const relay_sink_api badabi_short_api = {
    .abi_version = RELAY_SINK_ABI_VERSION,
    .struct_size = 8,
    .name = "badabi_short",
    .init = badabi_short_init,
    .deliver = badabi_short_deliver,
    .flush = badabi_short_flush,
    .destroy = badabi_short_destroy,
};

const relay_sink_api *RELAY_SINK_ENTRY(void)
{
    return &badabi_short_api;
}
