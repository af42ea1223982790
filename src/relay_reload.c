#include "relay_reload.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "notify.h"
#include "permissions.h"
#include "sink_host.h"
#include "source.h"

bool relay_reload_possible(const relay_pipeline *p)
{
    return p->pipe != RELAY_PIPE_PREFETCHING;
}

typedef struct change_count {
    const relay_logger *log;
    bool log_level_fixed; /* --log-level: log.level changes nothing */
    int changes;
} change_count;

/* Says what changed: WARN for what waits for a restart (the operator expected it to apply),
 * INFO for the rest. A secret's value is never written. */
static void tell_change(const relay_config_change *c, void *arg)
{
    change_count *count = arg;
    const relay_logger *log = count->log;
    count->changes++;
    if (!c->reloadable && c->secret)
        relay_warn(log,
                   "reload: %s changed (value not shown), but it takes effect only after a "
                   "restart; the value in force stays",
                   c->key);
    else if (!c->reloadable)
        relay_warn(log,
                   "reload: %s changed from '%s' to '%s', but it takes effect only after a "
                   "restart; '%s' stays in force",
                   c->key, c->old_value, c->new_value, c->old_value);
    else if (count->log_level_fixed && strcmp(c->key, "log.level") == 0)
        relay_info(log,
                   "reload: log.level changed from '%s' to '%s', but --log-level outranks it: "
                   "the level in force stays",
                   c->old_value, c->new_value);
    else if (c->secret)
        relay_info(log, "reload: %s changed (value not shown)", c->key);
    else
        relay_info(log, "reload: %s: '%s' -> '%s'", c->key, c->old_value, c->new_value);
}

/* New batches for the new source.batch_size and batch_bytes. What the pipeline holds goes: its
 * rows were cut to the old sizes and are read again from the acknowledged position (so the hand,
 * unacknowledged, is handed over again; nothing is passed). Returns 0, or -1 with err, the old
 * batches then still in place. */
static int resize_batches(relay_pipeline *p, char *err, size_t errlen)
{
    relay_batch fresh[2];
    if (relay_batch_init(&fresh[0], p->config, err, errlen) != 0)
        return -1;
    if (relay_batch_init(&fresh[1], p->config, err, errlen) != 0) {
        relay_batch_free(&fresh[0]);
        return -1;
    }
    if (p->pipe != RELAY_PIPE_CLOSED && p->pipe != RELAY_PIPE_STANDBY &&
        p->pipe != RELAY_PIPE_IDLE) {
        relay_debug(p->log,
                    "reload: dropping the %s batch; it is read again from position %" PRId64,
                    relay_pipe_name(p->pipe), p->position);
        relay_pipe_change(p, RELAY_PIPE_IDLE);
        /* The cut of a dropped batch watched the ids missing in it, above the position now: the
         * watch would deliver a row that fills one late, before the events below it. The read
         * from the position finds such rows in order. */
        relay_gaps_trim(&p->gaps, p->position);
    }
    relay_batch_free(&p->batches[0]);
    relay_batch_free(&p->batches[1]);
    p->batches[0] = fresh[0];
    p->batches[1] = fresh[1];
    p->current = &p->batches[0];
    p->next = &p->batches[1];
    if (p->read_limit > p->config->batch_size)
        p->read_limit = p->config->batch_size;
    return 0;
}

/* Starts the sink anew with the options now in running; undoes them on failure. */
static void restart_sink(const relay_reload_target *t, relay_config *previous)
{
    relay_pipeline *p = t->pipeline;
    char err[1024];
    if (relay_sink_reinit(&p->sink, t->config->sink_options, t->config->n_sink_options, err,
                          sizeof err) == RELAY_SINK_OK) {
        relay_info(t->log, "reload: sink %s started anew with the new sink.options",
                   p->sink.api->name);
        return;
    }
    relay_config_swap_sink_options(t->config, previous);
    relay_error(t->log,
                "reload: sink %s refused the new sink.options (%s); it goes on with the options "
                "in force",
                p->sink.api->name, err);
}

/*
 * A file unchanged may be one that cannot change: systemd copies a credential
 * (LoadCredential=) once, when the unit starts, and systemd 252 copies none again at a reload,
 * so an edit of the file it came from shows only after a restart. Said, since `systemctl reload`
 * itself reports success.
 */
static void tell_unchanged(const relay_logger *log, const char *path)
{
    if (relay_permissions_is_credential(path))
        relay_warn(log,
                   "reload: nothing changed in %s, a systemd credential: systemd copied it when "
                   "the unit started and does not copy it again at a reload; `systemctl "
                   "restart` the unit to apply an edit of the file it came from",
                   path);
    else
        relay_info(log, "reload: nothing changed in %s", path);
}

bool relay_reload(const relay_reload_target *t)
{
    relay_config *running = t->config;
    relay_pipeline *p = t->pipeline;
    char err[2048];
    relay_notify_reloading();
    relay_info(t->log, "SIGHUP: reloading the configuration from %s", running->path);

    relay_config fresh;
    int rc = relay_config_load(running->path, &fresh, err, sizeof err);
    /* The start refuses such a file: whoever may write it chooses the plugin the relay runs. */
    if (rc == 0 &&
        (rc = relay_permissions_refuse_writable(running->path, "config", err, sizeof err)) != 0)
        relay_config_free(&fresh);
    if (rc != 0) {
        relay_error(t->log, "reload failed, the configuration in force stays: %s", err);
        relay_notify_ready();
        return false;
    }

    change_count count = {t->log, t->log_level_fixed, 0};
    relay_config_diff(running, &fresh, tell_change, &count);
    if (count.changes == 0)
        tell_unchanged(t->log, running->path);
    bool new_options = !relay_config_same_sink_options(running, &fresh);
    bool new_sizes =
        fresh.batch_size != running->batch_size || fresh.batch_bytes != running->batch_bytes;
    relay_config_adopt(running, &fresh); /* fresh now holds what running gave up */

    if (new_sizes && resize_batches(p, err, sizeof err) != 0) {
        relay_error(t->log, "reload: %s; source.batch_size stays %d and batch_bytes %d", err,
                    fresh.batch_size, fresh.batch_bytes);
        running->batch_size = fresh.batch_size;
        running->batch_bytes = fresh.batch_bytes;
    }
    if (new_options)
        restart_sink(t, &fresh);
    if (!t->log_level_fixed)
        t->log->level = running->log_level;
    relay_backoff_configure(t->backoff, running->retry_initial_ms, running->retry_max_ms);
    /* A shorter interval applies to the round already scheduled too. */
    int64_t due = relay_now_ms() + running->retention_interval_ms;
    if (t->retention->next_ms > due)
        t->retention->next_ms = due;

    relay_config_free(&fresh);
    relay_info(t->log, "configuration reloaded from %s", running->path);
    relay_notify_ready();
    return true;
}
