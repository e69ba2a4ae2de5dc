"""The store layer's named SQL: MessageDB's queries (every statement the message store client
runs), installing MessageDB and the worker schema, roles' rights and the read-model schema.
Values are always parameters; the few identifiers go through named builders below."""

from __future__ import annotations

from functools import cache
from typing import LiteralString

# The columns of a Message, in MessageDB's order; data and metadata as JSON text (decoded on
# demand, validated straight from text); time as ISO text (stored as UTC; a datetime when asked:
# decoding a timestamp costs a row more than its text).
_COLUMNS: LiteralString = (
    "id::text, stream_name, type, position, global_position, data::text, metadata::text, time::text"
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
# correlation category) for a consumer outside a group (read_group below is a member's), as one
# static statement so it is prepared once per connection instead of being planned on every call.
READ_CATEGORY: LiteralString = f"""
SELECT {_COLUMNS}
FROM message_store.messages
WHERE message_store.category(stream_name) = $1
  AND global_position >= $2
  AND ($4::text IS NULL
       OR message_store.category(metadata->>'correlationStreamName') = $4)
ORDER BY global_position
LIMIT $3
"""


# A consumer group member's share of a category: the rows READ_CATEGORY returns for member $5 of
# a group of ``size`` (the same streams: worker.member_hash equals MessageDB's
# hash_64(cardinal_id(stream_name))). The size is part of the text, so the statement matches the
# expression of that size's index (``group_index``) and reads only the member's rows through it.
@cache
def read_group(size: int) -> str:
    """READ_CATEGORY for the members of a group of ``size`` (an int, checked)."""
    return f"""
SELECT {_COLUMNS}
FROM message_store.messages
WHERE message_store.category(stream_name) = $1
  AND {_member_bucket(size)} = $5
  AND global_position >= $2
  AND ($4::text IS NULL
       OR message_store.category(metadata->>'correlationStreamName') = $4)
ORDER BY global_position
LIMIT $3
"""


# A consumer's read just after a resize handed its streams over from a group of ``from_size``
# (1: a plain consumer): READ_CATEGORY ($1-$4), or read_group's member ($5) when ``size`` is
# given, without the messages each stream's former owner had handled: those at or below that
# owner's final position in the last parameter (bigint[], by former member).
@cache
def read_handed(size: int | None, from_size: int) -> str:
    """The read of a consumer of a group of ``size`` (None: a plain consumer) after a resize
    from ``from_size``."""
    member = "" if size is None else f"AND {_member_bucket(size)} = $5"
    handed = "$5" if size is None else "$6"
    if from_size == 1:
        owner_position = f"({handed}::bigint[])[1]"
    else:
        owner_position = f"coalesce(({handed}::bigint[])[{_member_bucket(from_size)} + 1], 0)"
    return f"""
SELECT {_COLUMNS}
FROM message_store.messages
WHERE message_store.category(stream_name) = $1
  {member}
  AND global_position >= $2
  AND ($4::text IS NULL
       OR message_store.category(metadata->>'correlationStreamName') = $4)
  AND global_position > {owner_position}
ORDER BY global_position
LIMIT $3
"""


def _member_bucket(size: int) -> str:
    if type(size) is not int or size < 1:
        raise ValueError(f"a consumer group size is a positive int, got {size!r}")
    return f"((@ worker.member_hash(stream_name)) % {size})"


def group_index_name(size: int) -> str:
    """The name of the index that serves the members of groups of ``size``."""
    _member_bucket(size)
    return f"worker_group_{size}"


# The index a group of ``size`` reads through: each member's rows of a category in global order.
# Built without blocking writers (so not in a transaction); an index left invalid by a failed
# build is dropped first (GROUP_INDEX_STATE says which).
def create_group_index(size: int) -> str:
    """CREATE INDEX for the members of groups of ``size``."""
    return (
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {group_index_name(size)} "
        f"ON message_store.messages (message_store.category(stream_name), "
        f"({_member_bucket(size)}), global_position)"
    )


def drop_group_index(size: int) -> str:
    """DROP INDEX of the index for groups of ``size`` (an invalid one, before building it anew)."""
    return f"DROP INDEX CONCURRENTLY IF EXISTS message_store.{group_index_name(size)}"


# The statistics of MessageDB's table, with those of a new index's expression.
ANALYZE_MESSAGES: LiteralString = "ANALYZE message_store.messages"

# Whether the index $1 exists on MessageDB's table (NULL: no) and is valid.
GROUP_INDEX_STATE: LiteralString = """
SELECT i.indisvalid
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = $1 AND n.nspname = 'message_store'
"""

# Whether the current role owns MessageDB's table (an index on it needs that); NULL when the
# table is not there yet (whoever installs MessageDB will own it).
OWNS_MESSAGES: LiteralString = """
SELECT bool_or(pg_has_role(c.relowner, 'USAGE'))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'message_store' AND c.relname = 'messages'
"""

GLOBAL_HEAD: LiteralString = "SELECT max(global_position) FROM message_store.messages"

# Every category in global order (a check of the whole store); only the types of $3 when given.
READ_ALL: LiteralString = f"""
SELECT {_COLUMNS}
FROM message_store.messages
WHERE global_position >= $1 AND ($3::text[] IS NULL OR type = ANY($3))
ORDER BY global_position
LIMIT $2
"""

LAST_MESSAGE: LiteralString = f"""
SELECT {_COLUMNS}
FROM message_store.messages
WHERE stream_name = $1 AND ($2::text IS NULL OR type = $2)
ORDER BY position DESC
LIMIT 1
"""

# A message's data, metadata (decoded, whatever JSON they hold) and time, to show it.
MESSAGE_BODY: LiteralString = """
SELECT data, metadata, time FROM message_store.messages WHERE global_position = $1
"""

# A message's stream position by its id (an emitted message written before a reset).
POSITION_OF_ID: LiteralString = "SELECT position FROM message_store.messages WHERE id = $1::uuid"

STREAM_VERSION: LiteralString = "SELECT message_store.stream_version($1)"

# The lock write_message takes on the stream's category, taken ahead (held until the
# transaction ends): a writer that reads a stream first and writes it later holds it in between.
ACQUIRE_LOCK: LiteralString = "SELECT message_store.acquire_lock($1)"

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

# How many messages of a category lie in a range of global positions (a consumer's progress
# between two looks: `worker status --watch`).
CATEGORY_COUNT: LiteralString = """
SELECT count(*) FROM message_store.messages
WHERE message_store.category(stream_name) = $1 AND global_position > $2 AND global_position <= $3
"""

# -- installing MessageDB and the worker schema -----------------------------------------------

# Serialises installs and migrations of one database ("worker" in hex).
INSTALL_LOCK: LiteralString = "SELECT pg_advisory_xact_lock($1)"
INSTALL_LOCK_KEY = 0x776F726B6572
# The same lock held by a session across a whole `worker db install` (store, migrations, read
# models, grants), so concurrent installs of one database run one after the other. A session
# holding it takes INSTALL_LOCK again at once (advisory locks are re-entrant).
INSTALL_SESSION_LOCK: LiteralString = "SELECT pg_advisory_lock($1)"
INSTALL_SESSION_UNLOCK: LiteralString = "SELECT pg_advisory_unlock($1)"

# From the catalog, which any role may read (naming the function needs USAGE on its schema).
MESSAGE_DB_PRESENT: LiteralString = """
SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = 'message_store' AND p.proname = 'message_store_version')
"""

# What `worker db install` may do in an existing database ($1: the read-model schema, or NULL
# when it creates no read models). NULL where the object is not there yet.
INSTALL_RIGHTS: LiteralString = """
SELECT current_user::text AS role, current_database()::text AS database,
       r.rolsuper OR r.rolcreaterole
           OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'message_store') AS message_store_role,
       has_database_privilege(current_database(), 'CREATE') AS create_in_database,
       (SELECT pg_has_role(nspowner, 'USAGE') FROM pg_namespace WHERE nspname = 'worker')
           AS owns_worker,
       CASE WHEN to_regclass('message_store.messages') IS NULL THEN NULL
            ELSE has_table_privilege('message_store.messages', 'TRIGGER') END AS trigger_right,
       (SELECT pg_has_role(relowner, 'USAGE') FROM pg_class
        WHERE oid = to_regclass('message_store.messages')) AS owns_messages,
       CASE WHEN to_regnamespace($1) IS NULL THEN NULL
            ELSE has_schema_privilege(to_regnamespace($1), 'CREATE') END AS create_in_read_schema
FROM pg_roles r WHERE r.rolname = current_user
"""

# What `worker db install` may do on a server where its database does not exist yet.
NEW_DATABASE_RIGHTS: LiteralString = """
SELECT current_user::text AS role, r.rolsuper OR r.rolcreatedb AS create_database,
       r.rolsuper OR r.rolcreaterole
           OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'message_store') AS message_store_role
FROM pg_roles r WHERE r.rolname = current_user
"""

MESSAGE_DB_VERSION: LiteralString = "SELECT message_store.message_store_version()"

# CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists: it is
# created only when missing, so the schema's owner migrates it without that right.
WORKER_SCHEMA_EXISTS: LiteralString = "SELECT to_regnamespace('worker')"

CREATE_WORKER_SCHEMA: LiteralString = "CREATE SCHEMA IF NOT EXISTS worker"

MIGRATIONS_TABLE: LiteralString = """
CREATE TABLE IF NOT EXISTS worker.migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""

APPLIED_MIGRATIONS: LiteralString = "SELECT version FROM worker.migrations"

RECORD_MIGRATION: LiteralString = "INSERT INTO worker.migrations (version, name) VALUES ($1, $2)"

# NULL before the worker schema exists (a statement naming a missing table cannot even be planned).
MIGRATIONS_EXIST: LiteralString = "SELECT to_regclass('worker.migrations')"

SCHEMA_VERSION: LiteralString = "SELECT coalesce(max(version), 0) FROM worker.migrations"

TRIGGER_EXISTS: LiteralString = """
SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'worker_notify'
               AND tgrelid = 'message_store.messages'::regclass)
