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

# Which of the relations in $1 (quoted names) do not exist.
MISSING_RELATIONS: LiteralString = """
SELECT t FROM unnest($1::text[]) WITH ORDINALITY AS r(t, n) WHERE to_regclass(t) IS NULL ORDER BY n
"""

# The rights on existing tables ($1, quoted names) that a consumer writing them needs and the
# role lacks (a missing table is reported apart).
TABLE_RIGHTS_MISSING: LiteralString = """
SELECT t, p, current_user::text
FROM unnest($1::text[]) WITH ORDINALITY AS r(t, n),
     unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE']) WITH ORDINALITY AS q(p, m)
WHERE to_regclass(t) IS NOT NULL AND NOT has_table_privilege(t, p)
ORDER BY n, m
"""

# The rights a rebuild needs that the role lacks: CREATE in the schemas of its models ($1; an
# empty string for the read-model schema, first on the search path), ownership of the relations
# it replaces or drops ($2), TRUNCATE on those it empties ($3).
REBUILD_RIGHTS_MISSING: LiteralString = """
WITH schemas AS (
    SELECT DISTINCT coalesce(nullif(s, ''), current_schema()) AS s FROM unnest($1::text[]) s
)
SELECT format('CREATE on schema %I', s), current_user::text FROM schemas
WHERE NOT has_schema_privilege(s, 'CREATE')
UNION ALL
SELECT format('ownership of %s', t), current_user::text FROM unnest($2::text[]) t
WHERE to_regclass(t) IS NOT NULL
  AND NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = to_regclass(t)), 'USAGE')
UNION ALL
SELECT format('TRUNCATE on %s', t), current_user::text FROM unnest($3::text[]) t
WHERE to_regclass(t) IS NOT NULL AND NOT has_table_privilege(t, 'TRUNCATE')
"""

CURRENT_USER: LiteralString = "SELECT current_user::text"


def drop_view(quoted_name: str) -> str:
    """``DROP VIEW`` of a read model's view (its name already checked and quoted)."""
    return f"DROP VIEW IF EXISTS {quoted_name}"


def drop_table(quoted_name: str) -> str:
    """``DROP TABLE`` of a generation's table (its name already checked and quoted)."""
    return f"DROP TABLE IF EXISTS {quoted_name}"


def truncate(quoted_name: str) -> str:
    """``TRUNCATE`` of a live table (its name already checked and quoted)."""
    return f"TRUNCATE {quoted_name}"
