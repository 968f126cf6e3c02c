-- The block hashes of each image's data (PostgreSQL); see the SQLite migration.
CREATE TABLE image_blocks (
    image_id   TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES images (id),
    block_size BIGINT NOT NULL,
    hashes     TEXT COLLATE "C" NOT NULL
);
