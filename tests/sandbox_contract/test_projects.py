"""Projects through python-gitlab: create, get, list filters, edit, delete, fork, transfer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import gitlab
import pytest

from tests.gitlab_sandbox.server import Sandbox
from tests.sandbox_contract.gitlab_schemas import validate_basic_project


def test_create_returns_project_without_permissions(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "My Data", "description": "d"})
    attrs = project.asdict()
    assert "permissions" not in attrs
    assert attrs["path"] == "my-data"
    assert attrs["path_with_namespace"] == "root/my-data"
    validate_basic_project(attrs)


def test_get_by_id_and_by_encoded_path_agree(gitlab_admin: gitlab.Gitlab) -> None:
    group = gitlab_admin.groups.create({"name": "G", "path": "g"})
    created = gitlab_admin.projects.create({"name": "p", "namespace_id": group.id})
    by_path = gitlab_admin.projects.get("g/p")
    assert by_path.id == created.id
    assert gitlab_admin.projects.get(created.id).http_url_to_repo.endswith("/g/p.git")
    validate_basic_project(by_path.asdict())


def test_missing_name_and_path_is_grape_400(gitlab_admin: gitlab.Gitlab) -> None:
    with pytest.raises(gitlab.GitlabCreateError) as err:
        gitlab_admin.projects.create({"description": "x"})
    assert err.value.response_code == 400
    assert (
        err.value.error_message == "name, path are missing, at least one parameter must be provided"
    )


def test_duplicate_name_is_validation_hash(gitlab_admin: gitlab.Gitlab) -> None:
    gitlab_admin.projects.create({"name": "dup"})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        gitlab_admin.projects.create({"name": "dup"})
    assert err.value.response_code == 400
    assert cast(Any, err.value.error_message) == {
        "name": ["has already been taken"],
        "path": ["has already been taken"],
    }


def test_initialize_with_readme_makes_a_commit(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    empty = gitlab_admin.projects.create({"name": "empty"})
    readme = gitlab_admin.projects.create({"name": "readme", "initialize_with_readme": True})
    assert gitlab_admin.projects.get(empty.id).empty_repo is True
    assert gitlab_admin.projects.get(readme.id).empty_repo is False
    from tests.gitlab_sandbox.gitrepo import GitRepo

    repo = GitRepo(gitlab_sandbox.state.projects[readme.id].repo_path)
    assert repo.branch_sha("main") is not None


def test_list_filters_search_topic_visibility_and_simple(gitlab_admin: gitlab.Gitlab) -> None:
    gitlab_admin.projects.create(
        {"name": "cats images", "topics": ["vision", "cats"], "visibility": "public"}
    )
    gitlab_admin.projects.create({"name": "dogs images", "topics": ["vision"]})
    gitlab_admin.projects.create({"name": "audio", "description": "cats meowing"})
    assert {p.name for p in gitlab_admin.projects.list(search="cats", get_all=True)} == {
        "cats images",
        "audio",
    }
    assert {p.name for p in gitlab_admin.projects.list(search="cats images", get_all=True)} == {
        "cats images"
    }
    assert {p.name for p in gitlab_admin.projects.list(topic="vision,cats", get_all=True)} == {
        "cats images"
    }
    assert {p.name for p in gitlab_admin.projects.list(visibility="public", get_all=True)} == {
        "cats images"
    }
    simple = gitlab_admin.projects.list(simple=True, get_all=True)[0].asdict()
    assert "permissions" not in simple and "namespace" in simple and "_links" not in simple


def test_list_order_and_sort(gitlab_admin: gitlab.Gitlab) -> None:
    for name in ("b", "c", "a"):
        gitlab_admin.projects.create({"name": name})
    asc = [p.name for p in gitlab_admin.projects.list(order_by="name", sort="asc", get_all=True)]
    assert asc == ["a", "b", "c"]
    default = [p.name for p in gitlab_admin.projects.list(get_all=True)]
    assert default == ["a", "c", "b"]  # created_at desc


def test_membership_and_min_access_level(gitlab_admin: gitlab.Gitlab, make_client: Any) -> None:
    user, client = make_client("member")
    mine = gitlab_admin.projects.create({"name": "mine"})
    gitlab_admin.projects.create({"name": "other", "visibility": "internal"})
    mine.members.create({"user_id": user.id, "access_level": 20})
    assert {p.name for p in client.projects.list(membership=True, get_all=True)} == {"mine"}
    assert client.projects.list(min_access_level=30, get_all=True) == []
    assert {p.name for p in client.projects.list(get_all=True)} == {"mine", "other"}


def test_edit_topics_visibility_description(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "edit-me"})
    project.topics = ["x", "y"]
    project.visibility = "public"
    project.description = "new"
    project.save()
    again = gitlab_admin.projects.get(project.id)
    assert (again.topics, again.tag_list, again.visibility, again.description) == (
        ["x", "y"],
        ["x", "y"],
        "public",
        "new",
    )


def test_rename_path_redirects_old_path(gitlab_admin: gitlab.Gitlab) -> None:
    project = gitlab_admin.projects.create({"name": "old"})
    project.path = "new"
    project.save()
    assert gitlab_admin.projects.get("root/new").id == project.id
    assert gitlab_admin.projects.get("root/old").id == project.id  # followed 301


def test_delete_answers_202_and_project_is_gone(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    project = gitlab_admin.projects.create({"name": "gone", "initialize_with_readme": True})
    repo_path = gitlab_sandbox.state.projects[project.id].repo_path
    result = gitlab_admin.http_delete(f"/projects/{project.id}")
    assert result.status_code == 202
    assert result.json() == {"message": "202 Accepted"}
    with pytest.raises(gitlab.GitlabGetError):
        gitlab_admin.projects.get(project.id)
    assert not repo_path.exists()


def test_fork_copies_repository_and_links_parent(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, make_client: Any
) -> None:
    source = gitlab_admin.projects.create(
        {"name": "src", "visibility": "public", "initialize_with_readme": True}
    )
    _user, client = make_client("forker")
    fork = client.projects.get(source.id, lazy=True).forks.create({})
    assert fork.forked_from_project["id"] == source.id
    assert fork.path_with_namespace == "forker/src"
    from tests.gitlab_sandbox.gitrepo import GitRepo

    state = gitlab_sandbox.state
    assert GitRepo(state.projects[fork.id].repo_path).branch_sha("main") == GitRepo(
        state.projects[source.id].repo_path
    ).branch_sha("main")
    assert [f.id for f in gitlab_admin.projects.get(source.id).forks.list()] == [fork.id]


def test_transfer_moves_project_to_group(gitlab_admin: gitlab.Gitlab) -> None:
    group = gitlab_admin.groups.create({"name": "dest", "path": "dest"})
    project = gitlab_admin.projects.create({"name": "moving"})
    project.transfer(group.id)
    assert gitlab_admin.projects.get(project.id).path_with_namespace == "dest/moving"


def test_state_survives_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Sandbox(data) as first:
        gl = gitlab.Gitlab(first.url, private_token=first.admin_token)
        project_id = gl.projects.create({"name": "kept", "initialize_with_readme": True}).id
        token = first.admin_token
    with Sandbox(data, admin_token=token) as second:
        gl = gitlab.Gitlab(second.url, private_token=token)
        again = gl.projects.get(project_id)
        assert again.name == "kept" and again.empty_repo is False
