/*
 * One turn of the relay: deliver rows that filled watched gaps, read the next batch, cut it where
 * it must not go further, hand it to the sink, and move the position once the sink acknowledged.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "db.h"
#include "exit_codes.h"
#include "notify.h"
#include "relay_state.h"
#include "lockers.h"

/* The update that stores the acknowledged position, with the gaps when they changed. */
static relay_checkpoint_update position_update(relay_state *s)
{
    return (relay_checkpoint_update){.position = s->position,
                                     .gaps = s->gaps.dirty ? &s->gaps : NULL};
}

int relay_store_position(relay_state *s, char *err, size_t errlen)
{
    if (!s->position_unstored)
        return 0;
    relay_checkpoint_update u = position_update(s);
    if (relay_checkpoint_commit(s->conn, s->config->name, &u, err, errlen) != 0)
        return -1;
    s->position_unstored = false;
    s->stored_position = s->position;
    return 0;
}

/* Sends the fetch of the batch after `after`, the unstored position ahead of it: the server goes
 * from one to the other without waiting for the relay. Returns 0, or -1 with err. */
static int send_prefetch(relay_state *s, int64_t after, char *err, size_t errlen)
{
    if (s->position_unstored) {
        relay_checkpoint_update u = position_update(s);
        if (relay_db_pipeline_begin(s->conn, err, errlen) != 0 ||
            relay_checkpoint_send(s->conn, s->config->name, &u, &s->storing, err, errlen) != 0 ||
            relay_source_send_fetch(s->conn, s->config, &s->source, after, err, errlen) != 0 ||
            relay_db_pipeline_send(s->conn, err, errlen) != 0)
            return -1;
        s->position_unstored = false;
        s->storing_position = s->position;
    } else if (relay_source_send_fetch(s->conn, s->config, &s->source, after, err, errlen) != 0) {
        return -1;
    }
    /* A store sent with it commits at the pipeline's end, after the read. */
    s->next->stored_before = s->stored_position;
    s->prefetching = true;
    return 0;
}

/* Receives the prefetched batch, if one was sent, and the result of the position stored with it.
 * Returns 0, or -1 with err. */
static int collect_prefetch(relay_state *s, char *err, size_t errlen)
{
    if (!s->prefetching)
        return 0;
    s->prefetching = false;
    if (s->storing > 0) {
        int statements = s->storing;
        s->storing = 0;
        if (relay_checkpoint_receive(s->conn, s->config->name, statements, err, errlen) != 0 ||
            relay_source_receive_fetch(s->conn, s->next, err, errlen) != 0 ||
            relay_db_pipeline_end(s->conn, err, errlen) != 0)
            return -1;
        s->stored_position = s->storing_position;
    } else if (relay_source_receive_fetch(s->conn, s->next, err, errlen) != 0) {
        return -1;
    }
    relay_note_read(s, s->next);
    s->next_ready = true;
    return 0;
}

/*
 * Hands the events to the sink until they are acknowledged. A failing sink is retried with
 * backoff; the events stay in hand, so the position cannot move past them. The caller made them
 * durable first (relay_make_durable), before anything else was sent on the connection.
 */
static step deliver(relay_state *s, const relay_batch *b)
{
    const relay_sink_batch batch = {.events = b->events, .count = b->count};
    int timeout_ms = (int)s->config->sink_flush_timeout_ms;
    for (int attempt = 1;; attempt++) {
        char err[1024] = "";
        /* After a failure the relay may have waited long: if its session ended meanwhile, a
         * standby may hold the lock and have delivered these events already, and more after
         * them. Nothing goes to the sink without the lock. */
        if (attempt > 1 && relay_checkpoint_confirm_lock(s->conn, err, sizeof err) != 0)
            return relay_database_failed(s, err);
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
         * than keep its statement (and snapshot) open meanwhile, and store what was acknowledged,
         * so that `status` tells where the relay stands. */
        if (collect_prefetch(s, err, sizeof err) != 0 ||
            relay_store_position(s, err, sizeof err) != 0)
            return relay_database_failed(s, err);
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
        if (relay_pause(s, relay_backoff_next(&s->backoff), false))
            return STEP_STOP;
    }
}

/*
 * The sink refused events for good and the policy is to stop: keep what was acknowledged before
 * the first of them (so that a restart after the operator's fix repeats nothing), and stop.
 */
