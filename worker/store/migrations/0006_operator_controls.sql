-- Consumers an operator paused (`worker pause`): the process holding one keeps its lease and
-- handles nothing until `worker resume` deletes the row; standbys go on standing by.
CREATE TABLE worker.paused (
    consumer  text PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text,
    reason    text
);

-- Subscribers whose own setup(conn) has run in this database (by `worker db install`, or by a
-- `worker run` whose role may create tables): a role that may not create tables runs only
-- subscribers found here.
CREATE TABLE worker.setups (
    subscriber text PRIMARY KEY,
    done_at    timestamptz NOT NULL DEFAULT now(),
    done_by    name NOT NULL DEFAULT current_user
);

-- Runtime roles `worker db grant` gave their rights to: `worker db install` and rebuilds grant
-- them again on what they create (a migration's tables, a new generation's read-model tables).
CREATE TABLE worker.grants (
    role       name PRIMARY KEY,
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by name NOT NULL DEFAULT current_user
);