"""

CREATE_TRIGGER: LiteralString = """
CREATE TRIGGER worker_notify AFTER INSERT ON message_store.messages
FOR EACH ROW EXECUTE FUNCTION worker.notify_message()
"""

DROP_TRIGGER: LiteralString = "DROP TRIGGER IF EXISTS worker_notify ON message_store.messages"

# Which of the rights listed ($1 kinds, $2 names, $3 privileges) the role lacks. Objects that do
# not exist are left out (whether MessageDB and the worker schema are installed, and current, is
# checked apart), and so are those of a schema the role may not use: naming an object in it is
# an error, and the schema's USAGE is reported instead. A CASE keeps that order.
MISSING_RIGHTS: LiteralString = """
SELECT kind, name, privilege, current_user
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(kind, name, privilege, n)
WHERE CASE
    WHEN kind = 'schema' THEN
        CASE WHEN to_regnamespace(name) IS NULL THEN false
             ELSE NOT has_schema_privilege(name, privilege) END
    WHEN to_regnamespace(split_part(name, '.', 1)) IS NULL THEN false
    WHEN NOT has_schema_privilege(split_part(name, '.', 1), 'USAGE') THEN false
    WHEN kind = 'function' THEN
        CASE WHEN to_regprocedure(name) IS NULL THEN false
             ELSE NOT has_function_privilege(name, privilege) END
    WHEN to_regclass(name) IS NULL THEN false
    WHEN kind = 'sequence' THEN NOT has_sequence_privilege(name, privilege)
    ELSE NOT has_table_privilege(name, privilege)
