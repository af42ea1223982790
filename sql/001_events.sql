-- The event store: one row per domain event, written in the same transaction as the state it
-- describes. created_at uses clock_timestamp(), not now(): now() is the transaction's start, and a
-- long transaction would stamp its event far in the past, defeating the safety margin.
CREATE TABLE IF NOT EXISTS events (
    id                bigserial   PRIMARY KEY,
    aggregate_id      text        NOT NULL,
    aggregate_type    text        NOT NULL,
    aggregate_version integer     NOT NULL,
    kind              text        NOT NULL,
    body              jsonb       NOT NULL,
    metadata          jsonb,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (aggregate_id, aggregate_version)
);
