-- Which node's block cache holds which image (for `GET /v2/cache/nodes/{id}`): each data plane
-- reports the bytes it holds of an image through its control plane, under the node's
-- `worker_self_reference_url`; a row leaves when the node holds none of the image any more.
CREATE TABLE cached_images (
    node     TEXT    NOT NULL,
    image_id TEXT    NOT NULL,
    bytes    INTEGER NOT NULL,
    PRIMARY KEY (node, image_id)
);
CREATE INDEX ix_cached_images_image ON cached_images (image_id);
