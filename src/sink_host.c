#include "sink_host.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "permissions.h"
#include "plugin_path.h"
#include "signals.h"

static relay_log_level relay_log_level_from_sink(relay_sink_log_level level)
{
    switch (level) {
    case RELAY_SINK_LOG_DEBUG:
        return RELAY_LOG_DEBUG;
    case RELAY_SINK_LOG_INFO:
        return RELAY_LOG_INFO;
    case RELAY_SINK_LOG_WARN:
        return RELAY_LOG_WARN;
    case RELAY_SINK_LOG_ERROR:
        return RELAY_LOG_ERROR;
    }
    /* A level from a newer ABI: rather too loud than lost. */
    return RELAY_LOG_ERROR;
}

__attribute__((format(printf, 3, 4))) static void
relay_sink_host_log(void *ctx, relay_sink_log_level level, const char *fmt, ...)
{
    const relay_sink *sink = ctx;
    relay_log_level mapped = relay_log_level_from_sink(level);
    if (sink == NULL || sink->log == NULL || mapped < sink->log->level)
        return;

    /* The plugin's format cannot be spliced into ours, so it is rendered first. relay_logv
     * truncates at the same size. */
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    relay_log(sink->log, mapped, "sink %s: %s", sink->api->name, msg);
}

/* A sink's wait goes on: the watchdog is fed as the loop would, and the stop flag answered. */
static int relay_sink_host_waiting(void *ctx)
{
    relay_sink *sink = ctx;
    if (sink->watchdog)
        relay_watchdog_feed(sink->watchdog);
    return relay_stop_requested() ? 1 : 0;
}

static void relay_sink_host_report_metric(void *ctx, const char *name, const char *help,
                                          double value)
{
    relay_sink *sink = ctx;
    if (!sink->metrics || !name)
        return;
    if (relay_metrics_set_sink(sink->metrics, name, help, value) != 0 && !sink->metric_refused) {
        sink->metric_refused = true;
        relay_warn(sink->log,
                   "sink %s: metric \"%.80s\" refused (1 to 63 of [a-z0-9_], at most %d)",
                   sink->api ? sink->api->name : "?", name, RELAY_SINK_METRICS_MAX);
    }
}

static void relay_sink_host_reject(void *ctx, int64_t event_id, const char *reason)
{
    relay_sink *sink = ctx;
    if (sink->n_rejections == sink->rejections_cap) {
        size_t cap = sink->rejections_cap ? sink->rejections_cap * 2 : 16;
        relay_sink_rejection *grown = realloc(sink->rejections, cap * sizeof *grown);
        if (grown == NULL) {
            /* The relay then fails the hand-over rather than let the event pass unrecorded. */
            sink->rejections_lost = 1;
            return;
        }
        sink->rejections = grown;
        sink->rejections_cap = cap;
    }
    relay_sink_rejection *r = &sink->rejections[sink->n_rejections++];
    r->event_id = event_id;
    snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "(no reason given)");
}

/* Checks the entry's answer; the first two fields are fixed across ABI versions, so they are
 * safe to read before anything else. */
static int check_api(const relay_sink_api *api, const char *path, char *err, size_t errlen)
{
    if (api == NULL) {
        snprintf(err, errlen, "sink plugin %s: relay_sink_entry returned NULL", path);
        return -1;
    }
    if (api->abi_version != RELAY_SINK_ABI_VERSION) {
        snprintf(err, errlen,
                 "sink plugin %s speaks sink ABI %u, this relay speaks %u: rebuild the plugin "
                 "against this relay's outbox_relay/sink.h",
                 path, (unsigned)api->abi_version, (unsigned)RELAY_SINK_ABI_VERSION);
        return -1;
    }
    if (api->struct_size < RELAY_SINK_API_MIN_SIZE) {
        snprintf(err, errlen,
                 "sink plugin %s declares a sink API of %u bytes, expected at least %zu", path,
                 (unsigned)api->struct_size, (size_t)RELAY_SINK_API_MIN_SIZE);
        return -1;
    }
    if (api->name == NULL || api->name[0] == '\0') {
        snprintf(err, errlen, "sink plugin %s has no name", path);
        return -1;
    }
    const char *missing = api->init == NULL      ? "init"
                          : api->deliver == NULL ? "deliver"
                          : api->flush == NULL   ? "flush"
                          : api->destroy == NULL ? "destroy"
                                                 : NULL;
    if (missing != NULL) {
        snprintf(err, errlen, "sink plugin %s (%s) has no %s callback", path, api->name, missing);
        return -1;
    }
    return 0;
}

