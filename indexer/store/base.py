"""The index store interface and the records it holds.

The index is a cache of GitLab's truth (datasets = projects, versions = tags, the default
branch) plus what DVC pointers at each ref say (files). Every write is idempotent and
transactional: a reader never sees half a ref. Two backends implement `IndexStore`:
`SqliteIndexStore` (FTS5) and `PostgresIndexStore` (tsvector + pg_trgm); `open_index(url)`
picks one. Search queries live in `indexer.read.search`, which calls the `query_*` methods here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from indexer.errors import DshubError

RefKind = Literal["branch", "tag"]
VISIBILITIES = ("public", "internal", "private")


class StoreError(DshubError):
    """The index store refused an operation (bad record, or an unsupported URL)."""

    status = 500
    code = "index_error"


class IndexUnavailable(StoreError):
    """The index's database cannot be reached right now (down, restarting, connection lost)."""

    status = 503
    code = "unavailable"
    exit_code = 5


class StaleRef(StoreError):
    """An incremental change was based on a commit the index no longer holds; do a full sync."""

    status = 409
    code = "stale_ref"


def utcnow() -> datetime:
    """Now, in UTC, to the second (what the store records as `indexed_at`)."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset (GitLab project) as indexed. `visibility` is GitLab's word; anything else is private."""

    project_id: int
    name: str
    path_with_namespace: str
    namespace: str
    visibility: str
    description: str = ""
    topics: tuple[str, ...] = ()
    default_branch: str | None = None
    web_url: str = ""
    last_activity_at: datetime | None = None
    storage_site: str | None = None
    indexed_at: datetime | None = None  # set by the store on write
    # GitLab's `archived`; None on write keeps what the index holds (a sync that does not
    # read it leaves a recorded archive in place); read back always True or False.
    archived: bool | None = None


@dataclass(frozen=True, slots=True)
class RefInfo:
    """What GitLab says about a ref (a tag = version, or the default branch) at sync time.

    `status` is `ok`, `partial` (some pointers or manifests could not be read; see `error`)
    or `error` (nothing usable).
    """

    ref: str
    kind: RefKind
    commit_sha: str
    message: str = ""
    ref_date: datetime | None = None  # tag date (annotated) or commit date
    status: str = "ok"
    error: str | None = None
    release_notes: str = ""  # the GitLab Release's description (tags only)
    author_username: str = ""  # who made the Release
    author_name: str = ""


@dataclass(frozen=True, slots=True)
class Ref:
    """An indexed ref with its totals (`total_size` sums known sizes; `unsized` counts nulls)."""

    project_id: int
    ref: str
    kind: RefKind
    commit_sha: str
    message: str
    ref_date: datetime | None
    file_count: int
    total_size: int
    unsized_count: int
    status: str
    error: str | None
    generation: int
    indexed_at: datetime | None
    release_notes: str = ""
    author_username: str = ""
    author_name: str = ""


@dataclass(frozen=True, slots=True)
class IndexedFile:
    """One DVC-tracked file at a ref. `in_directory` files come from a `.dir` manifest (size may be null).

    `status` is `ok`, `imported` (data in another repository) or `error` (see `note`).
    `in_storage` is whether the storage site held the object when sync last checked (the
    batch presence check); None when not checked yet, or not applicable (no site, imported).
    """

    path: str
    md5: str
    hash_name: str
    size: int | None
    media_type: str
    pointer_path: str
    in_directory: bool = False
    status: str = "ok"
    note: str | None = None
    in_storage: bool | None = None


@dataclass(frozen=True, slots=True)
class FileRow:
    """A file as stored, with where it is (`project_id`, `ref`, `commit_sha`)."""

    id: int
    project_id: int
    ref: str
    commit_sha: str
    file: IndexedFile


