-- Earlier versions put a NOTIFY trigger on events whatever source.table was. It is dropped: a
-- NOTIFY takes a cluster-wide lock at commit, which queues inserting transactions behind one
-- another, and a transaction that ran one cannot be prepared (two-phase commit). The relay polls
-- instead; migrate installs the trigger outbox_relay_notify on source.table when
-- source.notify_channel is set.
DROP TRIGGER IF EXISTS events_relay_notify ON events;
