"""Every SQL statement the message store client runs, named; values are always parameters."""

from __future__ import annotations

from typing import LiteralString

# The columns of a Message, in MessageDB's order; data and metadata as JSON text (decoded on
# demand, validated straight from text); time zone-aware (stored as UTC).
_COLUMNS: LiteralString = (
    "id::text, stream_name, type, position, global_position, data::text, metadata::text, "
    "time AT TIME ZONE 'UTC'"
)

WRITE_MESSAGE: LiteralString = "SELECT message_store.write_message($1, $2, $3, $4, $5, $6)"

# Same rows and order as message_store.get_stream_messages, without its per-call dynamic SQL.
READ_STREAM: LiteralString = f"""
SELECT {_COLUMNS}
FROM message_store.messages
WHERE stream_name = $1 AND position >= $2
ORDER BY position
LIMIT $3
"""

# Same predicate and order as message_store.get_category_messages (category, position,
# correlation category, consumer group member/size), as one static statement so it is prepared
# once per connection instead of being planned anew on every call.
READ_CATEGORY: LiteralString = f"""
SELECT {_COLUMNS}
FROM message_store.messages
WHERE message_store.category(stream_name) = $1
  AND global_position >= $2
  AND ($4::text IS NULL
       OR message_store.category(metadata->>'correlationStreamName') = $4)
  AND ($6::bigint IS NULL
       OR MOD(@message_store.hash_64(message_store.cardinal_id(stream_name)), $6) = $5)
ORDER BY global_position
LIMIT $3
"""

LAST_MESSAGE: LiteralString = f"""
SELECT {_COLUMNS}
FROM message_store.messages
WHERE stream_name = $1 AND ($2::text IS NULL OR type = $2)
ORDER BY position DESC
LIMIT 1
"""

STREAM_VERSION: LiteralString = "SELECT message_store.stream_version($1)"

# The newest global position in a category (an index scan backwards, one row).
CATEGORY_HEAD: LiteralString = """
SELECT global_position
FROM message_store.messages
WHERE message_store.category(stream_name) = $1
ORDER BY global_position DESC
LIMIT 1
"""

# -- the engine's own schema -----------------------------------------------------------------

LOAD_POSITION: LiteralString = "SELECT position FROM worker.positions WHERE consumer = $1"
LOAD_HIGH_WATER: LiteralString = "SELECT high_water FROM worker.positions WHERE consumer = $1"

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

TRY_LOCK: LiteralString = "SELECT pg_try_advisory_lock($1, hashtext($2))"
UNLOCK: LiteralString = "SELECT pg_advisory_unlock($1, hashtext($2))"

# Serializes a subscriber's setup(conn) between processes that start together (replicas):
# concurrent CREATE TABLE IF NOT EXISTS of one table fails with a unique violation on pg_type.
SETUP_LOCK: LiteralString = "SELECT pg_advisory_xact_lock(22355, hashtext($1))"

BUMP_EPOCH: LiteralString = """
INSERT INTO worker.leases AS l (consumer, epoch, owner, acquired_at) VALUES ($1, 1, $2, now())
ON CONFLICT (consumer) DO UPDATE SET epoch = l.epoch + 1, owner = $2, acquired_at = now()
RETURNING l.epoch
"""

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

READ_BY_GLOBAL_POSITION: LiteralString = f"""
SELECT {_COLUMNS} FROM message_store.messages WHERE global_position = $1
"""

DELETE_DEAD_LETTER: LiteralString = "DELETE FROM worker.dead_letters WHERE id = $1"

LIVE_GENERATION: LiteralString = "SELECT generation FROM worker.projections WHERE name = $1"

REPORT_STATE: LiteralString = """
UPDATE worker.leases SET state = $2, state_at = now() WHERE consumer = $1
"""

# A consumer slot without a position (its group was just resized) starts at the least position
# of the category's slots of former group sizes ($3 is the current size's "/n" suffix, '' when
# not grouped), with their greatest as its high-water mark. Members of the current group and
# rebuild consumers ("#g") never count. Does nothing when the slot has a position already.
SEED_POSITION: LiteralString = """
INSERT INTO worker.positions (consumer, position, high_water)
SELECT $1, min(position), max(high_water)
FROM worker.positions
WHERE (consumer = $2 OR left(consumer, length($2) + 1) = $2 || '@')
  AND consumer <> $1 AND strpos(consumer, '#') = 0
  AND ($3 = '' OR right(consumer, length($3)) <> $3)
HAVING count(*) > 0
ON CONFLICT (consumer) DO NOTHING
RETURNING position
"""
