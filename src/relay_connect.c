#include "relay_connect.h"

#include <inttypes.h>
#include <string.h>
#include <stdio.h>

#include "checkpoint.h"
#include "db.h"
#include "exit_codes.h"
#include "ids.h"
#include "lockers.h"
#include "relay_durable.h"
#include "restore.h"
#include "signals.h"
#include "source.h"

/* The rows of the first read after a connect. */
#define RELAY_FIRST_READ 16

static relay_outcome connected(void)
{
    return (relay_outcome){.kind = RELAY_OUTCOME_BUSY};
}

static relay_outcome db_failed(void)
{
    return (relay_outcome){.kind = RELAY_OUTCOME_DB_FAILED};
}

static relay_outcome fatal(int exit_code)
{
    return (relay_outcome){.kind = RELAY_OUTCOME_FATAL, .exit_code = exit_code};
}

/*
 * Checks that the position belongs to this database and this table's ids: after a restore, a
 * failover to another cluster or a truncate with RESTART IDENTITY, new events would reuse ids at
 * or below the position and be skipped for good.
 */
static relay_outcome check_restore(relay_pipeline *p, const relay_checkpoint *cp, char *err,
                                   size_t errlen)
{
    const relay_config *c = p->config;
    int64_t sysid = -1, high = 0;
    if (relay_restore_system_identifier(p->conn, &sysid, err, errlen) != 0 ||
        relay_restore_high_water(p->conn, c, &p->source, &high, err, errlen) != 0)
        return db_failed();

    if (sysid >= 0 && cp->system_identifier >= 0 && sysid != cp->system_identifier) {
        snprintf(err, errlen,
                 "the checkpoint '%s' was written in another database (system identifier %" PRId64
                 ", this one is %" PRId64 "): restored from a backup, or a new cluster. Check "
                 "where the events stand, then run `outbox-relay reset -c %.200s --to ID` (or "
                 "--latest)",
                 c->name, cp->system_identifier, sysid, c->path);
        return fatal(RELAY_EXIT_CHECKPOINT);
    }
    if (cp->position > high) {
        snprintf(err, errlen,
                 "the position of '%s' (%" PRId64 ") is above the highest id %.200s ever handed "
                 "out (%" PRId64 "): the table was truncated or restored. Check where the events "
                 "stand, then run `outbox-relay reset -c %.200s --to ID` (or --latest)",
                 c->name, cp->position, p->source.quoted_table, high, c->path);
        return fatal(RELAY_EXIT_CHECKPOINT);
    }
    if (sysid >= 0 && cp->system_identifier < 0 &&
        relay_checkpoint_set_system(p->conn, c->name, p->epoch, sysid, err, errlen) != 0)
        return db_failed();
    return connected();
}

static int listen_for_wakeups(relay_pipeline *p, char *err, size_t errlen)
{
    p->listening = false;
    if (!p->config->notify_channel)
        return 0;
    char channel[600], sql[700];
    if (relay_db_quote_ident(p->conn, p->config->notify_channel, channel, sizeof channel, err,
                             errlen) != 0)
        return -1;
    snprintf(sql, sizeof sql, "LISTEN %s", channel);
    if (relay_db_exec(p->conn, "listening for wake-ups", sql, err, errlen) != 0)
        return -1;
    p->listening = true;
    return 0;
}

/* Checks the table, its columns and how its ids are handed out, and prepares the statements. */
static relay_outcome inspect(relay_pipeline *p, char *err, size_t errlen)
{
    int missing = 0;
    relay_source_info *info = &p->source;
    if (relay_source_inspect(p->conn, p->config, info, &missing, err, errlen) != 0)
        return missing ? fatal(RELAY_EXIT_DATABASE) : db_failed();
    relay_ids_verdict ids;
    char why[1024];
    if (relay_ids_inspect(p->conn, p->config, info, &ids, why, sizeof why, err, errlen) != 0)
        return db_failed();
    if (ids == RELAY_IDS_REFUSE) {
        snprintf(err, errlen, "%s", why);
        return fatal(RELAY_EXIT_DATABASE);
    }
    if (ids == RELAY_IDS_WARN)
        relay_warn(p->log, "%s", why);
    if (relay_checkpoint_session_setup(p->conn, err, errlen) != 0 ||
        relay_source_prepare(p->conn, p->config, info, err, errlen) != 0 ||
        relay_lockers_prepare(p->conn, info->quoted_table, &p->lockers, err, errlen) != 0) {
        /* The table was inspected: what a statement lacks now is the relay's own schema (a
         * database migrated by an older release), which no retry will create. */
        if (!relay_db_error_is(err, "42P01") && !relay_db_error_is(err, "42703") &&
            !relay_db_error_is(err, "42883"))
            return db_failed();
        size_t len = strlen(err);
        snprintf(err + len, errlen - len,
                 ": the relay's tables are missing or out of date "
                 "(run `outbox-relay migrate`)");
        return fatal(RELAY_EXIT_DATABASE);
    }
    return connected();
}

