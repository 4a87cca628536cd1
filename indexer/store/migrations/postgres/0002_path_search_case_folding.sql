-- Version 2: case-insensitive path search beyond ASCII. `files.path` uses the "C" collation
-- (byte order, same as SQLite, for keyset pages and directory ranges), under which ILIKE
-- folds ASCII only; the trigram index and the search expression use the database's default
-- collation instead (indexer/store/postgres.py `_path_match`).
DROP INDEX IF EXISTS files_path_trgm;
CREATE INDEX IF NOT EXISTS files_path_trgm_ci ON files USING GIN ((path COLLATE "default") gin_trgm_ops);
