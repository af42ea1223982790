-- Snapshots speed up loading an aggregate; they play no part in consistency, so losing one is
-- harmless. One row per aggregate: the latest snapshot replaces the previous one.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_id      text        PRIMARY KEY,
    aggregate_version integer     NOT NULL,
    body              jsonb       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
