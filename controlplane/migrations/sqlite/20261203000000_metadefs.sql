-- The metadata definitions catalog (Glance's metadefs): namespaces and what they hold.
-- Same tables as Glance's (`glance/db/sqlalchemy/models_metadef.py`), with integer ids that
-- never leave the database (the API names everything by name). Timestamps are microseconds
-- since the Unix epoch, UTC; booleans are 0/1. Deleting a namespace deletes its objects,
-- properties, tags and resource type associations (ON DELETE CASCADE); resource types stay.
-- Name lengths (80, owner 255, description 500) are checked by the API, as Glance's schemas do.
CREATE TABLE metadef_namespaces (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace    TEXT    NOT NULL,
    display_name TEXT,
    description  TEXT,
    visibility   TEXT    NOT NULL,
    protected    INTEGER NOT NULL DEFAULT 0,
    owner        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX metadef_namespaces_namespace ON metadef_namespaces (namespace);
CREATE INDEX metadef_namespaces_owner ON metadef_namespaces (owner);
CREATE INDEX metadef_namespaces_created_at ON metadef_namespaces (created_at, id);

-- `required` is the comma-joined list of required property names (as Glance stores it);
-- `json_schema` the JSON object of the object's properties, by name.
CREATE TABLE metadef_objects (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_id INTEGER NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    description  TEXT,
    required     TEXT,
    json_schema  TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX metadef_objects_namespace_id_name ON metadef_objects (namespace_id, name);
CREATE INDEX metadef_objects_name ON metadef_objects (name);

-- `json_schema` is the property's JSON-schema fragment (type, title, enum, …).
CREATE TABLE metadef_properties (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_id INTEGER NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    json_schema  TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX metadef_properties_namespace_id_name
    ON metadef_properties (namespace_id, name);
CREATE INDEX metadef_properties_name ON metadef_properties (name);

CREATE TABLE metadef_tags (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_id INTEGER NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX metadef_tags_namespace_id_name ON metadef_tags (namespace_id, name);
CREATE INDEX metadef_tags_name ON metadef_tags (name);

-- Resource types are global; `protected` ones (the seeded system types) cannot be deleted.
-- `updated_at` is NULL until a row is changed (the seeded rows, as glance-manage's).
CREATE TABLE metadef_resource_types (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    protected  INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER
) STRICT;
CREATE UNIQUE INDEX metadef_resource_types_name ON metadef_resource_types (name);

-- Which resource types a namespace applies to, with the prefix its property names take there.
CREATE TABLE metadef_namespace_resource_types (
    resource_type_id  INTEGER NOT NULL REFERENCES metadef_resource_types (id),
    namespace_id      INTEGER NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    properties_target TEXT,
    prefix            TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (resource_type_id, namespace_id)
) STRICT;
CREATE INDEX metadef_ns_res_types_namespace_id ON metadef_namespace_resource_types (namespace_id);

-- The standard resource types (those of Glance's etc/metadefs), protected as glance-manage
-- db load_metadefs makes them.
INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) VALUES
    ('OS::Glance::Image', 1, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, NULL),
    ('OS::Cinder::Volume', 1, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, NULL),
    ('OS::Nova::Flavor', 1, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, NULL),
    ('OS::Nova::Aggregate', 1, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, NULL),
    ('OS::Nova::Server', 1, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, NULL),
    ('OS::Trove::Instance', 1, CAST(strftime('%s', 'now') AS INTEGER) * 1000000, NULL);
