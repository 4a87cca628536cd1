"""The permission-filtered search queries of the SQL backends (a mixin of `SqlIndexStore`).

Every query starts from one permission condition on `datasets d`, so items, totals and facet
counts are computed over the same set of readable datasets.
"""

# ruff: noqa: S608 - SQL is assembled only from this package's constant fragments; values are parameters.

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from indexer.store.base import (
    Dataset,
    DatasetHits,
    DatasetQuery,
    FileHits,
    FileQuery,
    FileRow,
    IndexedFile,
    PermissionFilter,
    StoreError,
    VersionDiff,
)

Connection = Any

FACET_LIMIT = 50
DATASET_COLUMNS = (
    "d.project_id, d.name, d.path_with_namespace, d.namespace, d.visibility, d.description, "
    "d.topics, d.default_branch, d.web_url, d.last_activity_at, d.storage_site, d.indexed_at, "
    "d.archived"
)
SELECT_FILE = (
    "SELECT f.id, f.project_id, f.ref, f.commit_sha, f.path, f.md5, f.hash_name, f.size, "
    "f.media_type, f.pointer_path, f.in_directory, f.status, f.note, f.in_storage FROM files f"
)
SORTS = {
    "relevance": "hits.rank, lower(d.name), d.project_id",
    "name": "lower(d.name), d.project_id",
    "-name": "lower(d.name) DESC, d.project_id",
    "updated": "d.last_activity_at DESC NULLS LAST, d.project_id",
}


