#include "relay_observe.h"

/* Sets the oldest event not delivered to b's first row, or to its held row when it has none. */
static void set_pending(relay_metrics_counts *c, const relay_batch *b)
{
    int64_t created;
    c->pending = false;
    if (b->count > 0 && relay_batch_created_us(b, 0, &created))
        c->pending = true;
    else if (b->count == 0 && b->held)
        c->pending = true, created = b->held_created_at;
    if (!c->pending)
        return;
    c->pending_created_us = created;
    c->pending_db_now_us = b->db_now;
    c->pending_read_ms = b->read_ms;
}

void relay_observe_read(relay_metrics_counts *c, const relay_batch *b)
{
    c->sequence_last = b->sequence_called ? b->sequence_value : 0;
    if (!c->pending_from_hand)
        set_pending(c, b);
}

void relay_observe_hand(relay_metrics_counts *c, const relay_batch *b)
{
    if (b->count == 0)
        return;
    set_pending(c, b);
    c->pending_from_hand = c->pending;
}

void relay_observe_hand_dropped(relay_metrics_counts *c)
{
    c->pending_from_hand = false;
}

void relay_observe_ack(relay_metrics_counts *c, const relay_batch *b, bool late, size_t n_rejected,
                       int64_t now_ms)
{
    c->batches++;
    c->dead_letters += n_rejected;
    if (late)
        c->late_events += b->count;
    /* The database's clock at the read, moved on by the relay's since, against created_at. */
    double since_read_us = (double)(now_ms - b->read_ms) * 1000.0;
    for (size_t i = 0; i < b->count; i++) {
        int64_t created;
        if (relay_batch_created_us(b, i, &created))
            relay_metrics_observe_latency(c, ((double)b->db_now - (double)created + since_read_us) /
                                                 1e6);
    }
    c->pending = false;
    c->pending_from_hand = false;
}