class ManifestItem(Protocol):
    """Anything with a relpath and an md5: a parsed `pointers.ManifestEntry` or a `ManifestRow`."""

    @property
    def relpath(self) -> str: ...

    @property
    def md5(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One entry of a stored `.dir` manifest."""

    relpath: str
    md5: str


@dataclass(frozen=True)
class PermissionFilter:
    """Which datasets a query may touch: all (admin), or public [+ internal] + explicit ids."""

    all: bool = False
    internal: bool = False
    ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class DatasetQuery:
    """A validated dataset search (built by `indexer.read.search`); `terms` are casefolded word tokens."""

    permission: PermissionFilter
    terms: tuple[str, ...] = ()
    namespace: str | None = None
    topic: str | None = None
    visibility: str | None = None
    media_type: str | None = None
    sort: str = "relevance"
    offset: int = 0
    limit: int = 20


@dataclass(frozen=True)
class DatasetHits:
    """One page of datasets plus the permission-filtered total and facet counts."""

    items: list[Dataset]
    total: int
    facets: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class FileQuery:
    """A validated file search; each of `terms` must occur in the path (case-insensitive substring)."""

    permission: PermissionFilter
    terms: tuple[str, ...] = ()
    project_id: int | None = None
    ref: str | None = None
    media_type: str | None = None
    offset: int = 0
    limit: int = 20
    count_limit: int = 10_000


@dataclass(frozen=True)
class FileHits:
    """A page of files; `total` is exact when `total_exact`, else a lower bound (`count_limit`)."""

    items: list[FileRow]
    total: int
    total_exact: bool


@dataclass(frozen=True)
class VersionDiff:
    """Files added, removed and changed (same path, other md5) against the previous version."""

    added: int
    removed: int
    changed: int
    previous: str | None


class IndexStore(abc.ABC):
    """The index: datasets, refs and their files, manifests, and permission-filtered queries.

    Thread-safe: each thread uses its own connection. Every write method is one transaction.
    """

    url: str

    # ---------------------------------------------------------------- lifecycle

    @abc.abstractmethod
    def migrate(self) -> int:
        """Apply pending migrations (idempotent, safe to race); return the schema version."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close every connection this store opened."""

    @abc.abstractmethod
    def ping(self) -> int:
        """The schema version, proving the index answers; raises `Unavailable` if it does not."""

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- datasets

    @abc.abstractmethod
    def upsert_dataset(self, dataset: Dataset) -> None:
        """Insert or update a dataset's GitLab facts (refs and files untouched)."""

    @abc.abstractmethod
    def remove_dataset(self, project_id: int) -> bool:
        """Delete a dataset with its refs and files; False if it was not indexed."""

    @abc.abstractmethod
    def get_dataset(self, project_id: int) -> Dataset | None:
        """The dataset as stored, without any permission check (jobs only)."""

    @abc.abstractmethod
    def list_datasets(self) -> list[Dataset]:
        """Every indexed dataset, by project id (reconcile)."""

    @abc.abstractmethod
    def dataset_ids(self) -> set[int]:
        """The ids of every indexed dataset (reconcile)."""

    # --------------------------------------------------------------------- refs

    @abc.abstractmethod
    def replace_ref_files(self, project_id: int, ref: RefInfo, files: Iterable[IndexedFile]) -> Ref:
        """Make `ref` hold exactly `files` (streamed), atomically: readers see the old or the new ref.

        The dataset must exist. If `files` raises, nothing changes. Duplicate paths: last wins.
        """

    @abc.abstractmethod
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
        """Incremental sync: drop files of `removed_pointers` and `removed_paths`, upsert the rest.

        Raises `StaleRef` (changing nothing) when the ref is not indexed at `expected_commit`
        (pass None to skip that check); the caller then falls back to `replace_ref_files`.
        """

    @abc.abstractmethod
    def remove_ref(self, project_id: int, ref: str) -> bool:
        """Delete a ref and its files; False if it was not indexed."""

    @abc.abstractmethod
    def list_refs(self, project_id: int) -> list[Ref]:
        """Every indexed ref of a dataset (branches and tags), by name."""

    @abc.abstractmethod
    def get_ref(self, project_id: int, ref: str) -> Ref | None:
        """One indexed ref, or None."""

    # -------------------------------------------------------------------- files

    @abc.abstractmethod
    def iter_ref_files(self, project_id: int, ref: str) -> Iterator[IndexedFile]:
        """The files of a ref, by path, read in pages (bounded memory)."""

    @abc.abstractmethod
    def get_file(self, project_id: int, ref: str, path: str) -> IndexedFile | None:
        """The file indexed at exactly `path` in `ref`, or None."""

    @abc.abstractmethod
    def iter_directory(
        self, project_id: int, ref: str, directory: str, offset: int = 0
    ) -> Iterator[tuple[str, IndexedFile | None]]:
        """One level of `directory` ('' = root) in `ref`: `(name, file)` for a file and
        `(name, None)` for a subdirectory, in path order (a subdirectory sorts as `name/`),
        from entry number `offset` on.

        Subtrees are skipped, not read, so a level with few entries is cheap whatever its depth;
        so are the first `offset` entries (page N of a 10,000-file folder costs like page 1).
        """

    @abc.abstractmethod
    def unsized_md5s(self, limit: int = 1000) -> list[tuple[int, str, str]]:
        """Up to `limit` (project_id, md5, hash_name) of objects whose size is still unknown.

        One project holding each object is named, so the caller knows which storage prefix to HEAD.
        """

    @abc.abstractmethod
    def set_sizes(self, sizes: Mapping[str, int]) -> int:
        """Record object sizes by md5 (background HEAD fill); returns the number of files updated.

        Sizes are remembered, so files indexed later with the same md5 get them too.
        """

    @abc.abstractmethod
    def iter_presence_keys(
        self, project_id: int, *, unchecked_only: bool = False
    ) -> Iterator[tuple[str, str]]:
        """The distinct (md5, hash_name) objects of the dataset's stored files (status `ok`),
        by md5, read in pages; `unchecked_only`: those not known to be in storage (never
        checked, or missing at the last check)."""

    @abc.abstractmethod
    def set_presence(self, project_id: int, states: Mapping[tuple[str, str], bool]) -> int:
        """Record, on every ref's files of the dataset, whether the storage site holds each
        (md5, hash_name) object; returns the number of files whose mark changed."""

    @abc.abstractmethod
    def forget_presence(self, project_id: int) -> int:
        """Make the presence of every file of the dataset unknown (no usable site now)."""

    # ---------------------------------------------------------------- manifests

    @abc.abstractmethod
    def has_manifest(self, dir_md5: str) -> bool:
        """True when the entries of the `.dir` manifest `dir_md5` are stored."""

    @abc.abstractmethod
    def put_manifest(self, dir_md5: str, entries: Iterable[ManifestItem]) -> int:
        """Store a manifest's entries once per md5 (idempotent); returns the entry count."""

    @abc.abstractmethod
    def iter_manifest(self, dir_md5: str) -> Iterator[ManifestRow]:
        """The stored entries of a manifest by relpath, read in pages; empty if unknown."""

    # ------------------------------------------------------------------ queries

    @abc.abstractmethod
    def query_datasets(self, query: DatasetQuery) -> DatasetHits:
        """Permission-filtered dataset search with facets (use `indexer.read.search`)."""

    @abc.abstractmethod
    def query_files(self, query: FileQuery) -> FileHits:
        """Permission-filtered file search (use `indexer.read.search`)."""

    @abc.abstractmethod
    def version_diff(self, project_id: int, ref: str, previous: str | None) -> VersionDiff:
        """Added/removed/changed file counts of `ref` against `previous` (None: all added)."""
