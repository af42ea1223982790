#include "relay.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "checkpoint.h"
#include "db.h"
#include "exit_codes.h"
#include "notify.h"
#include "plugin.h"
#include "signals.h"
#include "source.h"

typedef struct relay_state {
    const relay_config *config;
    const relay_logger *log;
    relay_sink sink;
    relay_backoff backoff;

    /* Two batches: the database reads the next (prefetch) while the sink works on the current. */
    relay_batch batches[2];
    relay_batch *current;
    relay_batch *next;
    bool current_ready; /* current holds a fetched batch not yet delivered */
    bool prefetching;   /* a fetch into next was sent; its result is not collected yet */
    bool next_ready;    /* next holds the collected prefetch */

    PGconn *conn;     /* NULL while the database is unreachable */
    int64_t position; /* the committed position: every id up to it was acknowledged */
    uint64_t delivered;

    /* Failures are logged when the state changes, not at every retry. */
    bool db_failing;
    bool sink_failing;
    bool standing_by;
    int attempts;

    int exit_code; /* set by the step that returns STEP_FATAL */

    int64_t watchdog_ms; /* systemd's WatchdogSec in ms, 0 when off */
    int64_t last_watchdog;
    int64_t last_status;
} relay_state;

typedef enum step { STEP_OK, STEP_RETRY, STEP_STOP, STEP_FATAL } step;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void keep_watchdog_fed(relay_state *s)
{
    if (s->watchdog_ms > 0 && now_ms() - s->last_watchdog >= s->watchdog_ms / 2) {
        relay_notify_watchdog();
        s->last_watchdog = now_ms();
    }
}

/* Waits ms, or less when a stop is requested (then returns true), feeding the watchdog. */
static bool pause_for(relay_state *s, int64_t ms)
{
    int64_t deadline = now_ms() + ms;
    for (;;) {
        keep_watchdog_fed(s);
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return relay_stop_requested();
        if (s->watchdog_ms > 0 && left > s->watchdog_ms / 2)
            left = s->watchdog_ms / 2;
        if (relay_wait(-1, left))
            return true;
    }
}

static void report_status(relay_state *s)
{
    int64_t now = now_ms();
    if (now - s->last_status < 1000)
        return;
    s->last_status = now;
    relay_notify_status("position %" PRId64 ", %" PRIu64 " events delivered", s->position,
                        s->delivered);
}

static void drop_connection(relay_state *s)
{
    PQfinish(s->conn);
    s->conn = NULL;
    relay_batch_clear(s->current);
    relay_batch_clear(s->next);
    s->current_ready = s->prefetching = s->next_ready = false;
}

/* Receives the prefetched batch, if one was sent. Returns 0, or -1 with err. */
static int collect_prefetch(relay_state *s, char *err, size_t errlen)
{
    if (!s->prefetching)
        return 0;
    s->prefetching = false;
    if (relay_source_receive_fetch(s->conn, s->next, err, errlen) != 0)
        return -1;
    s->next_ready = true;
    return 0;
}

/* A database step failed: log it if this starts an outage, drop the connection, back off. */
static step database_failed(relay_state *s, const char *err)
{
    s->attempts++;
    if (!s->db_failing) {
        relay_warn(s->log, "database unavailable: %s; retrying with backoff from position %" PRId64,
                   err, s->position);
        relay_notify_status("database unavailable, retrying: %s", err);
        s->db_failing = true;
    } else {
        relay_debug(s->log, "database still unavailable (attempt %d): %s", s->attempts, err);
    }
    drop_connection(s);
    return pause_for(s, relay_backoff_next(&s->backoff)) ? STEP_STOP : STEP_RETRY;
}

/*
 * Connects, checks the table, takes the name's lock and reads the position. A table or column that
 * does not exist is fatal: no amount of retrying fixes a configuration.
 */
static step connect_database(relay_state *s)
{
    char err[1024];
    s->conn = relay_db_connect(s->config, err, sizeof err);
    if (!s->conn)
        return database_failed(s, err);

    relay_source_info info;
    int missing = 0;
    if (relay_source_inspect(s->conn, s->config, &info, &missing, err, sizeof err) != 0) {
        if (!missing)
            return database_failed(s, err);
        relay_error(s->log, "%s", err);
        s->exit_code = RELAY_EXIT_DATABASE;
        return STEP_FATAL;
    }
    if (relay_checkpoint_session_setup(s->conn, err, sizeof err) != 0 ||
        relay_source_prepare(s->conn, s->config, &info, err, sizeof err) != 0)
        return database_failed(s, err);

    int locked = 0;
    if (relay_checkpoint_try_lock(s->conn, s->config->name, &locked, err, sizeof err) != 0)
        return database_failed(s, err);
    if (!locked) {
        if (!s->standing_by)
            relay_warn(s->log, "another relay named '%s' is running; standing by until it stops",
                       s->config->name);
        relay_notify_status("standing by: another relay named '%s' is running", s->config->name);
        s->standing_by = true;
        drop_connection(s);
        return pause_for(s, s->config->poll_interval_ms * 5) ? STEP_STOP : STEP_RETRY;
    }

    int missing_table = 0;
    if (relay_checkpoint_load(s->conn, s->config->name, &s->position, &missing_table, err,
                              sizeof err) != 0) {
        if (!missing_table)
            return database_failed(s, err);
        relay_error(s->log, "%s", err);
        s->exit_code = RELAY_EXIT_DATABASE;
        return STEP_FATAL;
    }

    if (s->db_failing)
        relay_info(s->log, "database available again after %d failed attempt%s", s->attempts,
                   s->attempts == 1 ? "" : "s");
    relay_info(s->log, "reading %s from position %" PRId64 " (margin %" PRId64 "ms, batch %d)",
               info.quoted_table, s->position, s->config->safety_margin_ms, s->config->batch_size);
    s->db_failing = false;
    s->standing_by = false;
    s->attempts = 0;
    relay_backoff_reset(&s->backoff);
    return STEP_OK;
}

