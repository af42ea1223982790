-- The relay's position: the highest event id the sink has acknowledged, one row per relay name.
CREATE TABLE IF NOT EXISTS relay_checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
