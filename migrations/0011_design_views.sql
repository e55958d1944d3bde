-- Near duplicates a seller agrees with: more hashes per design for the first stage (views),
-- and a small grey reduction per design for the second stage (the verifier that aligns two
-- designs and compares them where they overlap). Adds only: stored hashes stay as they are.
--
-- design_views: the trimmed phash of the design as a cropped, one-side-cut or slightly
-- rotated copy of it would look (see designflow/images/views.py). A copy is looked up with
-- its own trimmed hash among every view, so crops need no extra query per upload.
CREATE TABLE design_views (
    design_id bigint NOT NULL REFERENCES design_images (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    view smallint NOT NULL,
    phash bigint NOT NULL,
    v0 integer GENERATED ALWAYS AS (((phash >> 43) & 2097151)::integer) STORED,
    v1 integer GENERATED ALWAYS AS (((phash >> 22) & 2097151)::integer) STORED,
    v2 integer GENERATED ALWAYS AS ((phash & 4194303)::integer) STORED,
    PRIMARY KEY (design_id, view)
);
CREATE INDEX design_views_v0_idx ON design_views (user_id, v0) INCLUDE (design_id, phash, view);
CREATE INDEX design_views_v1_idx ON design_views (user_id, v1) INCLUDE (design_id, phash, view);
CREATE INDEX design_views_v2_idx ON design_views (user_id, v2) INCLUDE (design_id, phash, view);

-- The verifier's reduction: grey, at most 384 px on its longer side, PNG. Made once at
-- upload from the decode the fingerprint already does; `designflow db backfill` makes it
-- for designs stored before (nd_version 2 marks a design with views and a reduction).
CREATE TABLE design_reductions (
    design_id bigint PRIMARY KEY REFERENCES design_images (id) ON DELETE CASCADE,
    image bytea NOT NULL
);
-- Already compressed: no TOAST compression pass on read or write.
ALTER TABLE design_reductions ALTER COLUMN image SET STORAGE EXTERNAL;

DROP INDEX IF EXISTS design_images_nd_version_idx;
CREATE INDEX design_images_nd_version_idx ON design_images (nd_version) WHERE nd_version < 2;
