/*
 * One turn of the relay. The pipeline's stage says where the turn picks up: a hand that waits to
 * be durable or that the sink failed on goes on from there; otherwise the turn watches the gaps
 * when that is due, reads the next batch (or takes the prefetched one), cuts it, and starts a new
 * hand. Whatever needs a pause goes back to the loop as an outcome.
 */
#include "relay_turn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "clock.h"
#include "db.h"
#include "exit_codes.h"
#include "lockers.h"
#include "relay_durable.h"
#include "relay_observe.h"

static relay_outcome busy(void)
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

/* The update that stores the acknowledged position, with the gaps when they changed. */
static relay_checkpoint_update position_update(relay_pipeline *p)
{
    return (relay_checkpoint_update){
        .epoch = p->epoch, .position = p->position, .gaps = p->gaps.dirty ? &p->gaps : NULL};
}

int relay_turn_store_position(relay_pipeline *p, char *err, size_t errlen)
{
    if (!relay_pipeline_position_unstored(p))
        return 0;
    relay_checkpoint_update u = position_update(p);
    if (relay_checkpoint_commit(p->conn, p->config->name, &u, err, errlen) != 0)
        return -1;
    p->stored_position = p->position;
    return 0;
}

/*
 * A row whose created_at lies ahead of the database's clock holds margin mode until that time
 * comes, and every event after it: `infinity`, or a timestamp without time zone written from
 * another zone. Nothing is wrong with the relay and `status` shows no lag, so it says so, once
 * for each such row.
 */
static void warn_if_held_by_future(relay_pipeline *p, const relay_batch *b)
{
    if (!b->held || b->held_created_at <= b->db_now || b->held_id == p->future_warned)
        return;
    p->future_warned = b->held_id;
    char ahead[64];
    if (b->held_created_at == INT64_MAX)
        snprintf(ahead, sizeof ahead, "infinity");
    else
        snprintf(ahead, sizeof ahead, "%.3f s in the future",
                 (double)(b->held_created_at - b->db_now) / 1e6);
    relay_warn(p->log,
               "event %" PRId64 " holds the relay at position %" PRId64 ": its %s is %s on the "
               "database's clock (a timestamp without time zone from another zone?); nothing "
               "after it is delivered until then",
               b->held_id, p->position, p->config->columns.created_at, ahead);
}

/* Sends the read of the rows after `after` into b, with the position ahead of it when that is
 * unstored: the server goes from one to the other without waiting for the relay, and a position
 * costs no round trip of its own. Returns 0, or -1 with err. */
static int send_read(relay_pipeline *p, relay_batch *b, int64_t after, char *err, size_t errlen)
{
    b->limit = (size_t)p->read_limit;
    /* The read first, the store after it: the header's WAL insert position then lies below the
     * store's own WAL, so a read of rows already flushed can tell, and now() is the read's. */
    if (relay_pipeline_position_unstored(p)) {
        relay_checkpoint_update u = position_update(p);
        u.synchronous = p->sync_reads;
        if (relay_db_pipeline_begin(p->conn, err, errlen) != 0 ||
            relay_source_send_fetch(p->conn, &p->source, after, p->read_limit, err, errlen) != 0 ||
            relay_checkpoint_send(p->conn, p->config->name, &u, &p->storing, err, errlen) != 0 ||
            relay_db_pipeline_send(p->conn, err, errlen) != 0)
            return -1;
        p->storing_position = p->position;
        p->storing_synchronous = u.synchronous;
    } else if (relay_source_send_fetch(p->conn, &p->source, after, p->read_limit, err, errlen) !=
               0) {
        return -1;
    }
    /* A store sent with it commits at the pipeline's end, after the read. */
    b->stored_before = p->stored_position;
    return 0;
}

/* Receives what send_read sent: the rows into b, and the result of the position stored with
 * them. Returns 0, or -1 with err. */
