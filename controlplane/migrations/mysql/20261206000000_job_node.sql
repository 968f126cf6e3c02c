-- The node a job is for (MySQL / MariaDB); see the SQLite migration.
ALTER TABLE jobs ADD COLUMN node VARCHAR(255) NULL;
