"""Groups, namespaces and members (direct and inherited) through python-gitlab."""

from __future__ import annotations

from typing import Any

import gitlab
import pytest

from tests.sandbox_contract.gitlab_schemas import validate


def test_subgroup_by_encoded_path(gitlab_admin: gitlab.Gitlab) -> None:
    top = gitlab_admin.groups.create({"name": "Top", "path": "top"})
    sub = gitlab_admin.groups.create({"name": "Sub", "path": "sub", "parent_id": top.id})
    got = gitlab_admin.groups.get("top/sub")
    assert (got.id, got.full_path, got.parent_id, got.full_name) == (
        sub.id,
        "top/sub",
        top.id,
        "Top / Sub",
    )


def test_private_group_is_404_for_outsiders(gitlab_admin: gitlab.Gitlab, make_client: Any) -> None:
    gitlab_admin.groups.create({"name": "hidden", "path": "hidden"})
    _, client = make_client("outsider")
    with pytest.raises(gitlab.GitlabGetError) as err:
        client.groups.get("hidden")
    assert err.value.error_message == "404 Group Not Found"


def test_namespaces_list_get_and_exists(gitlab_admin: gitlab.Gitlab, make_client: Any) -> None:
    group = gitlab_admin.groups.create({"name": "ns", "path": "ns"})
    user, client = make_client("nsuser")
    group.members.create({"user_id": user.id, "access_level": 30})
    paths = {n.full_path for n in client.namespaces.list(get_all=True)}
    assert paths == {"nsuser", "ns"}
    assert client.namespaces.get("ns").kind == "group"
    exists = client.namespaces.exists("ns")
    assert exists.exists is True and exists.suggests == ["ns1"]
    assert client.namespaces.exists("free").exists is False


def test_members_all_reports_effective_level_through_ancestors(
    gitlab_admin: gitlab.Gitlab,
    make_client: Any,
) -> None:
    top = gitlab_admin.groups.create({"name": "t", "path": "t"})
    sub = gitlab_admin.groups.create({"name": "s", "path": "s", "parent_id": top.id})
    project = gitlab_admin.projects.create({"name": "p", "namespace_id": sub.id})
    user, _ = make_client("inherit")
    top.members.create({"user_id": user.id, "access_level": 40})
    project.members.create({"user_id": user.id, "access_level": 20})
    assert project.members.get(user.id).access_level == 20
    assert project.members_all.get(user.id).access_level == 40
    listing: Any = gitlab_admin.http_get(f"/projects/{project.id}/members/all")
    validate("public_api/v4/members.json", listing)
    assert {m["username"] for m in listing} >= {"inherit", "root"}


def test_non_member_lookup_is_404_not_found(gitlab_admin: gitlab.Gitlab, make_client: Any) -> None:
    project = gitlab_admin.projects.create({"name": "m"})
    user, _ = make_client("stranger")
    with pytest.raises(gitlab.GitlabGetError) as err:
        project.members_all.get(user.id)
    assert err.value.error_message == "404 Not found"


def test_adding_an_existing_member_is_409(gitlab_admin: gitlab.Gitlab, make_client: Any) -> None:
    project = gitlab_admin.projects.create({"name": "twice"})
    user, _ = make_client("again")
    project.members.create({"user_id": user.id, "access_level": 30})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        project.members.create({"user_id": user.id, "access_level": 30})
    assert err.value.response_code == 409


def test_group_members_list_matches_schema(gitlab_admin: gitlab.Gitlab, make_client: Any) -> None:
    group = gitlab_admin.groups.create({"name": "gm", "path": "gm"})
    user, _ = make_client("gmember")
    group.members.create({"user_id": user.id, "access_level": 10})
    body: Any = gitlab_admin.http_get(f"/groups/{group.id}/members")
    validate("public_api/v4/members.json", body)
    assert {m["username"]: m["access_level"] for m in body} == {"root": 50, "gmember": 10}
