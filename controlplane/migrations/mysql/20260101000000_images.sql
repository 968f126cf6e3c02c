-- Image records (MySQL / MariaDB). Same shape as the SQLite schema: timestamps are
-- microseconds since the Unix epoch (BIGINT), booleans are 0/1 BIGINTs, and tables use the
-- binary utf8mb4 collation so that equality and sorting are case- and accent-sensitive, as on
-- SQLite and PostgreSQL. Short strings are VARCHAR so that they can be indexed.
-- A row is never removed (image ids are never reused, OSSN-0075).
CREATE TABLE images (
    id               VARCHAR(36)  NOT NULL PRIMARY KEY,
    name             VARCHAR(255) NULL,
    status           VARCHAR(32)  NOT NULL,
    visibility       VARCHAR(32)  NOT NULL,
    protected        BIGINT       NOT NULL DEFAULT 0,
    os_hidden        BIGINT       NOT NULL DEFAULT 0,
    owner            VARCHAR(255) NULL,
    size             BIGINT       NULL,
    virtual_size     BIGINT       NULL,
    checksum         VARCHAR(32)  NULL,
    os_hash_algo     VARCHAR(64)  NULL,
    os_hash_value    VARCHAR(128) NULL,
    min_disk         BIGINT       NOT NULL DEFAULT 0,
    min_ram          BIGINT       NOT NULL DEFAULT 0,
    container_format VARCHAR(255) NULL,
    disk_format      VARCHAR(255) NULL,
    location         TEXT         NULL,
    created_at       BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL,
    deleted_at       BIGINT       NULL,
    version          BIGINT       NOT NULL DEFAULT 0,
    INDEX images_created_at_id (created_at, id),
    INDEX images_owner (owner),
    INDEX images_status (status)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE image_properties (
    image_id VARCHAR(36)  NOT NULL,
    name     VARCHAR(255) NOT NULL,
    value    TEXT         NOT NULL,
    PRIMARY KEY (image_id, name),
    INDEX image_properties_name_value (name, value(191)),
    FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE image_tags (
    image_id VARCHAR(36)  NOT NULL,
    value    VARCHAR(255) NOT NULL,
    PRIMARY KEY (image_id, value),
    INDEX image_tags_value (value),
    FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
