-- Gap watch: ids the relay passed while they were missing (a transaction still in flight, or one
-- rolled back). They are delivered if they appear, and forgotten once proven dead. Replaced in the
-- same transaction as the position they belong to.
CREATE TABLE IF NOT EXISTS relay_gaps (
    relay_name    text   NOT NULL,
    low_id        bigint NOT NULL,
    high_id       bigint NOT NULL,
    -- when the relay first saw the gap, on the database's clock (ms since the epoch)
    first_seen_ms bigint NOT NULL,
    -- pg_snapshot_xmax() once the gap was seen: every transaction that could still fill the gap
    -- has an xid below it; NULL without snapshots
    snapshot_xmax bigint,
    PRIMARY KEY (relay_name, low_id)
);

-- Restore detection: the database the position belongs to, and the count of late deliveries.
ALTER TABLE relay_checkpoints ADD COLUMN IF NOT EXISTS system_identifier bigint;
ALTER TABLE relay_checkpoints ADD COLUMN IF NOT EXISTS late_events bigint NOT NULL DEFAULT 0;

-- Wake-ups: the function a NOTIFY trigger calls, with the channel as its argument. migrate puts
-- such a trigger on source.table only when source.notify_channel is set (see 007).
CREATE OR REPLACE FUNCTION relay_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$;
