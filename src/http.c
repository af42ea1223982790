#include "http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "listen_address.h"

/* libmicrohttpd 0.9.71 made handlers return enum MHD_Result; Debian 12 has 0.9.75. */
#if MHD_VERSION < 0x00097100
typedef int relay_mhd_result;
#else
typedef enum MHD_Result relay_mhd_result;
#endif

static relay_mhd_result answer(struct MHD_Connection *c, unsigned status, const char *type,
                               char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    relay_mhd_result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static relay_mhd_result answer_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static relay_mhd_result answer_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    return answer(c, status, "text/plain; charset=utf-8", text, len, MHD_RESPMEM_MUST_COPY);
}

static void take_published(relay_http *h, relay_metrics *m)
{
    pthread_mutex_lock(&h->lock);
    *m = h->published;
    pthread_mutex_unlock(&h->lock);
}

static relay_mhd_result serve_ready(struct MHD_Connection *c, const relay_metrics *m)
{
    switch (m->readiness) {
    case RELAY_READY_LEADING:
        return answer_text(c, MHD_HTTP_OK, "ready: leading\n");
    case RELAY_READY_STANDING_BY:
        return answer_text(c, MHD_HTTP_OK, "ready: standing by behind another relay\n");
    case RELAY_READY_STARTING:
        return answer_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: connecting\n");
    case RELAY_READY_DB_FAILING:
        return answer_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: database unavailable: %s\n",
                           m->reason);
    case RELAY_READY_SINK_FAILING:
        return answer_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: sink failing: %s\n",
                           m->reason);
    }
    return answer_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "unknown state\n");
}

static relay_mhd_result handle(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **request)
{
    (void)version;
    (void)upload;
    relay_http *h = cls;
    /* The first call is for the headers only; nothing here reads a body. */
    if (*request == NULL) {
        *request = h;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return answer_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");

    int64_t now = relay_now_ms();
    if (strcmp(url, "/healthz") == 0) {
        int64_t quiet = now - atomic_load(h->alive_ms);
        if (quiet <= h->health_ms)
            return answer_text(c, MHD_HTTP_OK, "ok\n");
        return answer_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                           "the relay's loop has not turned for %.1f s\n", (double)quiet / 1000);
    }
    if (strcmp(url, "/readyz") != 0 && strcmp(url, "/metrics") != 0)
        return answer_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz, /readyz\n");

    /* A copy on the heap: the snapshot is a few kilobytes, this thread's stack is libmicrohttpd's.
     */
    relay_metrics *m = malloc(sizeof *m);
    if (!m)
        return MHD_NO;
    take_published(h, m);
    relay_mhd_result ok;
    if (strcmp(url, "/readyz") == 0) {
        ok = serve_ready(c, m);
    } else {
        size_t len = 0;
        char *text = relay_metrics_render(m, h->relay_name, now, &len);
        ok = text ? answer(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len,
                           MHD_RESPMEM_MUST_FREE)
                  : MHD_NO;
    }
    free(m);
    return ok;
}

int relay_http_start(relay_http *h, const char *listen, const char *relay_name,
                     const _Atomic int64_t *alive_ms, int64_t health_ms, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    relay_listen_address where;
    if (relay_listen_parse(listen, &where, err, errlen) != 0)
        return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    /* Every interface is IPv6's any address, taking IPv4 too (dual stack). */
    if (where.host[0] == '\0')
        hints.ai_family = AF_INET6;
    struct addrinfo *found = NULL;
    int e = getaddrinfo(where.host[0] ? where.host : NULL, where.port, &hints, &found);
    if (e != 0) {
        snprintf(err, errlen, "http.listen \"%s\": %s", listen, gai_strerror(e));
        return -1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (found->ai_family == AF_INET6)
        flags |= where.host[0] ? MHD_USE_IPv6 : MHD_USE_DUAL_STACK;
    h->relay_name = relay_name;
    h->alive_ms = alive_ms;
    h->health_ms = health_ms;
    pthread_mutex_init(&h->lock, NULL);
    /* Few, short requests: a handful of scrapers and probes, none allowed to linger. */
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR,
                                 found->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)5, MHD_OPTION_END);
    freeaddrinfo(found);
    if (!h->daemon) {
        snprintf(err, errlen,
                 "http.listen \"%s\": cannot listen there (in use, or no such address)", listen);
        pthread_mutex_destroy(&h->lock);
        return -1;
    }
    return 0;
}

void relay_http_publish(relay_http *h, const relay_metrics *m)
{
    if (!h->daemon)
        return;
    pthread_mutex_lock(&h->lock);
    h->published = *m;
    pthread_mutex_unlock(&h->lock);
}

void relay_http_stop(relay_http *h)
{
    if (!h->daemon)
        return;
    MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
    pthread_mutex_destroy(&h->lock);
}
