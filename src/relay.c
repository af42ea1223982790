/*
 * The relay loop. It owns every wait: the turn (relay_turn.c) does what can be done now and says
 * what it needs next; the loop pauses, backs off, reconnects, feeds the watchdog and reports
 * status, as PgBouncer's main loop does for its workers.
 */
#include "relay.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "backoff.h"
#include "checkpoint.h"
#include "clock.h"
#include "db.h"
#include "exit_codes.h"
#include "http.h"
#include "notify.h"
#include "relay_connect.h"
#include "relay_pipeline.h"
#include "relay_reload.h"
#include "relay_retention.h"
#include "relay_turn.h"
#include "signals.h"
#include "sink_host.h"

typedef struct relay_loop {
    /* The configuration in force and the logger, the loop's own: a reload changes them in place
     * (relay_reload.h), and the pipeline and the sink point at them. */
    relay_config config;
    relay_logger log;
    bool log_level_fixed; /* --log-level outranks log.level, at a reload too */
    bool reload_pending;  /* a SIGHUP came; applied between turns, with nothing in flight */
    relay_pipeline pipeline;
    relay_backoff backoff;
    relay_retention retention;

    /* Failures are logged when they start and end, not at every retry. */
    bool db_failing;
    bool sink_failing;
    bool standing_by;
    int db_attempts;
    int64_t db_failed_stored; /* the stored position when the outage began */
    int sink_attempts;
    char failure[512]; /* the failure going on, for STATUS= */

    relay_watchdog watchdog; /* lent to the sink host while a sink waits */
    int64_t last_status;

    relay_http http;       /* the metrics and probe endpoint; not started without http.listen */
    relay_metrics metrics; /* what it shows: filled here, the sink's gauges by the sink host */
    bool connected_once;   /* the probes say "starting" until the first connection */
} relay_loop;

/* How long /healthz accepts without a sign of life from the loop: systemd's watchdog interval
 * when there is one, so that both judge alike, else 30 s. The loop gives one at least every
 * second (pause_for), a waiting sink every 100 ms. */
static int64_t health_ms(const relay_loop *l)
{
    return l->watchdog.interval_ms > 0 ? l->watchdog.interval_ms : 30000;
}

/* Copies what the endpoint shows out of the loop and the pipeline, and publishes it. */
static void publish_metrics(relay_loop *l)
{
    const relay_pipeline *p = &l->pipeline;
    relay_metrics *m = &l->metrics;
    m->counts = p->counts;
    m->delivered = p->delivered;
    m->redelivered = p->redelivered;
    m->position = p->position;
    m->gaps_watched = p->gaps.count;
    m->reason[0] = '\0';
    if (l->standing_by)
        m->readiness = RELAY_READY_STANDING_BY;
    else if (l->db_failing || (p->pipe == RELAY_PIPE_CLOSED && l->connected_once))
        m->readiness = RELAY_READY_DB_FAILING;
    else if (l->sink_failing)
        m->readiness = RELAY_READY_SINK_FAILING;
    else
        m->readiness = p->pipe == RELAY_PIPE_CLOSED ? RELAY_READY_STARTING : RELAY_READY_LEADING;
    if (m->readiness == RELAY_READY_DB_FAILING || m->readiness == RELAY_READY_SINK_FAILING)
        snprintf(m->reason, sizeof m->reason, "%.250s", l->failure);
    relay_http_publish(&l->http, m);
}

/* STATUS= for systemd, at most once a second unless `now`: what the relay is held by, if
 * anything, or where it stands. */
static void report_status(relay_loop *l, bool now)
{
    const relay_pipeline *p = &l->pipeline;
    publish_metrics(l);
    int64_t at = relay_now_ms();
    if (!now && at - l->last_status < 1000)
        return;
    l->last_status = at;
    if (l->standing_by)
        relay_notify_status("standing by: another relay named '%s' is running", p->config->name);
    else if (l->db_failing)
        relay_notify_status("database unavailable, retrying: %s", l->failure);
    else if (l->sink_failing)
        relay_notify_status("sink failing, retrying: %s", l->failure);
    else if (p->pipe == RELAY_PIPE_DURABLE && p->hand.durable.standbys_warned)
        relay_notify_status("holding delivery for the standbys (%s)", p->config->durable_on);
    else
        relay_notify_status("leading (epoch %" PRId64 "): position %" PRId64 ", %" PRIu64
                            " events delivered, %" PRIu64 " again after a reconnect",
                            p->epoch, p->position, p->delivered, p->redelivered);
}

