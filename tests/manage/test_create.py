"""`POST /api/v1/datasets` end to end: GitLab project, first commit, searchable at once."""

from __future__ import annotations

from tests.manage.conftest import ManageWorld


def test_maintainer_creates_a_dataset_that_is_searchable_when_the_call_returns(
    manage: ManageWorld,
) -> None:
    created = manage.create(
        "maintainer",
        name="Lung CT 2024",
        namespace="imaging",
        description="Chest CT scans, anonymised",
        visibility="internal",
        topics=["ct", "lung"],
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    pid = body["id"]
    assert created.headers["Location"] == f"/api/v1/datasets/{pid}"
    shown = manage.call("maintainer", "GET", f"/api/v1/datasets/{pid}")
    assert shown.status_code == 200 and shown.get_json() == body
    assert body["path_with_namespace"] == "imaging/lung-ct-2024"
    assert body["topics"] == ["ct", "lung"] and body["visibility"] == "internal"
    assert body["archived"] is False and body["storage_site"] is None
    found = manage.call("reporter", "GET", "/api/v1/datasets", q="anonymised").get_json()
    assert [item["id"] for item in found["items"]] == [pid]
