/*
 * A sink that is valid in every way but one, chosen at build time (see tests/meson.build): the ABI
 * version it claims (BADABI_VERSION) or the size of its API struct (BADABI_STRUCT_SIZE).
 */
#include <outbox_relay/sink.h>

static relay_sink_status badabi_init(const relay_sink_host *host, const relay_sink_option *options,
                                     size_t n_options, void **state, char *err, size_t errlen)
{
    (void)host;
    (void)options;
    (void)n_options;
    (void)err;
    (void)errlen;
    *state = NULL;
    return RELAY_SINK_OK;
}

static relay_sink_status badabi_deliver(void *state, const relay_sink_batch *batch, char *err,
                                        size_t errlen)
{
    (void)state;
    (void)batch;
    (void)err;
    (void)errlen;
    return RELAY_SINK_OK;
}

static relay_sink_status badabi_flush(void *state, int timeout_ms, char *err, size_t errlen)
{
    (void)state;
    (void)timeout_ms;
    (void)err;
    (void)errlen;
    return RELAY_SINK_OK;
}

static void badabi_destroy(void *state)
{
    (void)state;
}

static const relay_sink_api badabi_api = {
    .abi_version = BADABI_VERSION,
    .struct_size = BADABI_STRUCT_SIZE,
    .name = "badabi",
    .init = badabi_init,
    .deliver = badabi_deliver,
    .flush = badabi_flush,
    .destroy = badabi_destroy,
};

const relay_sink_api *RELAY_SINK_ENTRY(void)
{
    return &badabi_api;
}