/* The longest one wait may last of the `left` ms still to wait: the watchdog is pinged at least
 * every half interval, and /healthz sees a sign of life at least every second. */
static int64_t wait_slice(const relay_loop *l, int64_t left)
{
    if (l->watchdog.interval_ms > 0 && left > l->watchdog.interval_ms / 2)
        left = l->watchdog.interval_ms / 2;
    return left > 1000 ? 1000 : left;
}

/* Takes the NOTIFYs libpq holds; returns whether there were any. */
static bool take_notifications(relay_pipeline *p)
{
    bool any = false;
    for (PGnotify *n; (n = PQnotifies(p->conn)) != NULL;) {
        PQfreemem(n);
        any = true;
    }
    p->woken = p->woken || any;
    return any;
}

/* Applies a SIGHUP that came (or one left pending) once relay_reload_possible: between
 * turns, where the hand, if any, is acknowledged, or waits for its durability or for a failing
 * sink, so that the position has not passed an unacknowledged event (relay_reload.h). Returns
 * whether a reload was applied. */
static bool take_reload(relay_loop *l)
{
    l->reload_pending = relay_reload_requested() || l->reload_pending;
    if (!l->reload_pending || !relay_reload_possible(&l->pipeline))
        return false;
    l->reload_pending = false;
    const relay_reload_target target = {.config = &l->config,
                                        .log = &l->log,
                                        .log_level_fixed = l->log_level_fixed,
                                        .pipeline = &l->pipeline,
                                        .backoff = &l->backoff,
                                        .retention = &l->retention};
    relay_reload(&target);
    report_status(l, true);
    return true;
}

/* Waits ms, or less when a stop is requested (then returns true) or, if wake_on_notify, when a
 * NOTIFY arrives after the first linger_ms (then returns false). Any NOTIFY taken sets the
 * pipeline's woken. A SIGHUP is applied on the spot, and the wait goes on: a backoff stays one
 * however often the relay is reloaded. Feeds the watchdog. */
static bool pause_for(relay_loop *l, int64_t ms, bool wake_on_notify, int64_t linger_ms)
{
    relay_pipeline *p = &l->pipeline;
    int64_t start = relay_now_ms(), deadline = start + ms, linger_end = start + linger_ms;
    int fd = p->conn && p->listening ? PQsocket(p->conn) : -1;
    /* A NOTIFY that arrived with the last query's results is already queued in libpq. */
    if (fd >= 0)
        take_notifications(p);
    for (;;) {
        relay_watchdog_feed(&l->watchdog);
        int64_t now = relay_now_ms();
        if (wake_on_notify && p->woken && now >= linger_end)
            return relay_stop_requested();
        int64_t left = (wake_on_notify && p->woken ? linger_end : deadline) - now;
        if (left <= 0)
            return relay_stop_requested();
        relay_wait_result r = relay_wait(fd, wait_slice(l, left));
        if (r == RELAY_WAIT_STOP)
            return true;
        /* Rather than held up for as long as a poll or a backoff lasts. */
        if (r == RELAY_WAIT_RELOAD) {
            if (!take_reload(l))
                return false; /* not possible here: the loop applies it after this turn */
            continue;
        }
        /* A broken connection stays readable: wait out the rest without it, and let the next
         * query find the break. */
        if (r == RELAY_WAIT_READABLE && !PQconsumeInput(p->conn)) {
            fd = -1;
            continue;
        }
        /* Taken even when they may not end the wait: an unread socket stays readable. Once
         * woken, the rest of the linger is waited without the socket. */
        if (r == RELAY_WAIT_READABLE && take_notifications(p) && wake_on_notify)
            fd = -1;
    }
}

