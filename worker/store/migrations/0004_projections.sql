-- The highest position a consumer ever committed: below it (after a reset) messages are being
-- applied again, and read models switch to their exact, replay-safe write mode.
ALTER TABLE worker.positions ADD COLUMN high_water bigint NOT NULL DEFAULT 0;
UPDATE worker.positions SET high_water = position;

-- Projections and their table generations: readers use a view on the live generation; a
-- rebuild fills `building` and then switches the view.
CREATE TABLE worker.projections (
    name         text PRIMARY KEY,
    generation   integer NOT NULL DEFAULT 1,
    building     integer,
    code_version text,
    switched_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- A consumer's last reported state (stopped consumers say so here for `worker status`).
ALTER TABLE worker.leases ADD COLUMN state text, ADD COLUMN state_at timestamptz;
