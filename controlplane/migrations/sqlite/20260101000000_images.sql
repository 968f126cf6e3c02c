-- Image records. A row is never removed: a deleted image keeps its row (status 'deleted') so
-- that its id can never be reused (OSSN-0075).
--
-- Timestamps are microseconds since the Unix epoch, UTC. `version` is bumped on every write
-- and used for optimistic concurrency (a write names the version it read).
CREATE TABLE images (
    id               TEXT    PRIMARY KEY NOT NULL,
    name             TEXT,
    status           TEXT    NOT NULL,
    visibility       TEXT    NOT NULL,
    protected        INTEGER NOT NULL DEFAULT 0,
    os_hidden        INTEGER NOT NULL DEFAULT 0,
    owner            TEXT,
    size             INTEGER,
    virtual_size     INTEGER,
    checksum         TEXT,
    os_hash_algo     TEXT,
    os_hash_value    TEXT,
    min_disk         INTEGER NOT NULL DEFAULT 0,
    min_ram          INTEGER NOT NULL DEFAULT 0,
    container_format TEXT,
    disk_format      TEXT,
    location         TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    deleted_at       INTEGER,
    version          INTEGER NOT NULL DEFAULT 0
) STRICT;

-- The default list order is (created_at, id) descending; keyset pagination walks this index.
CREATE INDEX images_created_at_id ON images (created_at, id);
CREATE INDEX images_owner ON images (owner);
CREATE INDEX images_status ON images (status);

-- Free-form string properties ("extra properties" in Glance).
CREATE TABLE image_properties (
    image_id TEXT NOT NULL REFERENCES images (id),
    name     TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
) STRICT, WITHOUT ROWID;
CREATE INDEX image_properties_name_value ON image_properties (name, value);

-- Tags form a set per image.
CREATE TABLE image_tags (
    image_id TEXT NOT NULL REFERENCES images (id),
    value    TEXT NOT NULL,
    PRIMARY KEY (image_id, value)
) STRICT, WITHOUT ROWID;
CREATE INDEX image_tags_value ON image_tags (value);
