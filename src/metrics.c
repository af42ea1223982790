#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay_build.h"

/* From a caught-up relay's few milliseconds to a sink outage's minutes. */
const double relay_latency_bounds[RELAY_LATENCY_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

void relay_metrics_observe_latency(relay_metrics_counts *c, double seconds)
{
    size_t b = 0;
    while (b < RELAY_LATENCY_BUCKETS && seconds > relay_latency_bounds[b])
        b++;
    c->latency_buckets[b]++;
    c->latency_sum += seconds > 0 ? seconds : 0;
}

double relay_metrics_lag_seconds(const relay_metrics_counts *c, int64_t now_ms)
{
    if (!c->pending)
        return 0;
    /* The database's clock at the read, moved on by the relay's own since: the two clocks are
     * never compared directly. */
    double age_us = (double)c->pending_db_now_us - (double)c->pending_created_us +
                    (double)(now_ms - c->pending_read_ms) * 1000.0;
    return age_us > 0 ? age_us / 1e6 : 0;
}

int relay_metrics_set_sink(relay_metrics *m, const char *name, const char *help, double value)
{
    size_t len = strlen(name);
    if (len == 0 || len >= RELAY_SINK_METRIC_NAME_MAX ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
        return -1;
    size_t i = 0;
    while (i < m->n_sink && strcmp(m->sink[i].name, name) != 0)
        i++;
    if (i == m->n_sink) {
        if (m->n_sink == RELAY_SINK_METRICS_MAX)
            return -1;
        m->n_sink++;
        snprintf(m->sink[i].name, sizeof m->sink[i].name, "%s", name);
        /* Help text goes on one line of the exposition: no newline, no backslash. */
        size_t h = 0;
        for (const char *s = help ? help : ""; *s && h + 1 < sizeof m->sink[i].help; s++)
            m->sink[i].help[h++] = *s == '\n' || *s == '\\' ? ' ' : *s;
        m->sink[i].help[h] = '\0';
    }
    m->sink[i].value = value;
    return 0;
}

static void header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP outbox_relay_%s %s\n# TYPE outbox_relay_%s %s\n", name, help, name, type);
}

static void counter(FILE *f, const char *relay, const char *name, const char *help, uint64_t v)
{
    header(f, name, "counter", help);
    fprintf(f, "outbox_relay_%s{relay=\"%s\"} %" PRIu64 "\n", name, relay, v);
}

static void gauge(FILE *f, const char *relay, const char *name, const char *help, double v)
{
    header(f, name, "gauge", help);
    fprintf(f, "outbox_relay_%s{relay=\"%s\"} %.17g\n", name, relay, v);
}

static void histogram(FILE *f, const char *relay, const relay_metrics_counts *c)
{
    header(f, "delivery_latency_seconds", "histogram",
           "Time from an event's created_at to the sink's acknowledgement.");
    uint64_t cumulative = 0;
    for (size_t b = 0; b < RELAY_LATENCY_BUCKETS; b++) {
        cumulative += c->latency_buckets[b];
        fprintf(
            f, "outbox_relay_delivery_latency_seconds_bucket{relay=\"%s\",le=\"%g\"} %" PRIu64 "\n",
            relay, relay_latency_bounds[b], cumulative);
    }
    cumulative += c->latency_buckets[RELAY_LATENCY_BUCKETS];
    fprintf(f,
            "outbox_relay_delivery_latency_seconds_bucket{relay=\"%s\",le=\"+Inf\"} %" PRIu64 "\n"
            "outbox_relay_delivery_latency_seconds_sum{relay=\"%s\"} %.17g\n"
            "outbox_relay_delivery_latency_seconds_count{relay=\"%s\"} %" PRIu64 "\n",
            relay, cumulative, relay, c->latency_sum, relay, cumulative);
}

char *relay_metrics_render(const relay_metrics *m, const char *relay, int64_t now_ms, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    const relay_metrics_counts *c = &m->counts;
    counter(f, relay, "events_delivered_total",
            "Events the sink acknowledged for the first time in this process.", m->delivered);
    counter(f, relay, "events_redelivered_total",
            "Events acknowledged again after a reconnect (at-least-once).", m->redelivered);
    counter(f, relay, "batches_total", "Batches the sink acknowledged.", c->batches);
    counter(f, relay, "sink_errors_total", "Failed hand-overs to the sink, retried.",
            m->sink_errors);
    counter(f, relay, "database_errors_total", "Database failures, retried.", m->database_errors);
    gauge(f, relay, "position", "The last event id acknowledged by the sink.", (double)m->position);
    int64_t max_id = c->sequence_last > m->position ? c->sequence_last : m->position;
    gauge(f, relay, "table_max_id",
          "The highest id the outbox's sequence handed out, as of the last read.", (double)max_id);
    gauge(f, relay, "lag_events", "Ids handed out beyond the position (rolled-back ones included).",
          (double)(max_id - m->position));
    gauge(f, relay, "lag_seconds", "Age of the oldest event not yet delivered.",
          relay_metrics_lag_seconds(c, now_ms));
    gauge(f, relay, "gaps_watched", "Missing ids the gap watch waits for.",
          (double)m->gaps_watched);
    counter(f, relay, "late_events_total", "Events delivered after their ids had been passed.",
            c->late_events);
    counter(f, relay, "dead_letters_total", "Events refused by the sink and recorded.",
            c->dead_letters);
    gauge(f, relay, "leader", "1 while this relay holds its name's lock, 0 standing by.",
          m->readiness == RELAY_READY_LEADING || m->readiness == RELAY_READY_SINK_FAILING ? 1 : 0);
    histogram(f, relay, c);
    header(f, "build_info", "gauge", "The relay's version.");
    fprintf(f, "outbox_relay_build_info{relay=\"%s\",version=\"%s\"} 1\n", relay, RELAY_VERSION);
    for (size_t i = 0; i < m->n_sink; i++) {
        char name[RELAY_SINK_METRIC_NAME_MAX + 8];
        snprintf(name, sizeof name, "sink_%s", m->sink[i].name);
        gauge(f, relay, name, m->sink[i].help, m->sink[i].value);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