static step stop_at_rejection(relay_state *s, bool late)
{
    const relay_sink_rejection *r = s->sink.rejections;
    size_t n = s->sink.n_rejections;
    int64_t first = r[0].event_id;
    for (size_t i = 1; i < n; i++)
        first = r[i].event_id < first ? r[i].event_id : first;

    if (!late && first - 1 > s->position) {
        char err[1024];
        relay_gaps_trim(&s->gaps, first - 1);
        relay_checkpoint_update u = {.position = first - 1,
                                     .gaps = s->gaps.dirty ? &s->gaps : NULL};
        if (relay_checkpoint_commit(s->conn, s->config->name, &u, err, sizeof err) == 0)
            s->position = s->stored_position = first - 1;
        else
            relay_warn(s->log, "%s", err);
    }
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

/* The last event the sink acknowledged in id order, for the history check at reconnect. */
static void remember_last(relay_state *s, const relay_batch *b, bool late)
{
    if (late || b->count == 0)
        return;
    const relay_sink_event *e = &b->events[b->count - 1];
    s->history.last_id = e->id;
    snprintf(s->history.last_created_at, sizeof s->history.last_created_at, "%s",
             e->created_at ? e->created_at : "");
}

/*
 * The sink acknowledged b: moves the position to new_position together with what goes with it,
 * in one transaction: the refused events (as dead letters), the watched gaps when they changed,
 * and the count of late events.
 */
static step commit(relay_state *s, const relay_batch *b, int64_t new_position, bool late)
{
    const relay_sink *sink = &s->sink;
    if (sink->n_rejections > 0 && s->config->sink_on_reject == RELAY_ON_REJECT_STOP)
        return stop_at_rejection(s, late);

    /* More is waiting (a full batch), and nothing but the position and the gaps change: they
     * are stored with the next fetch, in one round trip. */
    if (!late && sink->n_rejections == 0 && b->count == (size_t)s->config->batch_size) {
        s->position = new_position;
        s->position_unstored = true;
        remember_last(s, b, late);
        s->delivered += b->count;
        relay_report_status(s);
        return STEP_OK;
    }

    relay_checkpoint_update u = {.position = new_position};
    if (sink->n_rejections > 0) {
        u.dead_letters = sink->rejections;
        u.n_dead_letters = sink->n_rejections;
    }
    if (s->gaps.dirty)
        u.gaps = &s->gaps;
    if (late)
        u.late_events = (int64_t)b->count;

    char err[1024];
    if (relay_checkpoint_commit(s->conn, s->config->name, &u, err, sizeof err) != 0)
        return relay_database_failed(s, err);
    s->position = s->stored_position = new_position;
    s->position_unstored = false;
    remember_last(s, b, late);
    s->delivered += b->count;
    for (size_t i = 0; i < u.n_dead_letters; i++)
        relay_warn(s->log,
                   "event %" PRId64 " refused by the sink for good: %s; recorded in "
                   "relay_dead_letters",
                   u.dead_letters[i].event_id, u.dead_letters[i].reason);
    relay_sink_forget_rejections(&s->sink);
    relay_report_status(s);
    return STEP_OK;
}

/*
 * How often the watch reads the gaps. At most half the margin: a row the application writes
 * after a late one committed (the next event of the same aggregate) is created after that commit,
 * so it leaves the margin at least a margin later; a watch read within that time finds the late
 * row first, and per-key order holds across a late delivery.
 */
static int64_t watch_interval(const relay_state *s)
{
    int64_t half_margin = relay_source_margin_ms(s->config) / 2;
    return half_margin < s->config->poll_interval_ms ? half_margin : s->config->poll_interval_ms;
}

/* The minimum age of a gap before it may be proven dead. */
static int64_t gap_min_age(const relay_state *s)
{
    return s->config->gap_floor_ms;
}

/*
 * Delivers rows that appeared in watched gaps (their transactions committed after the position
 * passed them) and forgets the gaps proven dead. The writers are looked at before the rows are
 * read: a writer gone at that look has left the snapshot horizon before it let go of its lock, so
 * the read that follows sees its row if it committed one.
 */
static step watch_gaps(relay_state *s)
{
    char err[1024];
    relay_batch *late = s->next; /* free at the start of a turn */
    if (relay_lockers_observe(s->conn, &s->lockers, err, sizeof err) != 0)
        return relay_database_failed(s, err);
    relay_gap_evidence ev = relay_lockers_evidence(&s->lockers);

    /* Only the gaps that may have changed are read: new ones, and those of the rounds whose
     * writers ended. Where age alone can prove a gap dead, every gap is read. */
    int64_t from, to;
    if (!relay_lockers_take_departures(&s->lockers, &from, &to))
        from = 1, to = 0;
    bool all = gap_min_age(s) > 0 || !ev.writers_known;
    relay_batch_clear(late);
    late->stored_before = s->stored_position;
    if (relay_gaps_mark_probe(&s->gaps, from, to, all) > 0) {
        if (relay_source_fetch_gaps(s->conn, s->config, &s->source, &s->gaps, late, err,
                                    sizeof err) != 0)
            return relay_database_failed(s, err);
        relay_note_read(s, late);
    }
    s->next_gap_check = relay_now_ms() + watch_interval(s);

    if (late->count > 0) {
        step st = relay_make_durable(s, late);
        if (st == STEP_OK)
            st = deliver(s, late);
        if (st != STEP_OK) {
            relay_batch_clear(late);
            return st;
        }
        for (size_t i = 0; i < late->count; i++) {
            const relay_sink_event *e = &late->events[i];
            const relay_gap *gap = relay_gaps_find(&s->gaps, e->id);
            relay_warn(s->log,
                       "event %" PRId64 " delivered late: it committed %.1f s after the relay "
                       "passed its id",
                       e->id, gap ? (double)(ev.now_ms - gap->first_seen_ms) / 1000.0 : 0.0);
            /* Out of memory leaves the id watched: a duplicate later, never a loss. */
            relay_gaps_fill(&s->gaps, e->id);
        }
    }

    /* Only a complete read proves absence: past a full batch, more rows may sit in gaps, and
     * they go out before anything newer. */
    if (late->fetched == (size_t)s->config->batch_size) {
        s->next_gap_check = 0;
    } else {
        int64_t forgotten =
            relay_gaps_forget_dead(&s->gaps, &ev, gap_min_age(s), s->config->gap_max_age_ms);
        if (forgotten > 0)
            relay_info(s->log,
                       "forgot %" PRId64 " missing id%s proven dead (rolled back or never "
                       "written); %zu gaps still watched",
                       forgotten, forgotten == 1 ? "" : "s", s->gaps.count);
    }
    relay_debug(s->log, "gap watch: round %" PRId64 ", %zu gaps watched, %zu writers", ev.round,
                s->gaps.count, s->lockers.count);

    step st = STEP_OK;
    if (late->count > 0 || s->gaps.dirty)
        st = commit(s, late, s->position, true);
    relay_batch_clear(late);
    if (st == STEP_OK && s->gaps_full && s->gaps.count < (size_t)s->config->max_gaps) {
        relay_info(s->log, "the gap watch has room again; the position moves on");
        s->gaps_full = false;
    }
    return st;
}

/*
 * Margin mode: records the gaps the batch leaves, so that their rows are delivered if they
 * appear. When the watch is full, the batch is cut before the first gap that does not fit: the
 * position holds rather than pass an id nobody watches.
 */
static step cut_margin(relay_state *s, relay_batch *b)
{
    if (!s->config->gap_watch || b->count == 0)
        return STEP_OK;
    size_t max_gaps = (size_t)s->config->max_gaps;
    size_t room = s->gaps.count < max_gaps ? max_gaps - s->gaps.count : 0;
    size_t fit = relay_gaps_fit(s->position, b->events, b->count, room);
    if (fit < b->count) {
        if (!s->gaps_full)
            relay_error(s->log,
                        "the gap watch is full (%zu gaps, source.max_gaps): holding at position "
                        "%" PRId64 " until watched gaps fill or are proven dead",
                        s->gaps.count, s->position);
        s->gaps_full = true;
        b->count = fit;
    }
    if (relay_gaps_count_new(s->position, b->events, b->count) == 0)
        return STEP_OK;

    /* The writers that may fill them are those of the next look, which comes after this read. */
    if (relay_gaps_add_batch(&s->gaps, s->position, b->events, b->count,
                             relay_lockers_db_now_ms(&s->lockers),
                             relay_lockers_next_round(&s->lockers)) != 0) {
        relay_error(s->log, "out of memory recording %zu new gaps",
                    relay_gaps_count_new(s->position, b->events, b->count));
        s->exit_code = RELAY_EXIT_RUNTIME;
        return STEP_FATAL;
    }
    return STEP_OK;
}

/*
 * Settled mode: remembers the gaps between the rows read from index `from` on (the first just
 * after id `last`), keeping the first sight of those already known: a gap only narrows as its
 * rows commit, and the proof of its death holds for any part of it.
 *
 * Ids ascend from `last` >= 0, so `id - 1` cannot overflow where `last + 1` could (an id of
 * INT64_MAX): the loops compare with the id before, not the id after.
 */
static step remember_ahead(relay_state *s, const relay_batch *b, size_t from, size_t total,
                           int64_t last)
{
    relay_gaps ahead = {0};
    int64_t now_ms = relay_lockers_db_now_ms(&s->lockers);
    int64_t round = relay_lockers_next_round(&s->lockers);
    for (size_t i = from; i < total; i++) {
        int64_t id = b->events[i].id;
        if (id - 1 > last) {
            const relay_gap *known = relay_gaps_find(&s->ahead, last + 1);
            relay_gap gap = {last + 1, id - 1, known ? known->first_seen_ms : now_ms,
                             known ? known->round : round, false};
            if (relay_gaps_append(&ahead, gap) != 0) {
                relay_gaps_free(&ahead);
                relay_error(s->log, "out of memory remembering the gaps ahead");
                s->exit_code = RELAY_EXIT_RUNTIME;
                return STEP_FATAL;
            }
        }
        last = id;
    }
    relay_gaps_free(&s->ahead);
    s->ahead = ahead;
    return STEP_OK;
}

/*
 * Settled mode: takes the contiguous run of ids after the position, passing gaps proven dead by
 * the look at the writers `before` this batch was read (NULL when no gap was known), and holds at
 * the first gap that is not.
 */
static step cut_settled(relay_state *s, relay_batch *b, const relay_gap_evidence *before)
{
    int64_t last = s->position;
    size_t total = b->count, n = 0;
    for (; n < total; n++) {
        int64_t id = b->events[n].id;
        if (id - 1 > last) {
            const relay_gap *gap = before ? relay_gaps_find(&s->ahead, last + 1) : NULL;
            if (!gap || gap->high < id - 1 ||
                !relay_gap_is_dead(gap, before, gap_min_age(s), s->config->gap_max_age_ms))
                break;
            relay_info(s->log,
                       "ids %" PRId64 "..%" PRId64 " proven dead (rolled back or never written)",
                       last + 1, id - 1);
        }
        last = id;
    }
    b->count = n;
    return remember_ahead(s, b, n, total, last);
}

/* The gap settled mode holds at, if any: one starting just above the position. */
static const relay_gap *held_gap(const relay_state *s)
{
    return s->ahead.count > 0 && s->ahead.items[0].low - 1 == s->position ? &s->ahead.items[0]
                                                                          : NULL;
}

/* A margin-mode wait for the next row to settle is at least this long: waking for every row at
 * 2,000 events/s would read the unsettled rows again and again for one or two rows each time. */
#define RELAY_SETTLE_WAIT_MIN_MS 5

/*
 * How long to wait before reading again, after a batch that ended short of batch_size, and
 * whether a NOTIFY may end the wait early (not when the wait is for a known row to settle: a new
 * row settles later still).
 */
static int64_t idle_wait(relay_state *s, const relay_batch *b, bool *wake_on_notify)
{
    int64_t poll = s->config->poll_interval_ms;
    int64_t wait = poll;
    *wake_on_notify = true;
    const relay_gap *held = s->config->mode == RELAY_MODE_SETTLED ? held_gap(s) : NULL;
    if (held) {
        /* A NOTIFY ends the wait when the gap fills; a rolled-back one needs its writers gone
         * (and its floor age, if any): no wake-up tells, so poll. */
        int64_t floor_left =
            held->first_seen_ms + gap_min_age(s) - relay_lockers_db_now_ms(&s->lockers);
        wait = floor_left > 0 ? floor_left : poll;
    } else if (s->config->mode == RELAY_MODE_MARGIN && !s->gaps_full && b->fetched > b->count) {
        /* Cut by the margin: sleep until the first held row leaves it. */
        int64_t cut_id = relay_batch_row_id(b, b->count);
        char err[1024];
        if (relay_source_settle_in(s->conn, s->config, cut_id, &wait, err, sizeof err) != 0)
            wait = poll;
        else if (wait < RELAY_SETTLE_WAIT_MIN_MS)
            wait = RELAY_SETTLE_WAIT_MIN_MS;
        *wake_on_notify = false;
    }
    return wait < 1 ? 1 : wait > poll ? poll : wait;
}

/*
 * The id sequence went back while the relay runs (TRUNCATE ... RESTART IDENTITY, ALTER SEQUENCE
 * ... RESTART, a restore of the table): its next ids are at or below the position and would be
 * passed by for good. Read with every batch, so noticed before any of them is.
 */
static step check_sequence(relay_state *s, const relay_batch *b)
{
    if (s->source.sequence_oid == 0)
        return STEP_OK;
    int64_t last = b->sequence_called ? b->sequence_value : 0;
    if (last >= s->position)
        return STEP_OK;
    relay_error(s->log,
                "the id sequence of %s went back: its last id is %" PRId64
                " (%s), below the position %" PRId64 " of '%s'. New events would reuse ids the "
                "relay passed and be skipped for good. Check where the events stand, then run "
                "`outbox-relay reset -c %.200s --to ID` (or --latest)",
                s->source.quoted_table, last,
                b->sequence_called ? "restarted or set back" : "restarted, none handed out since",
                s->position, s->config->name, s->config->path);
    s->exit_code = RELAY_EXIT_CHECKPOINT;
    return STEP_FATAL;
}

step relay_turn(relay_state *s)
{
    char err[1024];
    bool settled = s->config->mode == RELAY_MODE_SETTLED;

    if (s->gaps.count > 0 && (s->woken || relay_now_ms() >= s->next_gap_check)) {
        step st = watch_gaps(s);
        if (st != STEP_OK || s->next_gap_check == 0)
            return st;
    }
    s->woken = false;

    /* Settled mode: the writers are looked at before the rows are read, so that a gap whose
     * writers are gone at that look cannot hide a row this read misses. A prefetched batch was
     * read before it: read again. */
    relay_gap_evidence before;
    bool have_before = false;
    if (settled && s->ahead.count > 0) {
        if (relay_lockers_observe(s->conn, &s->lockers, err, sizeof err) != 0)
            return relay_database_failed(s, err);
        before = relay_lockers_evidence(&s->lockers);
        have_before = true;
        s->current_ready = false;
    }

    if (!s->current_ready) {
        s->current->stored_before = s->stored_position;
        if (relay_source_fetch(s->conn, s->config, &s->source, s->position, s->current, err,
                               sizeof err) != 0)
            return relay_database_failed(s, err);
        relay_note_read(s, s->current);
    }
    s->current_ready = true;
    relay_batch *b = s->current;
    step st = check_sequence(s, b);
    if (st != STEP_OK)
        return st;

    st = settled ? cut_settled(s, b, have_before ? &before : NULL) : cut_margin(s, b);
    if (st != STEP_OK)
        return st;

    size_t count = b->count;
    bool wake_on_notify = true;
    if (count == 0) {
        if (relay_store_position(s, err, sizeof err) != 0)
            return relay_database_failed(s, err);
        int64_t wait = idle_wait(s, b, &wake_on_notify);
        s->current_ready = false;
        relay_batch_clear(b);
        return relay_pause(s, wait, wake_on_notify) ? STEP_STOP : STEP_OK;
    }
    int64_t last = b->events[count - 1].id;

    /* Nothing reaches the sink before the commits it came from are durable. */
    if ((st = relay_make_durable(s, b)) != STEP_OK)
        return st;

    /* A full batch means more is probably waiting: the database reads it while the sink works.
     * Reading past an unacknowledged batch is safe; only committing past one is not. */
    if (count == (size_t)s->config->batch_size && send_prefetch(s, last, err, sizeof err) != 0)
        return relay_database_failed(s, err);

    if ((st = deliver(s, b)) != STEP_OK)
        return st;
    if (collect_prefetch(s, err, sizeof err) != 0)
        return relay_database_failed(s, err);
    if ((st = commit(s, b, last, false)) != STEP_OK)
        return st;
    relay_debug(s->log, "delivered %zu events, position %" PRId64, count, last);

    int64_t wait = count < (size_t)s->config->batch_size ? idle_wait(s, b, &wake_on_notify) : 0;
    relay_batch *done = s->current;
    s->current = s->next;
    s->next = done;
    relay_batch_clear(s->next);
    s->current_ready = s->next_ready;
    s->next_ready = false;

    /* A short batch means the backlog is drained (or the rest must wait): wait for more instead
     * of spinning on the database. */
    if (wait > 0)
        return relay_pause(s, wait, wake_on_notify) ? STEP_STOP : STEP_OK;
    return STEP_OK;
}
