"""Commits API contract for the write path: per-action `last_commit_id`, new branches, refusals.

GitLab's `Files::MultiService#validate_file_status!` compares, for every update, move, delete
and chmod action that carries `last_commit_id`, the last commit touching the file (the
`previous_path` of a move) on the start branch, and refuses with 400 `The file has changed
since you started editing it: <path>`. Creates carry no lock; two commits of different files
both land. `start_branch` with a `branch` that does not exist creates it; an existing one is
refused. Pushing to the protected default branch without Maintainer is `forbidden!` (403).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import gitlab
import pytest

Client = Callable[..., tuple[Any, gitlab.Gitlab]]


@pytest.fixture
def project(gitlab_admin: gitlab.Gitlab) -> Any:
    made = gitlab_admin.projects.create({"name": "writes", "initialize_with_readme": True})
    made.commits.create(
        {
            "branch": "main",
            "commit_message": "seed",
            "actions": [
                {"action": "create", "file_path": "a.txt", "content": "a"},
                {"action": "create", "file_path": "dir/b.txt", "content": "b"},
            ],
        }
    )
    return made


def _commit(project: Any, actions: list[dict[str, Any]], **extra: Any) -> Any:
    return project.commits.create(
        {"branch": "main", "commit_message": "change", "actions": actions, **extra}
    )


def _refusal(project: Any, actions: list[dict[str, Any]], **extra: Any) -> tuple[int, Any]:
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        _commit(project, actions, **extra)
    return exc.value.response_code or 0, exc.value.error_message


def _last(project: Any, path: str, ref: str = "main") -> str:
    return str(project.files.get(path, ref=ref).last_commit_id)


def test_current_last_commit_id_passes_for_update_move_and_delete(project: Any) -> None:
    a, b = _last(project, "a.txt"), _last(project, "dir/b.txt")
    # An unrelated commit moves the branch but not these files: the locks still hold.
    _commit(project, [{"action": "create", "file_path": "c.txt", "content": "c"}])
    _commit(
        project,
        [
            {"action": "update", "file_path": "a.txt", "content": "A", "last_commit_id": a},
            {
                "action": "move",
                "previous_path": "dir/b.txt",
                "file_path": "dir/moved.txt",
                "last_commit_id": b,
            },
        ],
    )
    assert project.files.get("a.txt", ref="main").decode() == b"A"
    moved = _last(project, "dir/moved.txt")
    _commit(project, [{"action": "delete", "file_path": "dir/moved.txt", "last_commit_id": moved}])
    names = {e["path"] for e in project.repository_tree(ref="main", recursive=True, get_all=True)}
    assert "dir/moved.txt" not in names and "c.txt" in names


@pytest.mark.parametrize(
    ("action", "reported"),
    [
        ({"action": "update", "file_path": "a.txt", "content": "x"}, "a.txt"),
        ({"action": "delete", "file_path": "a.txt"}, "a.txt"),
        ({"action": "chmod", "file_path": "a.txt", "execute_filemode": True}, "a.txt"),
        ({"action": "move", "previous_path": "a.txt", "file_path": "z.txt"}, "a.txt"),
    ],
)
def test_stale_last_commit_id_is_refused_naming_the_file(
    project: Any, action: dict[str, Any], reported: str
) -> None:
    stale = _last(project, "a.txt")
    _commit(project, [{"action": "update", "file_path": "a.txt", "content": "newer"}])
    head = project.branches.get("main").commit["id"]
    status, message = _refusal(project, [{**action, "last_commit_id": stale}])
    assert (status, message) == (
        400,
        f"The file has changed since you started editing it: {reported}",
    )
    assert project.branches.get("main").commit["id"] == head  # nothing was written


def test_one_stale_action_refuses_the_whole_commit(project: Any) -> None:
    stale = _last(project, "a.txt")
    _commit(project, [{"action": "update", "file_path": "a.txt", "content": "newer"}])
    status, _ = _refusal(
        project,
        [
            {"action": "create", "file_path": "new.txt", "content": "n"},
            {"action": "update", "file_path": "a.txt", "content": "x", "last_commit_id": stale},
        ],
    )
    assert status == 400
    with pytest.raises(gitlab.GitlabGetError):
        project.files.get("new.txt", ref="main")


def test_create_of_an_existing_file_and_update_or_delete_of_a_missing_one(project: Any) -> None:
    create = {"action": "create", "file_path": "a.txt", "content": "x"}
    assert _refusal(project, [create]) == (400, "A file with this name already exists")
    for kind in ("update", "delete"):
        missing = {"action": kind, "file_path": "nope.txt", "content": "x"}
        assert _refusal(project, [missing]) == (400, "A file with this name doesn't exist")
    move = {"action": "move", "previous_path": "nope.txt", "file_path": "y.txt"}
    assert _refusal(project, [move]) == (400, "A file with this name doesn't exist")


def test_start_branch_creates_a_new_branch_and_refuses_an_existing_one(project: Any) -> None:
    made = _commit(
        project,
        [{"action": "create", "file_path": "f.txt", "content": "f"}],
        branch="topic",
        start_branch="main",
    )
    assert made.parent_ids == [project.branches.get("main").commit["id"]]
    assert project.files.get("f.txt", ref="topic").decode() == b"f"
    status, message = _refusal(
        project,
        [{"action": "create", "file_path": "g.txt", "content": "g"}],
        branch="topic",
        start_branch="main",
    )
    assert (status, message) == (
        400,
        "A branch called 'topic' already exists. Switch to that branch in order to make changes",
    )
    # The same branch as start and target is an ordinary commit on it.
    _commit(
        project,
        [{"action": "create", "file_path": "g.txt", "content": "g"}],
        branch="topic",
        start_branch="topic",
    )


def test_developer_is_forbidden_on_the_default_branch_but_may_start_a_new_one(
    gitlab_admin: gitlab.Gitlab, project: Any, make_client: Client
) -> None:
    dev, client = make_client("dev")
    project.members.create({"user_id": dev.id, "access_level": 30})
    mine = client.projects.get(project.id, lazy=True)
    status, message = _refusal(mine, [{"action": "create", "file_path": "d.txt", "content": "d"}])
    assert (status, message) == (
        403,
        "403 Forbidden - You are not allowed to push into this branch",
    )
    _commit(
        mine,
        [{"action": "create", "file_path": "d.txt", "content": "d"}],
        branch="dev-work",
        start_branch="main",
    )
    commit = project.commits.get("dev-work")
    assert commit.author_name == dev.name


def test_concurrent_commits_of_different_files_without_locks_both_land(project: Any) -> None:
    errors: list[Exception] = []

    def write(name: str) -> None:
        for attempt in range(5):
            try:
                _commit(project, [{"action": "create", "file_path": name, "content": name}])
                return
            except gitlab.GitlabCreateError as exc:
                # Two ref updates racing: the loser is told to refresh (a 400), never a 500.
                if exc.response_code != 400 or attempt == 4:
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=write, args=(f"p{i}.txt",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    names = {e["path"] for e in project.repository_tree(ref="main", get_all=True)}
    assert {f"p{i}.txt" for i in range(4)} <= names
