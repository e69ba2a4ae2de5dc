-- A consumer group member's hash of a stream name: MessageDB's
-- hash_64(cardinal_id(stream_name)), the same value for every name (NULL for a name without an
-- id), written in plain SQL over built-in functions only. MessageDB's own functions call each
-- other by unqualified name, so an index on them would depend on the search_path of whoever
-- writes a message; this one depends on nothing and can be indexed (worker.group_index).
CREATE FUNCTION worker.member_hash(stream_name text) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_catalog.strpos($1, '-') > 0 THEN
    pg_catalog.left(
      'x' || pg_catalog.md5(pg_catalog.split_part(
        pg_catalog.substr($1, pg_catalog.strpos($1, '-') + 1), '+', 1)),
      17)::bit(64)::bigint
  END
$$;

-- The size of record of each subscriber's consumer of a category ('{name}:{category}'): only
-- its members of that size (the plain consumer for 1) may take their leases. A resize hands the
-- streams over in one transaction: it fences the members of the size before, records their
-- final positions here (`handed`, by member), and starts the new members at the least of them;
-- a new member then skips each message whose former owner had handled it (its global position
-- at or below that owner's final position). `pinned`: set by `worker group resize`, so a process
-- of another size stands by instead of handing the group over when the members stop.
CREATE TABLE worker.groups (
    consumer   text PRIMARY KEY,
    size       integer NOT NULL CHECK (size >= 1),
    from_size  integer CHECK (from_size >= 1),
    handed     bigint[],
    pinned     boolean NOT NULL DEFAULT false,
    resized_at timestamptz NOT NULL DEFAULT now()
);
