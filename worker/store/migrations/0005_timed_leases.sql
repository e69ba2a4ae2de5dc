-- Leases are time-bound: the holder renews heartbeat_at and pushes expires_at ahead (by its
-- lease_ttl); a standby takes over a lease whose expires_at has passed, or whose holder's
-- session (holder_pid) has ended, bumping the epoch. A released lease has expires_at NULL.
-- The session advisory locks of earlier versions are no longer used.
ALTER TABLE worker.leases
    ADD COLUMN heartbeat_at timestamptz,
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN holder_pid integer;

-- An in-place rebuild sets refill_to on the projection's consumers (the category head when it
-- truncated the tables): the consumer reports "rebuilding" until it has caught up again.
ALTER TABLE worker.positions ADD COLUMN refill_to bigint;
