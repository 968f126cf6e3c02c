-- Image members (sharing). One row per (image, member project); removing a member removes
-- the row. `status` is pending, accepted or rejected.
CREATE TABLE image_members (
    image_id   TEXT    NOT NULL REFERENCES images (id),
    member     TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (image_id, member)
) STRICT, WITHOUT ROWID;
CREATE INDEX image_members_member ON image_members (member, status);

-- Keyset pagination walks one index per sort key (the key, then the created_at/id tie-break).
CREATE INDEX images_name_sort ON images (name, created_at, id);
CREATE INDEX images_status_sort ON images (status, created_at, id);
CREATE INDEX images_container_format_sort ON images (container_format, created_at, id);
CREATE INDEX images_disk_format_sort ON images (disk_format, created_at, id);
CREATE INDEX images_size_sort ON images (size, created_at, id);
CREATE INDEX images_updated_at_sort ON images (updated_at, created_at, id);
-- The scrubber finds pending_delete images by status and deletion time.
CREATE INDEX images_status_deleted_at ON images (status, deleted_at);
