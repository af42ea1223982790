/*
 * The gap watch's bookkeeping (src/gaps.c): which ids a batch leaves missing, how a late row
 * splits a range, and when a range is proven dead.
 */
#include <inttypes.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "gaps.h"

#define MAX_EVENTS 32

/* A batch with these ids; only the id matters to the gap watch. */
typedef struct id_batch {
    relay_sink_event events[MAX_EVENTS];
    size_t count;
} id_batch;

static id_batch batch_of(const int64_t *ids, size_t n)
{
    id_batch b = {.count = n};
    cr_assert_leq(n, MAX_EVENTS);
    for (size_t i = 0; i < n; i++)
        b.events[i].id = ids[i];
    return b;
}

#define BATCH(...)                                                                                 \
    batch_of((const int64_t[]){__VA_ARGS__},                                                       \
             sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

/* Asserts that the watch holds exactly these [low, high] pairs, in order. */
static void assert_ranges(const relay_gaps *g, const int64_t *bounds, size_t n_bounds)
{
    cr_assert_eq(g->count, n_bounds / 2, "%zu gaps, expected %zu", g->count, n_bounds / 2);
    for (size_t i = 0; i < g->count; i++) {
        cr_assert_eq(g->items[i].low, bounds[2 * i], "gap %zu: low %" PRId64 ", expected %" PRId64,
                     i, g->items[i].low, bounds[2 * i]);
        cr_assert_eq(g->items[i].high, bounds[2 * i + 1],
                     "gap %zu: high %" PRId64 ", expected %" PRId64, i, g->items[i].high,
                     bounds[2 * i + 1]);
    }
}

#define ASSERT_RANGES(g, ...)                                                                      \
    assert_ranges((g), (const int64_t[]){__VA_ARGS__},                                             \
                  sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

static void assert_empty(const relay_gaps *g)
{
    cr_assert_eq(g->count, 0, "%zu gaps, expected none", g->count);
}

/* ---- count_new and fit ------------------------------------------------------------------- */

Test(gaps, contiguous_batch_leaves_no_gap)
{
    id_batch b = BATCH(5, 6, 7, 8);
    cr_assert_eq(relay_gaps_count_new(4, b.events, b.count), 0);
    cr_assert_eq(relay_gaps_count_new(4, b.events, 0), 0);
}

Test(gaps, count_new_counts_each_hole_once_whatever_its_width)
{
    /* After 0: 1..2 missing, then 5..9, then 12; 3, 4 and 10, 11 are contiguous. */
    id_batch b = BATCH(3, 4, 10, 11, 13);
    cr_assert_eq(relay_gaps_count_new(0, b.events, b.count), 3);
    /* A hole right after the position counts too. */
    id_batch c = BATCH(7);
    cr_assert_eq(relay_gaps_count_new(5, c.events, c.count), 1);
}

Test(gaps, fit_takes_everything_when_there_is_room)
{
    id_batch b = BATCH(2, 4, 6);
    cr_assert_eq(relay_gaps_fit(0, b.events, b.count, 3), 3);
    cr_assert_eq(relay_gaps_fit(0, b.events, b.count, 100), 3);
}

Test(gaps, fit_cuts_before_the_first_gap_that_does_not_fit)
{
    id_batch b = BATCH(1, 2, 4, 5, 7, 8, 10);
    /* Gaps before 4, 7 and 10: room for two keeps 1..8 and cuts before 10. */
    cr_assert_eq(relay_gaps_fit(0, b.events, b.count, 2), 6);
    cr_assert_eq(relay_gaps_fit(0, b.events, b.count, 1), 4);
    /* No room: only the contiguous run after the position. */
    cr_assert_eq(relay_gaps_fit(0, b.events, b.count, 0), 2);
    /* No room and a gap right after the position: nothing at all. */
    cr_assert_eq(relay_gaps_fit(2, b.events + 2, b.count - 2, 0), 0);
    cr_assert_eq(relay_gaps_fit(3, b.events + 2, b.count - 2, 0), 2);
}

/* ---- add ---------------------------------------------------------------------------------- */

Test(gaps, add_batch_records_each_hole_with_its_round)
{
    relay_gaps g = {0};
    id_batch b = BATCH(3, 4, 10, 13);
    cr_assert_eq(relay_gaps_add_batch(&g, 0, b.events, b.count, 1000, 77), 0);
    ASSERT_RANGES(&g, 1, 2, 5, 9, 11, 12);
    for (size_t i = 0; i < g.count; i++) {
        cr_assert_eq(g.items[i].first_seen_ms, 1000);
        cr_assert_eq(g.items[i].round, 77);
    }
    cr_assert(g.dirty);
    cr_assert_eq(relay_gaps_ids(&g), 2 + 5 + 2);
    relay_gaps_free(&g);
}

Test(gaps, add_batch_without_holes_leaves_the_watch_as_it_was)
{
    relay_gaps g = {0};
    id_batch b = BATCH(1, 2, 3);
    cr_assert_eq(relay_gaps_add_batch(&g, 0, b.events, b.count, 1000, 7), 0);
    assert_empty(&g);
    cr_assert_eq(relay_gaps_ids(&g), 0);
    relay_gaps_free(&g);
}

Test(gaps, later_batches_append_above_earlier_ones)
{
    relay_gaps g = {0};
    id_batch first = BATCH(2, 3);
    id_batch second = BATCH(6);
    cr_assert_eq(relay_gaps_add_batch(&g, 0, first.events, first.count, 1000, 10), 0);
    cr_assert_eq(relay_gaps_add_batch(&g, 3, second.events, second.count, 2000, 20), 0);
    ASSERT_RANGES(&g, 1, 1, 4, 5);
    cr_assert_eq(g.items[0].first_seen_ms, 1000);
    cr_assert_eq(g.items[1].first_seen_ms, 2000);
    cr_assert_eq(g.items[1].round, 20);
    relay_gaps_free(&g);
}

Test(gaps, grows_past_its_first_allocation)
{
    relay_gaps g = {0};
    /* Every other id: 500 one-id gaps, far more than the first allocation. */
    int64_t position = 0;
    for (int i = 0; i < 500; i++) {
        id_batch b = BATCH(position + 2);
        cr_assert_eq(relay_gaps_add_batch(&g, position, b.events, b.count, i, i), 0);
        position += 2;
    }
    cr_assert_eq(g.count, 500);
    cr_assert_eq(relay_gaps_ids(&g), 500);
    for (size_t i = 0; i < g.count; i++)
        cr_assert(g.items[i].low == (int64_t)(2 * i + 1) && g.items[i].high == g.items[i].low);
    relay_gaps_free(&g);
}

Test(gaps, append_keeps_loaded_gaps_as_given)
{
    relay_gaps g = {0};
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){3, 4, 100, 0, false}), 0);
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){9, 9, 200, 42, false}), 0);
    ASSERT_RANGES(&g, 3, 4, 9, 9);
    cr_assert_eq(g.items[0].round, 0);
    cr_assert_eq(g.items[1].round, 42);
    relay_gaps_free(&g);
    cr_assert_null(g.items);
    cr_assert_eq(g.count, 0);
}

