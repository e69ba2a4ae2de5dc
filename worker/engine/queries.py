"""The worker schema's named queries for the engine: positions, leases, parked messages,
refills, consumer groups' sizes; values are always parameters. (Process managers' deadlines
and instances: ``worker.engine.process_queries``.)"""

from __future__ import annotations

from typing import LiteralString

LOAD_POSITION: LiteralString = "SELECT position FROM worker.positions WHERE consumer = $1"
LOAD_HIGH_WATER: LiteralString = "SELECT high_water FROM worker.positions WHERE consumer = $1"
# What a consumer starts from: its position, high-water mark and an in-place rebuild's end.
LOAD_CURSOR: LiteralString = (
    "SELECT position, high_water, refill_to FROM worker.positions WHERE consumer = $1"
)

# Commits a consumer's position only while its lease epoch is current and only from the
# position the batch started at ($4): a batch whose commit went through although the client saw
# an error (the connection lost just after COMMIT) can never be applied and committed twice.
# FOR SHARE makes a new owner's epoch bump wait for this transaction, so it reads the position
# this one commits.
COMMIT_POSITION: LiteralString = """
INSERT INTO worker.positions AS p (consumer, position, high_water)
SELECT $1, $2, $2
WHERE EXISTS (
    SELECT 1 FROM worker.leases WHERE consumer = $1 AND epoch = $3 FOR SHARE
)
ON CONFLICT (consumer) DO UPDATE
SET position = EXCLUDED.position, high_water = greatest(p.high_water, EXCLUDED.position),
    updated_at = now()
WHERE p.position = $4
RETURNING p.position
"""

LEASE_EPOCH: LiteralString = "SELECT epoch FROM worker.leases WHERE consumer = $1"

SET_POSITION: LiteralString = """
INSERT INTO worker.positions AS p (consumer, position, high_water) VALUES ($1, $2, $2)
ON CONFLICT (consumer) DO UPDATE
SET position = EXCLUDED.position, high_water = greatest(p.high_water, EXCLUDED.position),
    updated_at = now()
"""

# Serializes a subscriber's setup(conn) between processes that start together (replicas):
# concurrent CREATE TABLE IF NOT EXISTS of one table fails with a unique violation on pg_type.
SETUP_LOCK: LiteralString = "SELECT pg_advisory_xact_lock(22355, hashtext($1))"

# A subscriber's own setup(conn) has run in this database (see worker.engine.setup).
RECORD_SETUP: LiteralString = """
INSERT INTO worker.setups (subscriber) VALUES ($1)
ON CONFLICT (subscriber) DO UPDATE SET done_at = now(), done_by = current_user
"""
SETUP_DONE: LiteralString = "SELECT EXISTS (SELECT 1 FROM worker.setups WHERE subscriber = $1)"

# -- leases: time-bound, fenced by the epoch; every time is the server's ----------------------

# A standby waits this long for a lease row a commit in flight holds, then tries again later.
LEASE_LOCK_TIMEOUT: LiteralString = "SET LOCAL lock_timeout = '2s'"

# The lease row, locked, and whether it can be taken: released (expires_at NULL), run out (its
# holder stopped renewing: dead, frozen or cut off), or its holder's session has ended (a holder
# that crashed: taken at once rather than after the ttl). A backend pid is visible to every
# role; a pid reused by another session only makes the standby wait for the expiry.
LEASE_FOR_TAKING: LiteralString = """
SELECT owner, epoch, expires_at IS NULL AS released, expires_at < now() AS expired,
       NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid) AS gone,
       extract(epoch FROM now() - heartbeat_at)::float8 AS age
FROM worker.leases l WHERE consumer = $1
FOR UPDATE
"""

