-- The storage-site registry and each dataset's one-time selection (indexer/sites/registry.py).
-- Before this migration the registry created these tables itself; IF NOT EXISTS keeps such
-- databases as they are, and the columns added after the first release are added if missing.
CREATE TABLE IF NOT EXISTS storage_sites (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    bucket TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL DEFAULT '',
    endpoint_url TEXT,
    region TEXT,
    description TEXT NOT NULL DEFAULT '',
    access_mode TEXT NOT NULL DEFAULT 'proxy',
    credentials_ref TEXT,
    path TEXT
);
ALTER TABLE storage_sites ADD COLUMN IF NOT EXISTS credentials_ref_readonly TEXT;
ALTER TABLE storage_sites ADD COLUMN IF NOT EXISTS validated_at TEXT;
ALTER TABLE storage_sites ADD COLUMN IF NOT EXISTS registered_by BIGINT;
-- JSON list; empty or NULL = every namespace may select the site
ALTER TABLE storage_sites ADD COLUMN IF NOT EXISTS namespaces TEXT;
CREATE TABLE IF NOT EXISTS dataset_storage_sites (
    project_id BIGINT PRIMARY KEY,
    site TEXT NOT NULL,
    selected_by BIGINT,
    selected_at TEXT NOT NULL,
    applied_at TEXT
);