/* ---- fill --------------------------------------------------------------------------------- */

/* 1..1, 3..7, 10..12 */
static void three_gaps(relay_gaps *g)
{
    *g = (relay_gaps){0};
    id_batch b = BATCH(2, 8, 9, 13);
    cr_assert_eq(relay_gaps_add_batch(g, 0, b.events, b.count, 1000, 50), 0);
    ASSERT_RANGES(g, 1, 1, 3, 7, 10, 12);
    g->dirty = false;
}

Test(gaps, fill_removes_a_single_id_gap)
{
    relay_gaps g;
    three_gaps(&g);
    cr_assert_eq(relay_gaps_fill(&g, 1), 0);
    ASSERT_RANGES(&g, 3, 7, 10, 12);
    cr_assert(g.dirty);
    relay_gaps_free(&g);
}

Test(gaps, fill_shrinks_a_range_from_either_end)
{
    relay_gaps g;
    three_gaps(&g);
    cr_assert_eq(relay_gaps_fill(&g, 3), 0);
    cr_assert_eq(relay_gaps_fill(&g, 12), 0);
    ASSERT_RANGES(&g, 1, 1, 4, 7, 10, 11);
    relay_gaps_free(&g);
}

Test(gaps, fill_in_the_middle_splits_and_keeps_the_round)
{
    relay_gaps g;
    three_gaps(&g);
    cr_assert_eq(relay_gaps_fill(&g, 5), 0);
    ASSERT_RANGES(&g, 1, 1, 3, 4, 6, 7, 10, 12);
    /* Both halves were seen at the same time, before the same look at the writers. */
    for (size_t i = 0; i < g.count; i++) {
        cr_assert_eq(g.items[i].first_seen_ms, 1000);
        cr_assert_eq(g.items[i].round, 50);
    }
    cr_assert_eq(relay_gaps_ids(&g), 1 + 2 + 2 + 3);
    relay_gaps_free(&g);
}

