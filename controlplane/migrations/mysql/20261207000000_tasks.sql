-- Glance's tasks (MySQL / MariaDB); see the SQLite migration.
CREATE TABLE tasks (
    id         VARCHAR(36)  NOT NULL PRIMARY KEY,
    type       VARCHAR(32)  NOT NULL,
    status     VARCHAR(32)  NOT NULL,
    owner      VARCHAR(255) NULL,
    image_id   VARCHAR(36)  NULL,
    request_id VARCHAR(255) NULL,
    user_id    VARCHAR(255) NULL,
    input      TEXT         NOT NULL,
    result     TEXT         NULL,
    message    TEXT         NOT NULL,
    expires_at BIGINT       NULL,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    INDEX tasks_image_id (image_id),
    INDEX tasks_created_at_id (created_at, id),
    INDEX tasks_expires_at (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
