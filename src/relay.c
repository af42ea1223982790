#include "relay.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "checkpoint.h"
#include "db.h"
#include "exit_codes.h"
#include "ids.h"
#include "notify.h"
#include "plugin.h"
#include "signals.h"
#include "relay_state.h"
#include "restore.h"
#include "lockers.h"
#include "source.h"

int64_t relay_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void keep_watchdog_fed(relay_state *s)
{
    if (s->watchdog_ms > 0 && relay_now_ms() - s->last_watchdog >= s->watchdog_ms / 2) {
        relay_notify_watchdog();
        s->last_watchdog = relay_now_ms();
    }
}

/* Takes the NOTIFYs libpq holds, reading the socket first when asked; returns whether there were
 * any. A broken connection shows at the next query, which fails and reconnects. */
static bool take_notifications(relay_state *s, bool read_socket)
{
    if (read_socket && !PQconsumeInput(s->conn))
        return true;
    bool any = false;
    for (PGnotify *n; (n = PQnotifies(s->conn)) != NULL;) {
        PQfreemem(n);
        any = true;
    }
    s->woken = s->woken || any;
    return any;
}

bool relay_pause(relay_state *s, int64_t ms, bool wake_on_notify)
{
    int64_t deadline = relay_now_ms() + ms;
    int fd = s->conn && s->listening ? PQsocket(s->conn) : -1;
    /* A NOTIFY that arrived with the last query's results is already queued in libpq. */
    if (fd >= 0 && take_notifications(s, false) && wake_on_notify)
        return relay_stop_requested();
    for (;;) {
        keep_watchdog_fed(s);
        int64_t left = deadline - relay_now_ms();
        if (left <= 0)
            return relay_stop_requested();
        if (s->watchdog_ms > 0 && left > s->watchdog_ms / 2)
            left = s->watchdog_ms / 2;
        relay_wait_result r = relay_wait(fd, left);
        if (r == RELAY_WAIT_STOP)
            return true;
        /* Taken even when they may not end the wait: an unread socket stays readable. */
        if (r == RELAY_WAIT_READABLE && take_notifications(s, true) && wake_on_notify)
            return false;
    }
}

void relay_report_status(relay_state *s)
{
    int64_t now = relay_now_ms();
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
    /* The next connection reloads the stored position: the batch after it is delivered again. */
    s->position_unstored = false;
    s->storing = 0;
    s->listening = false;
}

/* A database step failed: log it if this starts an outage, drop the connection, back off. */
step relay_database_failed(relay_state *s, const char *err)
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
    return relay_pause(s, relay_backoff_next(&s->backoff), false) ? STEP_STOP : STEP_RETRY;
}

/* A fatal step: logs err and sets the exit code. */
static step fatal(relay_state *s, int exit_code, const char *err)
{
    relay_error(s->log, "%s", err);
    s->exit_code = exit_code;
    return STEP_FATAL;
}

/*
 * Checks that the position belongs to this database and this table's ids: after a restore, a
 * failover to another cluster or a truncate with RESTART IDENTITY, new events would reuse ids at
 * or below the position and be skipped for good.
 */
static step check_restore(relay_state *s, const relay_source_info *info, const relay_checkpoint *cp)
{
    char err[2048];
    int64_t sysid = -1, high = 0;
    if (relay_restore_system_identifier(s->conn, &sysid, err, sizeof err) != 0 ||
        relay_restore_high_water(s->conn, s->config, info, &high, err, sizeof err) != 0)
        return relay_database_failed(s, err);

    if (sysid >= 0 && cp->system_identifier >= 0 && sysid != cp->system_identifier) {
        snprintf(err, sizeof err,
                 "the checkpoint '%s' was written in another database (system identifier %" PRId64
                 ", this one is %" PRId64 "): restored from a backup, or a new cluster. Check "
                 "where the events stand, then run `outbox-relay reset -c %.200s --to ID` (or "
                 "--latest)",
                 s->config->name, cp->system_identifier, sysid, s->config->path);
        return fatal(s, RELAY_EXIT_CHECKPOINT, err);
    }
    if (cp->position > high) {
        snprintf(err, sizeof err,
                 "the position of '%s' (%" PRId64 ") is above the highest id %.200s ever handed "
                 "out (%" PRId64 "): the table was truncated or restored. Check where the events "
                 "stand, then run `outbox-relay reset -c %.200s --to ID` (or --latest)",
                 s->config->name, cp->position, info->quoted_table, high, s->config->path);
        return fatal(s, RELAY_EXIT_CHECKPOINT, err);
    }
    if (sysid >= 0 && cp->system_identifier < 0 &&
        relay_checkpoint_set_system(s->conn, s->config->name, sysid, err, sizeof err) != 0)
        return relay_database_failed(s, err);
    return STEP_OK;
}

