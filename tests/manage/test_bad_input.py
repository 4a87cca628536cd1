"""Each bad request to the management routes: a precise 4xx and a message a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gitlab
import pytest

from tests.gitlab_sandbox.server import Sandbox
from tests.manage.conftest import ManageWorld, build_world


def _error(response: Any, status: int, *words: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    message: str = response.get_json()["error"]["message"]
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not json", ("JSON",)),
        ([1, 2], ("JSON object",)),
        ({"name": "x", "namespace": "imaging", "colour": "red"}, ("colour", "allowed")),
        ({"namespace": "imaging"}, ("name is required",)),
        ({"name": "   ", "namespace": "imaging"}, ("name must not be empty",)),
        ({"name": 5, "namespace": "imaging"}, ("name must be a string",)),
        ({"name": "x"}, ("namespace is required",)),
        ({"name": "x", "namespace": True}, ("namespace is required",)),
        ({"name": "x", "namespace": "imaging", "visibility": "secret"}, ("private",)),
        ({"name": "x", "namespace": "imaging", "topics": "ct,lung"}, ("list of strings",)),
        ({"name": "x", "namespace": "imaging", "topics": ["a,b"]}, ("commas",)),
        ({"name": "x\x07", "namespace": "imaging"}, ("control characters",)),
        ({"name": "x" * 256, "namespace": "imaging"}, ("longer than 255",)),
    ],
)
def test_malformed_create_is_400(manage: ManageWorld, body: Any, words: tuple[str, ...]) -> None:
    if isinstance(body, str):
        response = manage.client.post(
            "/api/v1/datasets", data=body, headers=manage.headers("maintainer")
        )
    else:
        response = manage.call("maintainer", "POST", "/api/v1/datasets", body)
    _error(response, 400, *words)


def test_visibility_above_the_namespace_is_422_naming_the_highest(manage: ManageWorld) -> None:
    response = manage.create("maintainer", name="Open", namespace="imaging", visibility="public")
    _error(response, 422, "'public'", "highest", "'internal'")
    assert manage.admin.projects.list(search="Open") == []  # nothing was created


def test_taken_name_or_path_is_409(manage: ManageWorld) -> None:
    assert manage.create("maintainer", name="Scans", namespace="imaging").status_code == 201
    _error(manage.create("maintainer", name="Scans", namespace="imaging"), 409, "already exists")
    again = manage.create("maintainer", name="Other", path="scans", namespace="imaging")
    _error(again, 409, "path", "already exists")


@pytest.mark.parametrize("who", ["nonmember", "guest", "reporter", "developer"])
def test_namespace_the_caller_may_not_create_in_is_403_with_gitlabs_reason(
    manage: ManageWorld, who: str
) -> None:
    response = manage.create(who, name="Mine", namespace="imaging")
    _error(response, 403, "namespace is not valid", "may not create projects")


def test_unknown_or_invisible_namespace_is_404(manage: ManageWorld) -> None:
    _error(manage.create("maintainer", name="x", namespace="nowhere"), 404, "'nowhere'")
    # A private group of which the caller is no member is invisible: the same 404.
    _error(manage.create("maintainer", name="x", namespace="vault"), 404, "'vault'")
    _error(manage.create("maintainer", name="x", namespace="developer"), 404, "'developer'")


def test_anonymous_and_bad_tokens_are_401(manage: ManageWorld) -> None:
    _error(manage.create("anonymous", name="x", namespace="imaging"), 401, "sign in")
    bad = manage.client.post(
        "/api/v1/datasets",
        json={"name": "x", "namespace": "imaging"},
        headers={"PRIVATE-TOKEN": "glpat-not-a-token"},
    )
    _error(bad, 401, "GitLab did not accept")
    assert "glpat-not-a-token" not in bad.get_data(as_text=True)


def test_namespace_outside_dshub_namespaces_is_422(
    tmp_path: Path, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    world = build_world(
        tmp_path,
        gitlab_sandbox,
        gitlab_admin,
        f"sqlite:///{tmp_path / 'i.sqlite3'}",
        {"DSHUB_NAMESPACES": "imaging"},
    )
    _error(world.create("nonmember", name="x", namespace="nonmember"), 422, "DSHUB_NAMESPACES")
    listed = world.call("maintainer", "GET", "/api/v1/namespaces").get_json()["items"]
    assert [n["full_path"] for n in listed] == ["imaging"]


def test_bad_edits_are_400_409_and_422(manage: ManageWorld) -> None:
    pid = manage.create("maintainer", name="Edited", namespace="imaging").get_json()["id"]
    manage.create("maintainer", name="Taken", namespace="imaging")
    url = f"/api/v1/datasets/{pid}"
    _error(manage.call("maintainer", "PATCH", url, {}), 400, "at least one of")
    _error(manage.call("maintainer", "PATCH", url, {"path": "p"}), 400, "unknown field")
    _error(manage.call("maintainer", "PATCH", url, {"name": ""}), 400, "must not be empty")
    _error(manage.call("maintainer", "PATCH", url, {"topics": [3]}), 400, "list of strings")
    _error(manage.call("maintainer", "PATCH", url, {"name": "Taken"}), 409, "already exists")
    public = manage.call("maintainer", "PATCH", url, {"visibility": "public"})
    _error(public, 422, "highest", "'internal'")


def test_bad_history_queries_are_400_and_an_unknown_ref_404(manage: ManageWorld) -> None:
    pid = manage.create("maintainer", name="Hist", namespace="imaging").get_json()["id"]
    url = f"/api/v1/datasets/{pid}/commits"
    _error(manage.call("maintainer", "GET", url, page="x"), 400, "whole number")
    _error(manage.call("maintainer", "GET", url, page="0"), 400, "from 1 to 100000")
    _error(manage.call("maintainer", "GET", url, per_page="101"), 400, "from 1 to 100, not")
    _error(manage.call("maintainer", "GET", url, ref="no-such-branch"), 404, "'no-such-branch'")
