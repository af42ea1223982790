/*
 * What the relay shows Prometheus and the probes: a snapshot of plain values that the loop fills
 * and publishes (http.h), and its rendering in the Prometheus text format. The loop's thread owns
 * the counters; the HTTP thread only ever reads a published copy.
 */
#ifndef RELAY_METRICS_H
#define RELAY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds of the delivery latency histogram's buckets, in seconds (+Inf beside them). */
#define RELAY_LATENCY_BUCKETS 14
extern const double relay_latency_bounds[RELAY_LATENCY_BUCKETS];

/* Series a sink reports through the host (relay_sink_host.report_metric), gauges. */
#define RELAY_SINK_METRICS_MAX 8
#define RELAY_SINK_METRIC_NAME_MAX 64

typedef struct relay_sink_metric {
    char name[RELAY_SINK_METRIC_NAME_MAX]; /* [a-z0-9_], checked when reported */
    char help[128];
    double value;
} relay_sink_metric;

/* Counted by the turns, from the start of the process. */
typedef struct relay_metrics_counts {
    uint64_t batches;      /* hand-overs the sink acknowledged */
    uint64_t late_events;  /* delivered after their ids were passed (the gap watch) */
    uint64_t dead_letters; /* refused by the sink for good and recorded */
    uint64_t latency_buckets[RELAY_LATENCY_BUCKETS + 1]; /* per bucket, not cumulative; +Inf last */
    double latency_sum;                                  /* seconds */
    /* The oldest event not delivered yet, as the last read or the hand in flight saw it: its
     * created_at and the read's now() (database clock, microseconds), and the relay's monotonic
     * clock at that read. */
    bool pending;
    bool pending_from_hand; /* said by the hand with the sink: reads do not change it */
    int64_t pending_created_us, pending_db_now_us, pending_read_ms;
    int64_t sequence_last; /* the id sequence's last value at the last read; -1: unknown */
} relay_metrics_counts;

/* The relay's state as the probes see it. */
typedef enum relay_readiness {
    RELAY_READY_STARTING,     /* not connected yet */
    RELAY_READY_LEADING,      /* connected, holding the lock, the sink healthy */
    RELAY_READY_STANDING_BY,  /* another relay of the name leads */
    RELAY_READY_DB_FAILING,   /* the database is unavailable */
    RELAY_READY_SINK_FAILING, /* the sink fails and is retried */
} relay_readiness;

typedef struct relay_metrics {
    relay_metrics_counts counts;
    uint64_t delivered, redelivered;
    uint64_t sink_errors, database_errors;
    int64_t position;
    size_t gaps_watched;
    relay_readiness readiness;
    char reason[256]; /* why not ready, for /readyz */
    relay_sink_metric sink[RELAY_SINK_METRICS_MAX];
    size_t n_sink;
} relay_metrics;

/* Adds one delivered event's latency, in seconds, to the histogram. Cannot fail. */
void relay_metrics_observe_latency(relay_metrics_counts *c, double seconds);

/* The age in seconds of the oldest event not delivered yet, at now_ms (monotonic); 0 when
 * there is none. Cannot fail. */
double relay_metrics_lag_seconds(const relay_metrics_counts *c, int64_t now_ms);

/* Sets a sink's gauge; a name outside [a-z0-9_] (1..63 characters) or past the table's room is
 * refused with -1, once per name being the caller's to log. */
int relay_metrics_set_sink(relay_metrics *m, const char *name, const char *help, double value);

/*
 * Renders m in the Prometheus text exposition format (version 0.0.4), every series labelled
 * relay="<relay>", into a malloc'ed buffer; *len its length. now_ms is the monotonic clock (for
 * the lag). Returns NULL when out of memory. The caller frees it.
 */
char *relay_metrics_render(const relay_metrics *m, const char *relay, int64_t now_ms, size_t *len);

#endif