/* The database failed: closes the connection, logs it if this starts an outage, backs off.
 * Returns true when a stop was requested meanwhile. */
static bool database_failed(relay_loop *l, const char *err)
{
    relay_pipeline *p = &l->pipeline;
    /* What the next connection reads from: the position stored, not the one acknowledged since
     * (the events between are delivered again: at-least-once). */
    int64_t resume = p->stored_position;
    relay_pipe_change(p, RELAY_PIPE_CLOSED);
    l->db_attempts++;
    l->metrics.database_errors++;
    if (!l->db_failing) {
        relay_warn(p->log,
                   "database unavailable: %s; retrying with backoff, then reading from the "
                   "stored position %" PRId64,
                   err, resume);
        snprintf(l->failure, sizeof l->failure, "%.400s", err);
        l->db_failing = true;
        l->db_failed_stored = resume;
        report_status(l, true);
    } else if (strcmp(l->failure, err) != 0 || (l->db_attempts & (l->db_attempts - 1)) == 0) {
        /* An error that repeats on every fresh connection (a statement_timeout, an encoding
         * error) is no outage that passes: it is said again as the waits double, and at once
         * when it changes, never at every attempt. */
        relay_warn(p->log, "database still failing (attempt %d): %s", l->db_attempts, err);
        snprintf(l->failure, sizeof l->failure, "%.400s", err);
    } else {
        relay_debug(p->log, "database still failing (attempt %d): %s", l->db_attempts, err);
    }
    return pause_for(l, relay_backoff_next(&l->backoff), false, 0);
}

/* The sink failed and may recover: the hand stays in the pipeline; backs off. Returns true when
 * a stop was requested meanwhile. */
static bool sink_failed(relay_loop *l, const char *err)
{
    relay_pipeline *p = &l->pipeline;
    l->sink_attempts++;
    l->metrics.sink_errors++;
    if (!l->sink_failing) {
        relay_warn(p->log, "sink failed on %s; retrying with backoff, position stays at %" PRId64,
                   err, p->position);
        snprintf(l->failure, sizeof l->failure, "%.400s", err);
        l->sink_failing = true;
        report_status(l, true);
    } else {
        relay_debug(p->log, "sink still failing (attempt %d): %s", l->sink_attempts, err);
    }
    return pause_for(l, relay_backoff_next(&l->backoff), false, 0);
}

/* Another relay of the name runs: wait on the lock's request, which the server answers the
 * moment that relay's session ends. Returns true when a stop was requested meanwhile. */
static bool stand_by(relay_loop *l, int64_t ms)
{
    relay_pipeline *p = &l->pipeline;
    if (!l->standing_by)
        relay_warn(p->log, "another relay named '%s' is running; standing by until it stops",
                   p->config->name);
    l->standing_by = true;
    report_status(l, true);
    int64_t deadline = relay_now_ms() + ms;
    for (;;) {
        relay_watchdog_feed(&l->watchdog);
        int64_t left = deadline - relay_now_ms();
        if (left <= 0)
            return relay_stop_requested();
        relay_wait_result r = relay_wait(PQsocket(p->conn), wait_slice(l, left));
        if (r != RELAY_WAIT_TIMEOUT)
            return r == RELAY_WAIT_STOP;
    }
}

/* Another relay took the name over: this one's session lost the lock, and its epoch is
 * superseded, so the database refused its write. Whatever it has in hand goes; it waits as a
 * standby on a new session, like any relay that finds the lock taken. Returns true when a stop
 * was requested meanwhile. */
static bool fenced(relay_loop *l, const char *err)
{
    relay_pipeline *p = &l->pipeline;
    relay_error(p->log,
                "%s; delivering nothing more, standing by (position stays at %" PRId64 ", stored)",
                err, p->stored_position);
    relay_pipe_change(p, RELAY_PIPE_CLOSED);
    return pause_for(l, relay_backoff_next(&l->backoff), false, 0);
}

