-- The metadata definitions catalog (PostgreSQL). Same shape as the SQLite schema (see its
-- migration for the meaning of each column); text is byte-wise ("C" collation).
CREATE TABLE metadef_namespaces (
    id           BIGSERIAL PRIMARY KEY,
    namespace    VARCHAR(80) COLLATE "C" NOT NULL,
    display_name VARCHAR(80) COLLATE "C",
    description  TEXT COLLATE "C",
    visibility   VARCHAR(32) COLLATE "C" NOT NULL,
    protected    BIGINT NOT NULL DEFAULT 0,
    owner        VARCHAR(255) COLLATE "C",
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_namespaces_namespace ON metadef_namespaces (namespace);
CREATE INDEX metadef_namespaces_owner ON metadef_namespaces (owner);
CREATE INDEX metadef_namespaces_created_at ON metadef_namespaces (created_at, id);

CREATE TABLE metadef_objects (
    id           BIGSERIAL PRIMARY KEY,
    namespace_id BIGINT NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name         VARCHAR(80) COLLATE "C" NOT NULL,
    description  TEXT COLLATE "C",
    required     TEXT COLLATE "C",
    json_schema  TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_objects_namespace_id_name ON metadef_objects (namespace_id, name);
CREATE INDEX metadef_objects_name ON metadef_objects (name);

CREATE TABLE metadef_properties (
    id           BIGSERIAL PRIMARY KEY,
    namespace_id BIGINT NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name         VARCHAR(80) COLLATE "C" NOT NULL,
    json_schema  TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_properties_namespace_id_name
    ON metadef_properties (namespace_id, name);
CREATE INDEX metadef_properties_name ON metadef_properties (name);

CREATE TABLE metadef_tags (
    id           BIGSERIAL PRIMARY KEY,
    namespace_id BIGINT NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name         VARCHAR(80) COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_tags_namespace_id_name ON metadef_tags (namespace_id, name);
CREATE INDEX metadef_tags_name ON metadef_tags (name);

CREATE TABLE metadef_resource_types (
    id         BIGSERIAL PRIMARY KEY,
    name       VARCHAR(80) COLLATE "C" NOT NULL,
    protected  BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT
);
CREATE UNIQUE INDEX metadef_resource_types_name ON metadef_resource_types (name);

CREATE TABLE metadef_namespace_resource_types (
    resource_type_id  BIGINT NOT NULL REFERENCES metadef_resource_types (id),
    namespace_id      BIGINT NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    properties_target VARCHAR(80) COLLATE "C",
    prefix            VARCHAR(80) COLLATE "C",
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (resource_type_id, namespace_id)
);
CREATE INDEX metadef_ns_res_types_namespace_id ON metadef_namespace_resource_types (namespace_id);

INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) VALUES
    ('OS::Glance::Image', 1, CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000000 AS BIGINT), NULL),
    ('OS::Cinder::Volume', 1, CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000000 AS BIGINT), NULL),
    ('OS::Nova::Flavor', 1, CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000000 AS BIGINT), NULL),
    ('OS::Nova::Aggregate', 1, CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000000 AS BIGINT), NULL),
    ('OS::Nova::Server', 1, CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000000 AS BIGINT), NULL),
    ('OS::Trove::Instance', 1, CAST(EXTRACT(EPOCH FROM CURRENT_TIMESTAMP) * 1000000 AS BIGINT), NULL);