END
ORDER BY n
"""

# -- the read-model schema ------------------------------------------------------------------

SCHEMA_SHADOWS: LiteralString = """
SELECT relname FROM pg_class
WHERE relnamespace = to_regnamespace($1) AND relname = ANY($2::text[]::name[])
UNION SELECT proname FROM pg_proc
WHERE pronamespace = to_regnamespace($1) AND proname = ANY($2::text[]::name[])
UNION SELECT typname FROM pg_type
WHERE typnamespace = to_regnamespace($1) AND typname = ANY($2::text[]::name[])
ORDER BY 1
"""

# Tables and views in MessageDB's schema that are not MessageDB's: read models of a version
# that put them there (message_store came first on its search path).
STRAY_TABLES: LiteralString = """
SELECT relname FROM pg_class
WHERE relnamespace = to_regnamespace('message_store') AND relkind IN ('r', 'v', 'm', 'p')
  AND NOT relname = ANY($1::text[]::name[])
ORDER BY 1
"""

SCHEMA_PRIVILEGES: LiteralString = """
SELECT to_regnamespace($1) IS NOT NULL,
       has_database_privilege(current_database(), 'CREATE'),
       CASE WHEN to_regnamespace($1) IS NULL THEN NULL
            ELSE has_schema_privilege(to_regnamespace($1), 'USAGE') END,
       CASE WHEN to_regnamespace($1) IS NULL THEN NULL
            ELSE has_schema_privilege(to_regnamespace($1), 'CREATE') END,
       current_user, current_database()