# Takes the lease with a new epoch, so the previous holder (if any) can never commit again.
# The condition repeats LEASE_FOR_TAKING's for the first row, which two processes may insert at
# once: the loser's update finds a live lease and returns no row.
TAKE_LEASE: LiteralString = """
INSERT INTO worker.leases AS l
    (consumer, epoch, owner, acquired_at, heartbeat_at, expires_at, holder_pid)
VALUES ($1, 1, $2, now(), now(), now() + make_interval(secs => $3), pg_backend_pid())
ON CONFLICT (consumer) DO UPDATE
SET epoch = l.epoch + 1, owner = EXCLUDED.owner, acquired_at = now(), heartbeat_at = now(),
    expires_at = EXCLUDED.expires_at, holder_pid = EXCLUDED.holder_pid,
    state = NULL, state_at = NULL
WHERE l.expires_at IS NULL OR l.expires_at < now()
   OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid)
RETURNING l.epoch
"""

# The heartbeat: only the current epoch's holder extends the lease (from the session it renews
# on, which may be a new one after a reconnection); no row means the lease is lost.
RENEW_LEASE: LiteralString = """
UPDATE worker.leases
SET heartbeat_at = now(), expires_at = now() + make_interval(secs => $3),
    holder_pid = pg_backend_pid()
WHERE consumer = $1 AND epoch = $2
RETURNING epoch
"""

RELEASE_LEASE: LiteralString = """
UPDATE worker.leases SET expires_at = NULL WHERE consumer = $1 AND epoch = $2
"""

# Fences a consumer's holder out (its next renewal or commit fails) and frees the lease, so
# the holder, told on the control channel, takes it again at once and reloads its position.
FENCE_LEASE: LiteralString = """
INSERT INTO worker.leases AS l (consumer, epoch) VALUES ($1, 1)
ON CONFLICT (consumer) DO UPDATE SET epoch = l.epoch + 1, expires_at = NULL
"""

LIVE_HOLDERS: LiteralString = """
SELECT consumer, owner FROM worker.leases WHERE consumer = ANY($1::text[]) AND expires_at > now()
"""

# Tells a running worker to look at a consumer's lease and position again (delivered at commit).
NOTIFY_CONTROL: LiteralString = "SELECT pg_notify('worker_control', $1)"

PARK: LiteralString = """
INSERT INTO worker.dead_letters (consumer, message_id, stream_name, position, global_position,
    type, error_type, error, traceback, attempts, first_failed_at, blocked_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
    (SELECT min(id) FROM worker.dead_letters WHERE consumer = $1 AND stream_name = $3))
ON CONFLICT (consumer, global_position) DO NOTHING
"""

PARKED_STREAMS: LiteralString = """
SELECT stream_name, bool_or(replay_requested) AS replay
FROM worker.dead_letters WHERE consumer = $1 GROUP BY stream_name
"""

PARKED_OF_STREAM: LiteralString = """
SELECT id, global_position FROM worker.dead_letters
WHERE consumer = $1 AND stream_name = $2 ORDER BY global_position
"""

DELETE_DEAD_LETTER: LiteralString = "DELETE FROM worker.dead_letters WHERE id = $1"

# An in-place rebuild refills up to the category's head as it is when the tables are emptied.
START_REFILL: LiteralString = """
UPDATE worker.positions SET refill_to = coalesce((
    SELECT global_position FROM message_store.messages
    WHERE message_store.category(stream_name) = $2
    ORDER BY global_position DESC LIMIT 1), 0)
WHERE consumer = $1
"""
END_REFILL: LiteralString = "UPDATE worker.positions SET refill_to = NULL WHERE consumer = $1"

REPORT_STATE: LiteralString = """
UPDATE worker.leases SET state = $2, state_at = now() WHERE consumer = $1
"""

# The positions kept for a subscriber's consumers of one category: the plain consumer ($1) and
# the members of any consumer group of it (names starting with $2); the caller picks by name.
POSITIONS_OF_CATEGORY: LiteralString = """
SELECT consumer, position, high_water FROM worker.positions
WHERE consumer = $1 OR left(consumer, length($2)) = $2
"""

# Gives a consumer its first position; does nothing when it has one already.
SEED_POSITION: LiteralString = """
INSERT INTO worker.positions (consumer, position, high_water) VALUES ($1, $2, $3)
ON CONFLICT (consumer) DO NOTHING
RETURNING position
"""

