-- Where each image's data lives: one row per copy (per store), replacing images.location.
-- `status` is active (served), pending_delete (a delete_data job exists for it) or deleted
-- (the data plane reported the job done); rows are kept as history. `position` orders an
-- image's locations and identifies one within its image (never reused). URLs never carry
-- credentials. Timestamps are microseconds since the Unix epoch, UTC.
CREATE TABLE image_locations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id   TEXT    NOT NULL REFERENCES images (id),
    url        TEXT    NOT NULL,
    store_id   TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
) STRICT;
CREATE UNIQUE INDEX image_locations_image_position ON image_locations (image_id, position);

-- Every existing location moves over, in the legacy store `file`. A deleted image's data was
-- already removed (best effort) by the control plane: its location is history. A
-- pending_delete image keeps its data active until the scrubber's pass.
INSERT INTO image_locations
    (image_id, url, store_id, status, position, created_at, updated_at, deleted_at)
SELECT id, location, 'file',
       CASE WHEN status = 'deleted' THEN 'deleted' ELSE 'active' END,
       0, updated_at, updated_at,
       CASE WHEN status = 'deleted' THEN COALESCE(deleted_at, updated_at) END
FROM images
WHERE location IS NOT NULL;

-- The column is not used any more.
ALTER TABLE images DROP COLUMN location;

-- Work for the data plane (the only process that touches image bytes), claimed with a
-- lease. A row is pending or claimed; a job done is deleted, a failed one goes back to
-- pending after a backoff. `dedup_key` (sha256 of kind and url) makes enqueuing the same work
-- twice a no-op.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    dedup_key   TEXT    NOT NULL,
    image_id    TEXT    NOT NULL REFERENCES images (id),
    store_id    TEXT    NOT NULL,
    url         TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL,
    lease_until INTEGER,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX jobs_dedup_key ON jobs (dedup_key);
CREATE INDEX jobs_state_not_before ON jobs (state, not_before);
CREATE INDEX jobs_image_id ON jobs (image_id);
