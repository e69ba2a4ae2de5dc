-- What `worker events trace` needs to answer in milliseconds on a large store: the messages a
-- message caused, and a cause named by Protean's message id, found by index rather than by a
-- scan of every message. Partial (only the messages that carry the key), so a store whose
-- messages name no cause, or none in Protean's layout, keeps small or empty indexes.
--
-- Plain CREATE INDEX (migrations run in one transaction, where CONCURRENTLY is not allowed):
-- it blocks writes to message_store.messages while it builds, about a second per million
-- messages that carry the key. On a large store in production, create them beforehand with
-- CREATE INDEX CONCURRENTLY and these exact names and expressions (docs/browsing.md); this
-- migration then finds them and does nothing. Creating an index needs the table's owner (the
-- role that installed MessageDB), as the NOTIFY trigger does.

-- Eventide's layout: a message's causationMessageGlobalPosition names its cause.
CREATE INDEX IF NOT EXISTS worker_causation_global_position
    ON message_store.messages ((metadata->>'causationMessageGlobalPosition'))
    WHERE (metadata->>'causationMessageGlobalPosition') IS NOT NULL;

-- Protean's layout: domain.causation_id names the cause's headers.id (or, for a cause written
-- in Eventide's layout, "{stream_name}-{position}").
CREATE INDEX IF NOT EXISTS worker_protean_causation_id
    ON message_store.messages ((metadata->'domain'->>'causation_id'))
    WHERE (metadata->'domain'->>'causation_id') IS NOT NULL;

-- Protean's message ids (headers.id), to find the cause a causation_id names.
CREATE INDEX IF NOT EXISTS worker_protean_message_id
    ON message_store.messages ((metadata->'headers'->>'id'))
    WHERE (metadata->'headers'->>'id') IS NOT NULL;