static int receive_read(relay_pipeline *p, relay_batch *b, char *err, size_t errlen)
{
    bool synchronous = false;
    if (p->storing > 0) {
        if (relay_source_receive_fetch(p->conn, p->config, b, err, errlen) != 0 ||
            relay_checkpoint_receive(p->conn, p->config->name, p->storing, err, errlen) != 0 ||
            relay_db_pipeline_end(p->conn, err, errlen) != 0)
            return -1;
        p->storing = 0;
        p->stored_position = p->storing_position;
        synchronous = p->storing_synchronous;
    } else if (relay_source_receive_fetch(p->conn, p->config, b, err, errlen) != 0) {
        return -1;
    }
    /* The pipeline's end is the commit's: a synchronous one has flushed the WAL past the read. */
    b->flushed_by_commit = synchronous;
    relay_note_read(p, b);
    relay_observe_read(&p->counts, b);
    warn_if_held_by_future(p, b);
    return 0;
}

/* A read that came back with as many rows as it asked for: more are probably waiting. */
static bool read_full(const relay_batch *b)
{
    return b->count > 0 && b->count == b->limit;
}

/* Sizes the next read by this one: twice as many after a full read (catching up), else about
 * what this one brought and a little more (rows come at about the same rate). What it brought is
 * what it delivered in margin mode, where the rest must wait out the margin and would only be read
 * again; in settled mode the rows behind a held gap come too, since they go once it fills. */
static void size_next_read(relay_pipeline *p, const relay_batch *b)
{
    size_t brought = p->config->mode == RELAY_MODE_SETTLED ? b->fetched : b->count;
    size_t limit = read_full(b) ? 2 * b->limit : brought + brought / 2 + 8;
    /* No more rows of the largest size seen than source.batch_bytes holds: the read's rows are
     * all in memory at once, whatever of them the batch takes. */
    size_t fit = b->largest_row > 0 ? (size_t)p->config->batch_bytes / b->largest_row : limit;
    limit = fit < limit ? (fit > 0 ? fit : 1) : limit;
    p->read_limit = limit < (size_t)p->config->batch_size ? (int)limit : p->config->batch_size;
}

/* Sends the read of the batch after `after`, the unstored position ahead of it. */
static int send_prefetch(relay_pipeline *p, int64_t after, char *err, size_t errlen)
{
    if (send_read(p, p->next, after, err, errlen) != 0)
        return -1;
    relay_pipe_change(p, RELAY_PIPE_PREFETCHING);
    return 0;
}

/* Receives the prefetched batch, if one travels, and the result of the position stored with it.
 * Returns 0, or -1 with err. */
static int collect_prefetch(relay_pipeline *p, char *err, size_t errlen)
{
    if (p->pipe != RELAY_PIPE_PREFETCHING)
        return 0;
    if (receive_read(p, p->next, err, errlen) != 0)
        return -1;
    relay_pipe_change(p, RELAY_PIPE_PREFETCHED);
    return 0;
}

/*
 * The sink refused events for good and the policy is to stop: keep what was acknowledged before
 * the first of them (so that a restart after the operator's fix repeats nothing), and stop.
 */
static relay_outcome stop_at_rejection(relay_pipeline *p, bool late, char *err, size_t errlen)
{
    const relay_sink_rejection *r = p->sink.rejections;
    size_t n = p->sink.n_rejections;
    int64_t first = r[0].event_id;
    for (size_t i = 1; i < n; i++)
        first = r[i].event_id < first ? r[i].event_id : first;

    if (!late && first - 1 > p->position) {
        relay_gaps_trim(&p->gaps, first - 1);
        relay_checkpoint_update u = {
            .epoch = p->epoch, .position = first - 1, .gaps = p->gaps.dirty ? &p->gaps : NULL};
        if (relay_checkpoint_commit(p->conn, p->config->name, &u, err, errlen) == 0)
            p->position = p->stored_position = first - 1;
        else
            relay_warn(p->log, "%s", err);
    }
    for (size_t i = 0; i < n; i++)
        relay_error(p->log, "event %" PRId64 " refused by the sink for good: %s", r[i].event_id,
                    r[i].reason);
    snprintf(err, errlen,
             "stopping at position %" PRId64 " (sink.on_reject: stop); fix the event or set "
             "sink.on_reject: dead_letter to record such events and go on",
             p->position);
    return fatal(RELAY_EXIT_RUNTIME);
}

