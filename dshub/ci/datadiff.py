"""The data diff of a merge request or release: files added, removed and changed, with bytes.

Files of a tracked directory come from its `.dir` manifests, which carry no sizes, so their
bytes are unknown and counted separately; the pointers' own sizes give the tracked totals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dshub.ci.pointer_files import TrackedOutput
from dshub.ci.presence import DirEntry

MAX_LISTED = 200


@dataclass(frozen=True)
class FileChange:
    """One data file that differs between the two sides."""

    path: str
    status: str  # "added" | "removed" | "changed"
    old_size: int | None
    new_size: int | None


Manifests = dict[tuple[str, str], list[DirEntry] | None]


def _files(
    outputs: Iterable[TrackedOutput], manifests: Manifests
) -> dict[str, tuple[str, int | None]]:
    files: dict[str, tuple[str, int | None]] = {}
    for out in outputs:
        entries = manifests.get((out.hash_name, out.oid)) if out.is_dir else None
        if out.is_dir and entries is not None:
            for entry in entries:
                files[f"{out.path}/{entry.relpath}"] = (entry.oid, None)
        else:
            files[out.path] = (out.oid, out.size)
    return files


def diff_outputs(
    old: Iterable[TrackedOutput], new: Iterable[TrackedOutput], manifests: Manifests
) -> list[FileChange]:
    """The files that differ between outputs `old` and `new`, sorted by path."""
    before, after = _files(old, manifests), _files(new, manifests)
    changes: list[FileChange] = []
    for path in sorted(before.keys() | after.keys()):
        was, now = before.get(path), after.get(path)
        if was is None and now is not None:
            changes.append(FileChange(path, "added", None, now[1]))
        elif now is None and was is not None:
            changes.append(FileChange(path, "removed", was[1], None))
        elif was is not None and now is not None and was[0] != now[0]:
            changes.append(FileChange(path, "changed", was[1], now[1]))
    return changes


def render_markdown(
    title: str,
    changes: list[FileChange],
    old_outputs: list[TrackedOutput],
    new_outputs: list[TrackedOutput],
) -> str:
    """A markdown summary of `changes` plus the tracked byte totals of both sides."""

    def count(status: str) -> list[FileChange]:
        return [change for change in changes if change.status == status]

    added, removed, changed = count("added"), count("removed"), count("changed")
    old_total = sum(out.size or 0 for out in old_outputs)
    new_total = sum(out.size or 0 for out in new_outputs)
    lines = [
        f"# {title}",
        "",
        "| | files | bytes |",
        "|---|---:|---:|",
        f"| added | {len(added)} | {_sized([c.new_size for c in added])} |",
        f"| removed | {len(removed)} | {_sized([c.old_size for c in removed])} |",
        f"| changed | {len(changed)} | {_sized([c.old_size for c in changed])} → {_sized([c.new_size for c in changed])} |",
        "",
        f"Tracked data in the compared pointers: {old_total:,} → {new_total:,} bytes "
        f"({new_total - old_total:+,}).",
        "",
    ]
    if changes:
        lines += ["| status | path | bytes |", "|---|---|---:|"]
        for change in changes[:MAX_LISTED]:
            size = change.new_size if change.status != "removed" else change.old_size
            lines.append(
                f"| {change.status} | `{change.path}` | {'' if size is None else f'{size:,}'} |"
            )
        if len(changes) > MAX_LISTED:
            lines.append(f"| … | {len(changes) - MAX_LISTED} more | |")
    else:
        lines.append("No data files changed.")
    return "\n".join(lines) + "\n"


def _sized(sizes: list[int | None]) -> str:
    known = sum(size for size in sizes if size is not None)
    unknown = sum(1 for size in sizes if size is None)
    text = f"{known:,}"
    return f"{text} (+{unknown} files of unknown size)" if unknown else text
