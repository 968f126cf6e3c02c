CREATE TABLE image_members (
    image_id   VARCHAR(36)  NOT NULL,
    member     VARCHAR(255) NOT NULL,
    status     VARCHAR(32)  NOT NULL,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (image_id, member),
    INDEX image_members_member (member, status),
    FOREIGN KEY (image_id) REFERENCES images (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX images_name_sort ON images (name, created_at, id);
CREATE INDEX images_status_sort ON images (status, created_at, id);
CREATE INDEX images_container_format_sort ON images (container_format, created_at, id);
CREATE INDEX images_disk_format_sort ON images (disk_format, created_at, id);
CREATE INDEX images_size_sort ON images (size, created_at, id);
CREATE INDEX images_updated_at_sort ON images (updated_at, created_at, id);
CREATE INDEX images_status_deleted_at ON images (status, deleted_at);
