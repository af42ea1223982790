-- The proof of a gap's death reads the writers holding the outbox table's lock (pg_locks), not
-- transaction ids: snapshot xmax is one past the latest *completed* xid, so a writer that held its
-- id (and even its xid) when the gap was seen could pass for finished. The relay looks at the
-- writers anew for every gap it loads, so a stored gap is judged by the writers running at load,
-- never by a recorded xmax. Without the column, a relay that reads it fails rather than go on with
-- the unsound proof.
ALTER TABLE relay_gaps DROP COLUMN IF EXISTS snapshot_xmax;
