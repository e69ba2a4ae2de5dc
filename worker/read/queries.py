"""The read layer's named SQL: the generations registry, and the statements on read-model
tables whose names are identifiers (built by named functions from checked names only; the
tables' own DDL and DML builders live in ``worker.read.model``)."""

from __future__ import annotations

from typing import LiteralString

STATE: LiteralString = """
SELECT generation, building, code_version FROM worker.projections WHERE name = $1
"""

REGISTER: LiteralString = """
INSERT INTO worker.projections (name, generation, code_version) VALUES ($1, 1, $2)
ON CONFLICT (name) DO NOTHING
"""

LOCK: LiteralString = """
SELECT generation, building, code_version FROM worker.projections WHERE name = $1 FOR UPDATE
"""

START_BUILD: LiteralString = """
UPDATE worker.projections SET building = $2, updated_at = now() WHERE name = $1
"""

# The switch: the built generation becomes live with the code version that built it.
SWITCH: LiteralString = """
UPDATE worker.projections
SET generation = $2, building = NULL, code_version = $3, switched_at = now(), updated_at = now()
WHERE name = $1
"""

SET_CODE_VERSION: LiteralString = "UPDATE worker.projections SET code_version = $2 WHERE name = $1"

BUILDING: LiteralString = "SELECT name, building FROM worker.projections WHERE building IS NOT NULL"

COLUMNS: LiteralString = """
SELECT attname FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
ORDER BY attnum
"""

RELATION_EXISTS: LiteralString = "SELECT to_regclass($1)"


def drop_view(quoted_name: str) -> str:
    """``DROP VIEW`` of a read model's view (its name already checked and quoted)."""
    return f"DROP VIEW IF EXISTS {quoted_name}"


def drop_table(quoted_name: str) -> str:
    """``DROP TABLE`` of a generation's table (its name already checked and quoted)."""
    return f"DROP TABLE IF EXISTS {quoted_name}"


def truncate(quoted_name: str) -> str:
    """``TRUNCATE`` of a live table (its name already checked and quoted)."""
    return f"TRUNCATE {quoted_name}"
