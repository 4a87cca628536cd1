"""Who may do what on the new routes, and bad input: anonymous writes 401, a non-member's
answer identical to a missing dataset's, GitLab's own 403s relayed (Reporter on any version,
Developer on a protected `v*` one or on the protected default branch), and precise 400s."""

from __future__ import annotations

from typing import Any

import pytest

from tests.versions.conftest import VersionsWorld

ROUTES = (
    ("POST", "versions", {"name": "v1.0.0", "message": "x"}),
    ("DELETE", "versions/v0.1.0", None),
    ("POST", "revert", {"sha": "0123456789abcdef0123456789abcdef01234567"}),
    ("POST", "restore", {"version": "v0.1.0"}),
    ("GET", "compare?from=v0.1.0&to=main", None),
)


@pytest.fixture(scope="module")
def tagged(world: VersionsWorld) -> VersionsWorld:
    """The world with version v0.1.0 (by mia) and one more upload after it."""
    answer = world.call(
        "POST", f"/api/v1/datasets/{world.pid}/versions", "mia", json={"name": "v0.1.0"}
    )
    assert answer.status_code == 201, answer.get_json()
    later = world.upload("mia", {"e.png": b"E" * 10}, message="Add e")
    assert later.status_code == 201
    world.state["later"] = later.get_json()["commit"]
    return world


def _call(
    world: VersionsWorld, who: str | None, method: str, route: str, body: Any, pid: int
) -> Any:
    kwargs = {"json": body} if body is not None else {}
    return world.call(method, f"/api/v1/datasets/{pid}/{route}", who, **kwargs)


@pytest.mark.parametrize(("method", "route", "body"), ROUTES)
def test_anonymous_and_outsiders(tagged: VersionsWorld, method: str, route: str, body: Any) -> None:
    world = tagged
    anonymous = _call(world, None, method, route, body, world.pid)
    if method == "GET":
        assert anonymous.status_code == 404  # a private dataset: as if missing
    else:
        assert anonymous.status_code == 401, anonymous.get_json()
        assert anonymous.get_json()["error"]["code"] == "not_authenticated"
    outsider = _call(world, "out", method, route, body, world.pid)
    missing = _call(world, "out", method, route, body, 999_999)
    assert outsider.status_code == missing.status_code == 404
    assert outsider.get_json()["error"]["message"].replace(
        str(world.pid), "N"
    ) == missing.get_json()["error"]["message"].replace("999999", "N")


def test_gitlab_decides_who_makes_and_deletes_versions(tagged: VersionsWorld) -> None:
    world = tagged
    url = f"/api/v1/datasets/{world.pid}/versions"
    reporter = world.call("POST", url, "rep", json={"name": "nightly-1"})
    assert reporter.status_code == 403
    assert reporter.get_json()["error"]["message"].startswith("GitLab refused to create version")
    developer = world.call("POST", url, "dev", json={"name": "v9.0.0"})
    assert developer.status_code == 403
    assert "Maintainer" in developer.get_json()["error"]["message"]
    assert "v9.0.0" not in {t.name for t in world.project().tags.list(get_all=True)}
    # Not protected: GitLab lets a Developer tag it.
    plain = world.call("POST", url, "dev", json={"name": "nightly-1", "message": "nightly"})
    assert plain.status_code == 201, plain.get_json()
    refused = world.call("DELETE", f"{url}/v0.1.0", "dev")
    assert refused.status_code == 403
    assert "Maintainers" in refused.get_json()["error"]["message"]
    gone = world.call("DELETE", f"{url}/nightly-1", "mia")
    assert gone.status_code == 200 and gone.get_json()["deleted"] is True
    listing = world.call("GET", url, "rep").get_json()
    assert [v["name"] for v in listing["items"]] == ["v0.1.0"]
    again = world.call("DELETE", f"{url}/nightly-1", "mia")
    assert (
        again.status_code == 404 and "no version nightly-1" in again.get_json()["error"]["message"]
    )


