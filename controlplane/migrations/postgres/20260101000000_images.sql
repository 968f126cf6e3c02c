-- Image records (PostgreSQL). Same shape as the SQLite schema: timestamps are microseconds
-- since the Unix epoch (BIGINT), booleans are 0/1 BIGINTs, and every text column uses the "C"
-- collation so that sorting and equality are byte-wise, as on SQLite and MariaDB.
-- A row is never removed (image ids are never reused, OSSN-0075).
CREATE TABLE images (
    id               VARCHAR(36) COLLATE "C" PRIMARY KEY NOT NULL,
    name             TEXT COLLATE "C",
    status           VARCHAR(32) COLLATE "C" NOT NULL,
    visibility       VARCHAR(32) COLLATE "C" NOT NULL,
    protected        BIGINT NOT NULL DEFAULT 0,
    os_hidden        BIGINT NOT NULL DEFAULT 0,
    owner            TEXT COLLATE "C",
    size             BIGINT,
    virtual_size     BIGINT,
    checksum         TEXT COLLATE "C",
    os_hash_algo     TEXT COLLATE "C",
    os_hash_value    TEXT COLLATE "C",
    min_disk         BIGINT NOT NULL DEFAULT 0,
    min_ram          BIGINT NOT NULL DEFAULT 0,
    container_format TEXT COLLATE "C",
    disk_format      TEXT COLLATE "C",
    location         TEXT COLLATE "C",
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    deleted_at       BIGINT,
    version          BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX images_created_at_id ON images (created_at, id);
CREATE INDEX images_owner ON images (owner);
CREATE INDEX images_status ON images (status);

CREATE TABLE image_properties (
    image_id TEXT COLLATE "C" NOT NULL REFERENCES images (id),
    name     TEXT COLLATE "C" NOT NULL,
    value    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (image_id, name)
);
CREATE INDEX image_properties_name_value ON image_properties (name, value);

CREATE TABLE image_tags (
    image_id TEXT COLLATE "C" NOT NULL REFERENCES images (id),
    value    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (image_id, value)
);
CREATE INDEX image_tags_value ON image_tags (value);