/* Waits for the lock behind the relay that holds it: the loop waits on the connection. */
static relay_outcome stand_by(relay_pipeline *p, char *err, size_t errlen)
{
    if (relay_checkpoint_send_lock(p->conn, p->config->name, err, errlen) != 0)
        return db_failed();
    relay_pipe_change(p, RELAY_PIPE_STANDBY);
    /* The server answers once the lock is free or its lock_timeout is over: a wait a little
     * longer than that only ends without an answer when the server is gone. */
    return (relay_outcome){.kind = RELAY_OUTCOME_STANDBY,
                           .wait_ms = 2 * RELAY_CHECKPOINT_LOCK_WAIT_MS};
}

/* The lock is held: claims the epoch, reads the position and the watched gaps, and checks that
 * they belong to this database and its history. */
static relay_outcome lead(relay_pipeline *p, char *err, size_t errlen)
{
    const relay_config *c = p->config;
    relay_pipe_change(p, RELAY_PIPE_IDLE);
    relay_checkpoint cp;
    int missing = 0;
    if (relay_checkpoint_load(p->conn, c->name, p->source.quoted_table, &cp, &p->gaps, &missing,
                              err, errlen) != 0)
        return missing ? fatal(RELAY_EXIT_DATABASE) : db_failed();
    p->epoch = cp.epoch;
    relay_outcome o;
    if (relay_checkpoint_logged(p->conn, err, errlen) != 0)
        return fatal(RELAY_EXIT_DATABASE);
    if ((o = check_restore(p, &cp, err, errlen)).kind != RELAY_OUTCOME_BUSY ||
        (o = relay_check_history(p, cp.position, err, errlen)).kind != RELAY_OUTCOME_BUSY)
        return o;
    if (listen_for_wakeups(p, err, errlen) != 0)
        return db_failed();
    /* Whoever could fill a stored gap, if still running, holds the table's lock now: its writers
     * are looked at anew, and the gaps belong to this look. */
    if (relay_lockers_observe(p->conn, &p->lockers, err, errlen) != 0)
        return db_failed();
    relay_gaps_set_round(&p->gaps, p->lockers.round);
    p->position = p->stored_position = cp.position;
    p->durable_xmin = 0; /* judged anew on each server */
    p->ahead.count = 0;
    p->next_gap_check = 0;
    /* A backlog may have grown meanwhile, but its rows' size is not known yet: the first read
     * is small (RELAY_FIRST_READ rows, within source.batch_bytes for rows up to 1 MB), and
     * the next ones double up to batch_size, or to what batch_bytes holds of the rows seen. */
    p->read_limit = c->batch_size < RELAY_FIRST_READ ? c->batch_size : RELAY_FIRST_READ;
    p->quiet_reads = 0;

    relay_info(p->log,
               "leading '%s' (epoch %" PRId64 "): reading %s from position %" PRId64
               " (%s mode, margin %" PRId64 "ms, batch %d, %zu gaps watched%s)",
               c->name, p->epoch, p->source.quoted_table, p->position,
               c->mode == RELAY_MODE_SETTLED ? "settled" : "margin", relay_source_margin_ms(c),
               c->batch_size, p->gaps.count, p->listening ? ", woken by NOTIFY" : "");
    return connected();
}

/* A standby: takes the lead if the lock came, waits again if it did not. */
static relay_outcome wait_for_lock(relay_pipeline *p, char *err, size_t errlen)
{
    int answered = 0, acquired = 0;
    if (relay_checkpoint_receive_lock(p->conn, &answered, &acquired, err, errlen) != 0)
        return db_failed();
    if (acquired)
        return lead(p, err, errlen);
    if (!answered)
        return (relay_outcome){.kind = RELAY_OUTCOME_STANDBY,
                               .wait_ms = 2 * RELAY_CHECKPOINT_LOCK_WAIT_MS};
    return stand_by(p, err, errlen);
}

relay_outcome relay_connect(relay_pipeline *p, char *err, size_t errlen)
{
    if (p->pipe == RELAY_PIPE_STANDBY)
        return wait_for_lock(p, err, errlen);
    const relay_config *c = p->config;
    p->conn = relay_db_connect(c, p->log, err, errlen);
    if (!p->conn)
        return db_failed();
    relay_signals_set_stop_socket(PQsocket(p->conn));
    relay_pipe_change(p, RELAY_PIPE_IDLE);

    relay_outcome o = inspect(p, err, errlen);
    if (o.kind != RELAY_OUTCOME_BUSY)
        return o;
    /* A new session takes the lock before anything else, every time: a leader whose session was
     * ended may find another relay leading, and then waits as a standby. */
    int locked = 0;
    if (relay_checkpoint_try_lock(p->conn, c->name, &locked, err, errlen) != 0)
        return db_failed();
    return locked ? lead(p, err, errlen) : stand_by(p, err, errlen);
}
