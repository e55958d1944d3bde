-- Product mockups rendered for stored designs, one per (design, template).
CREATE TABLE design_mockups (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    design_id   bigint      NOT NULL REFERENCES design_images (id),
    template_id text        NOT NULL,
    nas_path    text        NOT NULL,
    bytes       bigint      NOT NULL CHECK (bytes > 0),
    width       integer     NOT NULL,
    height      integer     NOT NULL,
    flow_run_id uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT design_mockups_design_template_key UNIQUE (design_id, template_id)
);
CREATE INDEX design_mockups_design_idx ON design_mockups (design_id);