int relay_sink_load(relay_sink *sink, const char *path, const relay_logger *log, char *err,
                    size_t errlen)
{
    memset(sink, 0, sizeof *sink);
    if ((size_t)snprintf(sink->path, sizeof sink->path, "%s", path) >= sizeof sink->path) {
        snprintf(err, errlen, "sink plugin path too long: %.200s...", path);
        memset(sink, 0, sizeof *sink);
        return -1;
    }

    /* Loading it runs its code as the relay. */
    if (relay_permissions_refuse_writable(path, "sink plugin", err, errlen) != 0) {
        memset(sink, 0, sizeof *sink);
        return -1;
    }
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        snprintf(err, errlen, "cannot load sink plugin %s: %s", path, why ? why : "dlopen failed");
        memset(sink, 0, sizeof *sink);
        return -1;
    }

    dlerror();
    void *symbol = dlsym(handle, RELAY_SINK_ENTRY_NAME);
    if (symbol == NULL) {
        snprintf(err, errlen,
                 "sink plugin %s does not export " RELAY_SINK_ENTRY_NAME
                 ": not an outbox-relay sink",
                 path);
        dlclose(handle);
        memset(sink, 0, sizeof *sink);
        return -1;
    }

    /* POSIX guarantees dlsym's object pointer converts to the function it names. */
    relay_sink_entry_fn entry = (relay_sink_entry_fn)symbol;
    const relay_sink_api *api = entry();
    if (check_api(api, path, err, errlen) != 0) {
        dlclose(handle);
        memset(sink, 0, sizeof *sink);
        return -1;
    }

    sink->handle = handle;
    sink->api = api;
    sink->log = log;
    /* ctx is the sink itself rather than the logger, so that log lines can name the plugin. The
     * plugin keeps a pointer to sink->host anyway, so the sink must stay put either way. */
    sink->host = (relay_sink_host){
        .abi_version = RELAY_SINK_ABI_VERSION,
        .struct_size = sizeof(relay_sink_host),
        .ctx = sink,
        .log = relay_sink_host_log,
        .reject = relay_sink_host_reject,
        .waiting = relay_sink_host_waiting,
        .report_metric = relay_sink_host_report_metric,
    };
    return 0;
}

static const char *relay_sink_name(const relay_sink *sink)
{
    return sink->api != NULL ? sink->api->name : "(not loaded)";
}

/* Holds the relay's side of the contract whatever the plugin did: a known status, and on
 * failure a NUL-terminated, non-empty message. */
static relay_sink_status relay_sink_checked(const relay_sink *sink, const char *call,
                                            relay_sink_status status, char *err, size_t errlen)
{
    if (status == RELAY_SINK_OK)
        return status;
    if (errlen == 0)
        return status == RELAY_SINK_RETRY ? RELAY_SINK_RETRY : RELAY_SINK_FATAL;
    err[errlen - 1] = '\0';
    if (status != RELAY_SINK_RETRY && status != RELAY_SINK_FATAL) {
        if (err[0] == '\0')
            snprintf(err, errlen, "sink %s: %s returned unknown status %d", relay_sink_name(sink),
                     call, (int)status);
        return RELAY_SINK_FATAL;
    }
    if (err[0] == '\0')
        snprintf(err, errlen, "sink %s: %s failed without a message", relay_sink_name(sink), call);
    return status;
}