static relay_outcome connect_database(relay_loop *l, char *err, size_t errlen)
{
    relay_outcome o = relay_connect(&l->pipeline, err, errlen);
    if (o.kind == RELAY_OUTCOME_BUSY) {
        l->standing_by = false;
        l->connected_once = true;
    }
    return o;
}

/* A turn went through: an outage, if one was going on, is over once the database took a
 * position or had none to take. Not at the connect, nor at a read: a statement that fails on
 * every fresh connection (the store of a position, say) would otherwise start the backoff over
 * each time, and reconnect, and deliver the same batch again, as fast as the first retry. */
static void database_answered(relay_loop *l)
{
    const relay_pipeline *p = &l->pipeline;
    if (!l->db_failing ||
        (relay_pipeline_position_unstored(p) && p->stored_position <= l->db_failed_stored))
        return;
    relay_info(l->pipeline.log, "database available again after %d failed attempt%s",
               l->db_attempts, l->db_attempts == 1 ? "" : "s");
    l->db_failing = false;
    l->db_attempts = 0;
    relay_backoff_reset(&l->backoff);
}

/* The sink acknowledged a hand-over: a failure, if one was going on, is over. */
static void sink_acknowledged(relay_loop *l)
{
    if (!l->sink_failing)
        return;
    relay_info(l->pipeline.log, "sink recovered after %d attempts", l->pipeline.sink_ack_attempts);
    l->sink_failing = false;
    l->sink_attempts = 0;
    /* The waits are shared: a database failing again after every delivery keeps its own. */
    if (!l->db_failing)
        relay_backoff_reset(&l->backoff);
}

/* Runs turns until a stop or a fatal outcome; returns the exit code. */
static int run_turns(relay_loop *l)
{
    relay_pipeline *p = &l->pipeline;
    char err[2048];
    while (!relay_stop_requested()) {
        relay_watchdog_feed(&l->watchdog);
        take_reload(l);
        uint64_t acks = p->sink_acks;
        bool turned = p->pipe != RELAY_PIPE_CLOSED && p->pipe != RELAY_PIPE_STANDBY;
        relay_outcome o =
            turned ? relay_turn(p, err, sizeof err) : connect_database(l, err, sizeof err);
        if (turned && (o.kind == RELAY_OUTCOME_BUSY || o.kind == RELAY_OUTCOME_WAIT))
            database_answered(l);
        if (p->sink_acks != acks)
            sink_acknowledged(l);
        /* Retention runs here, between turns, never inside one: the turn does not wait, and a
         * round needs the connection with nothing in flight on it (relay_retention.h). */
        if (o.kind == RELAY_OUTCOME_BUSY || o.kind == RELAY_OUTCOME_WAIT)
            relay_retention_tick(&l->retention, p, o.kind == RELAY_OUTCOME_WAIT);
        bool stop = false;
        /* A step the stop cut short (relay_signals_set_stop_socket, the sink's waiting()): no
         * outage to report nor to retry; nothing of it was stored. */
        if ((o.kind == RELAY_OUTCOME_DB_FAILED || o.kind == RELAY_OUTCOME_SINK_RETRY) &&
            relay_stop_requested()) {
            relay_info(p->log, "stopping: %s", err);
            if (o.kind == RELAY_OUTCOME_DB_FAILED)
                relay_pipe_change(p, RELAY_PIPE_CLOSED);
            break;
        }
        switch (o.kind) {
        case RELAY_OUTCOME_BUSY:
            break;
        case RELAY_OUTCOME_WAIT:
            stop = pause_for(l, o.wait_ms, o.wake_on_notify, o.linger_ms);
            break;
        case RELAY_OUTCOME_DB_FAILED:
            /* No retry grants a privilege: say which statement lacks it, and stop. */
            if (relay_db_error_is(err, RELAY_SQLSTATE_NO_PRIVILEGE)) {
                relay_error(p->log,
                            "%s: the relay's role lacks a privilege it needs (see "
                            "`outbox-relay check`); position stays at %" PRId64,
                            err, p->position);
                return RELAY_EXIT_DATABASE;
            }
            stop = relay_db_error_is(err, RELAY_SQLSTATE_FENCED) ? fenced(l, err)
                                                                 : database_failed(l, err);
            break;
        case RELAY_OUTCOME_SINK_RETRY:
            stop = sink_failed(l, err);
            break;
        case RELAY_OUTCOME_STANDBY:
            stop = stand_by(l, o.wait_ms);
            break;
        case RELAY_OUTCOME_FATAL:
            relay_error(p->log, "%s", err);
            return o.exit_code;
        }
        if (stop)
            break;
        report_status(l, false);
    }
    return RELAY_EXIT_OK;
}

