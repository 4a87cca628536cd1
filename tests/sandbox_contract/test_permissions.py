"""GitLab's permission table as the sandbox enforces it (visibility, roles, 404-not-403)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gitlab
import pytest
import requests

from tests.gitlab_sandbox.server import Sandbox

Client = Callable[..., tuple[Any, gitlab.Gitlab]]


@pytest.fixture
def projects(gitlab_admin: gitlab.Gitlab) -> dict[str, Any]:
    group = gitlab_admin.groups.create({"name": "lab", "path": "lab", "visibility": "public"})
    made: dict[str, Any] = {}
    for visibility in ("public", "internal", "private"):
        made[visibility] = gitlab_admin.projects.create(
            {
                "name": visibility,
                "namespace_id": group.id,
                "visibility": visibility,
                "initialize_with_readme": True,
            }
        )
    made["group"] = group
    return made


def test_anonymous_sees_public_projects_only(
    projects: dict[str, Any], anonymous: gitlab.Gitlab
) -> None:
    assert {p.name for p in anonymous.projects.list(get_all=True)} == {"public"}
    with pytest.raises(gitlab.GitlabGetError) as err:
        anonymous.projects.get(projects["internal"].id)
    assert err.value.response_code == 404


def test_signed_in_user_also_sees_internal(projects: dict[str, Any], make_client: Client) -> None:
    _, client = make_client("outsider")
    assert {p.name for p in client.projects.list(get_all=True)} == {"public", "internal"}


def test_private_project_is_invisible_to_non_members_with_404(
    projects: dict[str, Any], make_client: Client
) -> None:
    _, client = make_client("outsider")
    for key in (projects["private"].id, "lab/private"):
        with pytest.raises(gitlab.GitlabGetError) as err:
            client.projects.get(key)
        assert err.value.response_code == 404
        assert err.value.error_message == "404 Project Not Found"


def test_membership_through_ancestor_group_grants_visibility(
    gitlab_admin: gitlab.Gitlab, make_client: Client
) -> None:
    top = gitlab_admin.groups.create({"name": "top", "path": "top"})
    sub = gitlab_admin.groups.create({"name": "sub", "path": "sub", "parent_id": top.id})
    secret = gitlab_admin.projects.create({"name": "secret", "namespace_id": sub.id})
    user, client = make_client("reporter")
    top.members.create({"user_id": user.id, "access_level": 20})
    seen = client.projects.get("top/sub/secret")
    assert seen.id == secret.id
    assert seen.permissions == {
        "project_access": None,
        "group_access": {"access_level": 20, "notification_level": 3},
    }


def test_direct_member_permissions_object(
    projects: dict[str, Any], gitlab_admin: gitlab.Gitlab, make_client: Client
) -> None:
    user, client = make_client("dev")
    projects["private"].members.create({"user_id": user.id, "access_level": 30})
    seen = client.projects.get(projects["private"].id)
    assert seen.permissions["project_access"] == {"access_level": 30, "notification_level": 3}
    assert seen.permissions["group_access"] is None


def _tree(sandbox: Sandbox, project_id: int, token: str | None) -> int:
    headers = {"PRIVATE-TOKEN": token} if token else {}
    return requests.get(
        f"{sandbox.url}/api/v4/projects/{project_id}/repository/tree", headers=headers, timeout=10
    ).status_code


def test_guest_sees_private_project_but_not_its_repository(
    gitlab_sandbox: Sandbox, projects: dict[str, Any]
) -> None:
    guest, token = gitlab_sandbox.create_user("guest")
    projects["private"].members.create({"user_id": guest.id, "access_level": 10})
    client = gitlab.Gitlab(gitlab_sandbox.url, private_token=token)
    assert client.projects.get(projects["private"].id).name == "private"
    state = gitlab_sandbox.state
    project = state.projects[projects["private"].id]
    with pytest.raises(Exception) as err:
        state.find_project(str(project.id), guest, "read_repository")
    assert getattr(err.value, "status", None) == 403


def test_reporter_reads_private_repository(
    gitlab_sandbox: Sandbox, projects: dict[str, Any]
) -> None:
    reporter, _ = gitlab_sandbox.create_user("rep")
    projects["private"].members.create({"user_id": reporter.id, "access_level": 20})
    state = gitlab_sandbox.state
    assert (
        state.find_project(str(projects["private"].id), reporter, "read_repository").name
        == "private"
    )


def test_anyone_who_sees_public_or_internal_reads_its_repository(
    gitlab_sandbox: Sandbox, projects: dict[str, Any]
) -> None:
    state = gitlab_sandbox.state
    outsider, _ = gitlab_sandbox.create_user("someone")
    assert state.find_project(str(projects["internal"].id), outsider, "read_repository")
    assert state.find_project(str(projects["public"].id), None, "read_repository")


@pytest.mark.parametrize(
    ("level", "need", "allowed"),
    [
        (20, "push", False),
        (30, "push", True),
        (30, "admin", False),
        (40, "admin", True),
        (40, "owner", False),
        (50, "owner", True),
    ],
)
def test_role_thresholds(
    gitlab_sandbox: Sandbox, projects: dict[str, Any], level: int, need: str, allowed: bool
) -> None:
    user, _ = gitlab_sandbox.create_user(f"u{level}")
    projects["private"].members.create({"user_id": user.id, "access_level": level})
    from tests.gitlab_sandbox import permissions

    project = gitlab_sandbox.state.projects[projects["private"].id]
    assert permissions.can(gitlab_sandbox.state, user, project, need) is allowed


def test_developer_cannot_edit_but_maintainer_can(
    projects: dict[str, Any], make_client: Client
) -> None:
    dev, dev_client = make_client("dev2")
    maint, maint_client = make_client("maint")
    projects["private"].members.create({"user_id": dev.id, "access_level": 30})
    projects["private"].members.create({"user_id": maint.id, "access_level": 40})
    as_dev = dev_client.projects.get(projects["private"].id)
    as_dev.description = "changed"
    with pytest.raises(gitlab.GitlabUpdateError) as err:
        as_dev.save()
    assert err.value.response_code == 403
    as_maint = maint_client.projects.get(projects["private"].id)
    as_maint.description = "changed"
    as_maint.save()
    assert maint_client.projects.get(projects["private"].id).description == "changed"


def test_only_owner_deletes(projects: dict[str, Any], make_client: Client) -> None:
    maint, client = make_client("maint2")
    projects["private"].members.create({"user_id": maint.id, "access_level": 40})
    with pytest.raises(gitlab.GitlabDeleteError) as err:
        client.projects.delete(projects["private"].id)
    assert err.value.response_code == 403


def test_hooks_and_variables_need_maintainer(projects: dict[str, Any], make_client: Client) -> None:
    dev, client = make_client("dev3")
    projects["private"].members.create({"user_id": dev.id, "access_level": 30})
    project = client.projects.get(projects["private"].id, lazy=True)
    with pytest.raises(gitlab.GitlabListError) as hooks_err:
        project.hooks.list()
    with pytest.raises(gitlab.GitlabListError) as vars_err:
        project.variables.list()
    assert hooks_err.value.response_code == vars_err.value.response_code == 403


def test_system_hooks_are_admin_only(make_client: Client) -> None:
    _, client = make_client("plain")
    with pytest.raises(gitlab.GitlabListError) as err:
        client.hooks.list()
    assert err.value.response_code == 403
