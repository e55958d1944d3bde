-- `designflow web`: sellers' API tokens (only a SHA-256 of each is kept: a leaked table
-- signs nobody in) and the uploads made over HTTP (jobs), each owned by one seller.
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      text        NOT NULL,
    name         text        NOT NULL DEFAULT '',
    token_sha256 text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

CREATE TABLE web_jobs (
    id           uuid        PRIMARY KEY,
    user_id      text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    files        integer     NOT NULL,
    flow_run_id  uuid,
    report       jsonb,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX web_jobs_user_idx ON web_jobs (user_id, created_at);
CREATE INDEX web_jobs_open_idx ON web_jobs (user_id) WHERE status IN ('pending', 'running');
