"""The one data diff: which tracked files two sides add, remove and modify.

Used by the merge-request note and API (`indexer.sync.mr_diff`), the CI jobs' validation report
(`dshub.ci.datadiff`) and version compare. A file is modified when its hash (md5 and hash
kind) differs; the vocabulary is always `added`, `removed`, `modified`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

ADDED, REMOVED, MODIFIED = "added", "removed", "modified"
CHANGE_KINDS = (ADDED, REMOVED, MODIFIED)


class TrackedFile(Protocol):
    """What the diff needs of one side's file (an `IndexedFile` has it)."""

    @property
    def md5(self) -> str: ...

    @property
    def hash_name(self) -> str: ...

    @property
    def size(self) -> int | None: ...

    @property
    def pointer_path(self) -> str: ...


@dataclass(frozen=True)
class FileState:
    """A tracked file as a diff side sees it, when no index record is at hand."""

    md5: str
    hash_name: str
    size: int | None
    pointer_path: str


@dataclass
class FileChange:
    """One tracked file that differs; `old_*` is the base side, `new_*` the compared side."""

    path: str
    change: str  # added | removed | modified
    old_md5: str | None
    new_md5: str | None
    old_size: int | None
    new_size: int | None
    pointer_path: str


def diff_files(old: Mapping[str, TrackedFile], new: Mapping[str, TrackedFile]) -> list[FileChange]:
    """The files that differ between `old` and `new` (path → file), sorted by path."""
    changes: list[FileChange] = []
    for path in sorted(old.keys() | new.keys()):
        before, after = old.get(path), new.get(path)
        if before and after and (before.md5, before.hash_name) == (after.md5, after.hash_name):
            continue
        change = ADDED if before is None else REMOVED if after is None else MODIFIED
        pointer = after.pointer_path if after else before.pointer_path if before else ""
        changes.append(
            FileChange(
                path=path,
                change=change,
                old_md5=before.md5 if before else None,
                new_md5=after.md5 if after else None,
                old_size=before.size if before else None,
                new_size=after.size if after else None,
                pointer_path=pointer,
            )
        )
    return changes
