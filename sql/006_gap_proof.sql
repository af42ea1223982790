-- The proof of a gap's death no longer reads transaction ids: snapshot xmax is one past the
-- latest *completed* xid, so a writer that held its id (and even its xid) when the gap was seen
-- could pass for finished. The relay now looks at the writers holding the outbox table's lock
-- (pg_locks); it does so anew for every gap it loads, so gaps stored by an older relay are judged
-- by the writers running now, never by their recorded xmax. A relay older than this migration
-- fails on the missing column rather than go on with the unsound proof.
ALTER TABLE relay_gaps DROP COLUMN IF EXISTS snapshot_xmax;