static int run_loop(relay_loop *l, const relay_config *config, const relay_logger *log)
{
    relay_watchdog_init(&l->watchdog);
    relay_backoff_init(&l->backoff, config->retry_initial_ms, config->retry_max_ms);
    relay_pipeline *p = &l->pipeline;

    char err[1024];
    if (relay_signals_install() != 0) {
        relay_error(log, "installing signal handlers failed");
        return RELAY_EXIT_RUNTIME;
    }
    if (relay_pipeline_init(p, config, log, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_RUNTIME;
    }
    if (relay_sink_open(&p->sink, config, log, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        relay_pipeline_free(p);
        return RELAY_EXIT_SINK;
    }
    relay_info(log, "sink %s loaded from %s", p->sink.api->name, p->sink.path);
    p->sink.watchdog = &l->watchdog;
    p->sink.metrics = &l->metrics;

    /* After the sink: an endpoint that says "ready" must have a sink behind it. */
    if (config->http_listen) {
        if (relay_http_start(&l->http, config->http_listen, config->name, &l->watchdog.alive_ms,
                             health_ms(l), err, sizeof err) != 0) {
            relay_error(log, "%s", err);
            relay_sink_unload(&p->sink);
            relay_pipeline_free(p);
            return RELAY_EXIT_CONFIG;
        }
        relay_info(log, "serving /metrics, /healthz and /readyz on %s", config->http_listen);
        publish_metrics(l);
    }

    /* Ready once the sink is up: a database outage is part of normal running (STATUS= says so),
     * not a failed start that systemd should time out. */
    relay_notify_ready();
    relay_info(log, "relay '%s' started", config->name);

    int exit_code = run_turns(l);

    relay_notify_stopping();
    /* Not behind a fetch still in flight: that is a sink's fatal error, stopping at once. */
    if (relay_pipeline_leading(p) && p->pipe != RELAY_PIPE_PREFETCHING &&
        relay_turn_store_position(p, err, sizeof err) != 0)
        relay_warn(log, "%s; the last batch will be delivered again after a restart", err);
    if (exit_code == RELAY_EXIT_OK)
        relay_info(log,
                   "stopped at position %" PRId64 " (stored) after delivering %" PRIu64
                   " events (and %" PRIu64 " again after a reconnect)",
                   p->stored_position, p->delivered, p->redelivered);
    relay_http_stop(&l->http);
    relay_sink_unload(&p->sink);
    relay_pipeline_free(p);
    return exit_code;
}

/* The loop's own copies of the configuration and the logger, which a reload changes. */
static int take_config(relay_loop *l, const relay_config *config, const relay_logger *log,
                       bool log_level_fixed, char *err, size_t errlen)
{
    l->log = *log;
    l->log_level_fixed = log_level_fixed;
    return relay_config_copy(&l->config, config, err, errlen);
}

int relay_run(const relay_config *initial, const relay_logger *initial_log, bool log_level_fixed)
{
    relay_loop l;
    memset(&l, 0, sizeof l);
    char err[1024];
    if (take_config(&l, initial, initial_log, log_level_fixed, err, sizeof err) != 0) {
        relay_error(initial_log, "%s", err);
        return RELAY_EXIT_RUNTIME;
    }
    const relay_config *config = &l.config;
    const relay_logger *log = &l.log;
    int exit_code = run_loop(&l, config, log);
    relay_config_free(&l.config);
    return exit_code;
}
