"""The data diff of a merge request: which DVC-tracked files it adds, removes and modifies.

Compared are the MR's merge base (`diff_refs.base_sha`, what the target had when the source
branched off or last caught up) and the source head. Only pointers the compare API reports
as changed are read, at both commits; tracked directories are expanded from their `.dir`
manifests (the index's copy first, else the storage site), so an entry counts only when its
own md5 changed. Unreadable pointers and manifests are reported, never fatal: a directory
whose manifest is missing on either side is left out of the comparison and named instead.

Bytes: `bytes_added` sums the sizes of added files and the new side of modified ones,
`bytes_removed` the removed files and the old side of modified ones. Single files carry
their size in the pointer; directory entries are sized with bounded-concurrency HEAD
requests to the storage site (`unsized` counts the ones that stayed unknown).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import gitlab.exceptions

from indexer.data.diff import FileChange, diff_files
from indexer.data.pointers import is_pointer_path, object_key
from indexer.errors import DshubError, Unavailable
from indexer.store import Dataset, IndexedFile
from indexer.sync.refs import SIZE_FILL_CONCURRENCY, SyncContext, pointer_files

MAX_SIZE_LOOKUPS = 5000


@dataclass(frozen=True)
class MergeRequestRefs:
    """What a diff needs from GitLab's merge request: branches, state and the two commits."""

    project_id: int
    iid: int
    title: str
    state: str
    source_branch: str
    target_branch: str
    base_sha: str
    head_sha: str
    web_url: str


@dataclass
class CommitsDiff:
    """The data diff between two commits, `base_sha` → `head_sha` (lists sorted by path)."""

    base_sha: str
    head_sha: str
    pointers_changed: list[str] = field(default_factory=list)
    added: list[FileChange] = field(default_factory=list)
    removed: list[FileChange] = field(default_factory=list)
    modified: list[FileChange] = field(default_factory=list)
    bytes_added: int = 0
    bytes_removed: int = 0
    unsized: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def changes_pointers(self) -> bool:
        """True when the MR touches at least one pointer file."""
        return bool(self.pointers_changed)


@dataclass
class DataDiff(CommitsDiff):
    """The data diff of one merge request: its merge base → its source head."""

    merge_request: MergeRequestRefs = field(kw_only=True)


def read_merge_request(ctx: SyncContext, project_id: int, iid: int) -> MergeRequestRefs | None:
    """The merge request `!iid` as GitLab reports it (service token), or None when absent."""
    try:
        mr = ctx.reader.client.projects.get(project_id, lazy=True).mergerequests.get(iid)
    except gitlab.exceptions.GitlabError as exc:
        if exc.response_code == 404:
            return None
        raise Unavailable(
            f"GitLab answered {exc.response_code} while reading merge request !{iid} "
            f"of project {project_id}"
        ) from None
    attrs: dict[str, Any] = mr.asdict()
    refs = attrs.get("diff_refs") or {}
    head = refs.get("head_sha") or attrs.get("sha")
    base = refs.get("base_sha") or refs.get("start_sha")
    if not head or not base:
        raise Unavailable(f"merge request !{iid} of project {project_id} has no diff refs yet")
    return MergeRequestRefs(
        project_id=project_id,
        iid=int(attrs["iid"]),
        title=str(attrs.get("title") or ""),
        state=str(attrs.get("state") or ""),
        source_branch=str(attrs.get("source_branch") or ""),
        target_branch=str(attrs.get("target_branch") or ""),
        base_sha=str(base),
        head_sha=str(head),
        web_url=str(attrs.get("web_url") or ""),
    )


def data_diff(ctx: SyncContext, dataset: Dataset, mr: MergeRequestRefs) -> DataDiff:
    """Compute the data diff between the MR's merge base and its source head."""
    result = DataDiff(mr.base_sha, mr.head_sha, merge_request=mr)
    fill_diff(ctx, dataset, result)
    return result


def commits_diff(ctx: SyncContext, dataset: Dataset, base_sha: str, head_sha: str) -> CommitsDiff:
    """The data diff between any two commits of the dataset (version compare)."""
    result = CommitsDiff(base_sha, head_sha)
    fill_diff(ctx, dataset, result)
    return result


def fill_diff(ctx: SyncContext, dataset: Dataset, result: CommitsDiff) -> None:
    """Fill `result` with the data diff of its two commits (see the module docstring)."""
    base_sha, head_sha = result.base_sha, result.head_sha
    # Straight: the two trees as they are (the MR's base is already its merge base).
    changed = ctx.reader.changed_paths(dataset.project_id, base_sha, head_sha, straight=True)
    if changed is None:
        raise Unavailable(
            f"GitLab cannot compare {base_sha[:12]}...{head_sha[:12]} "
            f"of project {dataset.project_id}"
        )
    result.pointers_changed = [path for path in changed if is_pointer_path(path)]
    old: dict[str, IndexedFile] = {}
    new: dict[str, IndexedFile] = {}
    unresolved: set[str] = set()
    for pointer in result.pointers_changed:
        for side, commit in ((old, base_sha), (new, head_sha)):
            files, problems = pointer_files(ctx, dataset, commit, pointer)
            result.problems.extend(f"{p} (at {commit[:12]})" for p in problems)
            for item in files:
                if item.status == "error":
                    unresolved.add(item.path)
                else:
                    side[item.path] = item

    def keep(path: str) -> bool:
        return not any(path == d or path.startswith(d + "/") for d in unresolved)

    for entry in diff_files(
        {p: f for p, f in old.items() if keep(p)}, {p: f for p, f in new.items() if keep(p)}
    ):
        getattr(result, entry.change).append(entry)
    sized = _sized(ctx, dataset, result, old, new)
    for changed_file in result.added + result.removed + result.modified:
        changed_file.old_size = sized.get((changed_file.path, "old"))
        changed_file.new_size = sized.get((changed_file.path, "new"))
        result.bytes_added += changed_file.new_size or 0
        result.bytes_removed += changed_file.old_size or 0
    for directory in sorted(unresolved):
        result.problems.append(f"{directory}: left out of the diff (manifest unavailable)")


def _sized(
    ctx: SyncContext,
    dataset: Dataset,
    diff: CommitsDiff,
    old: dict[str, IndexedFile],
    new: dict[str, IndexedFile],
) -> dict[tuple[str, str], int]:
    """Sizes of the changed files per (path, side), HEAD-ing the site for directory entries."""
    sizes: dict[tuple[str, str], int] = {}
    wanted: list[tuple[tuple[str, str], IndexedFile]] = []
    for item in diff.added + diff.removed + diff.modified:
        for side, files in (("old", old), ("new", new)):
            found = files.get(item.path)
            if found is None:
                continue
            if found.size is not None:
                sizes[(item.path, side)] = found.size
            else:
                wanted.append(((item.path, side), found))
    objects = ctx.object_store(dataset) if wanted else None

    def head(pair: tuple[tuple[str, str], IndexedFile]) -> tuple[tuple[str, str], int | None]:
        key, found = pair
        if objects is None:
            return key, None
        try:
            meta = objects.head(object_key("", found.md5, found.hash_name, is_dir=False))
        except DshubError:
            return key, None
        return key, meta.size if meta else None

    with ThreadPoolExecutor(max_workers=SIZE_FILL_CONCURRENCY) as pool:
        for key, size in pool.map(head, wanted[:MAX_SIZE_LOOKUPS]):
            if size is None:
                diff.unsized += 1
            else:
                sizes[key] = size
    diff.unsized += max(0, len(wanted) - MAX_SIZE_LOOKUPS)
    return sizes
