/*
 * The metrics and probe endpoint (http.listen), served by libmicrohttpd on a thread of its own:
 * GET /metrics, /healthz and /readyz. The loop never waits for it: it publishes a copy of its
 * metrics under a mutex held for that copy only, and the server renders from the copy it takes
 * the same way. A scraper, however fast, costs the loop no more than those copies.
 */
#ifndef RELAY_HTTP_H
#define RELAY_HTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "metrics.h"

typedef struct relay_http {
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock; /* guards published */
    relay_metrics published;
    const char *relay_name;          /* borrowed from the configuration */
    const _Atomic int64_t *alive_ms; /* the loop's last sign of life (relay_watchdog) */
    int64_t health_ms;               /* /healthz fails when that sign is older */
} relay_http;

/*
 * Listens on listen ("HOST:PORT", ":PORT"); relay_name and alive_ms are borrowed for the
 * server's life. /healthz answers 200 while *alive_ms is within health_ms of the monotonic clock.
 * Returns 0, or -1 with err (the address cannot be resolved or bound).
 */
int relay_http_start(relay_http *h, const char *listen, const char *relay_name,
                     const _Atomic int64_t *alive_ms, int64_t health_ms, char *err, size_t errlen);

/* Makes m what the endpoint serves. Cannot fail. */
void relay_http_publish(relay_http *h, const relay_metrics *m);

/* Stops the server (waits for its thread) and releases it. Safe on a server never started. */
void relay_http_stop(relay_http *h);

#endif