/*
 * Hands the batch to the sink until it is acknowledged. A failing sink is retried with backoff;
 * the batch stays in hand, so the position cannot move past it.
 */
static step deliver_batch(relay_state *s)
{
    const relay_sink_batch batch = {.events = s->current->events, .count = s->current->count};
    int timeout_ms = (int)s->config->sink_flush_timeout_ms;
    for (int attempt = 1;; attempt++) {
        char err[1024] = "";
        relay_sink_status st = relay_sink_deliver(&s->sink, &batch, err, sizeof err);
        if (st == RELAY_SINK_OK)
            st = relay_sink_flush(&s->sink, timeout_ms, err, sizeof err);
        if (st == RELAY_SINK_OK && s->sink.rejections_lost) {
            snprintf(err, sizeof err, "out of memory recording an event the sink refused");
            st = RELAY_SINK_RETRY;
        }

        if (st == RELAY_SINK_OK) {
            if (s->sink_failing)
                relay_info(s->log, "sink recovered after %d attempts", attempt);
            s->sink_failing = false;
            relay_backoff_reset(&s->backoff);
            return STEP_OK;
        }
        if (st == RELAY_SINK_FATAL) {
            relay_error(s->log,
                        "sink failed for good on events %" PRId64 "..%" PRId64
                        ": %s; position stays at %" PRId64,
                        batch.events[0].id, batch.events[batch.count - 1].id, err, s->position);
            s->exit_code = RELAY_EXIT_RUNTIME;
            return STEP_FATAL;
        }
        /* The sink may stay down for long: take the prefetched rows off the server now rather
         * than keep its statement (and snapshot) open meanwhile. */
        if (collect_prefetch(s, err, sizeof err) != 0)
            return database_failed(s, err);
        if (!s->sink_failing) {
            relay_warn(s->log,
                       "sink failed on events %" PRId64 "..%" PRId64
                       ": %s; retrying with backoff, position stays at %" PRId64,
                       batch.events[0].id, batch.events[batch.count - 1].id, err, s->position);
            relay_notify_status("sink failing, retrying: %s", err);
            s->sink_failing = true;
        } else {
            relay_debug(s->log, "sink still failing (attempt %d): %s", attempt, err);
        }
        if (pause_for(s, relay_backoff_next(&s->backoff)))
            return STEP_STOP;
    }
}

/*
 * The sink acknowledged the batch except for events its destination refuses for good. Stop with
 * the position just before the first of them, or record them and commit the batch, as configured.
 */
static step handle_rejections(relay_state *s, int64_t last)
{
    char err[1024];
    const relay_sink_rejection *r = s->sink.rejections;
    size_t n = s->sink.n_rejections;
    if (s->config->sink_on_reject == RELAY_ON_REJECT_STOP) {
        int64_t first = r[0].event_id;
        for (size_t i = 1; i < n; i++)
            first = r[i].event_id < first ? r[i].event_id : first;
        /* Everything before the refused event was acknowledged: keep it, so that a restart after
         * the operator's fix does not repeat the whole batch. */
        if (first - 1 > s->position &&
            relay_checkpoint_store(s->conn, s->config->name, first - 1, err, sizeof err) == 0)
            s->position = first - 1;
        for (size_t i = 0; i < n; i++)
            relay_error(s->log, "event %" PRId64 " refused by the sink for good: %s", r[i].event_id,
                        r[i].reason);
        relay_error(s->log,
                    "stopping at position %" PRId64 " (sink.on_reject: stop); fix the event or set "
                    "sink.on_reject: dead_letter to record such events and go on",
                    s->position);
        s->exit_code = RELAY_EXIT_RUNTIME;
        return STEP_FATAL;
    }
    if (relay_checkpoint_store_dead_letters(s->conn, s->config->name, last, r, n, err,
                                            sizeof err) != 0)
        return database_failed(s, err);
    for (size_t i = 0; i < n; i++)
        relay_warn(s->log,
                   "event %" PRId64 " refused by the sink for good: %s; recorded in "
                   "relay_dead_letters",
                   r[i].event_id, r[i].reason);
    return STEP_OK;
}