/* Takes the name's lock, or stands by while another relay of that name runs. */
static step take_lock(relay_state *s)
{
    char err[1024];
    int locked = 0;
    if (relay_checkpoint_try_lock(s->conn, s->config->name, &locked, err, sizeof err) != 0)
        return relay_database_failed(s, err);
    if (locked)
        return STEP_OK;
    if (!s->standing_by)
        relay_warn(s->log, "another relay named '%s' is running; standing by until it stops",
                   s->config->name);
    relay_notify_status("standing by: another relay named '%s' is running", s->config->name);
    s->standing_by = true;
    drop_connection(s);
    return relay_pause(s, s->config->poll_interval_ms * 5, false) ? STEP_STOP : STEP_RETRY;
}

static step listen_for_wakeups(relay_state *s)
{
    s->listening = false;
    if (!s->config->notify_channel)
        return STEP_OK;
    char err[1024], channel[600], sql[700];
    if (relay_db_quote_ident(s->conn, s->config->notify_channel, channel, sizeof channel, err,
                             sizeof err) != 0)
        return relay_database_failed(s, err);
    snprintf(sql, sizeof sql, "LISTEN %s", channel);
    if (relay_db_exec(s->conn, "listening for wake-ups", sql, err, sizeof err) != 0)
        return relay_database_failed(s, err);
    s->listening = true;
    return STEP_OK;
}

/*
 * Connects, checks the table, takes the name's lock, reads the position and the watched gaps, and
 * checks that they belong to this database. A missing table or column, or a checkpoint from another
 * database, is fatal: no amount of retrying fixes those.
 */
static step connect_database(relay_state *s)
{
    char err[1024];
    s->conn = relay_db_connect(s->config, err, sizeof err);
    if (!s->conn)
        return relay_database_failed(s, err);

    relay_source_info *info = &s->source;
    int missing = 0;
    if (relay_source_inspect(s->conn, s->config, info, &missing, err, sizeof err) != 0)
        return missing ? fatal(s, RELAY_EXIT_DATABASE, err) : relay_database_failed(s, err);
    relay_ids_verdict ids;
    char why[1024];
    if (relay_ids_inspect(s->conn, s->config, info, &ids, why, sizeof why, err, sizeof err) != 0)
        return relay_database_failed(s, err);
    if (ids == RELAY_IDS_REFUSE)
        return fatal(s, RELAY_EXIT_DATABASE, why);
    if (ids == RELAY_IDS_WARN)
        relay_warn(s->log, "%s", why);
    if (relay_checkpoint_session_setup(s->conn, err, sizeof err) != 0 ||
        relay_source_prepare(s->conn, s->config, info, err, sizeof err) != 0 ||
        relay_lockers_prepare(s->conn, info->quoted_table, &s->lockers, err, sizeof err) != 0)
        return relay_database_failed(s, err);

    step st = take_lock(s);
    if (st != STEP_OK)
        return st;

    relay_checkpoint cp;
    if (relay_checkpoint_load(s->conn, s->config->name, &cp, &s->gaps, &missing, err, sizeof err) !=
        0)
        return missing ? fatal(s, RELAY_EXIT_DATABASE, err) : relay_database_failed(s, err);
    if ((st = check_restore(s, info, &cp)) != STEP_OK ||
        (st = relay_check_history(s, cp.position)) != STEP_OK ||
        (st = listen_for_wakeups(s)) != STEP_OK)
        return st;
    /* Whoever could fill a stored gap, if still running, holds the table's lock now: its writers
     * are looked at anew, and the gaps belong to this look. */
    if (relay_lockers_observe(s->conn, &s->lockers, err, sizeof err) != 0)
        return relay_database_failed(s, err);
    relay_gaps_set_round(&s->gaps, s->lockers.round);
    s->position = s->stored_position = cp.position;
    s->durable_xmin = 0; /* judged anew on each server */
    s->ahead.count = 0;
    s->next_gap_check = 0;

    if (s->db_failing)
        relay_info(s->log, "database available again after %d failed attempt%s", s->attempts,
                   s->attempts == 1 ? "" : "s");
    relay_info(s->log,
               "reading %s from position %" PRId64 " (%s mode, margin %" PRId64
               "ms, batch %d, %zu gaps watched%s)",
               info->quoted_table, s->position,
               s->config->mode == RELAY_MODE_SETTLED ? "settled" : "margin",
               relay_source_margin_ms(s->config), s->config->batch_size, s->gaps.count,
               s->listening ? ", woken by NOTIFY" : "");
    s->db_failing = false;
    s->standing_by = false;
    s->attempts = 0;
    relay_backoff_reset(&s->backoff);
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
    /* Not behind a fetch still in flight: that is a sink's fatal error, stopping at once. */
    if (s.conn && !s.prefetching && relay_store_position(&s, err, sizeof err) != 0)
        relay_warn(log, "%s; the last batch will be delivered again after a restart", err);
    if (s.exit_code == RELAY_EXIT_OK)
        relay_info(log, "stopped at position %" PRId64 " after delivering %" PRIu64 " events",
                   s.position, s.delivered);
    relay_sink_unload(&s.sink);
    drop_connection(&s);
    relay_batch_free(s.current);
    relay_batch_free(s.next);
    relay_gaps_free(&s.gaps);
    relay_gaps_free(&s.ahead);
    relay_lockers_free(&s.lockers);
    return s.exit_code;
}