/* The last event the sink acknowledged in id order, for the history check at reconnect. */
static void remember_last(relay_pipeline *p, const relay_batch *b, bool late)
{
    if (late || b->count == 0)
        return;
    const relay_sink_event *e = &b->events[b->count - 1];
    p->history.last_id = e->id;
    snprintf(p->history.last_created_at, sizeof p->history.last_created_at, "%s",
             e->created_at ? e->created_at : "");
}

/* Counts b's events as delivered, those at or below a position acknowledged before (read again
 * after a reconnect) apart: `delivered` then counts events, not hand-overs. Late events fill
 * gaps below the position and are first deliveries. */
static void count_delivered(relay_pipeline *p, const relay_batch *b, bool late)
{
    size_t again = 0;
    while (!late && again < b->count && b->events[again].id <= p->acked_high)
        again++;
    p->redelivered += again;
    p->delivered += b->count - again;
    if (!late && b->count > 0 && b->events[b->count - 1].id > p->acked_high)
        p->acked_high = b->events[b->count - 1].id;
}

/*
 * The sink acknowledged b: moves the position to new_position together with what goes with it,
 * in one transaction: the refused events (as dead letters), the watched gaps when they changed,
 * and the count of late events.
 */
static relay_outcome commit(relay_pipeline *p, const relay_batch *b, int64_t new_position,
                            bool late, char *err, size_t errlen)
{
    const relay_sink *sink = &p->sink;
    if (sink->n_rejections > 0 && p->config->sink_on_reject == RELAY_ON_REJECT_STOP)
        return stop_at_rejection(p, late, err, errlen);

    /* Nothing but the position and the gaps change: they are stored with the next read, in one
     * round trip (a read that finds nothing new stores them too). A crash meanwhile repeats the
     * batch, and loses nothing. */
    if (!late && sink->n_rejections == 0) {
        p->position = new_position;
        remember_last(p, b, late);
        count_delivered(p, b, late);
        relay_observe_ack(&p->counts, b, late, 0, relay_now_ms());
        return busy();
    }

    relay_checkpoint_update u = {.epoch = p->epoch, .position = new_position};
    if (sink->n_rejections > 0) {
        u.dead_letters = sink->rejections;
        u.n_dead_letters = sink->n_rejections;
    }
    if (p->gaps.dirty)
        u.gaps = &p->gaps;
    if (late)
        u.late_events = (int64_t)b->count;

    if (relay_checkpoint_commit(p->conn, p->config->name, &u, err, errlen) != 0)
        return db_failed();
    p->position = p->stored_position = new_position;
    remember_last(p, b, late);
    count_delivered(p, b, late);
    relay_observe_ack(&p->counts, b, late, u.n_dead_letters, relay_now_ms());
    for (size_t i = 0; i < u.n_dead_letters; i++)
        relay_warn(p->log,
                   "event %" PRId64 " refused by the sink for good: %s; recorded in "
                   "relay_dead_letters",
                   u.dead_letters[i].event_id, u.dead_letters[i].reason);
    relay_sink_forget_rejections(&p->sink);
    return busy();
}

/*
 * How often the watch reads the gaps. At most half the margin: a row the application writes
 * after a late one committed (the next event of the same aggregate) is created after that commit,
 * so it leaves the margin at least a margin later; a watch read within that time finds the late
 * row first, and per-key order holds across a late delivery.
 */
static int64_t watch_interval(const relay_pipeline *p)
{
    int64_t half_margin = relay_source_margin_ms(p->config) / 2;
    return half_margin < p->config->poll_interval_ms ? half_margin : p->config->poll_interval_ms;
}