Test(gaps, fill_every_id_empties_the_watch)
{
    relay_gaps g;
    three_gaps(&g);
    /* In an order that splits first, then empties the pieces. */
    const int64_t order[] = {11, 5, 1, 10, 12, 3, 7, 4, 6};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        cr_assert_eq(relay_gaps_fill(&g, order[i]), 0);
        cr_assert_null(relay_gaps_find(&g, order[i]), "id %" PRId64 " still watched", order[i]);
    }
    assert_empty(&g);
    cr_assert_eq(relay_gaps_ids(&g), 0);
    relay_gaps_free(&g);
}

Test(gaps, fill_of_an_unwatched_id_changes_nothing)
{
    relay_gaps g;
    three_gaps(&g);
    cr_assert_eq(relay_gaps_fill(&g, 2), 0);
    cr_assert_eq(relay_gaps_fill(&g, 8), 0);
    cr_assert_eq(relay_gaps_fill(&g, 100), 0);
    ASSERT_RANGES(&g, 1, 1, 3, 7, 10, 12);
    cr_assert_not(g.dirty);
    relay_gaps_free(&g);
}

Test(gaps, split_when_the_array_is_full_reallocates)
{
    relay_gaps g = {0};
    /* Exactly the first allocation's worth of gaps, then a split that needs one more slot. */
    int64_t position = 0;
    while (g.count < g.cap || g.cap == 0) {
        id_batch b = BATCH(position + 4);
        cr_assert_eq(relay_gaps_add_batch(&g, position, b.events, b.count, 0, 0), 0);
        position += 4;
    }
    size_t count = g.count;
    cr_assert_eq(g.count, g.cap);
    cr_assert_eq(relay_gaps_fill(&g, 2), 0); /* splits 1..3 */
    cr_assert_eq(g.count, count + 1);
    cr_assert_eq(g.items[0].low, 1);
    cr_assert_eq(g.items[0].high, 1);
    cr_assert_eq(g.items[1].low, 3);
    cr_assert_eq(g.items[1].high, 3);
    cr_assert_eq(g.items[2].low, 5);
    cr_assert_eq(g.items[g.count - 1].high, position - 1);
    relay_gaps_free(&g);
}

/* ---- find --------------------------------------------------------------------------------- */

Test(gaps, find_names_the_gap_holding_an_id)
{
    relay_gaps g;
    three_gaps(&g);
    const relay_gap *gap = relay_gaps_find(&g, 5);
    cr_assert_not_null(gap);
    cr_assert_eq(gap->low, 3);
    cr_assert_eq(gap->high, 7);
    cr_assert_eq(relay_gaps_find(&g, 3), gap);
    cr_assert_eq(relay_gaps_find(&g, 7), gap);
    cr_assert_eq(relay_gaps_find(&g, 1)->low, 1);
    cr_assert_eq(relay_gaps_find(&g, 12)->low, 10);
    cr_assert_null(relay_gaps_find(&g, 0));
    cr_assert_null(relay_gaps_find(&g, 2));
    cr_assert_null(relay_gaps_find(&g, 8));
    cr_assert_null(relay_gaps_find(&g, 13));
    relay_gaps empty = {0};
    cr_assert_null(relay_gaps_find(&empty, 1));
    relay_gaps_free(&g);
}

