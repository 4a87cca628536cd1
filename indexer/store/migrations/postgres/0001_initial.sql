-- dshub index, PostgreSQL backend, version 1. Every statement is idempotent (IF NOT EXISTS).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE IF NOT EXISTS datasets (
    project_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    path_with_namespace TEXT NOT NULL,
    namespace TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    visibility TEXT NOT NULL,
    topics TEXT NOT NULL DEFAULT '[]',
    default_branch TEXT,
    web_url TEXT NOT NULL DEFAULT '',
    last_activity_at TIMESTAMPTZ,
    storage_site TEXT,
    indexed_at TIMESTAMPTZ NOT NULL,
    -- word tokens made by indexer.store.text, weighted name A, path B, topics C, description D
    search TSVECTOR NOT NULL DEFAULT ''::tsvector
);
CREATE INDEX IF NOT EXISTS datasets_namespace ON datasets (namespace);
CREATE INDEX IF NOT EXISTS datasets_visibility ON datasets (visibility);
CREATE INDEX IF NOT EXISTS datasets_search ON datasets USING GIN (search);

CREATE TABLE IF NOT EXISTS dataset_topics (
    project_id BIGINT NOT NULL REFERENCES datasets (project_id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    PRIMARY KEY (project_id, topic)
);
CREATE INDEX IF NOT EXISTS dataset_topics_topic ON dataset_topics (topic, project_id);

CREATE TABLE IF NOT EXISTS dataset_media_types (
    project_id BIGINT NOT NULL REFERENCES datasets (project_id) ON DELETE CASCADE,
    media_type TEXT NOT NULL,
    file_count BIGINT NOT NULL,
    PRIMARY KEY (project_id, media_type)
);
CREATE INDEX IF NOT EXISTS dataset_media_types_type ON dataset_media_types (media_type, project_id);

CREATE TABLE IF NOT EXISTS refs (
    project_id BIGINT NOT NULL REFERENCES datasets (project_id) ON DELETE CASCADE,
    ref TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    ref_date TIMESTAMPTZ,
    file_count BIGINT NOT NULL DEFAULT 0,
    total_size BIGINT NOT NULL DEFAULT 0,
    unsized_count BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'ok',
    error TEXT,
    generation BIGINT NOT NULL DEFAULT 1,
    indexed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, ref)
);

CREATE TABLE IF NOT EXISTS files (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id BIGINT NOT NULL,
    ref TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    md5 TEXT NOT NULL,
    hash_name TEXT NOT NULL,
    size BIGINT,
    media_type TEXT NOT NULL,
    pointer_path TEXT COLLATE "C" NOT NULL,
    commit_sha TEXT NOT NULL,
    in_directory BOOLEAN NOT NULL DEFAULT FALSE,
    status TEXT NOT NULL DEFAULT 'ok',
    note TEXT,
    FOREIGN KEY (project_id, ref) REFERENCES refs (project_id, ref) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS files_ref_path ON files (project_id, ref, path);
CREATE INDEX IF NOT EXISTS files_ref_pointer ON files (project_id, ref, pointer_path);
CREATE INDEX IF NOT EXISTS files_md5 ON files (md5);
CREATE INDEX IF NOT EXISTS files_path_trgm ON files USING GIN (path gin_trgm_ops);

CREATE TABLE IF NOT EXISTS object_sizes (
    md5 TEXT PRIMARY KEY,
    size BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS manifests (
    dir_md5 TEXT PRIMARY KEY,
    entry_count BIGINT NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS manifest_entries (
    dir_md5 TEXT NOT NULL,
    relpath TEXT COLLATE "C" NOT NULL,
    md5 TEXT NOT NULL,
    PRIMARY KEY (dir_md5, relpath)
);

CREATE TABLE IF NOT EXISTS version_diffs (
    project_id BIGINT NOT NULL,
    ref TEXT COLLATE "C" NOT NULL,
    generation BIGINT NOT NULL,
    previous TEXT NOT NULL,
    previous_generation BIGINT NOT NULL,
    added BIGINT NOT NULL,
    removed BIGINT NOT NULL,
    changed BIGINT NOT NULL,
    PRIMARY KEY (project_id, ref)
);