/* The minimum age of a gap before it may be proven dead. */
static int64_t gap_min_age(const relay_pipeline *p)
{
    return p->config->gap_floor_ms;
}

/*
 * Margin mode: records the gaps the batch leaves, so that their rows are delivered if they
 * appear. When the watch is full, the batch is cut before the first gap that does not fit: the
 * position holds rather than pass an id nobody watches.
 */
static int cut_margin(relay_pipeline *p, relay_batch *b, char *err, size_t errlen)
{
    if (!p->config->gap_watch || b->count == 0)
        return 0;
    size_t max_gaps = (size_t)p->config->max_gaps;
    size_t room = p->gaps.count < max_gaps ? max_gaps - p->gaps.count : 0;
    size_t fit = relay_gaps_fit(p->position, b->events, b->count, room);
    if (fit < b->count) {
        if (!p->gaps_full)
            relay_error(p->log,
                        "the gap watch is full (%zu gaps, source.max_gaps): holding at position "
                        "%" PRId64 " until watched gaps fill or are proven dead",
                        p->gaps.count, p->position);
        p->gaps_full = true;
        b->count = fit;
    }
    if (relay_gaps_count_new(p->position, b->events, b->count) == 0)
        return 0;

    /* The writers that may fill them are those of the next look, which comes after this read. */
    if (relay_gaps_add_batch(&p->gaps, p->position, b->events, b->count,
                             relay_lockers_db_now_ms(&p->lockers),
                             relay_lockers_next_round(&p->lockers)) != 0) {
        snprintf(err, errlen, "out of memory recording %zu new gaps",
                 relay_gaps_count_new(p->position, b->events, b->count));
        return -1;
    }
    return 0;
}

/*
 * Settled mode: remembers the gaps between the rows read from index `from` on (the first just
 * after id `last`), keeping the first sight of those already known: a gap only narrows as its
 * rows commit, and the proof of its death holds for any part of it.
 *
 * Ids ascend from `last` >= 0, so `id - 1` cannot overflow where `last + 1` could (an id of
 * INT64_MAX): the loops compare with the id before, not the id after.
 */
static int remember_ahead(relay_pipeline *p, const relay_batch *b, size_t from, size_t total,
                          int64_t last, char *err, size_t errlen)
{
    relay_gaps ahead = {0};
    int64_t now_ms = relay_lockers_db_now_ms(&p->lockers);
    int64_t round = relay_lockers_next_round(&p->lockers);
    for (size_t i = from; i < total; i++) {
        int64_t id = b->events[i].id;
        if (id - 1 > last) {
            const relay_gap *known = relay_gaps_find(&p->ahead, last + 1);
            relay_gap gap = {last + 1, id - 1, known ? known->first_seen_ms : now_ms,
                             known ? known->round : round, false};
            if (relay_gaps_append(&ahead, gap) != 0) {
                relay_gaps_free(&ahead);
                snprintf(err, errlen, "out of memory remembering the gaps ahead");
                return -1;
            }
        }
        last = id;
    }
    relay_gaps_free(&p->ahead);
    p->ahead = ahead;
    return 0;
}

/*
 * Settled mode: takes the contiguous run of ids after the position, passing gaps proven dead by
 * the look at the writers `before` this batch was read (NULL when no gap was known), and holds at
 * the first gap that is not.
 */
static int cut_settled(relay_pipeline *p, relay_batch *b, const relay_gap_evidence *before,
                       char *err, size_t errlen)
{
    int64_t last = p->position;
    size_t total = b->count, n = 0;
    for (; n < total; n++) {
        int64_t id = b->events[n].id;
        if (id - 1 > last) {
            const relay_gap *gap = before ? relay_gaps_find(&p->ahead, last + 1) : NULL;
            if (!gap || gap->high < id - 1 ||
                !relay_gap_is_dead(gap, before, gap_min_age(p), p->config->gap_max_age_ms))
                break;
            relay_info(p->log,
                       "ids %" PRId64 "..%" PRId64 " proven dead (rolled back or never written)",
                       last + 1, id - 1);
        }
        last = id;
    }
    b->count = n;
    return remember_ahead(p, b, n, total, last, err, errlen);
}