def test_protected_branch_needs_a_new_branch(tagged: VersionsWorld) -> None:
    world = tagged
    sha = world.state["later"]
    revert = f"/api/v1/datasets/{world.pid}/revert"
    refused = world.call("POST", revert, "dev", json={"sha": sha})
    assert refused.status_code == 403
    assert "new_branch" in refused.get_json()["error"]["message"]
    proposed = world.call(
        "POST", revert, "dev", json={"sha": sha, "new_branch": "undo-e", "merge_request": True}
    )
    assert proposed.status_code == 201, proposed.get_json()
    body = proposed.get_json()
    assert body["branch"] == "undo-e" and body["merge_request"]["iid"]
    assert body["index"] == "not indexed (not the default branch)"
    restore = f"/api/v1/datasets/{world.pid}/restore"
    refused = world.call("POST", restore, "dev", json={"version": "v0.1.0"})
    assert refused.status_code == 403 and "new_branch" in refused.get_json()["error"]["message"]
    proposed = world.call(
        "POST", restore, "dev", json={"version": "v0.1.0", "new_branch": "back-to-v0.1.0"}
    )
    assert proposed.status_code == 201, proposed.get_json()
    assert proposed.get_json()["changed"] == ["e.png.dvc", ".gitignore"] or set(
        proposed.get_json()["changed"]
    ) == {"e.png.dvc", ".gitignore"}
    reporter = world.call("POST", restore, "rep", json={"version": "v0.1.0", "new_branch": "r"})
    assert reporter.status_code == 403


@pytest.mark.parametrize(
    ("method", "route", "body", "needle"),
    [
        ("POST", "versions", {"name": "-x"}, "version name"),
        ("POST", "versions", {"name": "a..b"}, "version name"),
        ("POST", "versions", {"name": "a" * 101}, "version name"),
        ("POST", "versions", {"name": "f" * 40}, "commit sha"),
        ("POST", "versions", {"name": 7}, "version name"),
        ("POST", "versions", {}, "version name"),
        ("POST", "versions", {"name": "v2", "ref": "a..b"}, "not a valid"),
        ("POST", "versions", {"name": "v2", "ref": "no-such-branch"}, "names no branch"),
        ("POST", "versions", {"name": "v2", "colour": "red"}, "unknown field"),
        ("POST", "versions", {"name": "v2", "message": 5}, "message must be"),
        ("DELETE", "versions/a..b", None, "version name"),
        ("POST", "revert", {"sha": "zz"}, "hexadecimal"),
        ("POST", "revert", {}, "hexadecimal"),
        ("POST", "revert", {"sha": "abcdef1", "merge_request": True}, "needs new_branch"),
        ("POST", "revert", {"sha": "abcdef1", "branch": "a..b"}, "not a valid"),
        ("POST", "restore", {"version": "../x"}, "version name"),
        ("POST", "restore", {"version": "v0.1.0", "merge_request": "maybe"}, "true or false"),
        ("GET", "compare?to=main", None, "from is required"),
        ("GET", "compare?from=a..b&to=main", None, "from:"),
        ("GET", "compare?from=main&to=main&limit=0", None, "limit"),
    ],
)
def test_bad_input_is_a_precise_400(
    tagged: VersionsWorld, method: str, route: str, body: Any, needle: str
) -> None:
    answer = _call(tagged, "mia", method, route, body, tagged.pid)
    assert answer.status_code == 400, answer.get_json()
    assert needle in answer.get_json()["error"]["message"]


def test_unknown_targets_are_404(tagged: VersionsWorld) -> None:
    world = tagged
    sha = "0123456789abcdef0123456789abcdef01234567"
    answer = _call(world, "mia", "POST", "revert", {"sha": sha}, world.pid)
    assert answer.status_code == 404 and sha in answer.get_json()["error"]["message"]
    answer = _call(world, "mia", "POST", "restore", {"version": "v7.7.7"}, world.pid)
    assert (
        answer.status_code == 404 and "no version v7.7.7" in answer.get_json()["error"]["message"]
    )
    answer = _call(world, "rep", "GET", "compare?from=v7.7.7&to=main", None, world.pid)
    assert answer.status_code == 404 and "'v7.7.7'" in answer.get_json()["error"]["message"]
