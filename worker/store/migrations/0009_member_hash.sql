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
