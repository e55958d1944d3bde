-- What `designflow report` shows per run: the run's name (as in the Prefect UI), how many
-- files it was given, and the background mockup runs with their queue and wait.
ALTER TABLE upload_runs ADD COLUMN run_name text;
ALTER TABLE upload_runs ADD COLUMN files integer;

CREATE TABLE mockup_runs (
    flow_run_id    uuid PRIMARY KEY,
    run_name       text,
    upload_run_id  uuid,                 -- the upload run that enqueued it, if any
    queue          text,
    created_at     timestamptz,          -- when it was queued
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT now(),
    duration_ms    double precision NOT NULL,
    designs        integer NOT NULL DEFAULT 0,
    mockups        integer NOT NULL DEFAULT 0,
    failed         integer NOT NULL DEFAULT 0,
    listings       integer NOT NULL DEFAULT 0
);
CREATE INDEX mockup_runs_time_idx ON mockup_runs (finished_at);
