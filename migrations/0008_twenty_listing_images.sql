-- Etsy's spec allows up to 20 images per listing (image_ids "can include up to 20").
ALTER TABLE etsy_listing_images DROP CONSTRAINT etsy_listing_images_rank_check;
ALTER TABLE etsy_listing_images ADD CONSTRAINT etsy_listing_images_rank_check
    CHECK (rank BETWEEN 1 AND 20);
