-- Events a sink's destination refused for good (too large, invalid), recorded instead of stopping
-- the relay when sink.on_reject is dead_letter. Written in the same transaction as the position
-- that passes them, so an event is either here or still ahead of the position, never neither.
CREATE TABLE IF NOT EXISTS relay_dead_letters (
    id         bigserial   PRIMARY KEY,
    relay_name text        NOT NULL,
    event_id   bigint      NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS relay_dead_letters_event ON relay_dead_letters (relay_name, event_id);
