-- Where each image's data lives, and work for the data plane (MySQL / MariaDB). Same shape as
-- the SQLite schema (see its migration for the meaning of each column).
CREATE TABLE image_locations (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    image_id   VARCHAR(36)  NOT NULL,
    url        TEXT         NOT NULL,
    store_id   VARCHAR(255) NOT NULL,
    status     VARCHAR(32)  NOT NULL,
    position   BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    deleted_at BIGINT       NULL,
    UNIQUE INDEX image_locations_image_position (image_id, position),
    FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO image_locations
    (image_id, url, store_id, status, position, created_at, updated_at, deleted_at)
SELECT id, location, 'file',
       CASE WHEN status = 'deleted' THEN 'deleted' ELSE 'active' END,
       0, updated_at, updated_at,
       CASE WHEN status = 'deleted' THEN COALESCE(deleted_at, updated_at) END
FROM images
WHERE location IS NOT NULL;

ALTER TABLE images DROP COLUMN location;

CREATE TABLE jobs (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind        VARCHAR(32)  NOT NULL,
    dedup_key   VARCHAR(64)  NOT NULL,
    image_id    VARCHAR(36)  NOT NULL,
    store_id    VARCHAR(255) NOT NULL,
    url         TEXT         NOT NULL,
    state       VARCHAR(32)  NOT NULL,
    attempts    BIGINT       NOT NULL DEFAULT 0,
    not_before  BIGINT       NOT NULL,
    lease_until BIGINT       NULL,
    last_error  TEXT         NULL,
    created_at  BIGINT       NOT NULL,
    updated_at  BIGINT       NOT NULL,
    UNIQUE INDEX jobs_dedup_key (dedup_key),
    INDEX jobs_state_not_before (state, not_before),
    FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
