-- Listing content from the seller's manifest, one per design, saved at upload time.
CREATE TABLE listing_drafts (
    design_id  bigint      PRIMARY KEY REFERENCES design_images (id),
    fields     jsonb       NOT NULL,
    source     text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Etsy draft listings made for designs: one per (design, shop), so a retried publish finds
-- the listing an earlier attempt made instead of creating a second one.
CREATE TABLE etsy_listings (
    design_id         bigint      NOT NULL REFERENCES design_images (id),
    shop_id           text        NOT NULL,
    listing_id        bigint,
    -- creating: the create call was sent and its answer not yet recorded
    status            text        NOT NULL CHECK (status IN ('creating', 'created', 'complete')),
    title             text        NOT NULL,
    content_sha256    text        NOT NULL,
    create_started_at timestamptz NOT NULL DEFAULT now(),
    images_skipped    jsonb       NOT NULL DEFAULT '[]',
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (design_id, shop_id),
    CONSTRAINT etsy_listings_listing_key UNIQUE (shop_id, listing_id),
    CHECK (status = 'creating' OR listing_id IS NOT NULL)
);

CREATE TABLE etsy_listing_images (
    design_id        bigint  NOT NULL,
    shop_id          text    NOT NULL,
    mockup_id        bigint  NOT NULL REFERENCES design_mockups (id),
    rank             integer NOT NULL CHECK (rank BETWEEN 1 AND 10),
    listing_image_id bigint  NOT NULL,
    PRIMARY KEY (design_id, shop_id, mockup_id),
    CONSTRAINT etsy_listing_images_rank_key UNIQUE (design_id, shop_id, rank),
    FOREIGN KEY (design_id, shop_id) REFERENCES etsy_listings (design_id, shop_id)
);
