-- The block hashes of each image's data (MySQL / MariaDB); see the SQLite migration. LONGTEXT:
-- a 100 GiB image in 8 MiB blocks has 12800 hashes (200 KiB of hex).
CREATE TABLE image_blocks (
    image_id   VARCHAR(36) NOT NULL PRIMARY KEY,
    block_size BIGINT      NOT NULL,
    hashes     LONGTEXT    NOT NULL,
    CONSTRAINT fk_image_blocks_image FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
