"""MessageDB's named queries: every statement the message store client runs; values are always
parameters."""

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

# One message by its global position (a parked message, replayed).
READ_BY_GLOBAL_POSITION: LiteralString = f"""
SELECT {_COLUMNS} FROM message_store.messages WHERE global_position = $1
"""

# How many messages of a category lie after a position, and the oldest one's time (lag).
CATEGORY_LAG: LiteralString = """
SELECT count(*), min(time AT TIME ZONE 'UTC')
FROM message_store.messages
WHERE message_store.category(stream_name) = $1 AND global_position > $2
"""