# -- rebuilds: handing positions, leases and parked messages between consumers --------------

# A builder's position becomes the live consumer's (both position and high-water mark: the
# new tables hold exactly what the builder applied).
COPY_POSITION: LiteralString = """
INSERT INTO worker.positions AS p (consumer, position, high_water)
SELECT $1, position, position FROM worker.positions WHERE consumer = $2
ON CONFLICT (consumer) DO UPDATE
SET position = EXCLUDED.position, high_water = EXCLUDED.position, updated_at = now()
"""

# An in-place rebuild starts from 0 with nothing applied (the tables are empty).
ZERO_POSITION: LiteralString = """
INSERT INTO worker.positions AS p (consumer, position, high_water) VALUES ($1, 0, 0)
ON CONFLICT (consumer) DO UPDATE SET position = 0, high_water = 0, updated_at = now()
"""

FORGET_POSITION: LiteralString = "DELETE FROM worker.positions WHERE consumer = $1"
FORGET_LEASE: LiteralString = "DELETE FROM worker.leases WHERE consumer = $1"
DROP_DEAD_LETTERS: LiteralString = "DELETE FROM worker.dead_letters WHERE consumer = $1"
MOVE_DEAD_LETTERS: LiteralString = (
    "UPDATE worker.dead_letters SET consumer = $1 WHERE consumer = $2"
)

# The lease's epoch, locked against a takeover until the replay's transaction ends.
LEASE_EPOCH_SHARED: LiteralString = "SELECT epoch FROM worker.leases WHERE consumer = $1 FOR SHARE"

# -- pauses (`worker pause` / `worker resume`) ---------------------------------------------------

# The consumers of $1 newly paused (those already paused are left as they were).
PAUSE: LiteralString = """
INSERT INTO worker.paused (consumer, paused_by, reason)
SELECT name, $2, $3 FROM unnest($1::text[]) AS name
ON CONFLICT (consumer) DO NOTHING
RETURNING consumer
"""

RESUME: LiteralString = """
DELETE FROM worker.paused WHERE consumer = ANY($1::text[]) RETURNING consumer
"""

IS_PAUSED: LiteralString = "SELECT EXISTS (SELECT 1 FROM worker.paused WHERE consumer = $1)"

PAUSED: LiteralString = """
SELECT consumer, paused_at, paused_by, reason FROM worker.paused ORDER BY consumer
"""

# -- worker status ---------------------------------------------------------------------------

STATUS_POSITIONS: LiteralString = "SELECT consumer, position, refill_to FROM worker.positions"

# Held: renewed within its ttl by a session that still exists (a crashed holder's lease is
# free at once, see worker.engine.lease). Unreleased: not given up (a holder that lost its
# connection, froze or died; a clean stop releases it).
STATUS_LEASES: LiteralString = """
SELECT consumer, owner, state, expires_at IS NOT NULL AS unreleased,
       coalesce(expires_at > now(), false)
       AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_pid) AS held
FROM worker.leases l
"""

# -- parked messages: inspection, replay requests, discards ---------------------------------

LIST_PARKED: LiteralString = """
SELECT id, consumer, stream_name, position, global_position, type, error_type, error,
       attempts, parked_at, blocked_by, replay_requested
FROM worker.dead_letters
WHERE ($1::text IS NULL OR consumer = $1) AND ($2::text IS NULL OR stream_name = $2)
ORDER BY consumer, global_position
LIMIT $3
"""

SHOW_PARKED: LiteralString = "SELECT * FROM worker.dead_letters WHERE id = $1"

REQUEST_REPLAY: LiteralString = """
UPDATE worker.dead_letters SET replay_requested = true
WHERE consumer = $1 AND stream_name = $2
RETURNING id
"""

DISCARD_PARKED: LiteralString = """
DELETE FROM worker.dead_letters
WHERE ($1::bigint IS NOT NULL AND id = $1)
   OR ($1::bigint IS NULL AND consumer = $2 AND stream_name = $3)
RETURNING id
"""