/* ---- trim --------------------------------------------------------------------------------- */

Test(gaps, trim_drops_gaps_above_and_cuts_the_one_across)
{
    relay_gaps g;
    three_gaps(&g);
    relay_gaps_trim(&g, 5);
    ASSERT_RANGES(&g, 1, 1, 3, 5);
    cr_assert(g.dirty);
    relay_gaps_free(&g);
}

Test(gaps, trim_at_a_gap_boundary)
{
    relay_gaps g;
    three_gaps(&g);
    relay_gaps_trim(&g, 9); /* 10..12 lies wholly above */
    ASSERT_RANGES(&g, 1, 1, 3, 7);
    relay_gaps_trim(&g, 2); /* 3..7 too */
    ASSERT_RANGES(&g, 1, 1);
    relay_gaps_trim(&g, 0);
    assert_empty(&g);
    relay_gaps_free(&g);
}

Test(gaps, trim_above_every_gap_changes_nothing)
{
    relay_gaps g;
    three_gaps(&g);
    relay_gaps_trim(&g, 12);
    relay_gaps_trim(&g, 1000);
    ASSERT_RANGES(&g, 1, 1, 3, 7, 10, 12);
    cr_assert_not(g.dirty);
    relay_gaps_free(&g);
}

/* ---- is_dead ------------------------------------------------------------------------------ */

#define MIN_AGE 1000
#define MAX_AGE 600000
#define NO_WRITER INT64_MAX

/* The evidence of a look at the writers: round `round` at now_ms, the oldest writer present first
 * seen at round `oldest` (NO_WRITER: none; 0: a prepared transaction). */
static relay_gap_evidence look(int64_t now_ms, int64_t round, int64_t oldest)
{
    return (relay_gap_evidence){now_ms, true, round, oldest};
}

static relay_gap_evidence without_pg_locks(int64_t now_ms)
{
    return (relay_gap_evidence){now_ms, false, 0, 0};
}

Test(gaps, dead_once_every_writer_of_its_round_is_gone)
{
    relay_gap gap = {1, 1, 10000, 5, false};
    /* At its own round: dead only if nobody held the lock then. */
    relay_gap_evidence ev = look(10000, 5, NO_WRITER);
    cr_assert(relay_gap_is_dead(&gap, &ev, 0, MAX_AGE));
    ev = look(10000, 5, 5);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, 0, MAX_AGE));
    /* Later: the writers left are all younger than the gap's round. */
    ev = look(10000, 9, 6);
    cr_assert(relay_gap_is_dead(&gap, &ev, 0, MAX_AGE));
    /* A writer seen at the gap's round or before is still there. */
    ev = look(10000, 9, 5);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, 0, MAX_AGE));
    ev = look(10000, 9, 1);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, 0, MAX_AGE));
    /* Even far past the maximum age: the writers, not a timeout, decide. */
    ev = look(10000 + 10 * MAX_AGE, 9, 1);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, 0, MAX_AGE));
}

Test(gaps, never_dead_before_the_look_that_follows_its_sight)
{
    /* Seen after round 4: the look of round 4 came before the sight, so its empty list of
     * writers proves nothing about the gap. */
    relay_gap gap = {1, 1, 10000, 5, false};
    relay_gap_evidence ev = look(10000, 4, NO_WRITER);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, 0, MAX_AGE));
}

Test(gaps, a_prepared_transaction_holds_every_gap)
{
    relay_gap gap = {1, 1, 10000, 5, false};
    relay_gap_evidence ev = look(10000, 100, 0);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, 0, MAX_AGE));
}

