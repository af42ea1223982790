/*
 * The gap watch: ids missing below the position.
 *
 * A bigserial id is taken when a transaction inserts, but the row becomes visible when it commits.
 * An id missing from a batch is either still in flight (it will appear, maybe after the position
 * passed it) or rolled back (it never will). The watch remembers such ids as ranges, so that a row
 * that appears late is still delivered, and forgets a range only when it is proven dead: every
 * writer that held the outbox table's lock when the gap was first seen has ended (see lockers.h),
 * and a read after that still does not find its rows. Without pg_locks, a maximum age stands in
 * for the proof.
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
    int64_t round;         /* the first look at the writers after its sight (lockers.h) */
    /* Its rows must be read at the next watch: it is new, or a writer of its round ended. A gap
     * whose writers all still run cannot have filled since it was last read. */
    bool probe;
} relay_gap;

/* What a look at the writers tells about the gaps (lockers.h). */
typedef struct relay_gap_evidence {
    int64_t now_ms;     /* the database's clock */
    bool writers_known; /* false without pg_locks: only age can tell */
    int64_t round;      /* the look this evidence comes from */
    /* The first round that saw the oldest writer still present; INT64_MAX when there is none,
     * 0 while a prepared transaction holds the lock. */
    int64_t oldest_since;
} relay_gap_evidence;

typedef struct relay_gaps {
    relay_gap *items; /* ascending, disjoint */
    size_t count;
    size_t cap;
    bool dirty; /* changed since last stored */
    /* The gaps as stored in the database, so that only changes are written. */
    relay_gap *stored;
    size_t n_stored;
    size_t stored_cap;
} relay_gaps;

void relay_gaps_free(relay_gaps *g);

/* How many gaps the events (ascending ids, all above position) leave after position. */
size_t relay_gaps_count_new(int64_t position, const relay_sink_event *events, size_t count);

/* How many of the events can be taken while leaving at most room new gaps: the batch is cut just
 * before the first event whose gap would not fit. */
size_t relay_gaps_fit(int64_t position, const relay_sink_event *events, size_t count, size_t room);

/* Records the gaps that the events leave after position, all above the watched ones. Returns 0,
 * or -1 out of memory (then nothing was recorded). */
int relay_gaps_add_batch(relay_gaps *g, int64_t position, const relay_sink_event *events,
                         size_t count, int64_t first_seen_ms, int64_t round);

/* Appends one gap above all others (when loading). Returns 0, or -1 out of memory. */
int relay_gaps_append(relay_gaps *g, relay_gap gap);

/* A late row arrived: removes its id, splitting the range around it. Returns 0, or -1 out of
 * memory (then the id stays watched: a duplicate later, never a loss). */
int relay_gaps_fill(relay_gaps *g, int64_t id);

/* Whether a gap is proven dead by the evidence: no younger than min_age_ms, and every writer that
 * could hold one of its ids gone (without pg_locks: no younger than max_age_ms). The caller must
 * still read the gap's rows after the look the evidence comes from, and find none. */
bool relay_gap_is_dead(const relay_gap *gap, const relay_gap_evidence *ev, int64_t min_age_ms,
                       int64_t max_age_ms);

/* Marks for the next read the gaps of rounds from..to, or all of them; returns how many gaps are
 * marked. */
size_t relay_gaps_mark_probe(relay_gaps *g, int64_t from, int64_t to, bool all);

/* Forgets every dead gap among those marked for the read (the read found none of their rows);
 * returns how many ids they held. The survivors are no longer marked. */
int64_t relay_gaps_forget_dead(relay_gaps *g, const relay_gap_evidence *ev, int64_t min_age_ms,
                               int64_t max_age_ms);

/* The gap holding id, or NULL. */
const relay_gap *relay_gaps_find(const relay_gaps *g, int64_t id);

/* Drops every id above max_id (the position fell short of the batch they came from). */
void relay_gaps_trim(relay_gaps *g, int64_t max_id);

/* Sets every gap's round and marks it for the read (gaps loaded from the database: their
 * writers are looked at anew). */
void relay_gaps_set_round(relay_gaps *g, int64_t round);

/* What changed since the gaps were last stored: the low ids of stored gaps that are gone or
 * changed, and the gaps that are new or changed, each as PostgreSQL array literals ("{1,7}",
 * "{}" when empty). The caller frees every string. */
typedef struct relay_gaps_changes {
    char *deleted_lows;
    char *lows, *highs, *first_seen;
    size_t n_deleted, n_upserted;
} relay_gaps_changes;

/* Only the gaps with a low id at or below upto count: those above it belong to a batch the sink
 * has not acknowledged, whose rows a restart reads again (stored, they would be "passed" and
 * their filling rows delivered ahead of the batch's lower ids). Returns 0, or -1 out of memory
 * (then nothing is allocated). */
int relay_gaps_changes_build(const relay_gaps *g, int64_t upto, relay_gaps_changes *out);
void relay_gaps_changes_free(relay_gaps_changes *c);

/* The watched gaps with a low id at or below upto are now the stored ones; any above it stay to
 * be stored (dirty). Returns 0, or -1 out of memory (then what is stored is no longer known: the
 * caller must reload the gaps from the database). */
int relay_gaps_mark_stored(relay_gaps *g, int64_t upto);

/* The low and high ids of every gap marked for the read, as PostgreSQL array literals. Returns 0,
 * or -1 out of memory (nothing allocated). */
int relay_gaps_ranges(const relay_gaps *g, char **lows, char **highs);

/* The number of ids watched. */
int64_t relay_gaps_ids(const relay_gaps *g);

#endif
