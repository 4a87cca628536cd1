"""Creating, editing, archiving and deleting projects as GitLab rules them.

Visibility is bounded by the group (`visibility_level_allowed_by_group`: "public is not
allowed in a private group."), a group's `project_creation_level` decides who may create
projects in it (GitLab's default: Maintainers), the owner of a personal namespace becomes a
direct Owner (50) member of projects created there, the default branch is protected
(Maintainers push), archived projects refuse every write, and each change fires its system
hook.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, cast

import gitlab
import pytest

from tests.gitlab_sandbox.fixtures import WebhookReceiver
from tests.gitlab_sandbox.server import Sandbox
from tests.sandbox_contract.gitlab_schemas import validate_basic_project


def _client(sandbox: Sandbox, username: str) -> tuple[Any, gitlab.Gitlab, str]:
    user, token = sandbox.create_user(username)
    return user, gitlab.Gitlab(sandbox.url, private_token=token), token


def test_project_in_a_group_takes_namespace_description_topics_and_visibility(
    gitlab_admin: gitlab.Gitlab,
) -> None:
    group = gitlab_admin.groups.create({"name": "Lab", "path": "lab", "visibility": "internal"})
    project = gitlab_admin.projects.create(
        {
            "name": "Scans 2024",
            "namespace_id": group.id,
            "description": "CT scans",
            "visibility": "internal",
            "topics": ["ct", "lung"],
        }
    )
    attrs = project.asdict()
    validate_basic_project(attrs)
    assert attrs["path_with_namespace"] == "lab/scans-2024"
    assert attrs["namespace"]["id"] == group.id
    assert (attrs["description"], attrs["visibility"]) == ("CT scans", "internal")
    assert attrs["topics"] == ["ct", "lung"]


def test_visibility_above_the_group_is_gitlabs_400(gitlab_admin: gitlab.Gitlab) -> None:
    group = gitlab_admin.groups.create({"name": "Closed", "path": "closed"})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        gitlab_admin.projects.create(
            {"name": "open", "namespace_id": group.id, "visibility": "public"}
        )
    assert err.value.response_code == 400
    assert cast(Any, err.value.error_message) == {
        "visibility_level": ["public is not allowed in a private group."]
    }
    project = gitlab_admin.projects.create({"name": "closed", "namespace_id": group.id})
    project.visibility = "internal"
    with pytest.raises(gitlab.GitlabUpdateError) as edit:
        project.save()
    assert edit.value.response_code == 400
    assert cast(Any, edit.value.error_message) == {
        "visibility_level": ["internal is not allowed in a private group."]
    }


def test_taken_path_in_the_namespace_is_a_validation_hash(gitlab_admin: gitlab.Gitlab) -> None:
    group = gitlab_admin.groups.create({"name": "T", "path": "t"})
    gitlab_admin.projects.create({"name": "One", "path": "one", "namespace_id": group.id})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        gitlab_admin.projects.create({"name": "Other", "path": "one", "namespace_id": group.id})
    assert err.value.response_code == 400
    assert cast(Any, err.value.error_message) == {"path": ["has already been taken"]}


def test_project_creation_level_decides_who_may_create(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    group = gitlab_admin.groups.create({"name": "Crew", "path": "crew"})
    assert group.project_creation_level == "maintainer"  # GitLab's default
    clients = {}
    for name, level in (("dev", 30), ("maint", 40)):
        user, client, _ = _client(gitlab_sandbox, name)
        group.members.create({"user_id": user.id, "access_level": level})
        clients[name] = client
    with pytest.raises(gitlab.GitlabCreateError) as err:
        clients["dev"].projects.create({"name": "by-dev", "namespace_id": group.id})
    assert err.value.response_code == 400
    assert cast(Any, err.value.error_message) == {"namespace": ["is not valid"]}
    made = clients["maint"].projects.create({"name": "by-maint", "namespace_id": group.id})
    assert made.namespace["id"] == group.id

    group.project_creation_level = "developer"
    group.save()
    assert gitlab_admin.groups.get(group.id).project_creation_level == "developer"
    by_dev = clients["dev"].projects.create({"name": "by-dev", "namespace_id": group.id})
    # The Developer who creates a project in a group is made its Maintainer.
    assert by_dev.members.list()[0].access_level == 40

    group.project_creation_level = "noone"
    group.save()
    with pytest.raises(gitlab.GitlabCreateError):
        clients["maint"].projects.create({"name": "later", "namespace_id": group.id})


def test_personal_namespace_owner_is_a_direct_owner_member(gitlab_sandbox: Sandbox) -> None:
    user, client, _ = _client(gitlab_sandbox, "solo")
    project = client.projects.create({"name": "mine", "visibility": "public"})
    assert project.path_with_namespace == "solo/mine"
    members = project.members.list()
    assert [(m.id, m.access_level) for m in members] == [(user.id, 50)]
    assert project.members_all.get(user.id).access_level == 50
    permissions = client.projects.get(project.id).permissions
    assert permissions == {
        "project_access": {"access_level": 50, "notification_level": 3},
        "group_access": None,
    }


def test_default_branch_is_protected_for_maintainers(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    project = gitlab_admin.projects.create({"name": "guarded", "initialize_with_readme": True})
    dev, client, _ = _client(gitlab_sandbox, "devone")
    project.members.create({"user_id": dev.id, "access_level": 30})
    [rule] = project.protectedbranches.list()
    assert rule.name == "main"
    assert [a["access_level"] for a in rule.push_access_levels] == [40]
    assert project.protectedbranches.get("main").allow_force_push is False
    with pytest.raises(gitlab.GitlabGetError) as missing:
        project.protectedbranches.get("feature")
    assert missing.value.response_code == 404
    action = {"action": "create", "file_path": "x.txt", "content": "x"}
    as_dev = client.projects.get(project.id, lazy=True)
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        as_dev.commits.create({"branch": "main", "commit_message": "m", "actions": [action]})
    assert refused.value.response_code == 403
    commit = as_dev.commits.create(
        {"branch": "side", "start_branch": "main", "commit_message": "m", "actions": [action]}
    )
    assert commit.id


def test_archived_project_refuses_commits_and_pushes_until_unarchived(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, tmp_path: Path
) -> None:
    project = gitlab_admin.projects.create({"name": "frozen", "initialize_with_readme": True})
    archived = gitlab_admin.http_post(f"/projects/{project.id}/archive")
    assert cast(dict[str, Any], archived)["archived"] is True
    validate_basic_project(cast(dict[str, Any], archived))
    project.archive()  # idempotent
    assert gitlab_admin.projects.get(project.id).archived is True
    assert [p.id for p in gitlab_admin.projects.list(archived=True)] == [project.id]
    action = {"action": "create", "file_path": "x.txt", "content": "x"}
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        project.commits.create({"branch": "main", "commit_message": "m", "actions": [action]})
    assert refused.value.response_code == 403

    url = project.http_url_to_repo.replace("://", f"://root:{gitlab_sandbox.admin_token}@")
    work = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", url, str(work)], check=True)
    (work / "y.txt").write_text("y")
    git = ["git", "-C", str(work), "-c", "user.name=r", "-c", "user.email=r@example.com"]
    subprocess.run([*git, "add", "y.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "y"], check=True)
    push = subprocess.run(
        [*git, "push", "-q", "origin", "main"], check=False, capture_output=True, text=True
    )
    assert push.returncode != 0
    assert "You can't push code to an archived project." in push.stderr

    project.unarchive()
    assert gitlab_admin.projects.get(project.id).archived is False
    project.commits.create({"branch": "main", "commit_message": "m", "actions": [action]})


def test_archive_needs_the_owner(gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "kept"})
    maint, client, _ = _client(gitlab_sandbox, "keeper")
    project.members.create({"user_id": maint.id, "access_level": 40})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        client.projects.get(project.id, lazy=True).archive()
    assert err.value.response_code == 403


def test_create_update_archive_and_delete_fire_system_hooks(
    gitlab_admin: gitlab.Gitlab, webhook_receiver: WebhookReceiver
) -> None:
    gitlab_admin.hooks.create({"url": webhook_receiver.url})
    project = gitlab_admin.projects.create({"name": "hooked"})
    project.description = "now described"
    project.save()
    project.archive()
    project.delete()
    received = webhook_receiver.wait_for(5)  # create, member, 2 updates, destroy
    events = [json.loads(r.body) for r in received]
    names = [e["event_name"] for e in events if e.get("project_id") == project.id]
    assert names[:2] == ["project_create", "user_add_to_team"]
    assert names[-1] == "project_destroy"
    assert names.count("project_update") == 2
    assert all(r.headers.get("X-Gitlab-Event") == "System Hook" for r in received)