static int relay_sink_ready(const relay_sink *sink, char *err, size_t errlen)
{
    if (sink->api != NULL)
        return 1;
    snprintf(err, errlen, "sink not loaded");
    return 0;
}

relay_sink_status relay_sink_init(relay_sink *sink, const relay_config_option *options,
                                  size_t n_options, char *err, size_t errlen)
{
    if (!relay_sink_ready(sink, err, errlen))
        return RELAY_SINK_FATAL;

    /* The config owns mutable strings; the ABI wants its own struct of const ones. */
    relay_sink_option *sink_options = calloc(n_options > 0 ? n_options : 1, sizeof *sink_options);
    if (sink_options == NULL) {
        snprintf(err, errlen, "sink %s: out of memory", relay_sink_name(sink));
        return RELAY_SINK_FATAL;
    }
    for (size_t i = 0; i < n_options; i++)
        sink_options[i] = (relay_sink_option){.key = options[i].key, .value = options[i].value};

    if (errlen > 0)
        err[0] = '\0';
    void *state = NULL;
    relay_sink_status status =
        sink->api->init(&sink->host, sink_options, n_options, &state, err, errlen);
    free(sink_options);

    status = relay_sink_checked(sink, "init", status, err, errlen);
    sink->state = status == RELAY_SINK_OK ? state : NULL;
    return status;
}

relay_sink_status relay_sink_reinit(relay_sink *sink, const relay_config_option *options,
                                    size_t n_options, char *err, size_t errlen)
{
    void *old = sink->state;
    relay_sink_status status = relay_sink_init(sink, options, n_options, err, errlen);
    if (status != RELAY_SINK_OK) {
        sink->state = old;
        return status;
    }
    if (old != NULL)
        sink->api->destroy(old);
    return RELAY_SINK_OK;
}

void relay_sink_forget_rejections(relay_sink *sink)
{
    sink->n_rejections = 0;
    sink->rejections_lost = 0;
}

relay_sink_status relay_sink_deliver(relay_sink *sink, const relay_sink_batch *batch, char *err,
                                     size_t errlen)
{
    if (!relay_sink_ready(sink, err, errlen))
        return RELAY_SINK_FATAL;
    if (errlen > 0)
        err[0] = '\0';
    relay_sink_forget_rejections(sink);
    relay_sink_status status = sink->api->deliver(sink->state, batch, err, errlen);
    return relay_sink_checked(sink, "deliver", status, err, errlen);
}

relay_sink_status relay_sink_flush(relay_sink *sink, int timeout_ms, char *err, size_t errlen)
{
    if (!relay_sink_ready(sink, err, errlen))
        return RELAY_SINK_FATAL;
    if (errlen > 0)
        err[0] = '\0';
    relay_sink_status status = sink->api->flush(sink->state, timeout_ms, err, errlen);
    return relay_sink_checked(sink, "flush", status, err, errlen);
}

void relay_sink_unload(relay_sink *sink)
{
    /* Without a state, init never succeeded (or chose none): nothing of the plugin's to free. */
    if (sink->api != NULL && sink->state != NULL)
        sink->api->destroy(sink->state);
    if (sink->handle != NULL)
        dlclose(sink->handle);
    free(sink->rejections);
    memset(sink, 0, sizeof *sink);
}

int relay_sink_open(relay_sink *sink, const relay_config *config, const relay_logger *log,
                    char *err, size_t errlen)
{
    char path[4096], why[1024];
    memset(sink, 0, sizeof *sink);
    if (relay_plugin_resolve(config->sink_plugin, config->plugin_dir, path, sizeof path, err,
                             errlen) != 0 ||
        relay_sink_load(sink, path, log, err, errlen) != 0)
        return -1;
    if (relay_sink_init(sink, config->sink_options, config->n_sink_options, why, sizeof why) !=
        RELAY_SINK_OK) {
        snprintf(err, errlen, "sink init failed: %s", why);
        relay_sink_unload(sink);
        return -1;
    }
    return 0;
}
