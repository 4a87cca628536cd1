-- Version 5: a version's GitLab Release — its notes and who made it (empty for a bare tag).
ALTER TABLE refs ADD COLUMN IF NOT EXISTS release_notes TEXT NOT NULL DEFAULT '';
ALTER TABLE refs ADD COLUMN IF NOT EXISTS author_username TEXT NOT NULL DEFAULT '';
ALTER TABLE refs ADD COLUMN IF NOT EXISTS author_name TEXT NOT NULL DEFAULT '';
