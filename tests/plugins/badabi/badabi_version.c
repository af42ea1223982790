/* A sink that is valid in every way but claims an ABI version the relay does not speak. */
#include <outbox_relay/sink.h>

static relay_sink_status badabi_version_init(const relay_sink_host *host,
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

static relay_sink_status badabi_version_deliver(void *state, const relay_sink_batch *batch,
                                                char *err, size_t errlen)
{
    (void)state;
    (void)batch;
    (void)err;
    (void)errlen;
    return RELAY_SINK_OK;
}

static relay_sink_status badabi_version_flush(void *state, int timeout_ms, char *err, size_t errlen)
{
    (void)state;
    (void)timeout_ms;
    (void)err;
    (void)errlen;
    return RELAY_SINK_OK;
}

static void badabi_version_destroy(void *state)
{
    (void)state;
}

static const relay_sink_api badabi_version_api = {
    .abi_version = 999,
    .struct_size = sizeof(relay_sink_api),
    .name = "badabi_version",
    .init = badabi_version_init,
    .deliver = badabi_version_deliver,
    .flush = badabi_version_flush,
    .destroy = badabi_version_destroy,
};

const relay_sink_api *RELAY_SINK_ENTRY(void)
{
    return &badabi_version_api;
}
