-- Which node's block cache holds which image (MySQL / MariaDB); see the SQLite migration.
CREATE TABLE cached_images (
    node     VARCHAR(255) NOT NULL,
    image_id VARCHAR(36)  NOT NULL,
    bytes    BIGINT       NOT NULL,
    PRIMARY KEY (node, image_id),
    INDEX ix_cached_images_image (image_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