/*
 * How long to wait before reading again, after a read that ended short of batch_size, whether a
 * NOTIFY may end the wait early, and for how long it may not.
 *
 * Nothing wakes the relay by default (a NOTIFY trigger serializes the writers' commits and
 * forbids two-phase commit): it polls. While reads deliver, it lingers max_wait between them, so
 * that batches under load are not one event long; each read in a row that delivers nothing
 * doubles the wait, up to poll_interval. A missed row therefore waits at most poll_interval,
 * never longer. With a NOTIFY trigger the idle wait is poll_interval and a NOTIFY ends it, but
 * never before max_wait after the last read: a flood of NOTIFYs costs a read per max_wait.
 */
static relay_outcome idle_wait(relay_pipeline *p, const relay_batch *b)
{
    int64_t poll = p->config->poll_interval_ms;
    int64_t linger = p->config->max_wait_ms > 0 ? p->config->max_wait_ms : 1;
    if (linger > poll)
        linger = poll;
    p->quiet_reads = b->count > 0 ? 0 : p->quiet_reads + 1;

    int64_t wait = linger;
    for (int i = 0; i < p->quiet_reads && wait < poll; i++)
        wait *= 2;
    bool wake_on_notify = false;
    if (p->listening && p->quiet_reads > 0) {
        wait = poll;
        wake_on_notify = true;
    }
    if (p->config->mode == RELAY_MODE_MARGIN && !p->gaps_full && b->fetched > b->count) {
        /* Cut by the margin: sleep until the first held row leaves it, not sooner than the
         * linger (reading for every row at 2,000 events/s would read the unsettled rows again
         * and again for one or two rows each time), and a NOTIFY cannot help: a new row settles
         * later still. */
        int64_t settle = relay_batch_held_settles_in(b, relay_source_margin_ms(p->config));
        wait = settle > linger ? settle : linger;
        wake_on_notify = false;
    }
    wait = wait < 1 ? 1 : wait > poll ? poll : wait;
    return (relay_outcome){.kind = RELAY_OUTCOME_WAIT,
                           .wait_ms = wait,
                           .wake_on_notify = wake_on_notify,
                           .linger_ms = wake_on_notify ? linger : wait};
}

/*
 * The id sequence went back while the relay runs (TRUNCATE ... RESTART IDENTITY, ALTER SEQUENCE
 * ... RESTART, a restore of the table): its next ids are at or below the position and would be
 * passed by for good. Read with every batch, so noticed before any of them is.
 */
static int check_sequence(relay_pipeline *p, const relay_batch *b, char *err, size_t errlen)
{
    if (p->source.sequence_oid == 0)
        return 0;
    int64_t last = b->sequence_called ? b->sequence_value : 0;
    if (last >= p->position)
        return 0;
    snprintf(err, errlen,
             "the id sequence of %s went back: its last id is %" PRId64
             " (%s), below the position %" PRId64 " of '%s'. New events would reuse ids the "
             "relay passed and be skipped for good. Check where the events stand, then run "
             "`outbox-relay reset -c %.200s --to ID` (or --latest)",
             p->source.quoted_table, last,
             b->sequence_called ? "restarted or set back" : "restarted, none handed out since",
             p->position, p->config->name, p->config->path);
    return -1;
}

/*
 * After a read of the gaps: forgets those proven dead (only a complete read proves absence: past
 * a full batch, more rows may sit in gaps, and they go out before anything newer), and stores
 * what changed with the late rows delivered, if any.
 */
