-- Deadlines of process managers: a message due to an instance at a time. A step schedules one
-- in its batch's transaction; a later step may cancel it; the consumer that scheduled it
-- delivers it once due, in a transaction that marks it fired and checks the lease's epoch.
CREATE TABLE worker.deadlines (
    id           uuid PRIMARY KEY,
    process      text NOT NULL,
    consumer     text NOT NULL,
    instance     text NOT NULL,
    name         text NOT NULL,
    due_at       timestamptz NOT NULL,
    type         text NOT NULL,
    data         jsonb NOT NULL,
    metadata     jsonb,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz,
    fired_at     timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    error        text,
    failed_at    timestamptz
);
-- The next due deadlines of a consumer, and the pending ones of an instance (to cancel).
CREATE INDEX deadlines_due ON worker.deadlines (consumer, due_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL;
CREATE INDEX deadlines_pending ON worker.deadlines (instance, name)
    WHERE fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL;
