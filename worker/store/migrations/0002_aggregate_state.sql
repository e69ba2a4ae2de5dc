-- State of aggregates that are not event-sourced (e.g. a fact-event aggregate): one row per
-- aggregate with its optimistic version. Its fact event is written in the same transaction.
CREATE TABLE worker.aggregate_state (
    category   text        NOT NULL,
    id         text        NOT NULL,
    version    bigint      NOT NULL CHECK (version >= 1),
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (category, id)
);
