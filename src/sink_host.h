/*
 * The host side of the sink contract: loading a plugin (dlopen(RTLD_NOW | RTLD_LOCAL), the
 * versioned entry handshake), the services the relay offers it (log, reject), and thin wrappers
 * around its callbacks that keep the relay's side of the contract in one place.
 */
#ifndef RELAY_PLUGIN_H
#define RELAY_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

#include <outbox_relay/sink.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "sink_rejection.h"

typedef struct relay_sink {
    void *handle; /* from dlopen */
    const relay_sink_api *api;
    void *state;             /* from api->init, NULL before */
    relay_sink_host host;    /* handed to the plugin; ctx is this struct (for the name) */
    const relay_logger *log; /* borrowed; must outlive the sink */
    char path[4096];         /* the file actually loaded, for messages */

    /* Rejections reported during the current hand-over (deliver + flush), in report order.
     * Cleared by relay_sink_deliver and once recorded. rejections_lost: one could not be stored
     * (out of memory). */
    relay_sink_rejection *rejections;
    size_t n_rejections;
    size_t rejections_cap;
    int rejections_lost;

    relay_watchdog *watchdog; /* borrowed, the loop's: fed while the sink waits; NULL for none */
    relay_metrics *metrics;   /* borrowed, the loop's: where report_metric writes; NULL: none */
    bool metric_refused;      /* a refused name was logged */
} relay_sink;

/*
 * Loads and checks the plugin: refuses a file that cannot be opened, lacks RELAY_SINK_ENTRY_NAME,
 * returns NULL, declares another ABI version, a struct shorter than ours, or a NULL callback.
 * Does not call init. Returns 0, or -1 with the reason in err (sink is then zeroed).
 */
int relay_sink_load(relay_sink *sink, const char *path, const relay_logger *log, char *err,
                    size_t errlen);

/* Calls the plugin's init with the configured options. */
relay_sink_status relay_sink_init(relay_sink *sink, const relay_config_option *options,
                                  size_t n_options, char *err, size_t errlen);

/*
 * Starts a new instance of the loaded plugin with options, and only once it is up destroys the
 * one in use: a sink whose new options it refuses goes on with the old ones, so the relay keeps a
 * working sink either way. The two instances coexist for the length of the init (sink.h allows
 * it); call it only when the current instance has nothing unacknowledged that matters (the relay:
 * between batches, its hand acknowledged or to be handed over again). Returns the init's status;
 * on failure err says why and the old instance is still in use.
 */
relay_sink_status relay_sink_reinit(relay_sink *sink, const relay_config_option *options,
                                    size_t n_options, char *err, size_t errlen);

/* The hand-over's rejections are recorded (or the hand-over is abandoned): forgets them, so that
 * no later commit records them again. */
void relay_sink_forget_rejections(relay_sink *sink);

/* Starts a hand-over: forgets the previous one's rejections, then calls the plugin's deliver. */
relay_sink_status relay_sink_deliver(relay_sink *sink, const relay_sink_batch *batch, char *err,
                                     size_t errlen);
relay_sink_status relay_sink_flush(relay_sink *sink, int timeout_ms, char *err, size_t errlen);

/*
 * Resolves (plugin_path.h), loads and initialises the configured sink, as `run` and `check` both
 * do. Returns 0, or -1 with err (the sink is then unloaded and zeroed).
 */
int relay_sink_open(relay_sink *sink, const relay_config *config, const relay_logger *log,
                    char *err, size_t errlen);

/* destroy()s the state if any and dlclose()s the module. Safe on a zeroed or failed sink. */
void relay_sink_unload(relay_sink *sink);

#endif
