-- A better version of a design (more pixels), stored with --replace-with-better: the old
-- design keeps its row and its file (history, verify) but is inactive, so lookups find the
-- new one, and it names the design that replaced it.
ALTER TABLE design_images ADD COLUMN superseded_by bigint REFERENCES design_images (id);

-- A listing that moved to a design's better version: on the next publish its images are
-- replaced rank by rank (uploadListingImage with overwrite), never adopted as they are.
ALTER TABLE etsy_listings ADD COLUMN replace_images boolean NOT NULL DEFAULT false;
