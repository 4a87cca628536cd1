"""The SQLite backend: one file, WAL, FTS5 (word tokens for datasets, trigrams for paths).

The trigram index over paths is maintained in bulk by the insert/delete paths below rather
than by per-row triggers: that makes indexing a 100,000-file ref about 4x faster.

Each thread gets its own connection (`check_same_thread` stays on); writers take the write
lock up front (`BEGIN IMMEDIATE`) and wait for each other up to `busy_timeout`; readers work
on a WAL snapshot, so they never see a half-written ref.
"""

# ruff: noqa: S608 - SQL is assembled only from this package's constant fragments; values are parameters.

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.store.base import Dataset, StoreError
from indexer.store.queries import like_pattern
from indexer.store.sql import Connection, SqlIndexStore
from indexer.store.text import document

BUSY_TIMEOUT_MS = 15_000
TRIGRAM = 3


def sqlite_path(url: str) -> Path:
    """The database file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) <= len(prefix):
        raise StoreError(f"not a SQLite URL: {url!r} (expected sqlite:///path)")
    return Path(url[len(prefix) :])


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


class SqliteIndexStore(SqlIndexStore):
    """`IndexStore` on a SQLite file (the embedded default)."""

    backend = "sqlite"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------- connections

    def _connect(self) -> Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -65536")
        return conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        conn = self._conn()
        if conn.in_transaction:  # a read nested in a write sees the write's state
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def migrate(self) -> int:
        """Apply pending migrations under the write lock; return the schema version."""

        def run(conn: Connection, script: str) -> None:
            statement = ""
            for line in script.splitlines(keepends=True):
                statement += line
                if sqlite3.complete_statement(statement):
                    _execute_migration_statement(conn, statement)
                    statement = ""
            if statement.strip():
                raise StoreError("migration ends with an incomplete statement")

        with self._write() as conn:
            return self._apply_migrations(conn, run)

    # ------------------------------------------------------------------- hooks

    def _sql(self, statement: str) -> str:
        return statement

    def _ts_in(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()

    def _ts_out(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    def _ids_sql(self, column: str, ids: frozenset[int]) -> tuple[str, list[Any]]:
        return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(sorted(ids))]

    def _bulk_insert(
        self,
        conn: Connection,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        conflict: Sequence[str],
        update: bool,
    ) -> None:
        action = "NOTHING"
        if update:
            action = "UPDATE SET " + ", ".join(
                f"{c} = excluded.{c}" for c in columns if c not in conflict
            )
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT ({', '.join(conflict)}) DO {action}",
            rows,
        )

    def _delete_files(self, conn: Connection, where: str, params: Sequence[Any]) -> None:
        # FTS5 external content: remove the index entries with the old values, in bulk
        # (per-row triggers cost 4x more than these set operations).
        conn.execute(
            "INSERT INTO files_fts (files_fts, rowid, path) "
            f"SELECT 'delete', id, path FROM files WHERE {where}",
            params,
        )
        conn.execute(f"DELETE FROM files WHERE {where}", params)

    def _files_inserting(self, conn: Connection) -> Any:
        # rowids of new rows are above the current maximum (INTEGER PRIMARY KEY, write lock held)
        return conn.execute("SELECT coalesce(max(id), 0) FROM files").fetchone()[0]

    def _files_inserted(self, conn: Connection, before: Any) -> None:
        conn.execute(
            "INSERT INTO files_fts (rowid, path) SELECT id, path FROM files WHERE id > ?", (before,)
        )

    def _index_dataset_text(self, conn: Connection, dataset: Dataset) -> None:
        conn.execute("DELETE FROM datasets_fts WHERE rowid = ?", (dataset.project_id,))
        conn.execute(
            "INSERT INTO datasets_fts (rowid, name, path, description, topics) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                dataset.project_id,
                document([dataset.name]),
                document([dataset.path_with_namespace]),
                document([dataset.description]),
                document(dataset.topics),
            ),
        )

    def _unindex_dataset_text(self, conn: Connection, project_id: int) -> None:
        conn.execute("DELETE FROM datasets_fts WHERE rowid = ?", (project_id,))

    def _dataset_match(self, terms: tuple[str, ...]) -> tuple[str, str, list[Any], str, list[Any]]:
        expression = " AND ".join(_fts_phrase(term) + "*" for term in terms)
        return (
            "JOIN datasets_fts ON datasets_fts.rowid = d.project_id",
            "datasets_fts MATCH ?",
            [expression],
            "bm25(datasets_fts, 10.0, 5.0, 1.0, 3.0)",
            [],
        )

    def _file_source(
        self, terms: tuple[str, ...], *, scoped: bool
    ) -> tuple[str, list[str], list[Any], str]:
        long_terms = [t for t in terms if len(t) >= TRIGRAM]
        if scoped or not long_terms:
            # One dataset: scanning its rows beats materialising a common term's matches.
            return (
                "files f",
                ["f.path LIKE ? ESCAPE '\\'" for _ in terms],
                [like_pattern(t) for t in terms],
                "f.id",
            )
        # Walk the trigram index in rowid (= f.id) order, so LIMIT stops the scan early
        # however common the term is.
        conditions = ["files_fts MATCH ?"]
        params: list[Any] = [" AND ".join(_fts_phrase(t) for t in long_terms)]
        for term in terms:
            if len(term) < TRIGRAM:
                conditions.append("f.path LIKE ? ESCAPE '\\'")
                params.append(like_pattern(term))
        return (
            "files_fts JOIN files f ON f.id = files_fts.rowid",
            conditions,
            params,
            "files_fts.rowid",
        )

    def _path_match(self, terms: tuple[str, ...]) -> tuple[str, list[Any]]:
        long_terms = [t for t in terms if len(t) >= TRIGRAM]
        parts, params = [], []
        if long_terms:
            parts.append("f.id IN (SELECT rowid FROM files_fts WHERE files_fts MATCH ?)")
            params.append(" AND ".join(_fts_phrase(t) for t in long_terms))
        for term in terms:
            if len(term) < TRIGRAM:
                parts.append("f.path LIKE ? ESCAPE '\\'")
                params.append(like_pattern(term))
        return " AND ".join(parts), params


def _execute_migration_statement(conn: Connection, statement: str) -> None:
    """One migration statement. `ALTER TABLE … ADD COLUMN` of a column already there counts as
    done — SQLite's spelling of PostgreSQL's `ADD COLUMN IF NOT EXISTS`, for tables an older
    dshub created before its migrations did."""
    try:
        conn.execute(statement)
    except sqlite3.OperationalError as exc:
        adds_column = re.search(r"\bALTER\s+TABLE\b.+\bADD\s+COLUMN\b", statement, re.I | re.S)
        if not (adds_column and str(exc).startswith("duplicate column name")):
            raise
