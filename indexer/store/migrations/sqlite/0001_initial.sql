-- dshub index, SQLite backend, version 1. Every statement is idempotent (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS datasets (
    project_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    path_with_namespace TEXT NOT NULL,
    namespace TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    visibility TEXT NOT NULL,
    topics TEXT NOT NULL DEFAULT '[]',
    default_branch TEXT,
    web_url TEXT NOT NULL DEFAULT '',
    last_activity_at TEXT,
    storage_site TEXT,
    indexed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_namespace ON datasets (namespace);
CREATE INDEX IF NOT EXISTS datasets_visibility ON datasets (visibility);

CREATE TABLE IF NOT EXISTS dataset_topics (
    project_id INTEGER NOT NULL REFERENCES datasets (project_id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    PRIMARY KEY (project_id, topic)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dataset_topics_topic ON dataset_topics (topic, project_id);

-- Media types of the files at each dataset's default branch (facet and filter).
CREATE TABLE IF NOT EXISTS dataset_media_types (
    project_id INTEGER NOT NULL REFERENCES datasets (project_id) ON DELETE CASCADE,
    media_type TEXT NOT NULL,
    file_count INTEGER NOT NULL,
    PRIMARY KEY (project_id, media_type)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dataset_media_types_type ON dataset_media_types (media_type, project_id);

-- rowid = project_id; columns hold word tokens made by indexer.store.text.
CREATE VIRTUAL TABLE IF NOT EXISTS datasets_fts USING fts5 (
    name, path, description, topics, tokenize = 'unicode61 remove_diacritics 0'
);

CREATE TABLE IF NOT EXISTS refs (
    project_id INTEGER NOT NULL REFERENCES datasets (project_id) ON DELETE CASCADE,
    ref TEXT NOT NULL,
    kind TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    ref_date TEXT,
    file_count INTEGER NOT NULL DEFAULT 0,
    total_size INTEGER NOT NULL DEFAULT 0,
    unsized_count INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'ok',
    error TEXT,
    generation INTEGER NOT NULL DEFAULT 1,
    indexed_at TEXT NOT NULL,
    PRIMARY KEY (project_id, ref)
);

CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    ref TEXT NOT NULL,
    path TEXT NOT NULL,
    md5 TEXT NOT NULL,
    hash_name TEXT NOT NULL,
    size INTEGER,
    media_type TEXT NOT NULL,
    pointer_path TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    in_directory INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'ok',
    note TEXT,
    FOREIGN KEY (project_id, ref) REFERENCES refs (project_id, ref) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS files_ref_path ON files (project_id, ref, path);
CREATE INDEX IF NOT EXISTS files_ref_pointer ON files (project_id, ref, pointer_path);
CREATE INDEX IF NOT EXISTS files_md5 ON files (md5);

-- Substring search over paths (trigram). Kept in step with `files` by the store itself, in
-- bulk (indexer/store/sqlite.py): every insert and delete of `files` goes through it.
CREATE VIRTUAL TABLE IF NOT EXISTS files_fts USING fts5 (
    path, content = 'files', content_rowid = 'id', tokenize = 'trigram'
);

-- Sizes learnt by HEAD requests, by md5, so later refs with the same objects get them.
CREATE TABLE IF NOT EXISTS object_sizes (
    md5 TEXT PRIMARY KEY,
    size INTEGER NOT NULL
) WITHOUT ROWID;

-- `.dir` manifests, stored once per md5 whatever the number of refs/datasets using them.
CREATE TABLE IF NOT EXISTS manifests (
    dir_md5 TEXT PRIMARY KEY,
    entry_count INTEGER NOT NULL,
    stored_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS manifest_entries (
    dir_md5 TEXT NOT NULL,
    relpath TEXT NOT NULL,
    md5 TEXT NOT NULL,
    PRIMARY KEY (dir_md5, relpath)
) WITHOUT ROWID;

-- Cached version diffs, valid while both refs keep their generation.
CREATE TABLE IF NOT EXISTS version_diffs (
    project_id INTEGER NOT NULL,
    ref TEXT NOT NULL,
    generation INTEGER NOT NULL,
    previous TEXT NOT NULL,
    previous_generation INTEGER NOT NULL,
    added INTEGER NOT NULL,
    removed INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    PRIMARY KEY (project_id, ref)
);
