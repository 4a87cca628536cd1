"""Releases, protected tags and commit revert: python-gitlab and `git push` against the sandbox."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gitlab
import pytest

from tests.gitlab_sandbox.fixtures import WebhookReceiver
from tests.sandbox_contract.payload_shape import load_example, shape_differences

Client = Callable[..., tuple[Any, gitlab.Gitlab]]
DEVELOPER, MAINTAINER, REPORTER = 30, 40, 20


@pytest.fixture
def project(gitlab_admin: gitlab.Gitlab) -> Any:
    return gitlab_admin.projects.create({"name": "cats", "initialize_with_readme": True})


def _member(
    gitlab_admin: gitlab.Gitlab, project: Any, make_client: Client, name: str, level: int
) -> gitlab.Gitlab:
    user, client = make_client(name)
    gitlab_admin.projects.get(project.id).members.create(
        {"user_id": user.id, "access_level": level}
    )
    return client


def _error(exc: pytest.ExceptionInfo[Any]) -> tuple[int | None, Any]:
    return exc.value.response_code, exc.value.error_message


def test_release_create_makes_an_annotated_tag_and_lists_gets_deletes(
    gitlab_admin: gitlab.Gitlab, project: Any
) -> None:
    gitlab_admin.auth()
    assert gitlab_admin.user is not None
    release = project.releases.create(
        {
            "tag_name": "v0.1.0",
            "ref": "main",
            "tag_message": "First version",
            "description": "Ten cats",
        }
    )
    assert release.tag_name == "v0.1.0" and release.description == "Ten cats"
    assert release.author["username"] == gitlab_admin.user.username
    assert release.commit["id"] == project.branches.get("main").commit["id"]
    tag = project.tags.get("v0.1.0")
    assert tag.message == "First version"
    assert tag.target != tag.commit["id"]  # annotated: the target is the tag object
    assert tag.release == {"tag_name": "v0.1.0", "description": "Ten cats"}
    assert [r.tag_name for r in project.releases.list()] == ["v0.1.0"]
    assert project.releases.get("v0.1.0").description == "Ten cats"
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as exc:
        project.releases.create({"tag_name": "v0.1.0", "ref": "main", "description": "again"})
    assert _error(exc) == (409, "Release already exists")
    project.releases.delete("v0.1.0")
    assert project.releases.list() == []
    assert project.tags.get("v0.1.0").release is None  # deleting a release keeps its tag
    with pytest.raises(gitlab.exceptions.GitlabGetError) as missing:
        project.releases.get("v0.1.0")
    assert missing.value.response_code == 404


def test_release_needs_a_ref_for_a_new_tag_and_deleting_the_tag_drops_the_release(
    project: Any,
) -> None:
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as exc:
        project.releases.create({"tag_name": "v1", "description": "no ref"})
    assert exc.value.response_code == 422
    project.releases.create({"tag_name": "v1", "ref": "main", "description": "one"})
    project.tags.delete("v1")
    assert project.releases.list() == []


def test_protected_tags_limit_who_creates_and_deletes_through_the_api(
    gitlab_admin: gitlab.Gitlab, project: Any, make_client: Client
) -> None:
    made = project.protectedtags.create({"name": "v*", "create_access_level": MAINTAINER})
    assert made.name == "v*"
    assert made.create_access_levels[0]["access_level"] == MAINTAINER
    assert made.create_access_levels[0]["access_level_description"] == "Maintainers"
    assert [p.name for p in project.protectedtags.list()] == ["v*"]
    assert project.protectedtags.get("v*").name == "v*"
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as taken:
        project.protectedtags.create({"name": "v*"})
    assert taken.value.response_code == 422

    dev = _member(gitlab_admin, project, make_client, "dora", DEVELOPER)
    reporter = _member(gitlab_admin, project, make_client, "rita", REPORTER)
    maint = _member(gitlab_admin, project, make_client, "mona", MAINTAINER)
    as_dev = dev.projects.get(project.id, lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as refused:
        as_dev.releases.create({"tag_name": "v0.1.0", "ref": "main", "description": "x"})
    assert refused.value.response_code == 403
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as refused_tag:
        as_dev.tags.create({"tag_name": "v0.1.0", "ref": "main"})
    assert _error(refused_tag) == (
        403,
        "403 Forbidden - You are not allowed to create this tag as it is protected.",
    )
    as_dev.tags.create({"tag_name": "nightly", "ref": "main"})  # not protected: Developer may
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as reporter_refused:
        reporter.projects.get(project.id, lazy=True).releases.create(
            {"tag_name": "r1", "ref": "main", "description": "x"}
        )
    assert reporter_refused.value.response_code == 403

    as_maint = maint.projects.get(project.id, lazy=True)
    release = as_maint.releases.create(
        {"tag_name": "v0.1.0", "ref": "main", "tag_message": "v", "description": "ok"}
    )
    assert release.author["username"] == "mona"
    assert project.tags.get("v0.1.0").protected is True
    assert project.tags.get("nightly").protected is False
    with pytest.raises(gitlab.exceptions.GitlabDeleteError) as no_delete:
        as_dev.tags.delete("v0.1.0")
    assert no_delete.value.response_code == 403
    as_maint.tags.delete("v0.1.0")
    project.protectedtags.delete("v*")
    assert project.protectedtags.list() == []
    with pytest.raises(gitlab.exceptions.GitlabListError) as dev_list:
        as_dev.protectedtags.list()
    assert dev_list.value.response_code == 403


def _git(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=check
    )


def test_git_push_honours_protected_tags(
    gitlab_admin: gitlab.Gitlab,
    project: Any,
    make_client: Client,
    gitlab_sandbox: Any,
    tmp_path: Path,
) -> None:
    project.protectedtags.create({"name": "v*", "create_access_level": MAINTAINER})
    user, token = gitlab_sandbox.create_user("devon")
    gitlab_admin.projects.get(project.id).members.create(
        {"user_id": user.id, "access_level": DEVELOPER}
    )
    url = project.http_url_to_repo.replace("://", f"://oauth2:{token}@")
    _git(["clone", "-q", url, "work"], tmp_path)
    work = tmp_path / "work"
    _git(["tag", "-a", "v9", "-m", "nine"], work)
    denied = _git(["push", "origin", "v9"], work, check=False)
    assert denied.returncode != 0
    assert "You are not allowed to create this tag as it is protected." in denied.stderr
    _git(["tag", "-a", "t9", "-m", "plain"], work)
    assert _git(["push", "origin", "t9"], work, check=False).returncode == 0
    project.tags.create({"tag_name": "v1", "ref": "main", "message": "one"})  # admin may
    _git(["fetch", "-q", "origin", "--tags"], work)
    moved = _git(["push", "origin", ":refs/tags/v1"], work, check=False)
    assert "You can only delete protected tags using the web interface." in moved.stderr
    assert project.tags.get("v1").name == "v1"


def test_commit_revert_honours_the_protected_default_branch(
    gitlab_admin: gitlab.Gitlab, project: Any, make_client: Client
) -> None:
    bad = project.commits.create(
        {
            "branch": "main",
            "commit_message": "Break",
            "actions": [{"action": "create", "file_path": "x.txt", "content": "x"}],
        }
    )
    dev = _member(gitlab_admin, project, make_client, "dave", DEVELOPER)
    commit = dev.projects.get(project.id, lazy=True).commits.get(bad.id, lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabRevertError) as refused:
        commit.revert(branch="main")
    assert refused.value.response_code == 403
    project.branches.create({"branch": "fix", "ref": "main"})
    reverted = commit.revert(branch="fix")
    assert isinstance(reverted, dict)
    assert reverted["message"].startswith('Revert "Break"')
    with pytest.raises(gitlab.exceptions.GitlabRevertError) as unknown:
        project.commits.get("0" * 40, lazy=True).revert(branch="main")
    assert unknown.value.response_code == 404


def test_release_hooks_on_create_update_delete_match_gitlab_payload(
    gitlab_admin: gitlab.Gitlab, project: Any, webhook_receiver: WebhookReceiver
) -> None:
    """Project hooks with `releases_events` get GitLab's Release Hook for each change (`PUT`
    edits a release); hooks without the flag get none."""
    project.hooks.create(
        {"url": webhook_receiver.url, "releases_events": True, "push_events": False}
    )
    project.hooks.create({"url": webhook_receiver.url + "/off", "push_events": False})
    release = project.releases.create({"tag_name": "v1", "ref": "main", "description": "one"})
    release.description = "one, edited"
    release.save()
    assert project.releases.get("v1").description == "one, edited"
    project.releases.delete("v1")
    hooks = [
        h for h in webhook_receiver.wait_for(3) if h.headers.get("X-Gitlab-Event") == "Release Hook"
    ]
    bodies = [h.json() for h in hooks]
    assert [b["action"] for b in bodies] == ["create", "update", "delete"]
    assert [b["description"] for b in bodies] == ["one", "one, edited", "one, edited"]
    assert {b["tag"] for b in bodies} == {"v1"} and {b["project"]["id"] for b in bodies} == {
        project.id
    }
    # The sandbox's releases hold no asset links and commits carry no author's name here.
    example = load_example("release")
    example["assets"]["links"] = []
    assert shape_differences(example, bodies[0], nullable={"$.commit.author.name"}) == []
    time.sleep(0.5)  # the hook without `releases_events` had its chance
    released = [
        h for h in webhook_receiver.received if h.headers.get("X-Gitlab-Event") == "Release Hook"
    ]
    assert len(released) == 3
