"""Every JSON route parses its body with one helper: bounded size and depth, an object where
one is expected, every failure a 400 (413 when too large), and only after the caller passed
authentication and permission checks. gc's own cases are in tests/gc_api."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sites.conftest import SiteEnv
from webhook_service.bodies import MAX_JSON_BYTES

HOSTILE = {
    "recursion": (b"[" * 100_000, 400, "nested too deeply"),
    "deep object": (b'{"a":' * 100 + b"1" + b"}" * 100, 400, "nested more than 32 levels"),
    "deep array in a field": (b'{"name": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "nested more"),
    "not utf-8": (b'{"name": "\xff"}', 400, "not valid UTF-8"),
    "NaN": (b'{"name": NaN}', 400, "NaN is not allowed"),
    "array": (b'["name"]', 400, "must be a JSON object, not an array"),
    "string": (b'"name"', 400, "must be a JSON object, not a string"),
    "empty": (b"", 400, "not valid JSON"),
    "truncated": (b'{"name": "x"', 400, "not valid JSON"),
    "too large": (b'{"name": "' + b"x" * MAX_JSON_BYTES + b'"}', 413, "larger than"),
}


def _public_dataset(env: SiteEnv) -> int:
    project = env.admin.projects.create(
        {"name": "open", "visibility": "public", "initialize_with_readme": True}
    )
    project.members.create({"user_id": env.user_ids["maintainer"], "access_level": 40})
    return int(project.id)


def _routes(env: SiteEnv, tmp_path: Path) -> list[tuple[str, str, str | None]]:
    """(method, path, who may send it) for every JSON route outside gc."""
    project_id = _public_dataset(env)
    root = tmp_path / "disk"
    root.mkdir()
    site = {"name": "disk", "kind": "local", "path": str(root)}
    assert env.call("POST", "/api/v1/storage-sites", "admin", json=site).status_code == 201
    return [
        ("POST", "/api/v1/storage-sites", "admin"),
        ("PUT", "/api/v1/storage-sites/disk", "admin"),
        ("POST", f"/api/v1/datasets/{project_id}/storage-site", "maintainer"),
        # A public dataset's presence answer is for anyone: anonymous callers get it too.
        ("POST", f"/dvc/{project_id}/missing", None),
    ]


def _send(env: SiteEnv, method: str, path: str, who: str | None, body: bytes) -> Any:
    return env.call(method, path, who, data=body, content_type="application/json")


def test_hostile_bodies_are_400s_naming_the_problem_on_every_json_route(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    for method, path, who in _routes(site_env, tmp_path):
        for name, (body, status, words) in HOSTILE.items():
            answer = _send(site_env, method, path, who, body)
            assert answer.status_code == status, (path, name, answer.get_data(as_text=True))
            error = answer.get_json()["error"]
            assert words in error["message"], (path, name, error)
            if status == 400:
                assert error["code"] == "invalid_input"
                assert "send" in error["message"], (path, name, error)  # what to send instead


def test_bodies_of_callers_without_permission_are_never_parsed(
    site_env: SiteEnv, tmp_path: Path
) -> None:
    nested = HOSTILE["recursion"][0]
    routes = _routes(site_env, tmp_path)
    private = site_env.admin.projects.create({"name": "closed", "visibility": "private"})
    for method, path, who, status in [
        (*routes[0][:2], None, 401),
        (*routes[0][:2], "other", 403),
        (*routes[1][:2], "other", 403),
        (*routes[2][:2], None, 401),
        (*routes[2][:2], "other", 403),
        ("POST", f"/api/v1/datasets/{private.id}/storage-site", "other", 404),
        ("POST", f"/dvc/{private.id}/missing", None, 401),
        ("POST", f"/dvc/{private.id}/missing", "other", 404),
    ]:
        answer = _send(site_env, method, path, who, nested)
        assert answer.status_code == status, (path, who, answer.get_data(as_text=True))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=60,
)


def _nest(value: Any, levels: int) -> Any:
    for level in range(levels):
        value = [value] if level % 2 else {"name": value}
    return value


_ROUTES: dict[int, list[tuple[str, str, str | None]]] = {}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.integers(0, 3), value=JSON_VALUES, levels=st.integers(0, 60))
def test_any_json_document_gets_a_4xx_or_a_success_never_a_500(
    site_env: SiteEnv, tmp_path: Path, route: int, value: Any, levels: int
) -> None:
    # Hypothesis runs this body many times with the same fixtures: build the routes once.
    if id(site_env) not in _ROUTES:
        _ROUTES.clear()
        _ROUTES[id(site_env)] = _routes(site_env, tmp_path)
    method, path, who = _ROUTES[id(site_env)][route]
    body = json.dumps(_nest(value, levels)).encode()
    answer = _send(site_env, method, path, who, body)
    assert answer.status_code < 500, (path, body[:200], answer.get_data(as_text=True))
    assert answer.is_json
