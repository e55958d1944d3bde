-- One row per upload run: the figures a seller watches (see `designflow report`).
CREATE TABLE upload_runs (
    flow_run_id          uuid PRIMARY KEY,
    user_id              text        NOT NULL,
    started_at           timestamptz NOT NULL,
    finished_at          timestamptz NOT NULL DEFAULT now(),
    duration_ms          double precision NOT NULL,
    fingerprint_ms       double precision NOT NULL DEFAULT 0,
    dedup_ms             double precision NOT NULL DEFAULT 0,
    nas_ms               double precision NOT NULL DEFAULT 0,
    insert_ms            double precision NOT NULL DEFAULT 0,
    batches              integer     NOT NULL DEFAULT 0,
    stored               integer     NOT NULL DEFAULT 0,
    duplicates           integer     NOT NULL DEFAULT 0,
    rejected             integer     NOT NULL DEFAULT 0,
    failed               integer     NOT NULL DEFAULT 0,
    mockup_runs          integer     NOT NULL DEFAULT 0,
    mockup_queue_depth   integer,            -- generate-mockups runs waiting when this run ended
    mockup_failure_rate  double precision,   -- failed / finished generate-mockups runs, last 24 h
    peak_memory_mb       double precision
);
CREATE INDEX upload_runs_user_time_idx ON upload_runs (user_id, finished_at);
CREATE INDEX upload_runs_time_idx ON upload_runs (finished_at);
