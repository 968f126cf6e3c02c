-- Glance's tasks (`/v2/tasks`, `GET /v2/images/{id}/tasks`): one row per import
-- (`api_image_import`) or legacy task. `input` and `result` are JSON objects as text.
-- Timestamps are microseconds since the Unix epoch, UTC; `expires_at` is set when the task
-- finishes (`[task] task_time_to_live` later), and expired rows are purged.
CREATE TABLE tasks (
    id         TEXT    PRIMARY KEY NOT NULL,
    type       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    owner      TEXT,
    image_id   TEXT,
    request_id TEXT,
    user_id    TEXT,
    input      TEXT    NOT NULL,
    result     TEXT,
    message    TEXT    NOT NULL DEFAULT '',
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX tasks_image_id ON tasks (image_id);
CREATE INDEX tasks_created_at_id ON tasks (created_at, id);
CREATE INDEX tasks_expires_at ON tasks (expires_at);