# A failed replay stores its error on the message that failed and clears the request on
# every message of the stream: the replay is not tried again until someone asks again.
FAILED_AGAIN: LiteralString = """
WITH failed AS (
    UPDATE worker.dead_letters
    SET error_type = $2, error = $3, traceback = $4, attempts = attempts + $5,
        replay_requested = false
    WHERE id = $1
    RETURNING consumer, stream_name
)
UPDATE worker.dead_letters AS d SET replay_requested = false
FROM failed
WHERE d.consumer = failed.consumer AND d.stream_name = failed.stream_name AND d.id <> $1
"""

# The first parked message of a stream (where a replay stopped) and whether a replay of the
# stream is still requested.
REPLAY_STATE: LiteralString = """
SELECT position, error_type, error, bool_or(replay_requested) OVER () AS requested
FROM worker.dead_letters
WHERE consumer = $1 AND stream_name = $2
ORDER BY global_position
LIMIT 1
"""

PARKED_COUNTS: LiteralString = (
    "SELECT consumer, count(*) FROM worker.dead_letters GROUP BY consumer"
)

# -- consumer groups: the size of record and its hand-over ----------------------------------

# Taken shared by a process about to take a member's lease (so the size it checks stays the
# size of record until its lease is taken) and exclusively by a hand-over.
GROUP_LOCK_SHARED: LiteralString = "SELECT pg_advisory_xact_lock_shared(22356, hashtext($1))"
GROUP_LOCK: LiteralString = "SELECT pg_advisory_xact_lock(22356, hashtext($1))"

GROUP_RECORD: LiteralString = """
SELECT size, from_size, handed, pinned FROM worker.groups WHERE consumer = $1
"""

# The first size a group runs at becomes its size of record (a concurrent first start of
# another size finds this one's row and stands by).
FIRST_GROUP_SIZE: LiteralString = """
INSERT INTO worker.groups (consumer, size) VALUES ($1, $2) ON CONFLICT (consumer) DO NOTHING
"""

# The sizes the positions of a consumer's plain name ($1) and group members ($2 prefix) were
# kept at (1: the plain consumer), latest first; rebuilds' consumers (#g) are not counted.
FORMER_SIZES: LiteralString = """
SELECT CASE WHEN consumer = $1 THEN 1
            ELSE substring(consumer from '/([0-9]+)$')::int END AS size
FROM worker.positions
WHERE consumer = $1 OR (left(consumer, length($2)) = $2 AND consumer !~ '#')
GROUP BY 1 ORDER BY max(updated_at) DESC
"""

# Members ($1) whose lease a live process holds.
LIVE_MEMBERS: LiteralString = """
SELECT consumer FROM worker.leases WHERE consumer = ANY($1::text[]) AND expires_at > now()
"""

# The final positions of the members ($1) of the size handed over, in member order.
MEMBER_POSITIONS: LiteralString = """
SELECT coalesce(p.position, 0)
FROM unnest($1::text[]) WITH ORDINALITY AS m(consumer, n)
LEFT JOIN worker.positions p ON p.consumer = m.consumer
ORDER BY m.n
"""

# A new member's start: the least final position of the former members.
START_MEMBER: LiteralString = """
INSERT INTO worker.positions AS p (consumer, position, high_water) VALUES ($1, $2, $2)
ON CONFLICT (consumer) DO UPDATE
SET position = EXCLUDED.position, high_water = EXCLUDED.position, updated_at = now()
"""

RECORD_HAND_OVER: LiteralString = """
INSERT INTO worker.groups AS g (consumer, size, from_size, handed, pinned)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (consumer) DO UPDATE
SET size = EXCLUDED.size, from_size = EXCLUDED.from_size, handed = EXCLUDED.handed,
    pinned = EXCLUDED.pinned, resized_at = now()
"""

# Parked messages of the members ($1) of a size about to be handed over.
PARKED_OF_MEMBERS: LiteralString = """
SELECT count(*) FROM worker.dead_letters WHERE consumer = ANY($1::text[])
"""
