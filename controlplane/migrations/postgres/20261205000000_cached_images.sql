-- Which node's block cache holds which image (PostgreSQL); see the SQLite migration.
CREATE TABLE cached_images (
    node     TEXT COLLATE "C" NOT NULL,
    image_id TEXT COLLATE "C" NOT NULL,
    bytes    BIGINT NOT NULL,
    PRIMARY KEY (node, image_id)
);
CREATE INDEX ix_cached_images_image ON cached_images (image_id);
