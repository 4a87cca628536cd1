-- Upload sessions (the write path): one row per open session; staged bytes live in a shared
-- directory, not here. Owned by one GitLab user, for one dataset, branch and folder.
CREATE TABLE IF NOT EXISTS upload_sessions (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    project_id BIGINT NOT NULL,
    branch TEXT,
    folder TEXT NOT NULL DEFAULT '',
    layout TEXT NOT NULL DEFAULT 'files',
    new_branch TEXT,
    merge_request INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_sessions_user ON upload_sessions (user_id);
CREATE INDEX IF NOT EXISTS upload_sessions_expires ON upload_sessions (expires_at);
