-- Version 2: whether the dataset's GitLab project is archived (read-only, marked in the API).
-- Applied once under the write lock (schema_version), so the ALTER needs no IF NOT EXISTS.
ALTER TABLE datasets ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
