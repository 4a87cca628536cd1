"""Merge requests the data diff must survive: broken pointers, no pointer at all, notes off."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gitlab
import pytest

from indexer.gitlab.reader import GitLabReader
from indexer.store import IndexStore, open_index
from indexer.sync import jobs
from indexer.sync import refs as sync
from indexer.sync.mr_diff import data_diff, read_merge_request
from indexer.sync.mr_note import MARKER, sync_note
from tests.gitlab_sandbox.server import Sandbox

GOOD = "outs:\n- md5: {md5}\n  size: 5\n  hash: md5\n  path: {path}\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IndexStore]:
    opened = open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    yield opened
    opened.close()


@pytest.fixture
def ctx(gitlab_sandbox: Sandbox, store: IndexStore) -> sync.SyncContext:
    return sync.SyncContext(
        reader=GitLabReader(gitlab_sandbox.url, gitlab_sandbox.admin_token),
        store=store,
        sites=lambda _name: None,
    )


def _commit(project: Any, branch: str, actions: list[dict[str, str]]) -> None:
    project.commits.create({"branch": branch, "commit_message": "change", "actions": actions})


def _dataset(gitlab_admin: gitlab.Gitlab, ctx: sync.SyncContext) -> Any:
    project = gitlab_admin.projects.create({"name": "edge", "initialize_with_readme": True})
    _commit(
        project,
        "main",
        [
            {"action": "create", "file_path": ".dvc/config", "content": ""},
            {
                "action": "create",
                "file_path": "a.txt.dvc",
                "content": GOOD.format(md5="a" * 32, path="a.txt"),
            },
        ],
    )
    assert sync.sync_project(ctx, project.id) == "synced"
    project.branches.create({"branch": "feature", "ref": "main"})
    return project


def test_a_broken_pointer_on_the_branch_is_reported_not_fatal(
    gitlab_admin: gitlab.Gitlab, ctx: sync.SyncContext
) -> None:
    project = _dataset(gitlab_admin, ctx)
    _commit(
        project,
        "feature",
        [
            {"action": "create", "file_path": "bad.dvc", "content": "outs: [: nope\n"},
            {
                "action": "update",
                "file_path": "a.txt.dvc",
                "content": GOOD.format(md5="b" * 32, path="a.txt"),
            },
            {
                "action": "create",
                "file_path": "dir.dvc",
                "content": f"outs:\n- md5: {'c' * 32}.dir\n  hash: md5\n  path: dir\n",
            },
        ],
    )
    mr = project.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "broken"}
    )
    dataset = ctx.store.get_dataset(project.id)
    refs = read_merge_request(ctx, project.id, mr.iid)
    assert dataset is not None and refs is not None
    diff = data_diff(ctx, dataset, refs)
    assert [c.path for c in diff.modified] == ["a.txt"]
    assert (diff.modified[0].old_size, diff.modified[0].new_size) == (5, 5)
    assert diff.added == [] and diff.removed == []
    assert any(p.startswith("bad.dvc: invalid YAML") for p in diff.problems), diff.problems
    assert any("directory dir cannot be listed" in p for p in diff.problems), diff.problems
    assert "dir: left out of the diff (manifest unavailable)" in diff.problems
    assert sync_note(ctx, project.id, mr.iid).endswith("note created")
    [note] = project.mergerequests.get(mr.iid).notes.list()
    assert MARKER in note.body and "bad\\.dvc: invalid YAML" in note.body
    # Nothing changed since: the note is left alone, not rewritten or duplicated.
    assert sync_note(ctx, project.id, mr.iid).endswith("note unchanged")
    assert len(project.mergerequests.get(mr.iid).notes.list()) == 1


def test_a_merge_request_without_pointer_changes_gets_no_note(
    gitlab_admin: gitlab.Gitlab, ctx: sync.SyncContext
) -> None:
    project = _dataset(gitlab_admin, ctx)
    _commit(project, "feature", [{"action": "update", "file_path": "README.md", "content": "x"}])
    mr = project.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "docs"}
    )
    assert sync_note(ctx, project.id, mr.iid).endswith("no pointer changed: no note")
    assert project.mergerequests.get(mr.iid).notes.list() == []
    assert sync_note(ctx, project.id, 999).endswith("gone")


def test_without_the_setting_the_job_keeps_no_note_and_says_so(
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    ctx: sync.SyncContext,
) -> None:
    project = _dataset(gitlab_admin, ctx)
    _commit(
        project,
        "feature",
        [
            {
                "action": "create",
                "file_path": "b.dvc",
                "content": GOOD.format(md5="d" * 32, path="b"),
            }
        ],
    )
    mr = project.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "data"}
    )
    jobs.install(lambda: ctx)
    try:
        assert "DSHUB_MR_NOTES is off" in jobs.sync_merge_request(project.id, mr.iid)
        assert project.mergerequests.get(mr.iid).notes.list() == []
        with_notes = dataclasses.replace(ctx, mr_notes=True)
        jobs.install(lambda: with_notes)
        assert jobs.sync_merge_request(project.id, mr.iid).endswith("note created")
    finally:
        jobs.clear()
    assert len(project.mergerequests.get(mr.iid).notes.list()) == 1
