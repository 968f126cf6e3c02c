-- Where each image's data lives, and work for the data plane (PostgreSQL). Same shape as the
-- SQLite schema (see its migration for the meaning of each column).
CREATE TABLE image_locations (
    id         BIGSERIAL PRIMARY KEY,
    image_id   TEXT COLLATE "C" NOT NULL REFERENCES images (id),
    url        TEXT COLLATE "C" NOT NULL,
    store_id   TEXT COLLATE "C" NOT NULL,
    status     VARCHAR(32) COLLATE "C" NOT NULL,
    position   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX image_locations_image_position ON image_locations (image_id, position);

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
    id          BIGSERIAL PRIMARY KEY,
    kind        VARCHAR(32) COLLATE "C" NOT NULL,
    dedup_key   VARCHAR(64) COLLATE "C" NOT NULL,
    image_id    TEXT COLLATE "C" NOT NULL REFERENCES images (id),
    store_id    TEXT COLLATE "C" NOT NULL,
    url         TEXT COLLATE "C" NOT NULL,
    state       VARCHAR(32) COLLATE "C" NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    not_before  BIGINT NOT NULL,
    lease_until BIGINT,
    last_error  TEXT COLLATE "C",
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_dedup_key ON jobs (dedup_key);
CREATE INDEX jobs_state_not_before ON jobs (state, not_before);
CREATE INDEX jobs_image_id ON jobs (image_id);
