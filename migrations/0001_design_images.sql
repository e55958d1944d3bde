-- The catalog of stored designs. A row exists only for a file that is already on the NAS.
CREATE TABLE design_images (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       text        NOT NULL,
    sha256        text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- 64-bit perceptual hashes, stored as signed bigint (same bits).
    phash         bigint      NOT NULL,
    ahash         bigint      NOT NULL,
    dhash         bigint      NOT NULL,
    whash         bigint      NOT NULL,
    width         integer     NOT NULL CHECK (width > 0),
    height        integer     NOT NULL CHECK (height > 0),
    bytes         bigint      NOT NULL CHECK (bytes > 0),
    format        text        NOT NULL,
    original_name text        NOT NULL,
    nas_path      text        NOT NULL,
    batch_id      uuid        NOT NULL,
    flow_run_id   uuid,
    is_active     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT design_images_user_sha256_key UNIQUE (user_id, sha256)
);

CREATE INDEX design_images_user_active_idx ON design_images (user_id, is_active);
CREATE INDEX design_images_user_phash_idx ON design_images (user_id, phash);
CREATE INDEX design_images_user_ahash_idx ON design_images (user_id, ahash);
CREATE INDEX design_images_user_dhash_idx ON design_images (user_id, dhash);
CREATE INDEX design_images_user_whash_idx ON design_images (user_id, whash);
CREATE INDEX design_images_batch_idx ON design_images (batch_id);
