"""The write side's named queries: the state rows of aggregates that are not event-sourced."""

from __future__ import annotations

from typing import LiteralString

# A first save inserts version 1; ON CONFLICT means another writer saved it first.
INSERT_STATE: LiteralString = """
INSERT INTO worker.aggregate_state (category, id, version, state)
VALUES ($1, $2, 1, $3)
ON CONFLICT (category, id) DO NOTHING
RETURNING version
"""

# Later saves move the version on by one, only from the version the aggregate was loaded at.
UPDATE_STATE: LiteralString = """
UPDATE worker.aggregate_state
SET state = $3, version = version + 1, updated_at = now()
WHERE category = $1 AND id = $2 AND version = $4
RETURNING version
"""

SELECT_STATE: LiteralString = """
SELECT version, state FROM worker.aggregate_state WHERE category = $1 AND id = $2
"""
