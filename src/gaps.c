#include "gaps.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void relay_gaps_free(relay_gaps *g)
{
    free(g->items);
    free(g->stored);
    memset(g, 0, sizeof *g);
}

/* Makes room for want gaps in *items. Returns 0, or -1 out of memory (then *items is as it was). */
static int grow(relay_gap **items, size_t *cap, size_t want)
{
    if (want <= *cap)
        return 0;
    size_t new_cap = *cap ? *cap : 16;
    while (new_cap < want)
        new_cap *= 2;
    relay_gap *grown = realloc(*items, new_cap * sizeof *grown);
    if (!grown)
        return -1;
    *items = grown;
    *cap = new_cap;
    return 0;
}

static int reserve(relay_gaps *g, size_t more)
{
    return grow(&g->items, &g->cap, g->count + more);
}

size_t relay_gaps_count_new(int64_t position, const relay_sink_event *events, size_t count)
{
    size_t gaps = 0;
    for (size_t i = 0; i < count; i++) {
        gaps += events[i].id - 1 > position;
        position = events[i].id;
    }
    return gaps;
}

size_t relay_gaps_fit(int64_t position, const relay_sink_event *events, size_t count, size_t room)
{
    size_t gaps = 0;
    for (size_t i = 0; i < count; i++) {
        if (events[i].id - 1 > position && ++gaps > room)
            return i;
        position = events[i].id;
    }
    return count;
}

int relay_gaps_append(relay_gaps *g, relay_gap gap)
{
    if (reserve(g, 1) != 0)
        return -1;
    g->items[g->count++] = gap;
    g->dirty = true;
    return 0;
}

int relay_gaps_add_batch(relay_gaps *g, int64_t position, const relay_sink_event *events,
                         size_t count, int64_t first_seen_ms, int64_t round)
{
    if (reserve(g, relay_gaps_count_new(position, events, count)) != 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (events[i].id - 1 > position)
            g->items[g->count++] =
                (relay_gap){position + 1, events[i].id - 1, first_seen_ms, round, true};
        position = events[i].id;
    }
    g->dirty = true;
    return 0;
}

int relay_gaps_fill(relay_gaps *g, int64_t id)
{
    for (size_t i = 0; i < g->count; i++) {
        relay_gap *gap = &g->items[i];
        if (id < gap->low || id > gap->high)
            continue;
        if (gap->low == gap->high) {
            memmove(gap, gap + 1, (g->count - i - 1) * sizeof *gap);
            g->count--;
        } else if (id == gap->low) {
            gap->low++;
        } else if (id == gap->high) {
            gap->high--;
        } else {
            if (reserve(g, 1) != 0)
                return -1;
            gap = &g->items[i]; /* reserve may have moved it */
            memmove(gap + 2, gap + 1, (g->count - i - 1) * sizeof *gap);
            g->count++;
            gap[1] = gap[0];
            gap[0].high = id - 1;
            gap[1].low = id + 1;
        }
        g->dirty = true;
        return 0;
    }
    return 0;
}

bool relay_gap_is_dead(const relay_gap *gap, const relay_gap_evidence *ev, int64_t min_age_ms,
                       int64_t max_age_ms)
{
    int64_t age = ev->now_ms - gap->first_seen_ms;
    if (age < min_age_ms)
        return false;
    if (!ev->writers_known)
        return age >= max_age_ms;
    /* The look must come after the sight, and every writer it saw must have come after that. */
    return gap->round <= ev->round && ev->oldest_since > gap->round;
}

size_t relay_gaps_mark_probe(relay_gaps *g, int64_t from, int64_t to, bool all)
{
    size_t marked = 0;
    for (size_t i = 0; i < g->count; i++) {
        relay_gap *gap = &g->items[i];
        gap->probe = gap->probe || all || (gap->round >= from && gap->round <= to);
        marked += gap->probe;
    }
    return marked;
}

int64_t relay_gaps_forget_dead(relay_gaps *g, const relay_gap_evidence *ev, int64_t min_age_ms,
                               int64_t max_age_ms)
{
    int64_t forgotten = 0;
    size_t kept = 0;
    for (size_t i = 0; i < g->count; i++) {
        relay_gap *gap = &g->items[i];
        if (gap->probe && relay_gap_is_dead(gap, ev, min_age_ms, max_age_ms)) {
            forgotten += gap->high - gap->low + 1;
        } else {
            gap->probe = false;
            g->items[kept++] = *gap;
        }
    }
    if (kept != g->count)
        g->dirty = true;
    g->count = kept;
    return forgotten;
}

int64_t relay_gaps_ids(const relay_gaps *g)
{
    int64_t ids = 0;
    for (size_t i = 0; i < g->count; i++)
        ids += g->items[i].high - g->items[i].low + 1;
    return ids;
}

const relay_gap *relay_gaps_find(const relay_gaps *g, int64_t id)
{
    for (size_t i = 0; i < g->count; i++)
        if (id >= g->items[i].low && id <= g->items[i].high)
            return &g->items[i];
    return NULL;
}

