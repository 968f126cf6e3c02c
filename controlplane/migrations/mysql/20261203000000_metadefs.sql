-- The metadata definitions catalog (MySQL / MariaDB). Same shape as the SQLite schema (see
-- its migration for the meaning of each column); binary collation, as the other tables.
CREATE TABLE metadef_namespaces (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    namespace    VARCHAR(80)  NOT NULL,
    display_name VARCHAR(80)  NULL,
    description  TEXT         NULL,
    visibility   VARCHAR(32)  NOT NULL,
    protected    BIGINT       NOT NULL DEFAULT 0,
    owner        VARCHAR(255) NULL,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL,
    UNIQUE INDEX metadef_namespaces_namespace (namespace),
    INDEX metadef_namespaces_owner (owner),
    INDEX metadef_namespaces_created_at (created_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE metadef_objects (
    id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    namespace_id BIGINT      NOT NULL,
    name         VARCHAR(80) NOT NULL,
    description  TEXT        NULL,
    required     TEXT        NULL,
    json_schema  MEDIUMTEXT  NOT NULL,
    created_at   BIGINT      NOT NULL,
    updated_at   BIGINT      NOT NULL,
    UNIQUE INDEX metadef_objects_namespace_id_name (namespace_id, name),
    INDEX metadef_objects_name (name),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE metadef_properties (
    id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    namespace_id BIGINT      NOT NULL,
    name         VARCHAR(80) NOT NULL,
    json_schema  MEDIUMTEXT  NOT NULL,
    created_at   BIGINT      NOT NULL,
    updated_at   BIGINT      NOT NULL,
    UNIQUE INDEX metadef_properties_namespace_id_name (namespace_id, name),
    INDEX metadef_properties_name (name),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE metadef_tags (
    id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    namespace_id BIGINT      NOT NULL,
    name         VARCHAR(80) NOT NULL,
    created_at   BIGINT      NOT NULL,
    updated_at   BIGINT      NOT NULL,
    UNIQUE INDEX metadef_tags_namespace_id_name (namespace_id, name),
    INDEX metadef_tags_name (name),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE metadef_resource_types (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name       VARCHAR(80) NOT NULL,
    protected  BIGINT      NOT NULL DEFAULT 0,
    created_at BIGINT      NOT NULL,
    updated_at BIGINT      NULL,
    UNIQUE INDEX metadef_resource_types_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE metadef_namespace_resource_types (
    resource_type_id  BIGINT      NOT NULL,
    namespace_id      BIGINT      NOT NULL,
    properties_target VARCHAR(80) NULL,
    prefix            VARCHAR(80) NULL,
    created_at        BIGINT      NOT NULL,
    updated_at        BIGINT      NOT NULL,
    PRIMARY KEY (resource_type_id, namespace_id),
    INDEX metadef_ns_res_types_namespace_id (namespace_id),
    FOREIGN KEY (resource_type_id) REFERENCES metadef_resource_types (id),
    FOREIGN KEY (namespace_id) REFERENCES metadef_namespaces (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) VALUES
    ('OS::Glance::Image', 1, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), NULL),
    ('OS::Cinder::Volume', 1, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), NULL),
    ('OS::Nova::Flavor', 1, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), NULL),
    ('OS::Nova::Aggregate', 1, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), NULL),
    ('OS::Nova::Server', 1, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), NULL),
    ('OS::Trove::Instance', 1, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), NULL);
