"""Push, tag push and repository_update payloads built from real git pushes match GitLab's examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gitlab_sandbox.gitrepo import ZERO_SHA, GitRepo, Person
from tests.gitlab_sandbox.push_events import (
    build_repository_update,
    is_blank,
    push_payload,
)
from tests.sandbox_contract.payload_shape import load_example, shape_differences

PROJECT = {
    "id": 7,
    "name": "Cats",
    "description": "",
    "web_url": "http://127.0.0.1:9/team/cats",
    "avatar_url": None,
    "ssh_url_to_repo": "git@127.0.0.1:team/cats.git",
    "http_url_to_repo": "http://127.0.0.1:9/team/cats.git",
    "namespace": {"id": 3, "name": "Team", "path": "team", "kind": "group"},
    "visibility": "private",
    "path_with_namespace": "team/cats",
    "default_branch": "main",
}
USER = {"id": 4, "name": "Ann Smith", "username": "ann", "email": "ann@example.com"}
# Keys GitLab's data builder sends that the (older) documented examples do not show.
BUILDER_EXTRAS = {"$.message", "$.push_options"}
SYSTEM_EXTRAS = BUILDER_EXTRAS | {
    "$.object_kind",
    "$.ref_protected",
    "$.user_username",
    "$.project.id",
    "$.commits[].title",
    "$.commits[].added",
    "$.commits[].modified",
    "$.commits[].removed",
}


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "cats.git")
    r.init_bare("main")
    return r


def _commit(repo: GitRepo, path: str, branch: str = "main", **kw: Any) -> str:
    return repo.commit(
        branch,
        [{"action": "create", "file_path": path, "content": path}],
        f"add {path}\n\nbody",
        "Ann",
        "ann@example.com",
        **kw,
    )


def _payload(repo: GitRepo, old: str, new: str, ref: str) -> tuple[str, dict[str, Any]]:
    result = push_payload(
        repo, PROJECT, USER, (old, new, ref), ref_protected=ref == "refs/heads/main"
    )
    assert result is not None
    return result


def test_branch_update_matches_the_documented_push_example(repo: GitRepo) -> None:
    before = _commit(repo, "a")
    _commit(repo, "b")
    after = _commit(repo, "c")
    kind, payload = _payload(repo, before, after, "refs/heads/main")
    assert kind == "push"
    assert shape_differences(load_example("push"), payload, allow_extra=BUILDER_EXTRAS) == []
    assert payload["before"] == before and payload["after"] == after == payload["checkout_sha"]
    assert [c["title"] for c in payload["commits"]] == ["add b", "add c"]
    assert payload["commits"][0]["added"] == ["b"]
    assert payload["commits"][1]["url"] == f"{PROJECT['web_url']}/-/commit/{after}"
    assert payload["total_commits_count"] == 2
    assert payload["ref_protected"] is True and payload["message"] is None


def test_push_keeps_the_newest_twenty_commits_oldest_first_with_the_real_count(
    repo: GitRepo,
) -> None:
    before = _commit(repo, "base")
    shas = [_commit(repo, f"f{i}") for i in range(23)]
    _, payload = _payload(repo, before, shas[-1], "refs/heads/main")
    assert [c["id"] for c in payload["commits"]] == shas[3:]
    assert payload["total_commits_count"] == 23


def test_new_branch_lists_only_commits_not_on_the_default_branch(repo: GitRepo) -> None:
    _commit(repo, "a")
    feature = _commit(repo, "f", branch="feature", start_branch="main")
    _, payload = _payload(repo, ZERO_SHA, feature, "refs/heads/feature")
    assert payload["before"] == ZERO_SHA
    assert [c["id"] for c in payload["commits"]] == [feature]
    assert payload["total_commits_count"] == 1
    assert shape_differences(load_example("push"), payload, allow_extra=BUILDER_EXTRAS) == []


def test_new_branch_without_new_commits_has_no_commits(repo: GitRepo) -> None:
    tip = _commit(repo, "a")
    repo.create_branch("copy", "main")
    _, payload = _payload(repo, ZERO_SHA, tip, "refs/heads/copy")
    assert payload["commits"] == [] and payload["total_commits_count"] == 0
    assert payload["checkout_sha"] == tip


def test_first_push_of_the_default_branch_counts_every_commit(repo: GitRepo) -> None:
    _commit(repo, "a")
    tip = _commit(repo, "b")
    _, payload = _payload(repo, ZERO_SHA, tip, "refs/heads/main")
    assert payload["total_commits_count"] == 2


def test_branch_deletion_has_blank_after_null_checkout_and_no_commits(repo: GitRepo) -> None:
    _commit(repo, "a")
    old = repo.create_branch("gone", "main")
    repo.delete_branch("gone")
    kind, payload = _payload(repo, old, ZERO_SHA, "refs/heads/gone")
    assert kind == "push" and payload["object_kind"] == "push"
    assert is_blank(payload["after"]) and payload["checkout_sha"] is None
    assert payload["commits"] == [] and payload["total_commits_count"] == 0
    assert (
        shape_differences(
            load_example("push"), payload, allow_extra=BUILDER_EXTRAS, nullable={"$.checkout_sha"}
        )
        == []
    )


def test_annotated_tag_push_points_after_at_the_tag_and_checkout_at_the_commit(
    repo: GitRepo,
) -> None:
    commit = _commit(repo, "a")
    tag_object = repo.create_tag("v1.0.0", "main", "Release 1", Person("Ann", "ann@example.com"))
    kind, payload = _payload(repo, ZERO_SHA, tag_object, "refs/tags/v1.0.0")
    assert kind == "tag_push"
    extras = BUILDER_EXTRAS | {"$.user_username", "$.user_email"}
    assert shape_differences(load_example("tag_push"), payload, allow_extra=extras) == []
    assert payload["after"] == tag_object != commit
    assert payload["checkout_sha"] == commit
    assert payload["message"].strip() == "Release 1"
    assert [c["id"] for c in payload["commits"]] == [commit] and payload["total_commits_count"] == 1
    system = shape_differences(
        load_example("system_tag_push"),
        payload,
        allow_extra=extras | {"$.object_kind", "$.ref_protected", "$.project.id"},
    )
    assert system == []


def test_lightweight_tag_push_has_the_commit_as_after_and_checkout(repo: GitRepo) -> None:
    commit = _commit(repo, "a")
    repo.create_tag("light", "main", None, Person("Ann", "ann@example.com"))
    _, payload = _payload(repo, ZERO_SHA, commit, "refs/tags/light")
    assert payload["after"] == payload["checkout_sha"] == commit
    assert payload["message"] == ""


def test_tag_deletion_has_null_checkout_and_message(repo: GitRepo) -> None:
    _commit(repo, "a")
    old = repo.create_tag("v1", "main", "m", Person("Ann", "ann@example.com"))
    repo.delete_tag("v1")
    kind, payload = _payload(repo, old, ZERO_SHA, "refs/tags/v1")
    assert kind == "tag_push" and payload["object_kind"] == "tag_push"
    assert payload["checkout_sha"] is None and payload["message"] is None
    assert payload["commits"] == [] and payload["total_commits_count"] == 0


def test_system_push_carries_the_same_data_as_the_project_hook(repo: GitRepo) -> None:
    before = _commit(repo, "a")
    after = _commit(repo, "b")
    _, payload = _payload(repo, before, after, "refs/heads/main")
    assert shape_differences(load_example("system_push"), payload, allow_extra=SYSTEM_EXTRAS) == []


def test_repository_update_lists_every_changed_ref(repo: GitRepo) -> None:
    updates = [("a" * 40, "b" * 40, "refs/heads/main"), (ZERO_SHA, "c" * 40, "refs/tags/v1")]
    payload = build_repository_update(PROJECT, USER, updates)
    # `project.id` is part of Project#hook_attrs in current GitLab; the doc example predates it.
    example = load_example("system_repository_update")
    assert shape_differences(example, payload, allow_extra={"$.project.id"}) == []
    assert payload["refs"] == ["refs/heads/main", "refs/tags/v1"]
    assert payload["changes"][1] == {"before": ZERO_SHA, "after": "c" * 40, "ref": "refs/tags/v1"}
    assert payload["user_email"] == "ann@example.com"


def test_other_refs_fire_no_push_event(repo: GitRepo) -> None:
    tip = _commit(repo, "a")
    assert push_payload(repo, PROJECT, USER, (ZERO_SHA, tip, "refs/merge-requests/1/head")) is None


def test_shape_comparison_reports_missing_extra_and_mistyped_keys() -> None:
    example = {"a": 1, "b": {"c": "x"}, "l": [{"k": True}]}
    assert shape_differences(example, {"a": 1, "b": {"c": "y"}, "l": []}) == []
    problems = shape_differences(example, {"a": "1", "b": {}, "l": [{"k": 1}], "z": None})
    assert sorted(problems) == [
        "$.a: expected integer, got string",
        "$.b.c: missing",
        "$.l[].k: expected boolean, got integer",
        "$.z: not in the documented example",
    ]
    assert shape_differences({"s": "x"}, {"s": None}, nullable={"$.s"}) == []
