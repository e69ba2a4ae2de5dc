"""The named SQL of process managers: their deadlines (``worker.engine.deadlines``) and the
count of their instances (``worker processes``, the metrics)."""

from __future__ import annotations

from typing import LiteralString

# -- deadlines of process managers (worker.engine.deadlines) -----------------------------------

# A step's deadline; written again by a step handled again after a reset, it stays as it was.
SCHEDULE_DEADLINE: LiteralString = """
INSERT INTO worker.deadlines (id, process, consumer, instance, name, due_at, type, data, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9::text::jsonb)
ON CONFLICT (id) DO NOTHING
"""

# A later step cancels an instance's pending deadlines of one name (NULL: all of them).
CANCEL_DEADLINES: LiteralString = """
UPDATE worker.deadlines SET cancelled_at = now()
WHERE instance = $1 AND ($2::text IS NULL OR name = $2)
  AND fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL
"""

# The consumer's deadlines due at $2, earliest first.
DUE_DEADLINES: LiteralString = """
SELECT id::text, process, consumer, instance, name, due_at, type, data::text, metadata::text,
       attempts
FROM worker.deadlines
WHERE consumer = $1 AND due_at <= $2
  AND fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL
ORDER BY due_at, id
LIMIT $3
"""

# When the consumer's next deadline is due (NULL: none pending).
NEXT_DEADLINE: LiteralString = """
SELECT min(due_at) FROM worker.deadlines
WHERE consumer = $1 AND fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL
"""

# Marks a deadline fired in its delivery's transaction, unless a step cancelled it or another
# delivery fired it first (the row lock orders them: the later one finds it gone).
FIRE_DEADLINE: LiteralString = """
UPDATE worker.deadlines SET fired_at = now()
WHERE id = $1 AND fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL
RETURNING id
"""

# A delivery failed: its attempt and error are kept; it is due again at $4, or ($3 true)
# marked failed for good.
DEADLINE_FAILED: LiteralString = """
UPDATE worker.deadlines
SET attempts = attempts + 1, error = $2, failed_at = CASE WHEN $3 THEN now() END, due_at = $4
WHERE id = $1
"""

# Counts of deadlines for `worker status` and the metrics, per process manager.
DEADLINE_COUNTS: LiteralString = """
SELECT process,
       count(*) FILTER (WHERE fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL)
           AS pending,
       count(*) FILTER (WHERE fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL
                        AND due_at <= $1) AS due,
       count(*) FILTER (WHERE fired_at IS NOT NULL) AS fired,
       count(*) FILTER (WHERE cancelled_at IS NOT NULL) AS cancelled,
       count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
FROM worker.deadlines GROUP BY process ORDER BY process
"""

# A process manager's instances: every stream of its category, ended or not (by its last
# transition's is_complete). For `worker processes` and the metrics, not a hot path.
PROCESS_INSTANCES: LiteralString = """
SELECT count(*) AS instances, count(*) FILTER (WHERE NOT ended) AS active
FROM (
    SELECT DISTINCT ON (stream_name) coalesce((data->>'is_complete')::boolean, false) AS ended
    FROM message_store.messages WHERE message_store.category(stream_name) = $1
    ORDER BY stream_name, position DESC
) last
"""