"""


def create_database(quoted_name: str) -> str:
    """``CREATE DATABASE`` (the name already checked and quoted)."""
    return f"CREATE DATABASE {quoted_name}"


def create_schema(quoted_name: str) -> str:
    """``CREATE SCHEMA IF NOT EXISTS`` (the name already checked and quoted)."""
    return f"CREATE SCHEMA IF NOT EXISTS {quoted_name}"


# -- roles: what `worker db grant` gives the runtime role --------------------------------------

CURRENT_USER: LiteralString = "SELECT current_user::text"

ROLE_EXISTS: LiteralString = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)"

SCHEMA_EXISTS: LiteralString = "SELECT to_regnamespace($1)"

# Whether role $1 is a member of role $2 (granted again, the membership would be a notice).
IS_MEMBER: LiteralString = "SELECT pg_has_role($1, $2, 'MEMBER')"

# The relations of the schemas in $1 (tables, views, sequences), quoted and qualified, and
# whether the connected role owns them (only an owner, or a superuser, may grant on them).
SCHEMA_RELATIONS: LiteralString = """
SELECT format('%I.%I', n.nspname, c.relname), c.relkind = 'S', pg_has_role(c.relowner, 'USAGE')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
ORDER BY 1
"""

GRANTS_TABLE: LiteralString = "SELECT to_regclass('worker.grants')"

RECORD_GRANT: LiteralString = """
INSERT INTO worker.grants (role) VALUES ($1)
ON CONFLICT (role) DO UPDATE SET granted_at = now(), granted_by = current_user
"""

# The roles `worker db grant` recorded that still exist.
RECORDED_GRANTS: LiteralString = """
SELECT g.role::text FROM worker.grants g
WHERE EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = g.role)
ORDER BY 1
"""

# Rights role $1 holds beyond what `worker run` needs: superuser, CREATE on the database, on
# MessageDB's or the worker's schema, or on a read-model schema ($2).
EXCESS_RIGHTS: LiteralString = """
SELECT 'superuser' FROM pg_roles WHERE rolname = $1 AND rolsuper
UNION ALL
SELECT format('CREATE on database %I', current_database())
WHERE has_database_privilege($1, current_database(), 'CREATE')
UNION ALL
SELECT format('CREATE on schema %I', s)
FROM unnest(array['message_store', 'worker'] || $2::text[]) AS s
WHERE to_regnamespace(s) IS NOT NULL AND has_schema_privilege($1, s, 'CREATE')
"""


def grant(rights: str, target: str, quoted_role: str) -> str:
    """``GRANT rights ON target TO role`` (rights and target from this package's constants or
    quoted by the server, the role already quoted)."""
    return f"GRANT {rights} ON {target} TO {quoted_role}"


def grant_membership(role: str, quoted_grantee: str) -> str:
    """``GRANT role TO grantee`` (``role`` a constant of this package)."""
    return f"GRANT {role} TO {quoted_grantee}"


# -- browsing the store: a message by its id, a category's newest, causation ---------------------

# One message by its id (MessageDB's unique index on id).
READ_BY_ID: LiteralString = f"""
SELECT {_COLUMNS} FROM message_store.messages WHERE id = $1::uuid
"""

# The newest $2 messages of a category, oldest first (an index scan backwards on MessageDB's
# category index, then put back in global order).
CATEGORY_TAIL: LiteralString = f"""
SELECT * FROM (
    SELECT {_COLUMNS}
    FROM message_store.messages
    WHERE message_store.category(stream_name) = $1
    ORDER BY global_position DESC
    LIMIT $2
) newest
ORDER BY global_position
"""

# One message by its stream and position (a cause named by stream and position only).
READ_AT_STREAM_POSITION: LiteralString = f"""
SELECT {_COLUMNS} FROM message_store.messages WHERE stream_name = $1 AND position = $2
"""

# The message whose Protean ``headers.id`` is $1 (a cause named by Protean's causation_id);
# the partial index worker_protean_message_id answers it.
READ_BY_PROTEAN_ID: LiteralString = f"""
SELECT {_COLUMNS} FROM message_store.messages
WHERE (metadata->'headers'->>'id') = $1
ORDER BY global_position
LIMIT 1
"""

# The messages caused by any of a set of messages, in global order: those whose Eventide
# metadata names one's global position ($1, as text: ``->>`` gives text), and those whose
# Protean ``domain.causation_id`` names one's Protean id ($2). Each arm is answered by its own
# partial expression index (worker_causation_global_position, worker_protean_causation_id);
# the equality on a strict operator lets the planner use the indexes' IS NOT NULL predicates.
CAUSED_BY: LiteralString = f"""
SELECT {_COLUMNS} FROM message_store.messages
WHERE (metadata->>'causationMessageGlobalPosition') = ANY($1::text[])
UNION
SELECT {_COLUMNS} FROM message_store.messages
WHERE (metadata->'domain'->>'causation_id') = ANY($2::text[])
ORDER BY global_position
LIMIT $3
"""
