"""Every management route for all six viewers, on a private dataset of the `imaging` group.

GitLab decides: reading history needs Reporter+ (private), editing Maintainer+, archiving
and deleting the Owner; creating in the group needs Maintainer (its default
`project_creation_level`). A viewer who may not read the dataset gets the same 404 as for a
missing one; anonymous callers are asked to sign in for every write.
"""

from __future__ import annotations

from typing import Any

from tests.manage.conftest import VIEWERS, ManageWorld

NOWHERE = 987_654
READERS = {"reporter", "developer", "maintainer"}


def _same_as_missing(world: ManageWorld, who: str, method: str, path: str, pid: int) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    hidden = world.call(who, method, path.format(pid), body)
    missing = world.call(who, method, path.format(NOWHERE), body)
    assert hidden.status_code == missing.status_code == 404, (who, method, path)
    assert hidden.get_data(as_text=True).replace(str(pid), "ID") == missing.get_data(
        as_text=True
    ).replace(str(NOWHERE), "ID")


def _expect(world: ManageWorld, who: str, method: str, path: str, body: Any, status: int) -> None:
    response = world.call(who, method, path, body)
    assert response.status_code == status, (who, method, path, response.get_json())
    if status >= 400:
        assert response.get_json()["error"]["message"]


def test_every_route_answers_each_viewer_as_gitlab_decides(manage: ManageWorld) -> None:
    created = manage.create("maintainer", name="Matrix", namespace="imaging")
    pid = created.get_json()["id"]
    writes = [
        ("PATCH", "/api/v1/datasets/{}", {"description": "changed"}, {"maintainer": 200}),
        ("POST", "/api/v1/datasets/{}/archive", None, {}),
        ("POST", "/api/v1/datasets/{}/unarchive", None, {}),
        ("DELETE", "/api/v1/datasets/{}", None, {}),
    ]
    for who in VIEWERS:
        # Where one may create, and creating in the group.
        namespaces = manage.call(who, "GET", "/api/v1/namespaces")
        if who == "anonymous":
            assert namespaces.status_code == 401
        else:
            paths = [n["full_path"] for n in namespaces.get_json()["items"]]
            assert paths == ([who, "imaging"] if who == "maintainer" else [who])
        status = {"anonymous": 401, "maintainer": 201}.get(who, 403)
        _expect(
            manage,
            who,
            "POST",
            "/api/v1/datasets",
            {"name": f"by {who}", "namespace": "imaging"},
            status,
        )

        history = f"/api/v1/datasets/{pid}/commits"
        if who in READERS:
            _expect(manage, who, "GET", history, None, 200)
        else:
            _same_as_missing(manage, who, "GET", "/api/v1/datasets/{}/commits", pid)

        for method, path, body, allowed in writes:
            url = path.format(pid)
            if who == "anonymous":
                _expect(manage, who, method, url, body, 401)
            elif who in READERS:
                _expect(manage, who, method, url, body, allowed.get(who, 403))
            else:
                _same_as_missing(manage, who, method, path, pid)
    # Nothing a refused caller asked for happened.
    dataset = manage.call("admin", "GET", f"/api/v1/datasets/{pid}").get_json()
    assert dataset["archived"] is False and dataset["description"] == "changed"


def test_the_owner_archives_unarchives_and_deletes(manage: ManageWorld) -> None:
    pid = manage.create("admin", name="Owned", namespace="imaging").get_json()["id"]
    for path, archived in (("archive", True), ("unarchive", False)):
        response = manage.call("admin", "POST", f"/api/v1/datasets/{pid}/{path}")
        assert response.status_code == 200 and response.get_json()["archived"] is archived
    deleted = manage.call("admin", "DELETE", f"/api/v1/datasets/{pid}")
    assert deleted.status_code == 200 and deleted.get_json()["deleted"] is True
