"""The CI jobs' data diff report: files added, removed and modified, with bytes (`diff_files`).

Files of a tracked directory come from its `.dir` manifests, which carry no sizes, so their
bytes are unknown and counted separately; the pointers' own sizes give the tracked totals.
"""

from __future__ import annotations

from collections.abc import Iterable

from dshub.ci.presence import DirEntry
from indexer.data.diff import ADDED, MODIFIED, REMOVED, FileChange, FileState, diff_files
from indexer.data.pointers import PointerOut

MAX_LISTED = 200


Manifests = dict[tuple[str, str], list[DirEntry] | None]


def _files(outputs: Iterable[PointerOut], manifests: Manifests) -> dict[str, FileState]:
    files: dict[str, FileState] = {}
    for out in outputs:
        entries = manifests.get((out.hash_name, out.oid)) if out.is_dir else None
        if out.is_dir and entries is not None:
            for entry in entries:
                files[f"{out.path}/{entry.relpath}"] = FileState(
                    entry.oid, out.hash_name, None, out.pointer_path
                )
        else:
            files[out.path] = FileState(out.oid, out.hash_name, out.size, out.pointer_path)
    return files


def diff_outputs(
    old: Iterable[PointerOut], new: Iterable[PointerOut], manifests: Manifests
) -> list[FileChange]:
    """The files that differ between outputs `old` and `new`, sorted by path (`diff_files`)."""
    return diff_files(_files(old, manifests), _files(new, manifests))


def render_markdown(
    title: str,
    changes: list[FileChange],
    old_outputs: list[PointerOut],
    new_outputs: list[PointerOut],
) -> str:
    """A markdown summary of `changes` plus the tracked byte totals of both sides."""

    def count(kind: str) -> list[FileChange]:
        return [change for change in changes if change.change == kind]

    added, removed, modified = count(ADDED), count(REMOVED), count(MODIFIED)
    old_total = sum(out.size or 0 for out in old_outputs)
    new_total = sum(out.size or 0 for out in new_outputs)
    lines = [
        f"# {title}",
        "",
        "| | files | bytes |",
        "|---|---:|---:|",
        f"| added | {len(added)} | {_sized([c.new_size for c in added])} |",
        f"| removed | {len(removed)} | {_sized([c.old_size for c in removed])} |",
        f"| modified | {len(modified)} | {_sized([c.old_size for c in modified])} → {_sized([c.new_size for c in modified])} |",
        "",
        f"Tracked data in the compared pointers: {old_total:,} → {new_total:,} bytes "
        f"({new_total - old_total:+,}).",
        "",
    ]
    if changes:
        lines += ["| status | path | bytes |", "|---|---|---:|"]
        for change in changes[:MAX_LISTED]:
            size = change.new_size if change.change != REMOVED else change.old_size
            lines.append(
                f"| {change.change} | `{change.path}` | {'' if size is None else f'{size:,}'} |"
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
