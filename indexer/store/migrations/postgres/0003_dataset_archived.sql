-- Version 3: whether the dataset's GitLab project is archived (read-only, marked in the API).
ALTER TABLE datasets ADD COLUMN IF NOT EXISTS archived BOOLEAN NOT NULL DEFAULT FALSE;
