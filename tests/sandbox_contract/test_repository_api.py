"""Repository API contract: python-gitlab against the sandbox (files, tree, commits, refs, archive)."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from tests.gitlab_sandbox.gitrepo import REVERT_FAILED
from tests.gitlab_sandbox.server import Sandbox
from tests.sandbox_contract.gitlab_schemas import validate

Client = Callable[..., tuple[Any, gitlab.Gitlab]]


@pytest.fixture
def project(gitlab_admin: gitlab.Gitlab) -> Any:
    return gitlab_admin.projects.create({"name": "cats", "initialize_with_readme": True})


def _commit(project: Any, actions: list[dict[str, Any]], branch: str = "main", **extra: Any) -> Any:
    return project.commits.create(
        {"branch": branch, "commit_message": "change", "actions": actions, **extra}
    )


def _status(exc: pytest.ExceptionInfo[Any]) -> tuple[int | None, Any]:
    return exc.value.response_code, exc.value.error_message


# --------------------------------------------------------------------------- files


def test_file_create_get_head_raw_update_delete_round_trip(project: Any) -> None:
    created = project.files.create(
        {"file_path": "dir/a b.txt", "branch": "main", "content": "one\n", "commit_message": "add"}
    )
    assert created.file_path == "dir/a b.txt"
    f = project.files.get("dir/a b.txt", ref="main")
    assert f.decode() == b"one\n"
    assert (
        f.file_name == "a b.txt"
        and f.size == 4
        and f.encoding == "base64"
        and f.execute_filemode is False
    )
    assert f.content_sha256 == "2c8b08da5ce60398e1f19af0e5dccc744df274b826abe585eaba68c525434806"
    assert f.last_commit_id == f.commit_id == project.branches.get("main").commit["id"]
    head = project.files.head("dir/a b.txt", ref="main")
    assert head["X-Gitlab-Blob-Id"] == f.blob_id and head["X-Gitlab-Size"] == "4"
    assert (
        head["X-Gitlab-File-Path"] == "dir/a b.txt" and head["X-Gitlab-Execute-Filemode"] == "false"
    )
    assert project.files.raw("dir/a b.txt", ref="main") == b"one\n"

    f.content = "two\n"
    f.save(branch="main", commit_message="update")
    assert project.files.raw("dir/a b.txt") == b"two\n"
    project.files.delete("dir/a b.txt", branch="main", commit_message="remove")
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.files.get("dir/a b.txt", ref="main")
    assert _status(exc) == (404, "404 File Not Found")


def test_file_errors_use_gitlabs_messages(project: Any) -> None:
    exc: pytest.ExceptionInfo[Any]
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        project.files.create(
            {"file_path": "README.md", "branch": "main", "content": "x", "commit_message": "m"}
        )
    assert _status(exc) == (400, "A file with this name already exists")
    with pytest.raises(gitlab.GitlabHttpError) as exc:
        project.manager.gitlab.http_post(
            f"/projects/{project.id}/repository/files/x.txt",
            post_data={"branch": "main", "commit_message": "m"},
        )
    assert _status(exc) == (400, "content is missing")
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.files.get("README.md", ref="nope")
    assert _status(exc) == (404, "404 Commit Not Found")
    with pytest.raises(gitlab.GitlabHttpError) as exc:
        project.manager.gitlab.http_get(f"/projects/{project.id}/repository/files/README.md")
    assert _status(exc) == (400, "ref is missing")
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.files.get("a/../README.md", ref="main")
    assert _status(exc) == (400, "file_path should be a valid file path")


def test_stale_last_commit_id_is_refused_on_update(project: Any) -> None:
    old = project.files.get("README.md", ref="main").last_commit_id
    project.files.update("README.md", {"branch": "main", "content": "B", "commit_message": "b"})
    with pytest.raises(gitlab.GitlabUpdateError) as exc:
        project.files.update(
            "README.md",
            {"branch": "main", "content": "C", "commit_message": "c", "last_commit_id": old},
        )
    assert _status(exc) == (
        400,
        "You are attempting to update a file that has changed since you started editing it.",
    )
    assert project.files.raw("README.md", ref="main") == b"B"


def test_base64_content_and_executable_mode(project: Any) -> None:
    payload = bytes(range(256))
    project.files.create(
        {
            "file_path": "bin/tool",
            "branch": "main",
            "content": base64.b64encode(payload).decode(),
            "encoding": "base64",
            "execute_filemode": True,
            "commit_message": "bin",
        }
    )
    f = project.files.get("bin/tool", ref="main")
    assert f.decode() == payload and f.execute_filemode is True
    blob = project.repository_blob(f.blob_id)
    assert (
        base64.b64decode(blob["content"]) == payload
        and blob["size"] == 256
        and blob["sha"] == f.blob_id
    )
    assert project.repository_raw_blob(f.blob_id) == payload
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.repository_blob("0" * 40)
    assert _status(exc) == (404, "404 Blob Not Found")


# --------------------------------------------------------------------------- tree


def test_tree_is_recursive_paginated_and_404s_on_missing_paths(project: Any) -> None:
    exc: pytest.ExceptionInfo[Any]
    _commit(
        project,
        [{"action": "create", "file_path": f"d/f{i}.txt", "content": str(i)} for i in range(5)],
    )
    top = project.repository_tree()
    assert [(e["name"], e["type"]) for e in top] == [("d", "tree"), ("README.md", "blob")]
    deep = project.repository_tree(path="d", recursive=True, get_all=True, per_page=2)
    assert [e["path"] for e in deep] == [f"d/f{i}.txt" for i in range(5)]
    keyset = list(
        project.repository_tree(recursive=True, pagination="keyset", per_page=2, iterator=True)
    )
    assert [e["path"] for e in keyset] == ["d", "README.md"] + [f"d/f{i}.txt" for i in range(5)]
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.repository_tree(path="nope")
    assert exc.value.response_code == 404
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.repository_tree(ref="nope")
    assert _status(exc) == (404, "404 Tree Not Found")


def test_tree_offset_pages_carry_every_param_in_the_link(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, project: Any
) -> None:
    _commit(
        project,
        [{"action": "create", "file_path": f"d/f{i}.txt", "content": str(i)} for i in range(3)],
    )
    response = requests.get(
        f"{gitlab_sandbox.url}/api/v4/projects/{project.id}/repository/tree",
        params={"path": "d", "per_page": "2", "recursive": "true"},
        headers={"PRIVATE-TOKEN": gitlab_sandbox.admin_token},
        timeout=10,
    )
    assert response.headers["X-Total"] == "3" and response.headers["X-Next-Page"] == "2"
    assert (
        "path=d" in response.links["next"]["url"]
        and "recursive=true" in response.links["next"]["url"]
    )


# --------------------------------------------------------------------------- commits


def test_multi_action_commit_returns_a_schema_valid_detail(
    gitlab_admin: gitlab.Gitlab, project: Any
) -> None:
    result = gitlab_admin.http_post(
        f"/projects/{project.id}/repository/commits",
        post_data={
            "branch": "main",
            "commit_message": "Many\n\nbody",
            "actions": [
                {"action": "create", "file_path": "a.txt", "content": "a"},
                {"action": "move", "previous_path": "README.md", "file_path": "docs/README.md"},
                {"action": "chmod", "file_path": "a.txt", "execute_filemode": True},
            ],
        },
    )
    assert isinstance(result, dict)
    validate("public_api/v4/commit/detail.json", result)
    assert result["title"] == "Many" and result["message"] == "Many\n\nbody"
    assert result["stats"]["additions"] == 1 and result["web_url"].endswith(
        f"/-/commit/{result['id']}"
    )
    assert project.files.get("a.txt", ref="main").execute_filemode is True
    single = project.commits.get(result["id"])
    validate("public_api/v4/commit/detail.json", single.asdict())
    diffs = single.diff(get_all=True)
    assert {(d["old_path"], d["new_path"], d["renamed_file"]) for d in diffs} >= {
        ("README.md", "docs/README.md", True)
    }


def test_commit_errors_and_start_branch(project: Any) -> None:
    exc: pytest.ExceptionInfo[Any]
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        _commit(project, [{"action": "update", "file_path": "missing", "content": "x"}])
    assert _status(exc) == (400, "A file with this name doesn't exist")
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        _commit(project, [{"action": "create", "file_path": "x", "content": "x"}], branch="feature")
    assert _status(exc) == (400, "You can only create or edit files when you are on a branch")
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        _commit(project, [{"action": "explode", "file_path": "x"}])
    assert _status(exc) == (400, "actions[0][action] does not have a valid value")
    made = _commit(
        project,
        [{"action": "create", "file_path": "x", "content": "x"}],
        branch="feature",
        start_branch="main",
    )
    assert made.parent_ids == [project.branches.get("main").commit["id"]]


def test_commit_list_is_newest_first_schema_valid_and_has_no_totals(
    gitlab_sandbox: Sandbox, project: Any
) -> None:
    for i in range(3):
        _commit(
            project,
            [{"action": "create", "file_path": f"f{i}", "content": "x"}],
            commit_message=f"c{i}",
        )
    commits = project.commits.list(get_all=True, per_page=2)
    assert [c.title for c in commits] == ["c2", "c1", "c0", "Initial commit"]
    validate("public_api/v4/commits.json", [c.asdict() for c in commits])
    response = requests.get(
        f"{gitlab_sandbox.url}/api/v4/projects/{project.id}/repository/commits?per_page=2",
        headers={"PRIVATE-TOKEN": gitlab_sandbox.admin_token},
        timeout=10,
    )
    assert "X-Total" not in response.headers and 'rel="last"' not in response.headers["Link"]
    assert [
        c.title for c in project.commits.list(query_parameters={"path": "f1"}, get_all=True)
    ] == ["c1"]


def test_commit_refs_revert_and_compare(project: Any) -> None:
    exc: pytest.ExceptionInfo[Any]
    base = project.branches.get("main").commit["id"]
    bad = _commit(
        project,
        [{"action": "update", "file_path": "README.md", "content": "broken"}],
        commit_message="Break",
    )
    project.tags.create({"tag_name": "v1", "ref": "main"})
    assert {(r["type"], r["name"]) for r in bad.refs(type="all", get_all=True)} == {
        ("branch", "main"),
        ("tag", "v1"),
    }
    reverted = bad.revert(branch="main")
    assert reverted["message"] == f'Revert "Break"\n\nThis reverts commit {bad.id}.'
    with pytest.raises(gitlab.GitlabRevertError) as exc:
        bad.revert(branch="main")
    assert exc.value.response_code == 400 and exc.value.error_message == REVERT_FAILED
    assert json.loads(exc.value.response_body or b"{}")["error_code"] == "empty"
    result = project.repository_compare(base, "main")
    assert [c["id"] for c in result["commits"]] == [bad.id, reverted["id"]]
    assert result["compare_same_ref"] is False and result["diffs"] == []
    same = project.repository_compare("main", "main")
    assert same["compare_same_ref"] is True and same["commits"] == [] and same["commit"] is None
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.repository_compare("main", "nope")
    assert exc.value.response_code == 404


# --------------------------------------------------------------------------- branches and tags


def test_branches_crud_matches_the_schema(project: Any) -> None:
    exc: pytest.ExceptionInfo[Any]
    created = project.branches.create({"branch": "feature/x", "ref": "main"})
    validate("public_api/v4/branch.json", created.asdict())
    assert created.protected is False and created.default is False and created.merged is True
    main = project.branches.get("main")
    assert main.protected is True and main.default is True and main.developers_can_push is False
    listed = project.branches.list(get_all=True)
    validate("public_api/v4/branches.json", [b.asdict() for b in listed])
    assert [b.name for b in listed] == ["feature/x", "main"]
    assert [b.name for b in project.branches.list(search="^feat", get_all=True)] == ["feature/x"]
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        project.branches.create({"branch": "feature/x", "ref": "main"})
    assert _status(exc) == (400, "Branch already exists")
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        project.branches.create({"branch": "other", "ref": "nope"})
    assert _status(exc) == (400, "Invalid reference name: nope")
    with pytest.raises(gitlab.GitlabDeleteError) as exc:
        project.branches.delete("main")
    assert _status(exc) == (405, "The default branch of a project cannot be deleted.")
    project.branches.delete("feature/x")
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.branches.get("feature/x")
    assert _status(exc) == (404, "404 Branch Not Found")


def _tag_schema_view(tag: dict[str, Any]) -> dict[str, Any]:
    # The stored tag.json predates `target`, `protected` and `created_at` (see SOURCE.md).
    return {k: v for k, v in tag.items() if k not in ("target", "protected", "created_at")}


def test_tags_crud_with_annotated_and_lightweight_tags(project: Any) -> None:
    exc: pytest.ExceptionInfo[Any]
    commit = project.branches.get("main").commit["id"]
    annotated = project.tags.create({"tag_name": "v1.0", "ref": "main", "message": "First"})
    light = project.tags.create({"tag_name": "v1.10", "ref": commit})
    validate("public_api/v4/tag.json", _tag_schema_view(annotated.asdict()))
    assert (
        annotated.message == "First"
        and annotated.target != commit
        and annotated.commit["id"] == commit
    )
    assert (
        annotated.created_at is not None
        and annotated.release is None
        and annotated.protected is False
    )
    assert light.message is None and light.target == commit and light.created_at is None
    tags = project.tags.list(get_all=True, order_by="version", sort="asc")
    validate("public_api/v4/tags.json", [_tag_schema_view(t.asdict()) for t in tags])
    assert [t.name for t in tags] == ["v1.0", "v1.10"]
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        project.tags.create({"tag_name": "v1.0", "ref": "main"})
    assert _status(exc) == (400, "Tag v1.0 already exists")
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        project.tags.create({"tag_name": "v2", "ref": "nope"})
    assert _status(exc) == (400, "Target nope is invalid")
    project.tags.delete("v1.0")
    with pytest.raises(gitlab.GitlabGetError) as exc:
        project.tags.get("v1.0")
    assert _status(exc) == (404, "404 Tag Not Found")


# --------------------------------------------------------------------------- archive


def test_archives_in_tar_gz_and_zip_with_gitlabs_prefix(project: Any) -> None:
    _commit(project, [{"action": "create", "file_path": "d/x.txt", "content": "x"}])
    sha = project.branches.get("main").commit["id"]
    data = project.repository_archive(sha="main")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert files == [f"cats-main-{sha}/README.md", f"cats-main-{sha}/d/x.txt"]
    zipped = project.repository_archive(sha="main", format="zip", path="d")
    names = [n for n in zipfile.ZipFile(io.BytesIO(zipped)).namelist() if not n.endswith("/")]
    assert names == [f"cats-main-{sha}-d/d/x.txt"]
    with pytest.raises(gitlab.GitlabListError) as exc:
        project.repository_archive(sha="nope")
    assert exc.value.response_code == 404


# --------------------------------------------------------------------------- permissions


def test_repository_permissions_follow_gitlab_roles(
    gitlab_admin: gitlab.Gitlab, make_client: Client
) -> None:
    exc: pytest.ExceptionInfo[Any]
    private = gitlab_admin.projects.create(
        {"name": "secret", "visibility": "private", "initialize_with_readme": True}
    )
    reporter, rc = make_client("rita")
    developer, dc = make_client("dev")
    _, stranger = make_client("stranger")
    private.members.create({"user_id": reporter.id, "access_level": 20})
    private.members.create({"user_id": developer.id, "access_level": 30})

    assert rc.projects.get(private.id, lazy=True).files.raw("README.md", ref="main")
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        rc.projects.get(private.id, lazy=True).files.create(
            {"file_path": "r", "branch": "main", "content": "x", "commit_message": "m"}
        )
    assert exc.value.response_code == 403
    dev_project = dc.projects.get(private.id, lazy=True)
    with pytest.raises(gitlab.GitlabCreateError) as exc:
        dev_project.files.create(
            {"file_path": "d", "branch": "main", "content": "x", "commit_message": "m"}
        )
    assert _status(exc) == (403, "403 Forbidden - You are not allowed to push into this branch")
    dev_project.branches.create({"branch": "work", "ref": "main"})
    dev_project.files.create(
        {"file_path": "d", "branch": "work", "content": "x", "commit_message": "m"}
    )
    with pytest.raises(gitlab.GitlabGetError) as exc:
        stranger.projects.get(private.id, lazy=True).files.get("README.md", ref="main")
    assert _status(exc) == (404, "404 Project Not Found")


# --------------------------------------------------------------------------- webhooks


def test_api_commit_and_git_push_fire_push_hooks(
    gitlab_sandbox: Sandbox, project: Any, webhook_receiver: Any, tmp_path: Path
) -> None:
    from tests.sandbox_contract.payload_shape import load_example, shape_differences
    from tests.sandbox_contract.test_git_http import git

    project.hooks.create(
        {"url": webhook_receiver.url, "push_events": True, "tag_push_events": True}
    )
    made = _commit(
        project,
        [{"action": "create", "file_path": "api.txt", "content": "x"}],
        commit_message="From API",
    )
    first = webhook_receiver.wait_for(1)[0]
    assert first.headers["X-Gitlab-Event"] == "Push Hook"
    payload = first.json()
    assert payload["after"] == made.id and [c["title"] for c in payload["commits"]] == ["From API"]
    assert (
        shape_differences(
            load_example("push"), payload, allow_extra={"$.message", "$.push_options"}
        )
        == []
    )

    host = gitlab_sandbox.url.split("://", 1)[1]
    clone = f"http://root:{gitlab_sandbox.admin_token}@{host}/{project.path_with_namespace}.git"
    work = tmp_path / "work"
    git("clone", "-q", clone, str(work))
    (work / "pushed.txt").write_text("p\n")
    git("add", "pushed.txt", cwd=work)
    git("commit", "-q", "-m", "From git push", cwd=work)
    git("tag", "-a", "v9", "-m", "nine", cwd=work)
    git("push", "-q", "origin", "main", "v9", cwd=work)
    received = webhook_receiver.wait_for(3)
    events = sorted((r.headers["X-Gitlab-Event"], r.json()["ref"]) for r in received[1:])
    assert events == [("Push Hook", "refs/heads/main"), ("Tag Push Hook", "refs/tags/v9")]
    push = next(r.json() for r in received[1:] if r.json()["object_kind"] == "push")
    assert push["before"] == made.id and push["commits"][-1]["title"] == "From git push"
    assert project.files.raw("pushed.txt", ref="main") == b"p\n"
