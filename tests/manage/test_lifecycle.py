"""Edit, archive and delete through the API: each reflected in search when the call returns."""

from __future__ import annotations

import gitlab
import pytest

from tests.manage.conftest import ManageWorld


def _ids(world: ManageWorld, who: str, **query: str) -> list[int]:
    found = world.call(who, "GET", "/api/v1/datasets", **query)
    assert found.status_code == 200
    return [item["id"] for item in found.get_json()["items"]]


def test_edit_is_searchable_at_once_and_a_wider_visibility_reaches_others_at_once(
    manage: ManageWorld,
) -> None:
    pid = manage.create(
        "maintainer", name="Before", namespace="imaging", topics=["old"]
    ).get_json()["id"]
    assert manage.call("nonmember", "GET", f"/api/v1/datasets/{pid}").status_code == 404
    # The non-member's permissions are now cached (private: not theirs to read).
    assert pid not in _ids(manage, "nonmember")

    edited = manage.call(
        "maintainer",
        "PATCH",
        f"/api/v1/datasets/{pid}",
        {"name": "After", "description": "histology slides", "topics": ["new", "wsi"]},
    )
    assert edited.status_code == 200, edited.get_json()
    body = edited.get_json()
    assert (body["name"], body["description"], body["topics"]) == (
        "After",
        "histology slides",
        ["new", "wsi"],
    )
    assert _ids(manage, "maintainer", q="histology") == [pid]
    assert _ids(manage, "maintainer", topic="wsi") == [pid]
    assert _ids(manage, "maintainer", topic="old") == []

    widened = manage.call(
        "maintainer", "PATCH", f"/api/v1/datasets/{pid}", {"visibility": "internal"}
    )
    assert widened.status_code == 200 and widened.get_json()["visibility"] == "internal"
    assert manage.call("nonmember", "GET", f"/api/v1/datasets/{pid}").status_code == 200
    narrowed = manage.call(
        "maintainer", "PATCH", f"/api/v1/datasets/{pid}", {"visibility": "private"}
    )
    assert narrowed.status_code == 200
    assert manage.call("nonmember", "GET", f"/api/v1/datasets/{pid}").status_code == 404


def test_archived_dataset_is_marked_and_read_only_until_unarchived(manage: ManageWorld) -> None:
    pid = manage.create("nonmember", name="Mine", namespace="nonmember").get_json()["id"]
    archived = manage.call("nonmember", "POST", f"/api/v1/datasets/{pid}/archive")
    assert archived.status_code == 200 and archived.get_json()["archived"] is True
    assert manage.call("nonmember", "GET", f"/api/v1/datasets/{pid}").get_json()["archived"]
    # A later sync (the webhook's) keeps the mark.
    from indexer.sync import jobs
    from indexer.sync import refs as sync

    sync.sync_project(jobs.context(), pid)
    assert manage.call("nonmember", "GET", f"/api/v1/datasets/{pid}").get_json()["archived"]
    owner = gitlab.Gitlab(manage.sandbox.url, private_token=manage.tokens["nonmember"])
    action = {"action": "create", "file_path": "x.txt", "content": "x"}
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        owner.projects.get(pid, lazy=True).commits.create(
            {"branch": "main", "commit_message": "m", "actions": [action]}
        )
    assert refused.value.response_code == 403
    back = manage.call("nonmember", "POST", f"/api/v1/datasets/{pid}/unarchive")
    assert back.status_code == 200 and back.get_json()["archived"] is False


def test_deleted_dataset_leaves_the_index_at_once(manage: ManageWorld) -> None:
    pid = manage.create(
        "nonmember", name="Gone soon", namespace="nonmember", visibility="public"
    ).get_json()["id"]
    assert _ids(manage, "anonymous", q="gone") == [pid]
    deleted = manage.call("nonmember", "DELETE", f"/api/v1/datasets/{pid}")
    assert deleted.status_code == 200, deleted.get_json()
    assert "gc" in deleted.get_json()["message"]
    assert _ids(manage, "anonymous", q="gone") == []
    assert manage.call("nonmember", "GET", f"/api/v1/datasets/{pid}").status_code == 404
    with pytest.raises(gitlab.GitlabGetError):
        manage.admin.projects.get(pid)


def test_history_filters_by_path_and_pages(manage: ManageWorld) -> None:
    pid = manage.create("maintainer", name="Paged", namespace="imaging").get_json()["id"]
    project = manage.admin.projects.get(pid)
    for n in range(3):
        project.commits.create(
            {
                "branch": "main",
                "commit_message": f"add notes {n}",
                "actions": [{"action": "create", "file_path": f"notes/{n}.txt", "content": "n"}],
            }
        )
    url = f"/api/v1/datasets/{pid}/commits"
    first = manage.call("reporter", "GET", url, per_page="2").get_json()
    assert [c["title"] for c in first["items"]] == ["add notes 2", "add notes 1"]
    assert first["next_page"] == 2 and first["ref"] == "main"
    second = manage.call("reporter", "GET", url, per_page="2", page="2").get_json()
    assert [c["title"] for c in second["items"]] == ["add notes 0", "Create dataset Paged"]
    only = manage.call("reporter", "GET", url, path="notes/1.txt").get_json()
    assert [c["title"] for c in only["items"]] == ["add notes 1"]
    readme = manage.call("reporter", "GET", url, path="README.md").get_json()
    assert [c["title"] for c in readme["items"]] == ["Create dataset Paged"]
    assert readme["items"][0]["author_name"] == "maintainer"
