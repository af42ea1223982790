-- Fencing. Each relay that takes its name's lock raises the epoch of its checkpoint row and
-- remembers it; every write of the row (the position, the system identifier, the retention
-- counts, a reset) names that epoch through relay_epoch_holds, which fails the whole transaction
-- when another relay has raised it since. The lock keeps two relays of a name from running at
-- once while both sessions live; the epoch keeps a leader whose session was lost (and whose lock
-- another relay took) from ever writing again, whatever it still has in flight or in hand.
ALTER TABLE relay_checkpoints ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0;

-- True for the row of relay when its epoch is ours, false for another relay's row (so that the
-- order in which a plan evaluates its conditions does not matter), and an error otherwise: an
-- error, not an empty update, so that nothing written in the same transaction (gaps, dead
-- letters, deleted rows) commits either. Called in the WHERE clause of an UPDATE, it sees the
-- row's latest version: an UPDATE that waited for the new leader's claim re-checks it.
CREATE OR REPLACE FUNCTION relay_epoch_holds(row_name text, row_epoch bigint, relay text,
                                             ours bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF row_name IS DISTINCT FROM relay THEN
        RETURN false;
    END IF;
    IF row_epoch IS DISTINCT FROM ours THEN
        RAISE EXCEPTION 'another relay took over ''%'': epoch %, ours %', relay, row_epoch, ours
            USING ERRCODE = 'RF001',
                  HINT = 'This relay lost its lock: it stores and delivers nothing more.';
    END IF;
    RETURN true;
END
$$;