Test(gaps, never_dead_younger_than_the_floor)
{
    /* Ids taken ahead of the insert: the floor stands in for the writers it cannot see. */
    relay_gap gap = {1, 1, 10000, 5, false};
    relay_gap_evidence ev = look(10000 + MIN_AGE - 1, 9, NO_WRITER);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, MIN_AGE, MAX_AGE));
    ev = look(10000 + MIN_AGE, 9, NO_WRITER);
    cr_assert(relay_gap_is_dead(&gap, &ev, MIN_AGE, MAX_AGE));
    /* Old enough, but a writer from then is still there. */
    ev = look(10000 + 10 * MIN_AGE, 9, 3);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, MIN_AGE, MAX_AGE));
}

Test(gaps, without_pg_locks_dead_after_the_maximum_age)
{
    relay_gap gap = {1, 1, 10000, 5, false};
    relay_gap_evidence ev = without_pg_locks(10000 + MIN_AGE);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, MIN_AGE, MAX_AGE));
    ev = without_pg_locks(10000 + MAX_AGE - 1);
    cr_assert_not(relay_gap_is_dead(&gap, &ev, MIN_AGE, MAX_AGE));
    ev = without_pg_locks(10000 + MAX_AGE);
    cr_assert(relay_gap_is_dead(&gap, &ev, MIN_AGE, MAX_AGE));
}

/* ---- forget_dead -------------------------------------------------------------------------- */

Test(gaps, forget_dead_keeps_the_living_in_order)
{
    relay_gaps g = {0};
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){1, 2, 1000, 3, false}), 0); /* dead */
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){4, 4, 1000, 6, false}),
                 0); /* its writer is left */
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){6, 9, 1000, 4, false}), 0); /* dead */
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){11, 11, 9500, 8, false}),
                 0); /* not looked at yet */
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){13, 15, 1000, 5, false}), 0); /* dead */
    g.dirty = false;

    /* Round 7: the oldest writer left was first seen at round 6. */
    relay_gap_evidence ev = look(10000, 7, 6);
    relay_gaps_mark_probe(&g, 0, -1, true);
    int64_t forgotten = relay_gaps_forget_dead(&g, &ev, 0, MAX_AGE);
    cr_assert_eq(forgotten, 2 + 4 + 3);
    ASSERT_RANGES(&g, 4, 4, 11, 11);
    cr_assert(g.dirty);

    /* Round 8: that writer ended, and nobody holds the lock. */
    g.dirty = false;
    ev = look(10500, 8, NO_WRITER);
    relay_gaps_mark_probe(&g, 0, -1, true);
    cr_assert_eq(relay_gaps_forget_dead(&g, &ev, 0, MAX_AGE), 2);
    assert_empty(&g);
    cr_assert(g.dirty);
    relay_gaps_free(&g);
}

Test(gaps, forget_dead_with_nothing_dead_leaves_the_watch_clean)
{
    relay_gaps g;
    three_gaps(&g); /* seen at 1000, round 50 */
    relay_gap_evidence ev = look(1000 + MIN_AGE, 60, 50);
    cr_assert_eq(relay_gaps_forget_dead(&g, &ev, 0, MAX_AGE), 0);
    ev = look(1000 + MIN_AGE - 1, 60, NO_WRITER);
    cr_assert_eq(relay_gaps_forget_dead(&g, &ev, MIN_AGE, MAX_AGE), 0);
    ASSERT_RANGES(&g, 1, 1, 3, 7, 10, 12);
    cr_assert_not(g.dirty, "nothing was forgotten, yet the watch would be stored again");
    relay_gaps_free(&g);
}

Test(gaps, forget_dead_without_pg_locks_goes_by_age)
{
    relay_gaps g = {0};
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){1, 1, 0, 1, false}), 0);
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){3, 5, 5000, 1, false}), 0);
    relay_gap_evidence ev = without_pg_locks(MAX_AGE);
    relay_gaps_mark_probe(&g, 0, -1, true);
    cr_assert_eq(relay_gaps_forget_dead(&g, &ev, MIN_AGE, MAX_AGE), 1);
    ASSERT_RANGES(&g, 3, 5);
    ev = without_pg_locks(MAX_AGE + 5000);
    relay_gaps_mark_probe(&g, 0, -1, true);
    cr_assert_eq(relay_gaps_forget_dead(&g, &ev, MIN_AGE, MAX_AGE), 3);
    assert_empty(&g);
    relay_gaps_free(&g);
}

