-- The node a job is for (PostgreSQL); see the SQLite migration.
ALTER TABLE jobs ADD COLUMN node TEXT COLLATE "C";
