#include "gaps.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void relay_gaps_free(relay_gaps *g)
{
    free(g->items);
    memset(g, 0, sizeof *g);
}

static int reserve(relay_gaps *g, size_t more)
{
    if (g->count + more <= g->cap)
        return 0;
    size_t cap = g->cap ? g->cap : 16;
    while (cap < g->count + more)
        cap *= 2;
    relay_gap *items = realloc(g->items, cap * sizeof *items);
    if (!items)
        return -1;
    g->items = items;
    g->cap = cap;
    return 0;
}

size_t relay_gaps_count_new(int64_t position, const relay_sink_event *events, size_t count)
{
    size_t gaps = 0;
    for (size_t i = 0; i < count; i++) {
        gaps += events[i].id > position + 1;
        position = events[i].id;
    }
    return gaps;
}

size_t relay_gaps_fit(int64_t position, const relay_sink_event *events, size_t count, size_t room)
{
    size_t gaps = 0;
    for (size_t i = 0; i < count; i++) {
        if (events[i].id > position + 1 && ++gaps > room)
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
                         size_t count, int64_t first_seen_ms, int64_t snapshot_xmax)
{
    if (reserve(g, relay_gaps_count_new(position, events, count)) != 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (events[i].id > position + 1)
            g->items[g->count++] =
                (relay_gap){position + 1, events[i].id - 1, first_seen_ms, snapshot_xmax};
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

bool relay_gap_is_dead(const relay_gap *gap, int64_t now_ms, int64_t xmin, int64_t min_age_ms,
                       int64_t max_age_ms)
{
    int64_t age = now_ms - gap->first_seen_ms;
    if (age < min_age_ms)
        return false;
    /* Without a snapshot from the time it was seen (or from this database), only age can tell. */
    if (gap->snapshot_xmax < 0 || xmin < 0)
        return age >= max_age_ms;
    return xmin >= gap->snapshot_xmax;
}

int64_t relay_gaps_forget_dead(relay_gaps *g, int64_t now_ms, int64_t xmin, int64_t min_age_ms,
                               int64_t max_age_ms)
{
    int64_t forgotten = 0;
    size_t kept = 0;
    for (size_t i = 0; i < g->count; i++) {
        if (relay_gap_is_dead(&g->items[i], now_ms, xmin, min_age_ms, max_age_ms))
            forgotten += g->items[i].high - g->items[i].low + 1;
        else
            g->items[kept++] = g->items[i];
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

char *relay_gaps_array(const relay_gaps *g, relay_gap_field field)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fputc('{', f);
    for (size_t i = 0; i < g->count; i++) {
        const relay_gap *gap = &g->items[i];
        int64_t value = field == RELAY_GAP_LOW          ? gap->low
                        : field == RELAY_GAP_HIGH       ? gap->high
                        : field == RELAY_GAP_FIRST_SEEN ? gap->first_seen_ms
                                                        : gap->snapshot_xmax;
        if (i > 0)
            fputc(',', f);
        if (field == RELAY_GAP_SNAPSHOT_XMAX && value < 0)
            fputs("NULL", f);
        else
            fprintf(f, "%" PRId64, value);
    }
    fputc('}', f);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(text);
        return NULL;
    }
    return text;
}