static relay_outcome finish_watch(relay_pipeline *p, relay_batch *late,
                                  const relay_gap_evidence *ev, char *err, size_t errlen)
{
    if (late->fetched == (size_t)p->config->batch_size) {
        p->next_gap_check = 0;
    } else {
        int64_t forgotten =
            relay_gaps_forget_dead(&p->gaps, ev, gap_min_age(p), p->config->gap_max_age_ms);
        if (forgotten > 0)
            relay_info(p->log,
                       "forgot %" PRId64 " missing id%s proven dead (rolled back or never "
                       "written); %zu gaps still watched",
                       forgotten, forgotten == 1 ? "" : "s", p->gaps.count);
    }
    relay_debug(p->log, "gap watch: round %" PRId64 ", %zu gaps watched, %zu writers", ev->round,
                p->gaps.count, p->lockers.count);

    relay_outcome o = busy();
    if (late->count > 0 || p->gaps.dirty)
        o = commit(p, late, p->position, true, err, errlen);
    relay_batch_clear(late);
    if (o.kind == RELAY_OUTCOME_BUSY && p->gaps_full &&
        p->gaps.count < (size_t)p->config->max_gaps) {
        relay_info(p->log, "the gap watch has room again; the position moves on");
        p->gaps_full = false;
    }
    return o;
}

/* The sink acknowledged late rows: their gaps are filled, and the pipeline goes back to the
 * stage the watch interrupted. */
static relay_outcome finish_late(relay_pipeline *p, char *err, size_t errlen)
{
    relay_batch *late = p->hand.batch;
    relay_gap_evidence ev = p->hand.evidence;
    relay_pipe back = p->hand.after;
    /* Refused late rows stop the relay before their gaps are filled: filled and stored, the ids
     * would be neither watched nor ahead of the position, and never delivered after the fix. */
    if (p->sink.n_rejections > 0 && p->config->sink_on_reject == RELAY_ON_REJECT_STOP)
        return stop_at_rejection(p, true, err, errlen);
    for (size_t i = 0; i < late->count; i++) {
        const relay_sink_event *e = &late->events[i];
        const relay_gap *gap = relay_gaps_find(&p->gaps, e->id);
        relay_warn(p->log,
                   "event %" PRId64 " delivered late: it committed %.1f s after the relay "
                   "passed its id",
                   e->id, gap ? (double)(ev.now_ms - gap->first_seen_ms) / 1000.0 : 0.0);
        /* Out of memory leaves the id watched: a duplicate later, never a loss. */
        relay_gaps_fill(&p->gaps, e->id);
    }
    relay_outcome o = finish_watch(p, late, &ev, err, errlen);
    if (o.kind == RELAY_OUTCOME_BUSY)
        relay_pipe_change(p, back);
    return o;
}

/* The sink acknowledged the current batch: collects the prefetch, commits, and makes the next
 * batch current. A short batch means the backlog is drained (or the rest must wait): the loop
 * waits for more rather than spin on the database. */
static relay_outcome finish_current(relay_pipeline *p, char *err, size_t errlen)
{
    relay_batch *b = p->hand.batch;
    int64_t last = p->hand.last_id;
    if (collect_prefetch(p, err, errlen) != 0)
        return db_failed();
    relay_outcome o = commit(p, b, last, false, err, errlen);
    if (o.kind != RELAY_OUTCOME_BUSY)
        return o;
    relay_debug(p->log, "delivered %zu events, position %" PRId64, b->count, last);

    if (!read_full(b))
        o = idle_wait(p, b);
    else
        p->quiet_reads = 0;
    p->current = p->next;
    p->next = b;
    relay_batch_clear(p->next);
    relay_pipe_change(p, p->pipe == RELAY_PIPE_PREFETCHED ? RELAY_PIPE_READ : RELAY_PIPE_IDLE);
    return o;
}

/*
 * Hands the hand to the sink once: deliver, then flush. A failure that retrying may cure leaves
 * it in hand, so the position cannot move past it; the loop backs off and the next turn hands it
 * over again.
 */
