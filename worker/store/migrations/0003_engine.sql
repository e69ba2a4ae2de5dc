-- Leases fence consumers: whoever holds a consumer's advisory lock bumps its epoch, and a
-- position only commits while the committing process's epoch is still the current one.
CREATE TABLE worker.leases (
    consumer    text PRIMARY KEY,
    epoch       bigint NOT NULL DEFAULT 0,
    owner       text,
    acquired_at timestamptz
);

-- Parked messages. The first one of a stream carries the error; later messages of the same
-- stream are parked behind it (blocked_by) so the read model never sees a stream out of order.
CREATE TABLE worker.dead_letters (
    id               bigserial PRIMARY KEY,
    consumer         text NOT NULL,
    message_id       text NOT NULL,
    stream_name      text NOT NULL,
    position         bigint NOT NULL,
    global_position  bigint NOT NULL,
    type             text NOT NULL,
    error_type       text,
    error            text,
    traceback        text,
    attempts         integer NOT NULL DEFAULT 0,
    first_failed_at  timestamptz,
    parked_at        timestamptz NOT NULL DEFAULT now(),
    blocked_by       bigint REFERENCES worker.dead_letters (id) ON DELETE SET NULL,
    replay_requested boolean NOT NULL DEFAULT false,
    UNIQUE (consumer, global_position)
);
CREATE INDEX dead_letters_stream ON worker.dead_letters (consumer, stream_name, global_position);

-- Wakes idle consumers at once: one notification per category and transaction (PostgreSQL
-- folds identical notifications of a transaction into one). Installed as a trigger on
-- message_store.messages by `worker db install` unless [event_store] notify = false.
CREATE FUNCTION worker.notify_message() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('worker_messages', split_part(NEW.stream_name, '-', 1));
    RETURN NULL;
END;
$$;
