-- Retention: the relays that read a table must all have delivered a row before it is deleted, so
-- each relay records the table it reads when it connects. Both its oid and its schema-qualified
-- name: the oid follows a rename but not a dump and restore (nor a table dropped and created
-- again), the name the other way round. Retention counts a relay when either matches, and a row
-- with neither (written by a relay older than this migration) on every table: it may only hold
-- deletion back, never let a row go that its relay has not delivered.
ALTER TABLE relay_checkpoints ADD COLUMN IF NOT EXISTS source_table oid;
ALTER TABLE relay_checkpoints ADD COLUMN IF NOT EXISTS source_table_name text;
-- What this relay's retention removed: rows deleted, and whole partitions dropped.
ALTER TABLE relay_checkpoints ADD COLUMN IF NOT EXISTS retention_deleted bigint NOT NULL DEFAULT 0;
ALTER TABLE relay_checkpoints ADD COLUMN IF NOT EXISTS retention_partitions bigint NOT NULL DEFAULT 0;