class SqlQueries(abc.ABC):
    """Search and version-diff queries over the shared schema; backends supply the text search."""

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[Connection]:
        """A read transaction (one snapshot) on this thread's connection."""

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction on this thread's connection."""

    @abc.abstractmethod
    def _x(self, conn: Connection, statement: str, params: Sequence[Any] = ()) -> Any:
        """Execute one statement (written with `?` placeholders); returns the cursor."""

    @abc.abstractmethod
    def _one(self, conn: Connection, statement: str, params: Sequence[Any] = ()) -> Any:
        """Execute one statement and return its first row (or None)."""

    @abc.abstractmethod
    def _dataset(self, row: Sequence[Any]) -> Dataset:
        """A dataset from a row of DATASET_COLUMNS."""

    @abc.abstractmethod
    def _ids_sql(self, column: str, ids: frozenset[int]) -> tuple[str, list[Any]]:
        """`column IN ids` as SQL and parameters."""

    @abc.abstractmethod
    def _dataset_match(self, terms: tuple[str, ...]) -> tuple[str, str, list[Any], str, list[Any]]:
        """(join, condition, params, rank expression, rank params): every term as a word prefix.

        A lower rank is a better match.
        """

    def _file_source(
        self, terms: tuple[str, ...], *, scoped: bool
    ) -> tuple[str, list[str], list[Any], str]:
        """(FROM source aliasing `files f`, conditions, params, ORDER BY) for a path search.

        `scoped` is True when the search is limited to one dataset. Results come in index
        order (`f.id`); a backend may walk its text index in that same order instead.
        """
        if not terms:
            return "files f", [], [], "f.id"
        condition, params = self._path_match(terms)
        return "files f", [condition], params, "f.id"

    @abc.abstractmethod
    def _path_match(self, terms: tuple[str, ...]) -> tuple[str, list[Any]]:
        """(condition, params) requiring every term as a case-insensitive substring of f.path."""

    def _permission_sql(self, permission: PermissionFilter) -> tuple[str, list[Any]]:
        if permission.all:
            return "1 = 1", []
        parts = ["d.visibility = 'public'"]
        params: list[Any] = []
        if permission.internal:
            parts.append("d.visibility = 'internal'")
        if permission.ids:
            ids_sql, ids_params = self._ids_sql("d.project_id", permission.ids)
            parts.append(ids_sql)
            params += ids_params
        return "(" + " OR ".join(parts) + ")", params

    def query_datasets(self, query: DatasetQuery) -> DatasetHits:
        """Permission-filtered dataset search with facets (use `indexer.read.search`)."""
        if query.sort not in SORTS:
            raise StoreError(f"unknown sort {query.sort!r}")
        perm_sql, params = self._permission_sql(query.permission)
        conditions, join, rank = [perm_sql], "", "0"
        rank_params: list[Any] = []
        if query.terms:
            join, match, match_params, rank, rank_params = self._dataset_match(query.terms)
            conditions.append(match)
            params += match_params
        for column, value in (("d.namespace", query.namespace), ("d.visibility", query.visibility)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if query.topic is not None:
            conditions.append(
                "EXISTS (SELECT 1 FROM dataset_topics t WHERE t.project_id = d.project_id "
                "AND t.topic = ?)"
            )
            params.append(query.topic)
        if query.media_type is not None:
            conditions.append(
                "EXISTS (SELECT 1 FROM dataset_media_types m WHERE m.project_id = d.project_id "
                "AND m.media_type = ?)"
            )
            params.append(query.media_type)
        hits = (
            f"WITH hits AS (SELECT d.project_id AS pid, {rank} AS rank FROM datasets d {join} "
            f"WHERE {' AND '.join(conditions)}) "
        )
        params = rank_params + params
        facet_sql = {
            "topic": ("t.topic", "JOIN dataset_topics t ON t.project_id = hits.pid"),
            "media_type": ("m.media_type", "JOIN dataset_media_types m ON m.project_id = hits.pid"),
        }
        with self._read() as conn:
            # One pass gives the total and the namespace and visibility facets.
            pairs = self._x(
                conn,
                f"{hits}SELECT d.namespace, d.visibility, count(*) FROM hits "
                "JOIN datasets d ON d.project_id = hits.pid GROUP BY d.namespace, d.visibility",
                params,
            ).fetchall()
            namespaces: dict[str, int] = {}
            visibilities: dict[str, int] = {}
            for namespace, visibility, n in pairs:
                namespaces[namespace] = namespaces.get(namespace, 0) + int(n)
                visibilities[visibility] = visibilities.get(visibility, 0) + int(n)
            total = sum(visibilities.values())
            facets = {"namespace": _top(namespaces), "visibility": _top(visibilities)}
            for name, (column, facet_join) in facet_sql.items():
                rows = self._x(
                    conn,
                    f"{hits}SELECT {column} AS facet_key, count(*) AS facet_n FROM hits "
                    f"{facet_join} GROUP BY {column} "
                    f"ORDER BY facet_n DESC, facet_key LIMIT {FACET_LIMIT}",
                    params,
                ).fetchall()
                facets[name] = {str(key): int(n) for key, n in rows}
            facets = {
                key: facets[key] for key in ("namespace", "topic", "visibility", "media_type")
            }
            rows = self._x(
                conn,
                f"{hits}SELECT {DATASET_COLUMNS} FROM hits JOIN datasets d ON d.project_id = hits.pid "
                f"ORDER BY {SORTS[query.sort]} LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
        return DatasetHits(items=[self._dataset(row) for row in rows], total=total, facets=facets)

    def query_files(self, query: FileQuery) -> FileHits:
        """Permission-filtered file search, in index order (use `indexer.read.search`)."""
        perm_sql, params = self._permission_sql(query.permission)
        source, match, match_params, order = self._file_source(
            query.terms, scoped=query.project_id is not None
        )
        conditions = [perm_sql, *match]
        params += match_params
        for column, value in (
            ("f.project_id", query.project_id),
            ("f.ref", query.ref),
            ("f.media_type", query.media_type),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        where = (
            f"FROM {source} JOIN datasets d ON d.project_id = f.project_id "
            f"WHERE {' AND '.join(conditions)}"
        )
        select = SELECT_FILE.replace(" FROM files f", "")
        with self._read() as conn:
            counted = int(
                self._one(
                    conn,
                    f"SELECT count(*) FROM (SELECT 1 {where} LIMIT ?) AS c",
                    [*params, query.count_limit + 1],
                )[0]
            )
            rows = self._x(
                conn,
                f"{select} {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
        exact = counted <= query.count_limit
        return FileHits(
            items=[file_row(row) for row in rows],
            total=counted if exact else query.count_limit,
            total_exact=exact,
        )

    def version_diff(self, project_id: int, ref: str, previous: str | None) -> VersionDiff:
        """Added/removed/changed file counts of `ref` against `previous` (None: all added)."""
        with self._read() as conn:
            current = self._one(
                conn,
                "SELECT generation, file_count FROM refs WHERE project_id = ? AND ref = ?",
                (project_id, ref),
            )
            if current is None:
                return VersionDiff(0, 0, 0, previous)
            if previous is None:
                return VersionDiff(int(current[1]), 0, 0, None)
            prev = self._one(
                conn,
                "SELECT generation FROM refs WHERE project_id = ? AND ref = ?",
                (project_id, previous),
            )
            if prev is None:
                return VersionDiff(int(current[1]), 0, 0, None)
            cached = self._one(
                conn,
                "SELECT added, removed, changed FROM version_diffs WHERE project_id = ? "
                "AND ref = ? AND generation = ? AND previous = ? AND previous_generation = ?",
                (project_id, ref, current[0], previous, prev[0]),
            )
        if cached is not None:
            return VersionDiff(int(cached[0]), int(cached[1]), int(cached[2]), previous)
        with self._read() as conn:
            added, removed, changed = (
                int(value)
                for value in self._one(
                    conn,
                    "SELECT "
                    "(SELECT count(*) FROM files c WHERE c.project_id = ? AND c.ref = ? AND NOT EXISTS "
                    " (SELECT 1 FROM files p WHERE p.project_id = c.project_id AND p.ref = ? AND p.path = c.path)), "
                    "(SELECT count(*) FROM files p WHERE p.project_id = ? AND p.ref = ? AND NOT EXISTS "
                    " (SELECT 1 FROM files c WHERE c.project_id = p.project_id AND c.ref = ? AND c.path = p.path)), "
                    "(SELECT count(*) FROM files c JOIN files p ON p.project_id = c.project_id "
                    " AND p.ref = ? AND p.path = c.path WHERE c.project_id = ? AND c.ref = ? "
                    " AND p.md5 <> c.md5)",
                    (
                        project_id,
                        ref,
                        previous,
                        project_id,
                        previous,
                        ref,
                        previous,
                        project_id,
                        ref,
                    ),
                )
            )
        with self._write() as conn:
            self._x(
                conn,
                "INSERT INTO version_diffs (project_id, ref, generation, previous, "
                "previous_generation, added, removed, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (project_id, ref) DO UPDATE SET generation = excluded.generation, "
                "previous = excluded.previous, previous_generation = excluded.previous_generation, "
                "added = excluded.added, removed = excluded.removed, changed = excluded.changed",
                (project_id, ref, current[0], previous, prev[0], added, removed, changed),
            )
        return VersionDiff(added, removed, changed, previous)


def _top(counts: dict[str, int]) -> dict[str, int]:
    """The FACET_LIMIT largest counts, largest first (ties by key), like the SQL facets."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return dict(ordered[:FACET_LIMIT])


def file_row(row: Sequence[Any]) -> FileRow:
    """A FileRow from a row of SELECT_FILE."""
    return FileRow(
        id=int(row[0]),
        project_id=int(row[1]),
        ref=row[2],
        commit_sha=row[3],
        file=IndexedFile(
            path=row[4],
            md5=row[5],
            hash_name=row[6],
            size=None if row[7] is None else int(row[7]),
            media_type=row[8],
            pointer_path=row[9],
            in_directory=bool(row[10]),
            status=row[11],
            note=row[12],
            in_storage=None if row[13] is None else bool(row[13]),
        ),
    )


def like_pattern(term: str) -> str:
    """`%term%` for LIKE/ILIKE with `\\`, `%` and `_` escaped (ESCAPE '\\')."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
