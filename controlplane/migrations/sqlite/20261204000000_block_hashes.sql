-- The block hashes of each image's data (for the data plane's block cache): the data cut into
-- blocks of `block_size` bytes (the last one shorter), the xxh3-64 of each block as 16 hex
-- digits, in order. Written by the upload's commit, with the location; replaced by the next
-- commit of the image.
CREATE TABLE image_blocks (
    image_id   TEXT    NOT NULL PRIMARY KEY REFERENCES images (id),
    block_size INTEGER NOT NULL,
    hashes     TEXT    NOT NULL
);
