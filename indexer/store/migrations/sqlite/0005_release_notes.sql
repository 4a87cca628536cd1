-- Version 4: a version's GitLab Release — its notes and who made it (empty for a bare tag).
ALTER TABLE refs ADD COLUMN release_notes TEXT NOT NULL DEFAULT '';
ALTER TABLE refs ADD COLUMN author_username TEXT NOT NULL DEFAULT '';
ALTER TABLE refs ADD COLUMN author_name TEXT NOT NULL DEFAULT '';