Test(gaps, set_round_gives_loaded_gaps_one_round_and_a_read)
{
    relay_gaps g;
    three_gaps(&g);
    relay_gaps_set_round(&g, 77);
    for (size_t i = 0; i < g.count; i++) {
        cr_assert_eq(g.items[i].round, 77);
        cr_assert(g.items[i].probe);
    }
    relay_gaps_free(&g);
}

/* ---- which gaps are read ------------------------------------------------------------------ */

Test(gaps, new_gaps_are_read_once_then_only_when_their_writers_end)
{
    relay_gaps g = {0};
    id_batch first = BATCH(2, 4);  /* gaps 1 and 3, round 5 */
    id_batch second = BATCH(6, 8); /* gaps 5 and 7, round 9 */
    cr_assert_eq(relay_gaps_add_batch(&g, 0, first.events, first.count, 1000, 5), 0);
    cr_assert_eq(relay_gaps_add_batch(&g, 4, second.events, second.count, 2000, 9), 0);
    char *lows, *highs;
    cr_assert_eq(relay_gaps_ranges(&g, &lows, &highs), 0);
    cr_assert_str_eq(lows, "{1,3,5,7}", "new gaps are read");
    free(lows);
    free(highs);

    /* Read, and still held by their writers: nothing to read until one of them ends. */
    relay_gap_evidence ev = look(3000, 9, 1);
    cr_assert_eq(relay_gaps_forget_dead(&g, &ev, 0, MAX_AGE), 0);
    cr_assert_eq(relay_gaps_mark_probe(&g, 1, 0, false), 0);
    cr_assert_eq(relay_gaps_ranges(&g, &lows, &highs), 0);
    cr_assert_str_eq(lows, "{}");
    free(lows);
    free(highs);

    /* A writer there from round 3 to round 6 ended: the gaps of round 5 may have filled. */
    cr_assert_eq(relay_gaps_mark_probe(&g, 3, 6, false), 2);
    cr_assert_eq(relay_gaps_ranges(&g, &lows, &highs), 0);
    cr_assert_str_eq(lows, "{1,3}");
    cr_assert_str_eq(highs, "{1,3}");
    free(lows);
    free(highs);
    /* Only the gaps read can be found dead: round 9's are not, though nobody holds them now. */
    ev = look(3000, 10, NO_WRITER);
    cr_assert_eq(relay_gaps_forget_dead(&g, &ev, 0, MAX_AGE), 2);
    ASSERT_RANGES(&g, 5, 5, 7, 7);
    /* Where age decides, every gap is read. */
    cr_assert_eq(relay_gaps_mark_probe(&g, 1, 0, true), 2);
    relay_gaps_free(&g);
}

Test(gaps, free_is_safe_on_an_empty_watch_and_twice)
{
    relay_gaps g = {0};
    relay_gaps_free(&g);
    three_gaps(&g);
    relay_gaps_free(&g);
    relay_gaps_free(&g);
    cr_assert_null(g.items);
    cr_assert_eq(g.count, 0);
    cr_assert_eq(g.cap, 0);
}

Test(gaps, ranges_as_array_literals)
{
    relay_gaps g = {0};
    char *lows, *highs;
    cr_assert_eq(relay_gaps_ranges(&g, &lows, &highs), 0);
    cr_assert_str_eq(lows, "{}");
    cr_assert_str_eq(highs, "{}");
    free(lows);
    free(highs);

    cr_assert_eq(relay_gaps_append(&g, (relay_gap){3, 4, 1000, 1, true}), 0);
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){6, 6, 1000, 1, false}), 0); /* not to read */
    cr_assert_eq(relay_gaps_append(&g, (relay_gap){9, 9, 2000, 1, true}), 0);
    cr_assert_eq(relay_gaps_ranges(&g, &lows, &highs), 0);
    cr_assert_str_eq(lows, "{3,9}");
    cr_assert_str_eq(highs, "{4,9}");
    free(lows);
    free(highs);
    relay_gaps_free(&g);
}

