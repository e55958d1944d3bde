-- `designflow verify --repair` marks designs whose NAS file is gone (they stop counting as
-- active designs) instead of deleting their rows.
ALTER TABLE design_images ADD COLUMN missing_since timestamptz;
