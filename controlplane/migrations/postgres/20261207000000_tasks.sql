-- Glance's tasks (PostgreSQL); see the SQLite migration.
CREATE TABLE tasks (
    id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    type       TEXT COLLATE "C" NOT NULL,
    status     TEXT COLLATE "C" NOT NULL,
    owner      TEXT COLLATE "C",
    image_id   TEXT COLLATE "C",
    request_id TEXT COLLATE "C",
    user_id    TEXT COLLATE "C",
    input      TEXT COLLATE "C" NOT NULL,
    result     TEXT COLLATE "C",
    message    TEXT COLLATE "C" NOT NULL DEFAULT '',
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX tasks_image_id ON tasks (image_id);
CREATE INDEX tasks_created_at_id ON tasks (created_at, id);
CREATE INDEX tasks_expires_at ON tasks (expires_at);