/* ---- changes since stored ----------------------------------------------------------------- */

static void assert_changes(const relay_gaps *g, const char *deleted, const char *lows,
                           const char *highs, const char *first_seen)
{
    relay_gaps_changes c;
    cr_assert_eq(relay_gaps_changes_build(g, INT64_MAX, &c), 0);
    cr_assert_str_eq(c.deleted_lows, deleted);
    cr_assert_str_eq(c.lows, lows);
    cr_assert_str_eq(c.highs, highs);
    cr_assert_str_eq(c.first_seen, first_seen);
    relay_gaps_changes_free(&c);
}

Test(gaps, changes_of_a_new_watch_are_every_gap)
{
    relay_gaps g;
    three_gaps(&g);
    assert_changes(&g, "{}", "{1,3,10}", "{1,7,12}", "{1000,1000,1000}");
    cr_assert_eq(relay_gaps_mark_stored(&g, INT64_MAX), 0);
    cr_assert_not(g.dirty);
    assert_changes(&g, "{}", "{}", "{}", "{}");
    relay_gaps_free(&g);
}

Test(gaps, changes_write_only_what_moved)
{
    relay_gaps g;
    three_gaps(&g);
    cr_assert_eq(relay_gaps_mark_stored(&g, INT64_MAX), 0);
    /* 1 filled (gone), 3..7 split at 5 (3..4 changed, 6..7 new), 10..12 kept, 20 new. */
    cr_assert_eq(relay_gaps_fill(&g, 1), 0);
    cr_assert_eq(relay_gaps_fill(&g, 5), 0);
    id_batch b = BATCH(21);
    cr_assert_eq(relay_gaps_add_batch(&g, 19, b.events, b.count, 3000, 9), 0);
    ASSERT_RANGES(&g, 3, 4, 6, 7, 10, 12, 20, 20);
    assert_changes(&g, "{1}", "{3,6,20}", "{4,7,20}", "{1000,1000,3000}");
    cr_assert_eq(relay_gaps_mark_stored(&g, INT64_MAX), 0);
    /* Everything forgotten: every stored low goes. */
    relay_gaps_trim(&g, 0);
    assert_changes(&g, "{3,6,10,20}", "{}", "{}", "{}");
    relay_gaps_free(&g);
}

/* Gaps of a batch still at the sink lie above the position stored with the next read: they wait
 * until a position covers them, so that a restart reads that batch again instead of finding its
 * gaps passed. */
Test(gaps, gaps_above_the_stored_position_wait)
{
    relay_gaps g;
    three_gaps(&g); /* 1, 3..7, 10..12 */
    relay_gaps_changes c;
    cr_assert_eq(relay_gaps_changes_build(&g, 8, &c), 0);
    cr_assert_str_eq(c.lows, "{1,3}");
    cr_assert_str_eq(c.highs, "{1,7}");
    relay_gaps_changes_free(&c);
    cr_assert_eq(relay_gaps_mark_stored(&g, 8), 0);
    cr_assert(g.dirty, "the gap above the position was taken as stored");
    assert_changes(&g, "{}", "{10}", "{12}", "{1000}");
    cr_assert_eq(relay_gaps_mark_stored(&g, 12), 0);
    cr_assert_not(g.dirty);
    relay_gaps_free(&g);
}

Test(gaps, a_round_alone_is_not_a_change_to_store)
{
    relay_gaps g;
    three_gaps(&g);
    cr_assert_eq(relay_gaps_mark_stored(&g, INT64_MAX), 0);
    relay_gaps_set_round(&g, 99);
    assert_changes(&g, "{}", "{}", "{}", "{}");
    relay_gaps_free(&g);
}