/* One turn: fetch a settled batch (unless prefetched), deliver it, commit. */
static step relay_turn(relay_state *s)
{
    char err[1024];
    if (!s->current_ready &&
        relay_source_fetch(s->conn, s->config, s->position, s->current, err, sizeof err) != 0)
        return database_failed(s, err);
    s->current_ready = true;

    size_t count = s->current->count;
    if (count == 0) {
        s->current_ready = false;
        relay_batch_clear(s->current);
        return pause_for(s, s->config->poll_interval_ms) ? STEP_STOP : STEP_OK;
    }
    int64_t last = s->current->events[count - 1].id;

    /* A full batch means more is probably waiting: the database reads it while the sink works.
     * Reading past an unacknowledged batch is safe; only committing past one is not. */
    if (count == (size_t)s->config->batch_size) {
        if (relay_source_send_fetch(s->conn, s->config, last, err, sizeof err) != 0)
            return database_failed(s, err);
        s->prefetching = true;
    }

    step delivered = deliver_batch(s);
    if (delivered != STEP_OK)
        return delivered;
    if (collect_prefetch(s, err, sizeof err) != 0)
        return database_failed(s, err);
    if (s->sink.n_rejections > 0) {
        step handled = handle_rejections(s, last);
        if (handled != STEP_OK)
            return handled;
    } else if (relay_checkpoint_store(s->conn, s->config->name, last, err, sizeof err) != 0) {
        return database_failed(s, err);
    }
    s->position = last;
    s->delivered += count;
    relay_debug(s->log, "delivered %zu events, position %" PRId64, count, last);
    report_status(s);

    relay_batch *done = s->current;
    s->current = s->next;
    s->next = done;
    relay_batch_clear(s->next);
    s->current_ready = s->next_ready;
    s->next_ready = false;

    /* A short batch means the backlog is drained (or the rest is inside the margin): wait for
     * more instead of spinning on the database. */
    if (count < (size_t)s->config->batch_size)
        return pause_for(s, s->config->poll_interval_ms) ? STEP_STOP : STEP_OK;
    return STEP_OK;
}

static int load_sink(relay_state *s)
{
    char path[4096], err[1024];
    if (relay_plugin_resolve(s->config->sink_plugin, s->config->plugin_dir, path, sizeof path, err,
                             sizeof err) != 0 ||
        relay_sink_load(&s->sink, path, s->log, err, sizeof err) != 0) {
        relay_error(s->log, "%s", err);
        return -1;
    }
    if (relay_sink_init(&s->sink, s->config->sink_options, s->config->n_sink_options, err,
                        sizeof err) != RELAY_SINK_OK) {
        relay_error(s->log, "sink init failed: %s", err);
        return -1;
    }
    relay_info(s->log, "sink %s loaded from %s", s->sink.api->name, path);
    return 0;
}

int relay_run(const relay_config *config, const relay_logger *log)
{
    relay_state s;
    memset(&s, 0, sizeof s);
    s.config = config;
    s.log = log;
    s.watchdog_ms = relay_notify_watchdog_ms();
    relay_backoff_init(&s.backoff, config->retry_initial_ms, config->retry_max_ms);

    char err[1024];
    if (relay_signals_install() != 0) {
        relay_error(log, "installing signal handlers failed");
        return RELAY_EXIT_RUNTIME;
    }
    s.current = &s.batches[0];
    s.next = &s.batches[1];
    if (relay_batch_init(s.current, config->batch_size, err, sizeof err) != 0 ||
        relay_batch_init(s.next, config->batch_size, err, sizeof err) != 0) {
        relay_error(log, "%s", err);
        relay_batch_free(s.current);
        return RELAY_EXIT_RUNTIME;
    }
    if (load_sink(&s) != 0) {
        relay_sink_unload(&s.sink);
        relay_batch_free(s.current);
        relay_batch_free(s.next);
        return RELAY_EXIT_SINK;
    }

    /* Ready once the sink is up: a database outage is part of normal running (STATUS= says so),
     * not a failed start that systemd should time out. */
    relay_notify_ready();
    relay_info(log, "relay '%s' started", config->name);

    bool reload_noted = false;
    while (!relay_stop_requested()) {
        keep_watchdog_fed(&s);
        if (relay_reload_requested() && !reload_noted) {
            relay_warn(log, "SIGHUP: reloading the configuration is not supported yet; restart "
                            "the relay to apply changes");
            reload_noted = true;
        }
        if ((s.conn ? relay_turn(&s) : connect_database(&s)) == STEP_FATAL)
            break;
    }

    relay_notify_stopping();
    if (s.exit_code == RELAY_EXIT_OK)
        relay_info(log, "stopped at position %" PRId64 " after delivering %" PRIu64 " events",
                   s.position, s.delivered);
    relay_sink_unload(&s.sink);
    drop_connection(&s);
    relay_batch_free(s.current);
    relay_batch_free(s.next);
    return s.exit_code;
}
