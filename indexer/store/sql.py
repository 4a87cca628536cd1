"""The SQL both backends share; each backend supplies connections, bulk loading and text search.

Statements are written with `?` placeholders; the PostgreSQL backend rewrites them to `%s`.
"""

# ruff: noqa: S608 - SQL is assembled only from this package's constant fragments; values are parameters.

from __future__ import annotations

import abc
import contextlib
import json
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from importlib import resources
from typing import Any

from indexer.errors import Unavailable
from indexer.store.base import (
    VISIBILITIES,
    Dataset,
    IndexedFile,
    IndexStore,
    ManifestItem,
    ManifestRow,
    Ref,
    RefInfo,
    StaleRef,
    StoreError,
    utcnow,
)
from indexer.store.queries import DATASET_COLUMNS, SELECT_FILE, SqlQueries, file_row

PAGE = 5000
DIRECTORY_PAGE = 200
FILE_COLUMNS = (
    "project_id",
    "ref",
    "path",
    "md5",
    "hash_name",
    "size",
    "media_type",
    "pointer_path",
    "commit_sha",
    "in_directory",
    "status",
    "note",
    "in_storage",
)
REF_COLUMNS = (
    "project_id, ref, kind, commit_sha, message, ref_date, file_count, total_size, "
    "unsized_count, status, error, generation, indexed_at, release_notes, author_username, "
    "author_name"
)

Cursor = Any
Connection = Any


def normalise_visibility(value: str) -> str:
    """GitLab's visibility, lowercased; anything unknown is stored as `private`."""
    lowered = (value or "").strip().lower()
    return lowered if lowered in VISIBILITIES else "private"


def load_migrations(backend: str) -> list[tuple[int, str]]:
    """The (version, SQL) migrations shipped for `backend`, by version."""
    folder = resources.files("indexer.store") / "migrations" / backend
    result = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            result.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(result)