static relay_outcome hand_over(relay_pipeline *p, char *err, size_t errlen)
{
    relay_hand *h = &p->hand;
    relay_batch *b = h->batch;
    /* Here, not at the read: the next read is on its way to the server meanwhile. */
    relay_batch_render(b);
    const relay_sink_batch batch = {
        .events = b->events, .count = b->count, .event_size = sizeof(relay_sink_event)};
    /* After a failure the relay may have waited long: if its session ended meanwhile, a standby
     * may hold the lock and have delivered these events already, and more after them. Nothing
     * goes to the sink without the lock. */
    if (h->attempts++ > 0 && relay_checkpoint_confirm_lock(p->conn, err, errlen) != 0)
        return db_failed();

    char why[1024] = "";
    int timeout_ms = (int)p->config->sink_flush_timeout_ms;
    relay_sink_status st = relay_sink_deliver(&p->sink, &batch, why, sizeof why);
    if (st == RELAY_SINK_OK)
        st = relay_sink_flush(&p->sink, timeout_ms, why, sizeof why);
    if (st == RELAY_SINK_OK && p->sink.rejections_lost) {
        snprintf(why, sizeof why, "out of memory recording an event the sink refused");
        st = RELAY_SINK_RETRY;
    }
    if (st == RELAY_SINK_OK) {
        p->sink_acks++;
        p->sink_ack_attempts = h->attempts;
        return h->late ? finish_late(p, err, errlen) : finish_current(p, err, errlen);
    }

    int64_t first = b->events[0].id, last = b->events[b->count - 1].id;
    if (st == RELAY_SINK_FATAL) {
        snprintf(err, errlen,
                 "sink failed for good on events %" PRId64 "..%" PRId64
                 ": %s; position stays at %" PRId64,
                 first, last, why, p->position);
        return fatal(RELAY_EXIT_RUNTIME);
    }
    /* The sink may stay down for long: take the prefetched rows off the server now rather than
     * keep its statement (and snapshot) open meanwhile, and store what was acknowledged, so that
     * `status` tells where the relay stands. */
    if (collect_prefetch(p, err, errlen) != 0 || relay_turn_store_position(p, err, errlen) != 0)
        return db_failed();
    snprintf(err, errlen, "events %" PRId64 "..%" PRId64 ": %s", first, last, why);
    return (relay_outcome){.kind = RELAY_OUTCOME_SINK_RETRY};
}

/* Moves the hand on from its stage: durable first (nothing reaches the sink before the commits
 * it came from are), then to the sink. */
static relay_outcome advance_hand(relay_pipeline *p, char *err, size_t errlen)
{
    relay_hand *h = &p->hand;
    if (p->pipe == RELAY_PIPE_DURABLE) {
        relay_outcome o = relay_durable_progress(p, h, err, errlen);
        if (o.kind != RELAY_OUTCOME_BUSY)
            return o;
        relay_pipe_change(p, RELAY_PIPE_SINK);
        /* A full batch means more is probably waiting: the database reads it while the sink
         * works. Reading past an unacknowledged batch is safe; only committing past one is not. */
        if (!h->late && read_full(h->batch) && send_prefetch(p, h->last_id, err, errlen) != 0)
            return db_failed();
    }
    return hand_over(p, err, errlen);
}

/* Starts a hand with a cut batch. */
static relay_outcome start_hand(relay_pipeline *p, relay_hand hand, char *err, size_t errlen)
{
    relay_pipe_change(p, RELAY_PIPE_DURABLE);
    p->hand = hand;
    relay_observe_hand(&p->counts, hand.batch);
    return advance_hand(p, err, errlen);
}

/*
 * Delivers rows that appeared in watched gaps (their transactions committed after the position
 * passed them) and forgets the gaps proven dead. The writers are looked at before the rows are
 * read: a writer gone at that look has left the snapshot horizon before it let go of its lock, so
 * the read that follows sees its row if it committed one.
 */
