"""The one data-diff note dshub keeps on a merge request, edited in place.

A hidden marker finds the note among the MR's notes (only notes written by the service
token's own user count), so every run edits the same note and never adds a second one. No
note is created for an MR that changes no pointer; an existing one is then rewritten to say so.
"""

from __future__ import annotations

import re
from typing import Any

import gitlab.exceptions

from indexer.data.diff import FileChange
from indexer.errors import Unavailable
from indexer.sync.mr_diff import DataDiff, data_diff, read_merge_request
from indexer.sync.refs import SyncContext

MARKER = "<!-- dshub:data-diff -->"
TABLE_ROWS = 50
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def escape(text: str) -> str:
    """Markdown-escape text for a table cell: no HTML, no pipes, no line breaks, no emphasis."""
    flat = " ".join(text.replace("&", "&amp;").replace("<", "&lt;").splitlines())
    return _SPECIAL.sub(r"\\\1", flat)


def human_bytes(size: int | None) -> str:
    """`1.5 MiB` style sizes; `?` when unknown."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def render(diff: DataDiff) -> str:
    """The note's markdown: totals, then a table of up to `TABLE_ROWS` changed files."""
    mr = diff.merge_request
    lines = [MARKER, "### Data changes (dshub)", ""]
    if not diff.changes_pointers:
        lines.append("This merge request no longer changes any DVC pointer.")
        return "\n".join(lines) + "\n"
    counts = (
        f"**{len(diff.added)}** added, **{len(diff.removed)}** removed, "
        f"**{len(diff.modified)}** modified; "
        f"+{human_bytes(diff.bytes_added)} / -{human_bytes(diff.bytes_removed)}"
    )
    if diff.unsized:
        counts += f" ({diff.unsized} sizes unknown)"
    lines += [
        f"Between `{mr.base_sha[:12]}` ({escape(mr.target_branch)}) and "
        f"`{mr.head_sha[:12]}` ({escape(mr.source_branch)}): {counts}.",
        "",
    ]
    changes: list[FileChange] = sorted(
        diff.added + diff.removed + diff.modified, key=lambda c: c.path
    )
    if changes:
        lines += ["| change | path | size before | size after |", "|---|---|---:|---:|"]
        for item in changes[:TABLE_ROWS]:
            lines.append(
                f"| {item.change} | {escape(item.path)} | "
                f"{'' if item.old_md5 is None else human_bytes(item.old_size)} | "
                f"{'' if item.new_md5 is None else human_bytes(item.new_size)} |"
            )
        if len(changes) > TABLE_ROWS:
            lines.append(f"\n…and {len(changes) - TABLE_ROWS} more files.")
    else:
        lines.append("The pointers changed but no tracked file's content did.")
    if diff.problems:
        lines += ["", "**Could not read:**", ""]
        lines += [f"- {escape(problem)}" for problem in diff.problems[:20]]
    return "\n".join(lines) + "\n"


def keep_note(ctx: SyncContext, diff: DataDiff) -> str:
    """Create, edit or leave the MR's data-diff note; returns what was done."""
    mr = diff.merge_request
    body = render(diff)
    try:
        me = ctx.reader.current_user().id
        notes_api: Any = (
            ctx.reader.client.projects.get(mr.project_id, lazy=True)
            .mergerequests.get(mr.iid, lazy=True)
            .notes
        )
        ours = [
            note
            for note in notes_api.list(iterator=True, sort="asc", order_by="created_at")
            if MARKER in (note.body or "") and (note.author or {}).get("id") == me
        ]
        if not ours:
            if not diff.changes_pointers:
                return "no pointer changed: no note"
            notes_api.create({"body": body})
            return "note created"
        note = ours[0]
        if note.body == body:
            return "note unchanged"
        note.body = body
        note.save()
        return "note updated"
    except gitlab.exceptions.GitlabError as exc:
        raise Unavailable(
            f"GitLab answered {exc.response_code} while keeping the note of merge request "
            f"!{mr.iid} of project {mr.project_id}"
        ) from None


def sync_note(ctx: SyncContext, project_id: int, iid: int) -> str:
    """Re-read merge request `!iid`, diff its data and keep its note; says what happened."""
    dataset = ctx.store.get_dataset(project_id)
    if dataset is None:
        return f"merge request {project_id}!{iid}: project is not an indexed dataset"
    refs = read_merge_request(ctx, project_id, iid)
    if refs is None:
        return f"merge request {project_id}!{iid}: gone"
    outcome = keep_note(ctx, data_diff(ctx, dataset, refs))
    return f"merge request {project_id}!{iid}: {outcome}"
