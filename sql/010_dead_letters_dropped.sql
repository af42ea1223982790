-- `dead-letters drop` marks a dead letter instead of deleting it: the event was never delivered,
-- and a replay over its id must not send it as if it had been (to a consumer that never saw it,
-- through a destination that refused it). A dropped dead letter is no longer listed, retried or
-- kept from retention; it only keeps replays away from its event.
ALTER TABLE relay_dead_letters ADD COLUMN IF NOT EXISTS dropped_at timestamptz;
