"""The CI/CD job token allowlist in GitLab's shape (doc/api/project_job_token_scopes.md) and
its effect on git fetches with another project's job token (doc/ci/jobs/ci_job_token.md)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from tests.gitlab_sandbox.server import Sandbox

Clients = Callable[..., tuple[Any, gitlab.Gitlab]]


@pytest.fixture
def two_projects(gitlab_admin: gitlab.Gitlab, make_client: Clients) -> dict[str, Any]:
    """A private dataset, a consumer project, and their people: `mia` maintains the dataset,
    `rep` reads it, `dev` runs the consumer's pipelines and reads the dataset; `mia` is a
    Guest of the consumer (adding a project to an allowlist needs to see it)."""
    dataset = gitlab_admin.projects.create(
        {"name": "cats", "visibility": "private", "initialize_with_readme": True}
    )
    consumer = gitlab_admin.projects.create({"name": "consumer", "visibility": "private"})
    people = {name: make_client(name) for name in ("mia", "rep", "dev")}
    dataset.members.create({"user_id": people["mia"][0].id, "access_level": 40})
    dataset.members.create({"user_id": people["rep"][0].id, "access_level": 20})
    dataset.members.create({"user_id": people["dev"][0].id, "access_level": 20})
    consumer.members.create({"user_id": people["dev"][0].id, "access_level": 30})
    consumer.members.create({"user_id": people["mia"][0].id, "access_level": 10})
    return {"dataset": dataset, "consumer": consumer, "people": people}


def _clone(
    sandbox: Sandbox, token: str, path: str, target: Path
) -> subprocess.CompletedProcess[str]:
    host = sandbox.url.split("://", 1)[1]
    return subprocess.run(
        ["git", "clone", "-q", f"http://gitlab-ci-token:{token}@{host}/{path}.git", str(target)],
        capture_output=True,
        text=True,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(target.parent)},
        check=False,
    )


def test_new_projects_limit_job_token_access_to_their_allowlist(
    two_projects: dict[str, Any],
) -> None:
    dataset = two_projects["dataset"]
    scope = dataset.job_token_scope.get()
    assert scope.inbound_enabled is True and scope.outbound_enabled is False
    listed = scope.allowlist.list(get_all=True)
    assert [p.id for p in listed] == [dataset.id]  # the project itself, nothing else
    assert set(listed[0].attributes) >= {"id", "path_with_namespace", "http_url_to_repo"}


def test_maintainer_adds_lists_and_removes_a_project(two_projects: dict[str, Any]) -> None:
    dataset, consumer = two_projects["dataset"], two_projects["consumer"]
    _, mia = two_projects["people"]["mia"]
    scope = mia.projects.get(dataset.id, lazy=True).job_token_scope.get()
    created = scope.allowlist.create({"target_project_id": consumer.id})
    assert created.source_project_id == dataset.id
    assert created.target_project_id == consumer.id
    assert [p.id for p in scope.allowlist.list(get_all=True)] == [dataset.id, consumer.id]
    with pytest.raises(gitlab.GitlabCreateError) as again:
        scope.allowlist.create({"target_project_id": consumer.id})
    assert again.value.response_code == 400
    scope.allowlist.delete(consumer.id)
    assert [p.id for p in scope.allowlist.list(get_all=True)] == [dataset.id]
    with pytest.raises(gitlab.GitlabDeleteError) as gone:
        scope.allowlist.delete(consumer.id)
    assert gone.value.response_code == 404


def test_patch_turns_the_limit_off_and_on(
    gitlab_sandbox: Sandbox, two_projects: dict[str, Any]
) -> None:
    dataset = two_projects["dataset"]
    url = f"{gitlab_sandbox.url}/api/v4/projects/{dataset.id}/job_token_scope"
    headers = {"PRIVATE-TOKEN": gitlab_sandbox.admin_token}
    off = requests.patch(url, json={"enabled": False}, headers=headers, timeout=5)
    assert off.status_code == 204 and off.content == b""
    assert requests.get(url, headers=headers, timeout=5).json()["inbound_enabled"] is False
    missing = requests.patch(url, json={}, headers=headers, timeout=5)
    assert missing.status_code == 400
    dataset.job_token_scope.update(new_data={"enabled": True})
    assert dataset.job_token_scope.get().inbound_enabled is True


def test_changing_the_allowlist_needs_the_maintainer_role(
    gitlab_sandbox: Sandbox, two_projects: dict[str, Any]
) -> None:
    dataset, consumer = two_projects["dataset"], two_projects["consumer"]
    _, rep = two_projects["people"]["rep"]
    with pytest.raises(gitlab.GitlabGetError) as read:
        rep.projects.get(dataset.id, lazy=True).job_token_scope.get()
    assert read.value.response_code == 403
    added = requests.post(
        f"{gitlab_sandbox.url}/api/v4/projects/{dataset.id}/job_token_scope/allowlist",
        json={"target_project_id": consumer.id},
        headers={"PRIVATE-TOKEN": rep.private_token or ""},
        timeout=5,
    )
    assert added.status_code == 403
    assert added.json() == {"message": "403 Forbidden"}


def test_a_target_the_maintainer_cannot_see_is_not_found(
    gitlab_admin: gitlab.Gitlab, two_projects: dict[str, Any]
) -> None:
    hidden = gitlab_admin.projects.create({"name": "hidden", "visibility": "private"})
    _, mia = two_projects["people"]["mia"]
    scope = mia.projects.get(two_projects["dataset"].id, lazy=True).job_token_scope.get()
    with pytest.raises(gitlab.GitlabCreateError) as err:
        scope.allowlist.create({"target_project_id": hidden.id})
    assert err.value.response_code == 404


def test_non_members_see_no_scope(gitlab_sandbox: Sandbox, two_projects: dict[str, Any]) -> None:
    _, token = gitlab_sandbox.create_user("out")
    dataset = two_projects["dataset"]
    answer = requests.get(
        f"{gitlab_sandbox.url}/api/v4/projects/{dataset.id}/job_token_scope/allowlist",
        headers={"PRIVATE-TOKEN": token},
        timeout=5,
    )
    assert answer.status_code == 404
    assert answer.json() == {"message": "404 Project Not Found"}


def test_groups_allowlist_admits_the_projects_of_a_group(
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    two_projects: dict[str, Any],
    tmp_path: Path,
) -> None:
    dataset = two_projects["dataset"]
    dev = two_projects["people"]["dev"][0]
    group = gitlab_admin.groups.create({"name": "ml", "path": "ml"})
    member = gitlab_admin.projects.create({"name": "trainer", "namespace_id": group.id})
    member.members.create({"user_id": dev.id, "access_level": 30})
    token = gitlab_sandbox.create_job_token(member.id, dev)
    assert _clone(gitlab_sandbox, token, dataset.path_with_namespace, tmp_path / "a").returncode
    url = f"{gitlab_sandbox.url}/api/v4/projects/{dataset.id}/job_token_scope/groups_allowlist"
    headers = {"PRIVATE-TOKEN": gitlab_sandbox.admin_token}
    added = requests.post(url, json={"target_group_id": group.id}, headers=headers, timeout=5)
    assert added.status_code == 201
    assert added.json() == {"source_project_id": dataset.id, "target_group_id": group.id}
    assert [g["id"] for g in requests.get(url, headers=headers, timeout=5).json()] == [group.id]
    cloned = _clone(gitlab_sandbox, token, dataset.path_with_namespace, tmp_path / "b")
    assert cloned.returncode == 0, cloned.stderr
    removed = requests.delete(f"{url}/{group.id}", headers=headers, timeout=5)
    assert removed.status_code == 204


def test_a_job_token_fetches_another_project_only_when_allowlisted(
    gitlab_sandbox: Sandbox, two_projects: dict[str, Any], tmp_path: Path
) -> None:
    dataset, consumer = two_projects["dataset"], two_projects["consumer"]
    dev = two_projects["people"]["dev"][0]
    token = gitlab_sandbox.create_job_token(consumer.id, dev)
    path = dataset.path_with_namespace

    refused = _clone(gitlab_sandbox, token, path, tmp_path / "refused")
    assert refused.returncode != 0
    assert (
        f"Authentication by CI/CD job token not allowed from {consumer.path_with_namespace} "
        f"to {path}." in refused.stderr
    )
    assert token not in refused.stderr

    dataset.job_token_scope.get().allowlist.create({"target_project_id": consumer.id})
    cloned = _clone(gitlab_sandbox, token, path, tmp_path / "allowed")
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "allowed" / "README.md").exists()

    dataset.job_token_scope.get().allowlist.delete(consumer.id)
    again = _clone(gitlab_sandbox, token, path, tmp_path / "again")
    assert again.returncode != 0


def test_the_allowlist_does_not_lift_the_users_own_permissions(
    gitlab_sandbox: Sandbox,
    gitlab_admin: gitlab.Gitlab,
    two_projects: dict[str, Any],
    make_client: Clients,
    tmp_path: Path,
) -> None:
    dataset, consumer = two_projects["dataset"], two_projects["consumer"]
    stranger, _ = make_client("stranger")
    consumer.members.create({"user_id": stranger.id, "access_level": 30})
    dataset.job_token_scope.get().allowlist.create({"target_project_id": consumer.id})
    token = gitlab_sandbox.create_job_token(consumer.id, stranger)
    refused = _clone(gitlab_sandbox, token, dataset.path_with_namespace, tmp_path / "x")
    assert refused.returncode != 0
    assert "could not be found" in refused.stderr or "not found" in refused.stderr


def test_the_job_token_reaches_its_own_project_whatever_the_allowlist(
    gitlab_sandbox: Sandbox, two_projects: dict[str, Any], tmp_path: Path
) -> None:
    dataset = two_projects["dataset"]
    mia = two_projects["people"]["mia"][0]
    token = gitlab_sandbox.create_job_token(dataset.id, mia)
    cloned = _clone(gitlab_sandbox, token, dataset.path_with_namespace, tmp_path / "own")
    assert cloned.returncode == 0, cloned.stderr
