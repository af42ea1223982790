/*
 * The gap watch: ids missing below the position.
 *
 * A bigserial id is taken when a transaction inserts, but the row becomes visible when it commits.
 * An id missing from a batch is either still in flight (it will appear, maybe after the position
 * passed it) or rolled back (it never will). The watch remembers such ids as ranges, so that a row
 * that appears late is still delivered, and forgets a range only when it is proven dead: it is
 * older than a minimum age and every transaction that was running when it was first seen has
 * ended (the database's snapshot xmin has passed the xmax recorded then). Without snapshots, a
 * maximum age stands in for the proof.
 */
#ifndef RELAY_GAPS_H
#define RELAY_GAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <outbox_relay/sink.h>

typedef struct relay_gap {
    int64_t low, high;     /* missing ids, inclusive */
    int64_t first_seen_ms; /* database clock */
    int64_t snapshot_xmax; /* pg_snapshot_xmax once seen; -1 when the database has no snapshots */
} relay_gap;

typedef struct relay_gaps {
    relay_gap *items; /* ascending, disjoint */
    size_t count;
    size_t cap;
    bool dirty; /* changed since last stored */
} relay_gaps;

void relay_gaps_free(relay_gaps *g);

/* How many gaps the events (ascending ids, all above position) leave after position. */
size_t relay_gaps_count_new(int64_t position, const relay_sink_event *events, size_t count);

/* How many of the events can be taken while leaving at most room new gaps: the batch is cut just
 * before the first event whose gap would not fit. */
size_t relay_gaps_fit(int64_t position, const relay_sink_event *events, size_t count, size_t room);

/* Records the gaps that the events leave after position. Returns 0, or -1 out of memory (then
 * nothing was recorded). */
int relay_gaps_add_batch(relay_gaps *g, int64_t position, const relay_sink_event *events,
                         size_t count, int64_t first_seen_ms, int64_t snapshot_xmax);

/* Appends one gap above all others (when loading). Returns 0, or -1 out of memory. */
int relay_gaps_append(relay_gaps *g, relay_gap gap);

/* A late row arrived: removes its id, splitting the range around it. Returns 0, or -1 out of
 * memory (then the id stays watched: a duplicate later, never a loss). */
int relay_gaps_fill(relay_gaps *g, int64_t id);

/* Whether a gap is proven dead, given the database's now and snapshot xmin (-1: no snapshots). */
bool relay_gap_is_dead(const relay_gap *gap, int64_t now_ms, int64_t xmin, int64_t min_age_ms,
                       int64_t max_age_ms);

/* Forgets every dead gap; returns how many ids they held. */
int64_t relay_gaps_forget_dead(relay_gaps *g, int64_t now_ms, int64_t xmin, int64_t min_age_ms,
                               int64_t max_age_ms);

/* The gap holding id, or NULL. */
const relay_gap *relay_gaps_find(const relay_gaps *g, int64_t id);

/* Drops every id above max_id (the position fell short of the batch they came from). */
void relay_gaps_trim(relay_gaps *g, int64_t max_id);

/* A field of every gap, for SQL array parameters. */
typedef enum relay_gap_field {
    RELAY_GAP_LOW,
    RELAY_GAP_HIGH,
    RELAY_GAP_FIRST_SEEN,
    RELAY_GAP_SNAPSHOT_XMAX, /* NULL where the gap has none */
} relay_gap_field;

/* The field of every gap as a PostgreSQL array literal, "{1,7}" ("{}" when there are none).
 * Returns it (the caller frees it), or NULL out of memory. */
char *relay_gaps_array(const relay_gaps *g, relay_gap_field field);

/* The number of ids watched. */
int64_t relay_gaps_ids(const relay_gaps *g);

#endif
