"""Every viewer, every visibility, every read route: nothing leaks, not even in a count.

GitLab's rule: anonymous → public; signed in → public + internal; private → Reporter or
above (a Guest may not read the repository); administrators → everything. A dataset the
viewer may not read answers exactly like one that does not exist.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from tests.api.conftest import VIEWERS, WORD, World

NOWHERE = 987_654


def _expected_facets(world: World, visible: set[int]) -> dict[str, dict[str, int]]:
    """Facet counts computed from the admin's view of each visible dataset."""
    counts: dict[str, Counter[str]] = {
        "namespace": Counter(),
        "topic": Counter(),
        "visibility": Counter(),
        "media_type": Counter(),
    }
    for pid in visible:
        dataset = world.get("admin", f"/api/v1/datasets/{pid}").get_json()
        counts["namespace"][dataset["namespace"]] += 1
        counts["visibility"][dataset["visibility"]] += 1
        counts["topic"].update(dataset["topics"])
        files = world.get("admin", "/api/v1/files", dataset=pid, per_page=100).get_json()
        counts["media_type"].update({f["media_type"] for f in files["items"]})
    return {key: dict(value) for key, value in counts.items()}


def _same_as_missing(world: World, viewer: str, path: str, pid: int, **params: Any) -> None:
    hidden = world.get(viewer, path.format(pid), **params)
    missing = world.get(viewer, path.format(NOWHERE), **params)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_data(as_text=True).replace(str(pid), "ID") == missing.get_data(
        as_text=True
    ).replace(str(NOWHERE), "ID")
    assert dict(hidden.headers).keys() == dict(missing.headers).keys()


def test_no_viewer_sees_what_gitlab_hides(world: World) -> None:
    """Search, totals, facets, dataset, versions and files, for all six viewers."""
    for viewer in VIEWERS:
        _check_datasets(world, viewer)
        _check_files(world, viewer)


def _check_datasets(world: World, viewer: str) -> None:
    visible = world.readable[viewer]
    for query in ({}, {"q": WORD}, {"q": "shared"}):
        found = world.get(viewer, "/api/v1/datasets", **query)
        assert found.status_code == 200, found.get_data(as_text=True)
        body = found.get_json()
        assert {item["id"] for item in body["items"]} == visible
        assert body["total"] == len(visible)
    facets = world.get(viewer, "/api/v1/datasets").get_json()["facets"]
    expected = _expected_facets(world, visible)
    assert {key: facets.get(key, {}) for key in expected} == expected
    # Each facet value a viewer could click on gives the same ids, never hidden ones.
    for key, values in facets.items():
        for value in values:
            filtered = world.get(viewer, "/api/v1/datasets", **{key: value}).get_json()
            assert {item["id"] for item in filtered["items"]} <= visible
            assert filtered["total"] == values[value]

    for name, pid in world.ids.items():
        for path in (
            "/api/v1/datasets/{}",
            "/api/v1/datasets/{}/versions",
        ):
            if pid in visible:
                assert world.get(viewer, path.format(pid)).status_code == 200
            else:
                _same_as_missing(world, viewer, path, pid)
        files = world.get(viewer, "/api/v1/files", dataset=pid)
        missing = world.get(viewer, "/api/v1/files", dataset=NOWHERE)
        assert files.status_code == missing.status_code
        if pid in visible:
            # Every pointer at two refs (main and the tag v1).
            assert files.get_json()["total"] == (2 if name == "other_private" else 4)
        else:
            assert files.get_json() == missing.get_json(), name


def _check_files(world: World, viewer: str) -> None:
    visible = world.readable[viewer]
    admin_files: list[dict[str, Any]] = world.get(
        "admin", "/api/v1/files", per_page=100
    ).get_json()["items"]
    for q in (None, "secret", "csv", "png"):
        params = {"per_page": 100, **({"q": q} if q else {})}
        body = world.get(viewer, "/api/v1/files", **params).get_json()
        expected = [
            f for f in admin_files if f["dataset_id"] in visible and (q is None or q in f["path"])
        ]
        assert {(f["dataset_id"], f["ref"], f["path"]) for f in body["items"]} == {
            (f["dataset_id"], f["ref"], f["path"]) for f in expected
        }
        assert body["total"] == len(expected)


def _dataset_get_routes(world: World) -> list[str]:
    """Every registered `GET /api/v1/datasets/<id>/...` route, as a URL template for `{}`."""
    fillers = {"project_id": "{}", "path": "hidden/secret.csv", "iid": "1"}
    return sorted(
        re.sub(r"<(?:\w+:)?(\w+)>", lambda m: fillers[m.group(1)], rule.rule)
        for rule in world.client.application.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/datasets/<int:project_id>/")
        and "GET" in (rule.methods or ())
    )


def hidden_body(world: World, route: str, pid: int) -> str:
    """What a Guest is told on `route` for dataset `pid` (the missing dataset's answer)."""
    return str(
        world.get("guest", route.format(pid), indexed="true", ref="main").get_data(as_text=True)
    )


def test_every_dataset_route_hides_a_private_dataset_from_non_members_and_guests(
    world: World,
) -> None:
    """A Guest may not read a private dataset's repository (GitLab's rule), so no route under
    /api/v1/datasets/<id>/ may tell a Guest or a non-member more than for a missing dataset."""
    routes = _dataset_get_routes(world)
    for expected in ("/api/v1/datasets/{}/storage-site", "/api/v1/datasets/{}/tree"):
        assert expected in routes  # the walk sees the routes it must
    pid = world.ids["private"]
    for route in routes:
        query = {"indexed": "true", "ref": "main"}
        for viewer in ("nonmember", "guest"):
            _same_as_missing(world, viewer, route, pid, **query)
        # A Reporter passes the read check (whatever the route answers next).
        readable = world.get("reporter", route.format(pid), **query)
        assert readable.get_data(as_text=True) != hidden_body(world, route, pid), route


def test_a_private_name_reveals_nothing_and_a_bad_token_is_401(world: World) -> None:
    for viewer in ("anonymous", "nonmember", "guest"):
        body = world.get(viewer, "/api/v1/datasets", q="gamma").get_json()
        assert body["items"] == [] and body["total"] == 0
        assert all(not counts for counts in body["facets"].values()), body["facets"]
    body = world.get("reporter", "/api/v1/datasets", q="gamma").get_json()
    assert [item["id"] for item in body["items"]] == [world.ids["private"]]
    world.tokens["bad"] = "glpat-not-a-real-token"
    for path in ("/api/v1/datasets", f"/api/v1/datasets/{world.ids['public']}", "/api/v1/files"):
        answer = world.get("bad", path)
        assert answer.status_code == 401
        assert answer.get_json()["error"]["code"] == "not_authenticated"