void relay_gaps_trim(relay_gaps *g, int64_t max_id)
{
    size_t kept = 0;
    for (size_t i = 0; i < g->count; i++) {
        if (g->items[i].low > max_id) {
            g->dirty = true;
            continue;
        }
        if (g->items[i].high > max_id) {
            g->items[i].high = max_id;
            g->dirty = true;
        }
        g->items[kept++] = g->items[i];
    }
    g->count = kept;
}

void relay_gaps_set_round(relay_gaps *g, int64_t round)
{
    for (size_t i = 0; i < g->count; i++) {
        g->items[i].round = round;
        g->items[i].probe = true;
    }
}

/* An array literal of n values, value(i) each. Returns it (the caller frees it), or NULL out of
 * memory. */
typedef int64_t (*value_at)(const relay_gap *gaps, size_t i);

static char *array_literal(const relay_gap *gaps, const size_t *index, size_t n, value_at value)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fputc('{', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, i > 0 ? ",%" PRId64 : "%" PRId64, value(gaps, index ? index[i] : i));
    fputc('}', f);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(text);
        return NULL;
    }
    return text;
}

static int64_t low_of(const relay_gap *gaps, size_t i)
{
    return gaps[i].low;
}

static int64_t high_of(const relay_gap *gaps, size_t i)
{
    return gaps[i].high;
}

static int64_t first_seen_of(const relay_gap *gaps, size_t i)
{
    return gaps[i].first_seen_ms;
}

static bool same_stored(const relay_gap *a, const relay_gap *b)
{
    return a->low == b->low && a->high == b->high && a->first_seen_ms == b->first_seen_ms;
}

void relay_gaps_changes_free(relay_gaps_changes *c)
{
    free(c->deleted_lows);
    free(c->lows);
    free(c->highs);
    free(c->first_seen);
    memset(c, 0, sizeof *c);
}

/* How many of the gaps (ascending by low id) start at or below upto. */
static size_t count_upto(const relay_gaps *g, int64_t upto)
{
    size_t n = g->count;
    while (n > 0 && g->items[n - 1].low > upto)
        n--;
    return n;
}

int relay_gaps_changes_build(const relay_gaps *g, int64_t upto, relay_gaps_changes *out)
{
    memset(out, 0, sizeof *out);
    size_t count = count_upto(g, upto);
    size_t *deleted = malloc((g->n_stored + 1) * sizeof *deleted);
    size_t *upserted = malloc((g->count + 1) * sizeof *upserted);
    int rc = -1;
    if (!deleted || !upserted)
        goto done;

    /* Both lists ascend by low id: one merge finds what went and what came. A stored gap whose
     * low id stays but whose range changed is written again, not deleted. */
    size_t i = 0, j = 0;
    while (i < g->n_stored || j < count) {
        const relay_gap *old = i < g->n_stored ? &g->stored[i] : NULL;
        const relay_gap *now = j < count ? &g->items[j] : NULL;
        if (old && (!now || old->low < now->low)) {
            deleted[out->n_deleted++] = i++;
        } else if (now && (!old || now->low < old->low)) {
            upserted[out->n_upserted++] = j++;
        } else {
            if (!same_stored(old, now))
                upserted[out->n_upserted++] = j;
            i++, j++;
        }
    }
    out->deleted_lows = array_literal(g->stored, deleted, out->n_deleted, low_of);
    out->lows = array_literal(g->items, upserted, out->n_upserted, low_of);
    out->highs = array_literal(g->items, upserted, out->n_upserted, high_of);
    out->first_seen = array_literal(g->items, upserted, out->n_upserted, first_seen_of);
    if (out->deleted_lows && out->lows && out->highs && out->first_seen)
        rc = 0;
    else
        relay_gaps_changes_free(out);
done:
    free(deleted);
    free(upserted);
    return rc;
}

int relay_gaps_mark_stored(relay_gaps *g, int64_t upto)
{
    size_t count = count_upto(g, upto);
    if (grow(&g->stored, &g->stored_cap, count) != 0)
        return -1;
    if (count > 0)
        memcpy(g->stored, g->items, count * sizeof *g->items);
    g->n_stored = count;
    g->dirty = count < g->count;
    return 0;
}

int relay_gaps_ranges(const relay_gaps *g, char **lows, char **highs)
{
    size_t *marked = malloc((g->count + 1) * sizeof *marked), n = 0;
    for (size_t i = 0; marked && i < g->count; i++)
        if (g->items[i].probe)
            marked[n++] = i;
    *lows = marked ? array_literal(g->items, marked, n, low_of) : NULL;
    *highs = marked ? array_literal(g->items, marked, n, high_of) : NULL;
    free(marked);
    if (*lows && *highs)
        return 0;
    free(*lows);
    free(*highs);
    *lows = *highs = NULL;
    return -1;
}
