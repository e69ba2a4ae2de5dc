-- The worker's own schema: read positions of consumers. MessageDB's tables are never altered.
CREATE TABLE worker.positions (
    consumer   text PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