static relay_outcome watch_gaps(relay_pipeline *p, char *err, size_t errlen)
{
    relay_batch *late = p->next; /* free while nothing is in hand */
    if (relay_lockers_observe(p->conn, &p->lockers, err, errlen) != 0)
        return db_failed();
    relay_gap_evidence ev = relay_lockers_evidence(&p->lockers);

    /* Only the gaps that may have changed are read: new ones, and those of the rounds whose
     * writers ended. Where age alone can prove a gap dead, every gap is read. */
    int64_t from, to;
    if (!relay_lockers_take_departures(&p->lockers, &from, &to))
        from = 1, to = 0;
    bool all = gap_min_age(p) > 0 || !ev.writers_known;
    relay_batch_clear(late);
    late->stored_before = p->stored_position;
    if (relay_gaps_mark_probe(&p->gaps, from, to, all) > 0) {
        if (relay_source_fetch_gaps(p->conn, p->config, &p->source, &p->gaps, late, err, errlen) !=
            0)
            return db_failed();
        relay_note_read(p, late);
    }
    p->next_gap_check = relay_now_ms() + watch_interval(p);
    if (late->count == 0)
        return finish_watch(p, late, &ev, err, errlen);
    return start_hand(p,
                      (relay_hand){.batch = late, .late = true, .evidence = ev, .after = p->pipe},
                      err, errlen);
}

relay_outcome relay_turn(relay_pipeline *p, char *err, size_t errlen)
{
    switch (p->pipe) {
    case RELAY_PIPE_CLOSED:
    case RELAY_PIPE_STANDBY:
        snprintf(err, errlen, "not connected as the leader");
        return db_failed();
    case RELAY_PIPE_DURABLE:
    case RELAY_PIPE_SINK:
    case RELAY_PIPE_PREFETCHING:
    case RELAY_PIPE_PREFETCHED:
        return advance_hand(p, err, errlen);
    case RELAY_PIPE_IDLE:
    case RELAY_PIPE_READ:
        break;
    }

    bool woken = p->woken;
    p->woken = false;
    if (p->gaps.count > 0 && (woken || relay_now_ms() >= p->next_gap_check)) {
        relay_outcome o = watch_gaps(p, err, errlen);
        if (o.kind != RELAY_OUTCOME_BUSY || p->next_gap_check == 0 || p->pipe >= RELAY_PIPE_DURABLE)
            return o;
    }

    /* Settled mode: the writers are looked at before the rows are read, so that a gap whose
     * writers are gone at that look cannot hide a row this read misses. A prefetched batch was
     * read before it: read again. */
    bool settled = p->config->mode == RELAY_MODE_SETTLED;
    relay_gap_evidence before;
    bool have_before = false;
    if (settled && p->ahead.count > 0) {
        if (relay_lockers_observe(p->conn, &p->lockers, err, errlen) != 0)
            return db_failed();
        before = relay_lockers_evidence(&p->lockers);
        have_before = true;
        relay_pipe_change(p, RELAY_PIPE_IDLE);
    }

    relay_batch *b = p->current;
    if (p->pipe == RELAY_PIPE_IDLE) {
        if (send_read(p, b, p->position, err, errlen) != 0 || receive_read(p, b, err, errlen) != 0)
            return db_failed();
        relay_pipe_change(p, RELAY_PIPE_READ);
    }
    if (check_sequence(p, b, err, errlen) != 0)
        return fatal(RELAY_EXIT_CHECKPOINT);
    if ((settled ? cut_settled(p, b, have_before ? &before : NULL, err, errlen)
                 : cut_margin(p, b, err, errlen)) != 0)
        return fatal(RELAY_EXIT_RUNTIME);
    size_next_read(p, b);

    if (b->count == 0) {
        if (relay_turn_store_position(p, err, errlen) != 0)
            return db_failed();
        relay_outcome o = idle_wait(p, b);
        relay_batch_clear(b);
        relay_pipe_change(p, RELAY_PIPE_IDLE);
        return o;
    }
    return start_hand(p, (relay_hand){.batch = b, .last_id = b->events[b->count - 1].id}, err,
                      errlen);
}
