"""Permission-filtered search and reads over the index: what the REST API and CLI call.

Who may see a dataset (GitLab's rule, resolved elsewhere into a `Viewer`): anonymous →
public; signed in → public + internal + private datasets whose id is in
`readable_private_ids` (Reporter or above); admin → everything. A dataset the viewer may not
read behaves exactly like one that does not exist: absent from items, totals and every facet
count, `None` from `get_dataset`/`list_versions`.

Query text is only ever text: it is tokenised here (`indexer.store.text`) and the backends
receive quoted terms, so FTS operators, quotes, `*`, `NEAR`, `-`, colons or odd Unicode
cannot change a query's meaning or cause an error. Queries longer than
`text.MAX_QUERY_CHARS` characters or `text.MAX_TERMS` terms are cut, and the result says so
(`query_truncated`). Highlights are returned as (start, end) character offsets into the raw
field values, never as markup: `highlight_segments` splits a value for a template to escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from indexer.errors import InvalidInput
from indexer.store.base import (
    VISIBILITIES,
    Dataset,
    DatasetQuery,
    FileQuery,
    FileRow,
    IndexStore,
    PermissionFilter,
)
from indexer.store.text import WORD, path_terms, query_terms

MAX_PER_PAGE = 100
MAX_OFFSET = 10_000
MAX_FILTER_CHARS = 255
SORTS = ("relevance", "name", "-name", "updated")
FILE_COUNT_LIMIT = 1_000

Span = tuple[int, int]


@dataclass(frozen=True)
class Viewer:
    """Who is asking: anonymous (`user_id` None), a user with the private ids they may read, or an admin."""

    user_id: int | None = None
    readable_private_ids: frozenset[int] = frozenset()
    is_admin: bool = False
    username: str | None = None  # GitLab's user name, for display

    @classmethod
    def anonymous(cls) -> Viewer:
        """The viewer without a token: public datasets only."""
        return cls()

    @property
    def signed_in(self) -> bool:
        """True for a user identified by a valid GitLab token."""
        return self.user_id is not None

    def permission(self) -> PermissionFilter:
        """The dataset filter every query of this viewer runs with."""
        if self.is_admin and self.signed_in:
            return PermissionFilter(all=True)
        if not self.signed_in:
            return PermissionFilter()
        return PermissionFilter(internal=True, ids=frozenset(self.readable_private_ids))

    def can_read(self, dataset: Dataset) -> bool:
        """The same rule as `permission()`, for one dataset (unknown visibility = private)."""
        if self.is_admin and self.signed_in:
            return True
        if dataset.visibility == "public":
            return True
        if not self.signed_in:
            return False
        if dataset.visibility == "internal":
            return True
        return dataset.project_id in self.readable_private_ids


@dataclass(frozen=True)
class DatasetResult:
    """A dataset in a result page, with highlight offsets per field (name, path, description)."""

    dataset: Dataset
    highlights: dict[str, list[Span]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSearch:
    """A page of datasets with the permission-filtered total and facets (value → count)."""

    items: list[DatasetResult]
    total: int
    page: int
    per_page: int
    facets: dict[str, dict[str, int]]
    terms: tuple[str, ...]
    query_truncated: bool


@dataclass(frozen=True)
class FileResult:
    """A file in a result page, with highlight offsets into its path."""

    row: FileRow
    highlights: list[Span] = field(default_factory=list)


@dataclass(frozen=True)
class FileSearch:
    """A page of files; `total` is a lower bound when `total_exact` is False."""

    items: list[FileResult]
    total: int
    total_exact: bool
    page: int
    per_page: int
    terms: tuple[str, ...]
    query_truncated: bool


@dataclass(frozen=True)
class Version:
    """A version (tag) with its totals and its difference to the previous (older) version."""

    name: str
    message: str
    commit_sha: str
    date: datetime | None
    file_count: int
    total_size: int
    unsized_count: int
    added: int
    removed: int
    changed: int
    previous: str | None
    status: str
    error: str | None
    release_notes: str = ""  # the GitLab Release's description
    author_username: str = ""  # who made the Release
    author_name: str = ""


def search_datasets(
    store: IndexStore,
    viewer: Viewer,
    q: str | None = None,
    *,
    namespace: str | None = None,
    topic: str | None = None,
    visibility: str | None = None,
    media_type: str | None = None,
    sort: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> DatasetSearch:
    """Datasets matching every word of `q` (prefix match) and the filters, as `viewer` may see them.

    `sort` is relevance (default with a query), name (default without), -name or updated.
    Raises `InvalidInput` for a bad page, per_page, sort or visibility.
    """
    offset = _page_offset(page, per_page)
    terms, truncated = query_terms(q)
    chosen = sort or ("relevance" if terms else "name")
    if chosen not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}, not {chosen!r}")
    if chosen == "relevance" and not terms:
        chosen = "name"
    if visibility is not None and visibility not in VISIBILITIES:
        raise InvalidInput(f"visibility must be one of {', '.join(VISIBILITIES)}")
    hits = store.query_datasets(
        DatasetQuery(
            permission=viewer.permission(),
            terms=terms,
            namespace=_filter("namespace", namespace),
            topic=_filter("topic", topic),
            visibility=visibility,
            media_type=_filter("media_type", media_type),
            sort=chosen,
            offset=offset,
            limit=per_page,
        )
    )
    items = [
        DatasetResult(
            dataset=d,
            highlights={
                "name": word_spans(d.name, terms),
                "path_with_namespace": word_spans(d.path_with_namespace, terms),
                "description": word_spans(d.description, terms),
            }
            if terms
            else {},
        )
        for d in hits.items
    ]
    return DatasetSearch(
        items=items,
        total=hits.total,
        page=page,
        per_page=per_page,
        facets=hits.facets,
        terms=terms,
        query_truncated=truncated,
    )


def get_dataset(store: IndexStore, viewer: Viewer, project_id: int) -> Dataset | None:
    """The dataset, or None when it does not exist or `viewer` may not read it (the same answer)."""
    dataset = store.get_dataset(project_id)
    if dataset is None or not viewer.can_read(dataset):
        return None
    return dataset


def find_dataset(store: IndexStore, viewer: Viewer, path_with_namespace: str) -> Dataset | None:
    """The dataset at a GitLab path (`group/sub/name`, compared case-insensitively as GitLab
    routes do), or None when it does not exist or `viewer` may not read it (the same answer)."""
    namespace, _, name = path_with_namespace.strip("/").rpartition("/")
    if not namespace or not name or len(path_with_namespace) > MAX_FILTER_CHARS:
        return None
    wanted = path_with_namespace.strip("/").casefold()
    terms, _ = query_terms(name)
    for offset in range(0, MAX_OFFSET, MAX_PER_PAGE):
        hits = store.query_datasets(
            DatasetQuery(
                permission=viewer.permission(),
                terms=terms,
                namespace=namespace,
                sort="name",
                offset=offset,
                limit=MAX_PER_PAGE,
            )
        )
        for dataset in hits.items:
            if dataset.path_with_namespace.casefold() == wanted:
                return dataset
        if offset + len(hits.items) >= hits.total or not hits.items:
            return None
    return None


def list_versions(store: IndexStore, viewer: Viewer, project_id: int) -> list[Version] | None:
    """The dataset's versions (tags), newest first, each diffed against the next older one.

    None when the dataset does not exist or `viewer` may not read it.
    """
    if get_dataset(store, viewer, project_id) is None:
        return None
    tags = [r for r in store.list_refs(project_id) if r.kind == "tag"]
    tags.sort(key=lambda r: r.ref)
    tags.sort(key=lambda r: r.ref_date.timestamp() if r.ref_date else float("-inf"))
    versions: list[Version] = []
    previous: str | None = None
    for ref in tags:  # oldest first, so each knows its predecessor
        diff = store.version_diff(project_id, ref.ref, previous)
        versions.append(
            Version(
                name=ref.ref,
                message=ref.message,
                commit_sha=ref.commit_sha,
                date=ref.ref_date,
                file_count=ref.file_count,
                total_size=ref.total_size,
                unsized_count=ref.unsized_count,
                added=diff.added,
                removed=diff.removed,
                changed=diff.changed,
                previous=previous,
                status=ref.status,
                error=ref.error,
                release_notes=ref.release_notes,
                author_username=ref.author_username,
                author_name=ref.author_name,
            )
        )
        previous = ref.ref
    versions.reverse()
    return versions


def search_files(
    store: IndexStore,
    viewer: Viewer,
    q: str | None = None,
    *,
    dataset: int | None = None,
    ref: str | None = None,
    media_type: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> FileSearch:
    """Files whose path contains every whitespace-separated term of `q` (case-insensitive), in index order.

    Only files of datasets `viewer` may read; `total` is exact up to 1,000 matches, beyond
    which it is 1,000 with `total_exact` False (counting every match of a common term is slow).
    """
    offset = _page_offset(page, per_page)
    terms, truncated = path_terms(q)
    hits = store.query_files(
        FileQuery(
            permission=viewer.permission(),
            terms=terms,
            project_id=dataset,
            ref=_filter("ref", ref),
            media_type=_filter("media_type", media_type),
            offset=offset,
            limit=per_page,
            count_limit=FILE_COUNT_LIMIT,
        )
    )
    return FileSearch(
        items=[FileResult(row, substring_spans(row.file.path, terms)) for row in hits.items],
        total=hits.total,
        total_exact=hits.total_exact,
        page=page,
        per_page=per_page,
        terms=terms,
        query_truncated=truncated,
    )


# ---------------------------------------------------------------------------- highlights


def word_spans(value: str, terms: tuple[str, ...]) -> list[Span]:
    """Offsets of the words of `value` that start with one of `terms` (casefolded)."""
    if not terms or not value:
        return []
    return [
        (m.start(), m.end()) for m in WORD.finditer(value) if m.group().casefold().startswith(terms)
    ]


def substring_spans(value: str, terms: tuple[str, ...]) -> list[Span]:
    """Offsets of every case-insensitive occurrence of `terms` in `value`, merged and sorted."""
    spans = sorted(
        (m.start(), m.end())
        for term in terms
        for m in re.finditer(re.escape(term), value, re.IGNORECASE)
    )
    merged: list[Span] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight_segments(value: str, spans: list[Span]) -> list[tuple[str, bool]]:
    """`value` cut into (text, highlighted) pieces; a template escapes each piece itself."""
    pieces: list[tuple[str, bool]] = []
    cursor = 0
    for start, end in spans:
        if start > cursor:
            pieces.append((value[cursor:start], False))
        pieces.append((value[start:end], True))
        cursor = end
    if cursor < len(value):
        pieces.append((value[cursor:], False))
    return pieces


# ----------------------------------------------------------------------------- validation


def _page_offset(page: int, per_page: int) -> int:
    if (
        isinstance(per_page, bool)
        or not isinstance(per_page, int)
        or not 1 <= per_page <= MAX_PER_PAGE
    ):
        raise InvalidInput(f"per_page must be an integer from 1 to {MAX_PER_PAGE}")
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise InvalidInput("page must be an integer from 1")
    offset = (page - 1) * per_page
    if offset >= MAX_OFFSET:
        raise InvalidInput(
            f"page x per_page may not pass {MAX_OFFSET} results; narrow the query instead"
        )
    return offset


def _filter(name: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > MAX_FILTER_CHARS:
        raise InvalidInput(f"{name} is longer than {MAX_FILTER_CHARS} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; no GitLab name contains one
        raise InvalidInput(f"{name} may not contain NUL characters")
    return value