class SqlIndexStore(SqlQueries, IndexStore):
    """`IndexStore` in portable SQL over one connection per thread."""

    backend = "sql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self._closed = False
        self._pid = os.getpid()

    # ------------------------------------------------------------ backend hooks

    @abc.abstractmethod
    def _connect(self) -> Connection:
        """A new connection, configured (autocommit; transactions are explicit)."""

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction on this thread's connection."""

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[Connection]:
        """A read transaction (one snapshot) on this thread's connection."""

    @abc.abstractmethod
    def _sql(self, statement: str) -> str:
        """The statement in this backend's placeholder style."""

    @abc.abstractmethod
    def _ts_in(self, value: datetime | None) -> Any:
        """A datetime as this backend stores it."""

    @abc.abstractmethod
    def _ts_out(self, value: Any) -> datetime | None:
        """A stored timestamp as an aware datetime."""

    @abc.abstractmethod
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
        """Insert many rows; on a `conflict` key either update (last wins) or skip."""

    @abc.abstractmethod
    def _index_dataset_text(self, conn: Connection, dataset: Dataset) -> None:
        """Write the dataset's search document (name, path, topics, description)."""

    @abc.abstractmethod
    def _unindex_dataset_text(self, conn: Connection, project_id: int) -> None:
        """Remove the dataset's search document."""

    def _delete_files(self, conn: Connection, where: str, params: Sequence[Any]) -> None:
        """Delete the files matching `where` (a condition on `files` columns)."""
        self._x(conn, f"DELETE FROM files WHERE {where}", params)

    def _files_inserting(self, conn: Connection) -> Any:
        """Called before files are inserted (a backend may note where new rows will start)."""
        return None

    def _files_inserted(self, conn: Connection, before: Any) -> None:
        """Called after new files were inserted; `before` is what `_files_inserting` returned."""

    # ------------------------------------------------------------- connections

    def _conn(self) -> Connection:
        if self._pid != os.getpid():
            # A forked child (RQ's work horse) must not share its parent's connections;
            # they are abandoned, not closed, so the parent's stay usable.
            self._pid = os.getpid()
            self._local = threading.local()
            self._connections = []
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("the index store is closed")
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
            # A thread that ends (an upload's in-line sync, a pool's worker) takes its
            # connection with it; kept until close(), each one leaked a PostgreSQL backend
            # until the server refused clients (found by bench/reliability's soak).
            weakref.finalize(
                threading.current_thread(), _release, weakref.ref(self), conn, os.getpid()
            )
        return conn

    def _forget(self, conn: Connection) -> bool:
        """Drop `conn` from the connections to close; False if it was not there."""
        with self._lock:
            if conn not in self._connections:
                return False
            self._connections.remove(conn)
            return True

    def close(self) -> None:
        """Close every connection this store opened (any thread)."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(Exception):  # best effort: the handle is dropped anyway
                conn.close()
        self._local = threading.local()

    def ping(self) -> int:
        """The schema version, proving the index answers; raises `Unavailable` if it does not."""
        try:
            with self._read() as conn:
                row = self._one(conn, "SELECT max(version) FROM schema_version")
        except StoreError as exc:
            raise Unavailable(f"the index cannot be reached: {exc.message}") from None
        except Exception as exc:  # any driver error means "not usable now"
            raise Unavailable(f"the index does not answer: {type(exc).__name__}: {exc}") from None
        if row is None or row[0] is None:
            raise Unavailable("the index has no schema yet (run the migrations)")
        return int(row[0])

    def _x(self, conn: Connection, statement: str, params: Sequence[Any] = ()) -> Cursor:
        return conn.execute(self._sql(statement), tuple(params))

    def _one(self, conn: Connection, statement: str, params: Sequence[Any] = ()) -> Any:
        return self._x(conn, statement, params).fetchone()

    # --------------------------------------------------------------- migrations

    def _apply_migrations(
        self, conn: Connection, run_script: Callable[[Connection, str], None]
    ) -> int:
        self._x(
            conn,
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        applied = {row[0] for row in self._x(conn, "SELECT version FROM schema_version")}
        version = max(applied, default=0)
        for number, script in load_migrations(self.backend):
            if number in applied:
                continue
            run_script(conn, script)
            self._x(
                conn,
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (number, utcnow().isoformat()),
            )
            version = max(version, number)
        return version

    # ----------------------------------------------------------------- datasets

    def upsert_dataset(self, dataset: Dataset) -> None:
        """Insert or update a dataset's GitLab facts (refs and files untouched)."""
        visibility = normalise_visibility(dataset.visibility)
        topics = sorted({t for t in dataset.topics if t})
        stored = Dataset(
            project_id=dataset.project_id,
            name=dataset.name,
            path_with_namespace=dataset.path_with_namespace,
            namespace=dataset.namespace,
            visibility=visibility,
            description=dataset.description or "",
            topics=tuple(topics),
            default_branch=dataset.default_branch,
            web_url=dataset.web_url,
            last_activity_at=dataset.last_activity_at,
            storage_site=dataset.storage_site,
            archived=dataset.archived,
        )
        with self._write() as conn:
            before = self._one(
                conn,
                "SELECT default_branch FROM datasets WHERE project_id = ?",
                (dataset.project_id,),
            )
            self._x(
                conn,
                "INSERT INTO datasets (project_id, name, path_with_namespace, namespace, "
                "visibility, description, topics, default_branch, web_url, last_activity_at, "
                "storage_site, indexed_at, archived) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "COALESCE(CAST(? AS BOOLEAN), FALSE)) "
                "ON CONFLICT (project_id) DO UPDATE SET name = excluded.name, "
                "path_with_namespace = excluded.path_with_namespace, "
                "namespace = excluded.namespace, visibility = excluded.visibility, "
                "description = excluded.description, topics = excluded.topics, "
                "default_branch = excluded.default_branch, web_url = excluded.web_url, "
                "last_activity_at = excluded.last_activity_at, "
                "storage_site = excluded.storage_site, indexed_at = excluded.indexed_at, "
                # Unknown (None) keeps the stored flag; the insert above defaulted it.
                "archived = CASE WHEN CAST(? AS BOOLEAN) IS NULL THEN datasets.archived "
                "ELSE excluded.archived END",
                (
                    stored.project_id,
                    stored.name,
                    stored.path_with_namespace,
                    stored.namespace,
                    visibility,
                    stored.description,
                    json.dumps(topics),
                    stored.default_branch,
                    stored.web_url,
                    self._ts_in(stored.last_activity_at),
                    stored.storage_site,
                    self._ts_in(utcnow()),
                    stored.archived,
                    stored.archived,
                ),
            )
            self._x(conn, "DELETE FROM dataset_topics WHERE project_id = ?", (stored.project_id,))
            for topic in topics:
                self._x(
                    conn,
                    "INSERT INTO dataset_topics (project_id, topic) VALUES (?, ?)",
                    (stored.project_id, topic),
                )
            self._index_dataset_text(conn, stored)
            if before is None or before[0] != stored.default_branch:
                self._refresh_media_types(conn, stored.project_id)

    def remove_dataset(self, project_id: int) -> bool:
        """Delete a dataset with its refs and files; False if it was not indexed."""
        with self._write() as conn:
            self._lock_dataset(conn, project_id)
            self._delete_files(conn, "project_id = ?", (project_id,))
            for table in (
                "version_diffs",
                "refs",
                "dataset_topics",
                "dataset_media_types",
            ):
                self._x(conn, f"DELETE FROM {table} WHERE project_id = ?", (project_id,))
            self._unindex_dataset_text(conn, project_id)
            cursor = self._x(conn, "DELETE FROM datasets WHERE project_id = ?", (project_id,))
            return bool(cursor.rowcount)

    def get_dataset(self, project_id: int) -> Dataset | None:
        """The dataset as stored, without any permission check (jobs only)."""
        with self._read() as conn:
            row = self._one(
                conn,
                f"SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.project_id = ?",
                (project_id,),
            )
        return self._dataset(row) if row else None

    def list_datasets(self) -> list[Dataset]:
        """Every indexed dataset, by project id (reconcile)."""
        with self._read() as conn:
            rows = self._x(
                conn,
                f"SELECT {DATASET_COLUMNS} FROM datasets d ORDER BY d.project_id",
            ).fetchall()
        return [self._dataset(row) for row in rows]

    def dataset_ids(self) -> set[int]:
        """The ids of every indexed dataset (reconcile)."""
        with self._read() as conn:
            return {int(row[0]) for row in self._x(conn, "SELECT project_id FROM datasets")}

    def _dataset(self, row: Sequence[Any]) -> Dataset:
        return Dataset(
            project_id=int(row[0]),
            name=row[1],
            path_with_namespace=row[2],
            namespace=row[3],
            visibility=row[4],
            description=row[5],
            topics=tuple(json.loads(row[6])),
            default_branch=row[7],
            web_url=row[8],
            last_activity_at=self._ts_out(row[9]),
            storage_site=row[10],
            indexed_at=self._ts_out(row[11]),
            archived=bool(row[12]),
        )

    # --------------------------------------------------------------------- refs

    def replace_ref_files(self, project_id: int, ref: RefInfo, files: Iterable[IndexedFile]) -> Ref:
        """Make `ref` hold exactly `files` (streamed), atomically; the dataset must exist."""
        with self._write() as conn:
            self._require_dataset(conn, project_id)
            self._upsert_ref(conn, project_id, ref)
            self._delete_files(conn, "project_id = ? AND ref = ?", (project_id, ref.ref))
            self._insert_files(conn, project_id, ref, files)
            return self._finish_ref(conn, project_id, ref.ref)

    def apply_ref_changes(
        self,
        project_id: int,
        ref: RefInfo,
        *,
        expected_commit: str | None,
        removed_pointers: Iterable[str] = (),
        removed_paths: Iterable[str] = (),
        upserts: Iterable[IndexedFile] = (),
    ) -> Ref:
        """Incremental sync (see `IndexStore.apply_ref_changes`); `StaleRef` if the base moved."""
        with self._write() as conn:
            self._require_dataset(conn, project_id)
            row = self._one(
                conn,
                "SELECT commit_sha FROM refs WHERE project_id = ? AND ref = ?"
                + self._lock_suffix(),
                (project_id, ref.ref),
            )
            if expected_commit is not None and (row is None or row[0] != expected_commit):
                held = row[0] if row else "nothing"
                raise StaleRef(
                    f"ref {ref.ref!r} of dataset {project_id} is indexed at {held}, "
                    f"not {expected_commit}; run a full sync"
                )
            self._upsert_ref(conn, project_id, ref)
            for pointer in removed_pointers:
                self._delete_files(
                    conn,
                    "project_id = ? AND ref = ? AND pointer_path = ?",
                    (project_id, ref.ref, pointer),
                )
            for path in removed_paths:
                self._delete_files(
                    conn, "project_id = ? AND ref = ? AND path = ?", (project_id, ref.ref, path)
                )
            self._insert_files(conn, project_id, ref, upserts)
            return self._finish_ref(conn, project_id, ref.ref)

    def remove_ref(self, project_id: int, ref: str) -> bool:
        """Delete a ref and its files; False if it was not indexed."""
        with self._write() as conn:
            self._lock_dataset(conn, project_id)
            self._delete_files(conn, "project_id = ? AND ref = ?", (project_id, ref))
            self._x(
                conn,
                "DELETE FROM version_diffs WHERE project_id = ? AND ref = ?",
                (project_id, ref),
            )
            cursor = self._x(
                conn, "DELETE FROM refs WHERE project_id = ? AND ref = ?", (project_id, ref)
            )
            removed = bool(cursor.rowcount)
            if removed and self._is_default_branch(conn, project_id, ref):
                self._refresh_media_types(conn, project_id)
            return removed

    def list_refs(self, project_id: int) -> list[Ref]:
        """Every indexed ref of a dataset (branches and tags), by name."""
        with self._read() as conn:
            rows = self._x(
                conn,
                f"SELECT {REF_COLUMNS} FROM refs WHERE project_id = ? ORDER BY ref",
                (project_id,),
            ).fetchall()
        return [self._ref(row) for row in rows]

    def get_ref(self, project_id: int, ref: str) -> Ref | None:
        """One indexed ref, or None."""
        with self._read() as conn:
            row = self._one(
                conn,
                f"SELECT {REF_COLUMNS} FROM refs WHERE project_id = ? AND ref = ?",
                (project_id, ref),
            )
        return self._ref(row) if row else None

    def _lock_suffix(self) -> str:
        return ""

    def _lock_dataset(self, conn: Connection, project_id: int) -> bool:
        """Serialise writers of one dataset's refs and files; False if it is not indexed.

        On PostgreSQL (READ COMMITTED) a DELETE does not see rows a concurrent writer is
        inserting, so two unserialised writers of one ref could leave both file sets. The
        ref row's upsert already orders two replacements of the same ref; this lock also
        orders them against `remove_ref`/`remove_dataset` and incremental changes.
        """
        row = self._one(
            conn,
            "SELECT 1 FROM datasets WHERE project_id = ?" + self._lock_suffix(),
            (project_id,),
        )
        return row is not None

    def _require_dataset(self, conn: Connection, project_id: int) -> None:
        if not self._lock_dataset(conn, project_id):
            raise StoreError(f"dataset {project_id} is not indexed; upsert_dataset it first")

    def _is_default_branch(self, conn: Connection, project_id: int, ref: str) -> bool:
        row = self._one(
            conn, "SELECT default_branch FROM datasets WHERE project_id = ?", (project_id,)
        )
        return row is not None and row[0] == ref

    def _upsert_ref(self, conn: Connection, project_id: int, ref: RefInfo) -> None:
        if ref.kind not in ("branch", "tag"):
            raise StoreError(f"ref kind must be branch or tag, not {ref.kind!r}")
        self._x(
            conn,
            "INSERT INTO refs (project_id, ref, kind, commit_sha, message, ref_date, status, "
            "error, generation, indexed_at, release_notes, author_username, author_name) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) "
            "ON CONFLICT (project_id, ref) DO UPDATE SET kind = excluded.kind, "
            "commit_sha = excluded.commit_sha, message = excluded.message, "
            "ref_date = excluded.ref_date, status = excluded.status, error = excluded.error, "
            "generation = refs.generation + 1, indexed_at = excluded.indexed_at, "
            "release_notes = excluded.release_notes, "
            "author_username = excluded.author_username, author_name = excluded.author_name",
            (
                project_id,
                ref.ref,
                ref.kind,
                ref.commit_sha,
                ref.message or "",
                self._ts_in(ref.ref_date),
                ref.status,
                ref.error,
                self._ts_in(utcnow()),
                ref.release_notes or "",
                ref.author_username or "",
                ref.author_name or "",
            ),
        )

    def _insert_files(
        self, conn: Connection, project_id: int, ref: RefInfo, files: Iterable[IndexedFile]
    ) -> None:
        rows = (
            (
                project_id,
                ref.ref,
                f.path,
                f.md5,
                f.hash_name,
                f.size,
                f.media_type,
                f.pointer_path,
                ref.commit_sha,
                bool(f.in_directory),
                f.status,
                f.note,
                f.in_storage,
            )
            for f in files
        )
        marker = self._files_inserting(conn)
        self._bulk_insert(
            conn, "files", FILE_COLUMNS, rows, conflict=("project_id", "ref", "path"), update=True
        )
        self._files_inserted(conn, marker)

    def _finish_ref(self, conn: Connection, project_id: int, ref: str) -> Ref:
        self._x(
            conn,
            "UPDATE files SET size = o.size FROM object_sizes o WHERE files.project_id = ? "
            "AND files.ref = ? AND files.size IS NULL AND o.md5 = files.md5",
            (project_id, ref),
        )
        count, total, unsized = self._one(
            conn,
            "SELECT count(*), coalesce(sum(size), 0), "
            "coalesce(sum(CASE WHEN size IS NULL AND status = 'ok' THEN 1 ELSE 0 END), 0) FROM files "
            "WHERE project_id = ? AND ref = ?",
            (project_id, ref),
        )
        self._x(
            conn,
            "UPDATE refs SET file_count = ?, total_size = ?, unsized_count = ? "
            "WHERE project_id = ? AND ref = ?",
            (int(count), int(total), int(unsized), project_id, ref),
        )
        if self._is_default_branch(conn, project_id, ref):
            self._refresh_media_types(conn, project_id)
        row = self._one(
            conn,
            f"SELECT {REF_COLUMNS} FROM refs WHERE project_id = ? AND ref = ?",
            (project_id, ref),
        )
        return self._ref(row)

    def _refresh_media_types(self, conn: Connection, project_id: int) -> None:
        self._x(conn, "DELETE FROM dataset_media_types WHERE project_id = ?", (project_id,))
        self._x(
            conn,
            "INSERT INTO dataset_media_types (project_id, media_type, file_count) "
            "SELECT f.project_id, f.media_type, count(*) FROM files f JOIN datasets d "
            "ON d.project_id = f.project_id AND d.default_branch = f.ref "
            "WHERE f.project_id = ? GROUP BY f.project_id, f.media_type",
            (project_id,),
        )

    def _ref(self, row: Sequence[Any]) -> Ref:
        return Ref(
            project_id=int(row[0]),
            ref=row[1],
            kind=row[2],
            commit_sha=row[3],
            message=row[4],
            ref_date=self._ts_out(row[5]),
            file_count=int(row[6]),
            total_size=int(row[7]),
            unsized_count=int(row[8]),
            status=row[9],
            error=row[10],
            generation=int(row[11]),
            indexed_at=self._ts_out(row[12]),
            release_notes=row[13] or "",
            author_username=row[14] or "",
            author_name=row[15] or "",
        )

    # -------------------------------------------------------------------- files

    def iter_ref_files(self, project_id: int, ref: str) -> Iterator[IndexedFile]:
        """The files of a ref, by path, read in pages (bounded memory)."""
        after = ""
        while True:
            with self._read() as conn:
                rows = self._x(
                    conn,
                    SELECT_FILE + " WHERE f.project_id = ? AND f.ref = ? AND f.path > ? "
                    "ORDER BY f.path LIMIT ?",
                    (project_id, ref, after, PAGE),
                ).fetchall()
            for row in rows:
                yield file_row(row).file
            if len(rows) < PAGE:
                return
            after = rows[-1][4]

    def get_file(self, project_id: int, ref: str, path: str) -> IndexedFile | None:
        """The file indexed at exactly `path` in `ref`, or None."""
        with self._read() as conn:
            row = self._one(
                conn,
                SELECT_FILE + " WHERE f.project_id = ? AND f.ref = ? AND f.path = ?",
                (project_id, ref, path),
            )
        return None if row is None else file_row(row).file

    def iter_directory(
        self, project_id: int, ref: str, directory: str, offset: int = 0
    ) -> Iterator[tuple[str, IndexedFile | None]]:
        """One level of `directory` in `ref` (files and subdirectory names), skipping subtrees;
        `offset` entries are skipped in the database (`_skip_entries`), not read."""
        prefix = directory.strip("/") + "/" if directory.strip("/") else ""
        # Paths under `prefix` are exactly those in [prefix, prefix[:-1] + "0"): "0" follows "/".
        upper = prefix[:-1] + "0" if prefix else None
        lower: str | None = prefix
        if offset > 0:
            lower = self._skip_entries(project_id, ref, prefix, upper, offset)
        while lower is not None:
            bounds = " AND f.path < ?" if upper is not None else ""
            params: list[Any] = [project_id, ref, lower]
            if upper is not None:
                params.append(upper)
            with self._read() as conn:
                rows = self._x(
                    conn,
                    SELECT_FILE + " WHERE f.project_id = ? AND f.ref = ? AND f.path >= ?"
                    f"{bounds} ORDER BY f.path LIMIT ?",
                    (*params, DIRECTORY_PAGE),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                file = file_row(row).file
                rest = file.path[len(prefix) :]
                name, slash, _ = rest.partition("/")
                if slash:
                    yield name, None
                    lower = prefix + name + "0"  # skip the whole subtree
                    break
                yield name, file
                lower = file.path + "\x01"
            else:
                if len(rows) < DIRECTORY_PAGE:
                    return

    def _skip_entries(
        self, project_id: int, ref: str, prefix: str, upper: str | None, offset: int
    ) -> str | None:
        """The lowest path of the level's entry number `offset` (None past the end), found with
        a few indexed queries per subfolder among the skipped entries: files in a row are
        skipped with OFFSET, each subfolder (one entry, any number of rows) with a jump."""
        remaining, lower = offset, prefix
        in_subfolder = "substr(f.path, ?) LIKE ?"  # the pattern is a parameter (psycopg's %)
        while True:
            bound = " AND f.path < ?" if upper is not None else ""
            scope: list[Any] = [project_id, ref, lower] + ([upper] if upper is not None else [])
            with self._read() as conn:
                ahead = self._one(
                    conn,
                    "SELECT f.path FROM files f WHERE f.project_id = ? AND f.ref = ? "
                    f"AND f.path >= ?{bound} ORDER BY f.path LIMIT 1 OFFSET ?",
                    (*scope, remaining),
                )
                # The first row in a subfolder before that one: the rows before it are files.
                until = [project_id, ref, lower] + ([ahead[0]] if ahead else scope[3:])
                limit = " AND f.path < ?" if len(until) > 3 else ""
                sub = self._one(
                    conn,
                    "SELECT min(f.path) FROM files f WHERE f.project_id = ? AND f.ref = ? "
                    f"AND f.path >= ?{limit} AND {in_subfolder}",
                    (*until, len(prefix) + 1, "%/%"),
                )
                if sub is None or sub[0] is None:
                    return None if ahead is None else str(ahead[0])
                files = self._one(
                    conn,
                    "SELECT count(*) FROM files f WHERE f.project_id = ? AND f.ref = ? "
                    "AND f.path >= ? AND f.path < ?",
                    (project_id, ref, lower, sub[0]),
                )[0]
            name = str(sub[0])[len(prefix) :].partition("/")[0]
            remaining -= int(files) + 1  # those files, then the subfolder itself
            lower = prefix + name + "0"
            if remaining <= 0:
                return lower

    def unsized_md5s(self, limit: int = 1000) -> list[tuple[int, str, str]]:
        """Up to `limit` (project_id, md5, hash_name) of objects whose size is still unknown."""
        with self._read() as conn:
            rows = self._x(
                conn,
                "SELECT min(project_id), md5, hash_name FROM files WHERE size IS NULL "
                "AND status = 'ok' "
                "GROUP BY md5, hash_name ORDER BY md5, hash_name LIMIT ?",
                (limit,),
            ).fetchall()
        return [(int(row[0]), row[1], row[2]) for row in rows]

    def set_sizes(self, sizes: Mapping[str, int]) -> int:
        """Record object sizes by md5; returns the number of files updated."""
        updated = 0
        with self._write() as conn:
            for md5, size in sizes.items():
                if size < 0:
                    raise StoreError(f"size of {md5} is negative")
                self._x(
                    conn,
                    "INSERT INTO object_sizes (md5, size) VALUES (?, ?) "
                    "ON CONFLICT (md5) DO UPDATE SET size = excluded.size",
                    (md5, size),
                )
                per_ref = self._x(
                    conn,
                    "SELECT project_id, ref, count(*) FROM files WHERE md5 = ? AND size IS NULL "
                    "GROUP BY project_id, ref",
                    (md5,),
                ).fetchall()
                if not per_ref:
                    continue
                self._x(
                    conn, "UPDATE files SET size = ? WHERE md5 = ? AND size IS NULL", (size, md5)
                )
                for project_id, ref, count in per_ref:
                    updated += int(count)
                    self._x(
                        conn,
                        "UPDATE refs SET total_size = total_size + ?, "
                        "unsized_count = unsized_count - ? WHERE project_id = ? AND ref = ?",
                        (size * int(count), int(count), project_id, ref),
                    )
        return updated

    def iter_presence_keys(
        self, project_id: int, *, unchecked_only: bool = False
    ) -> Iterator[tuple[str, str]]:
        """The distinct (md5, hash_name) of the dataset's stored files, by md5, read in pages."""
        unchecked = " AND (in_storage IS NULL OR in_storage = ?)" if unchecked_only else ""
        extra: list[Any] = [False] if unchecked_only else []
        after = ("", "")
        while True:
            with self._read() as conn:
                rows = self._x(
                    conn,
                    "SELECT DISTINCT md5, hash_name FROM files WHERE project_id = ? "
                    f"AND status = 'ok'{unchecked} AND (md5 > ? OR (md5 = ? AND hash_name > ?)) "
                    "ORDER BY md5, hash_name LIMIT ?",
                    (project_id, *extra, after[0], after[0], after[1], PAGE),
                ).fetchall()
            yield from ((str(md5), str(hash_name)) for md5, hash_name in rows)
            if len(rows) < PAGE:
                return
            after = (rows[-1][0], rows[-1][1])

    def set_presence(self, project_id: int, states: Mapping[tuple[str, str], bool]) -> int:
        """Record whether the site holds each (md5, hash_name) object, on every ref's files."""
        changed = 0
        with self._write() as conn:
            for (md5, hash_name), present in states.items():
                cursor = self._x(
                    conn,
                    "UPDATE files SET in_storage = ? WHERE project_id = ? AND md5 = ? "
                    "AND hash_name = ? AND status = 'ok' "
                    "AND (in_storage IS NULL OR in_storage <> ?)",
                    (bool(present), project_id, md5, hash_name, bool(present)),
                )
                changed += max(cursor.rowcount, 0)
        return changed

    def forget_presence(self, project_id: int) -> int:
        """Make every file of the dataset's presence unknown (it has no usable site now)."""
        with self._write() as conn:
            cursor = self._x(
                conn,
                "UPDATE files SET in_storage = NULL WHERE project_id = ? AND in_storage IS NOT NULL",
                (project_id,),
            )
            return max(int(cursor.rowcount), 0)

    # ---------------------------------------------------------------- manifests

    def has_manifest(self, dir_md5: str) -> bool:
        """True when the entries of the `.dir` manifest `dir_md5` are stored."""
        with self._read() as conn:
            return (
                self._one(conn, "SELECT 1 FROM manifests WHERE dir_md5 = ?", (dir_md5,)) is not None
            )

    def put_manifest(self, dir_md5: str, entries: Iterable[ManifestItem]) -> int:
        """Store a manifest's entries once per md5 (idempotent); returns the entry count."""
        with self._write() as conn:
            row = self._one(conn, "SELECT entry_count FROM manifests WHERE dir_md5 = ?", (dir_md5,))
            if row is not None:
                return int(row[0])
            rows = ((dir_md5, entry.relpath, entry.md5) for entry in entries)
            self._bulk_insert(
                conn,
                "manifest_entries",
                ("dir_md5", "relpath", "md5"),
                rows,
                conflict=("dir_md5", "relpath"),
                update=False,
            )
            count = self._one(
                conn, "SELECT count(*) FROM manifest_entries WHERE dir_md5 = ?", (dir_md5,)
            )[0]
            # Two workers may store the same manifest at once (PostgreSQL, read committed):
            # both passed the check above, the entries are the same, the first row stands.
            self._x(
                conn,
                "INSERT INTO manifests (dir_md5, entry_count, stored_at) VALUES (?, ?, ?) "
                "ON CONFLICT (dir_md5) DO NOTHING",
                (dir_md5, int(count), self._ts_in(utcnow())),
            )
            return int(count)

    def iter_manifest(self, dir_md5: str) -> Iterator[ManifestRow]:
        """The stored entries of a manifest by relpath, read in pages; empty if unknown."""
        after = ""
        while True:
            with self._read() as conn:
                rows = self._x(
                    conn,
                    "SELECT relpath, md5 FROM manifest_entries WHERE dir_md5 = ? AND relpath > ? "
                    "ORDER BY relpath LIMIT ?",
                    (dir_md5, after, PAGE),
                ).fetchall()
            for relpath, md5 in rows:
                yield ManifestRow(relpath, md5)
            if len(rows) < PAGE:
                return
            after = rows[-1][0]


def _release(store: weakref.ref[SqlIndexStore], conn: Connection, pid: int) -> None:
    """Close the connection of a thread that ended (never in a forked child: the parent's
    connections are still the parent's)."""
    owner = store()
    if os.getpid() != pid or owner is None or not owner._forget(conn):
        return
    with contextlib.suppress(Exception):  # SQLite refuses another thread: the GC closes it
        conn.close()
