-- Near-duplicate search over the user's whole history (multi-index hashing).
-- nd_phash / nd_dhash: phash and dhash of the design trimmed to its content. Rows stored
-- before this migration get their plain phash / dhash (nd_version 0) until
-- `designflow db backfill` recomputes them from the files on the NAS (nd_version 1).
ALTER TABLE design_images
    ADD COLUMN nd_phash bigint,
    ADD COLUMN nd_dhash bigint,
    ADD COLUMN nd_version smallint NOT NULL DEFAULT 0,
    ADD COLUMN near_duplicate_of bigint REFERENCES design_images (id),
    ADD COLUMN near_distance integer;

UPDATE design_images SET nd_phash = phash, nd_dhash = dhash;

ALTER TABLE design_images
    ALTER COLUMN nd_phash SET NOT NULL,
    ALTER COLUMN nd_dhash SET NOT NULL;

-- Each 64-bit hash in three chunks of 21, 21 and 22 bits (see designflow/similarity.py).
-- Both the trimmed hash (finds copies on a larger canvas, and mirrored copies) and the plain
-- phash (finds copies whose additions, such as a watermark, change the trimmed outline).
ALTER TABLE design_images
    ADD COLUMN nd0 integer GENERATED ALWAYS AS (((nd_phash >> 43) & 2097151)::integer) STORED,
    ADD COLUMN nd1 integer GENERATED ALWAYS AS (((nd_phash >> 22) & 2097151)::integer) STORED,
    ADD COLUMN nd2 integer GENERATED ALWAYS AS ((nd_phash & 4194303)::integer) STORED,
    ADD COLUMN ph0 integer GENERATED ALWAYS AS (((phash >> 43) & 2097151)::integer) STORED,
    ADD COLUMN ph1 integer GENERATED ALWAYS AS (((phash >> 22) & 2097151)::integer) STORED,
    ADD COLUMN ph2 integer GENERATED ALWAYS AS ((phash & 4194303)::integer) STORED;

-- Active designs only, with id and hashes in the index so candidates are verified without
-- touching the table.
CREATE INDEX design_images_nd0_idx ON design_images (user_id, nd0) INCLUDE (id, nd_phash, nd_dhash) WHERE is_active;
CREATE INDEX design_images_nd1_idx ON design_images (user_id, nd1) INCLUDE (id, nd_phash, nd_dhash) WHERE is_active;
CREATE INDEX design_images_nd2_idx ON design_images (user_id, nd2) INCLUDE (id, nd_phash, nd_dhash) WHERE is_active;
CREATE INDEX design_images_ph0_idx ON design_images (user_id, ph0) INCLUDE (id, phash, dhash) WHERE is_active;
CREATE INDEX design_images_ph1_idx ON design_images (user_id, ph1) INCLUDE (id, phash, dhash) WHERE is_active;
CREATE INDEX design_images_ph2_idx ON design_images (user_id, ph2) INCLUDE (id, phash, dhash) WHERE is_active;
CREATE INDEX design_images_nd_version_idx ON design_images (nd_version) WHERE nd_version = 0;
