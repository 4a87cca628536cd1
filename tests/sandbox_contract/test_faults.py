"""API fault knobs: failures with GitLab's shapes and python-gitlab's retry behaviour."""

from __future__ import annotations

import time

import gitlab
import pytest
import requests

from tests.gitlab_sandbox.fixtures import run_sandbox_subprocess
from tests.gitlab_sandbox.server import Sandbox


def test_429_has_rack_attack_shape(gitlab_sandbox: Sandbox) -> None:
    gitlab_sandbox.faults.fail_next(1, 429, retry_after=0)
    response = requests.get(f"{gitlab_sandbox.url}/api/v4/projects", timeout=10)
    assert response.status_code == 429
    assert response.text == "Retry later\n"
    assert response.headers["Retry-After"] == "0"
    assert int(response.headers["RateLimit-Reset"]) > 0
    assert response.headers["RateLimit-Remaining"] == "0"


def test_python_gitlab_retries_429_using_retry_after(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    gitlab_admin.projects.create({"name": "after-throttle"})
    gitlab_sandbox.faults.fail_next(2, 429, retry_after=0)
    assert [p.name for p in gitlab_admin.projects.list()] == ["after-throttle"]
    assert gitlab_sandbox.faults.failures == []


def test_500_is_raised_without_transient_retry(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> None:
    gitlab_sandbox.faults.fail_next(1, 500)
    with pytest.raises(gitlab.GitlabListError) as err:
        gitlab_admin.projects.list()
    assert err.value.response_code == 500
    assert gitlab_admin.projects.list() == []


def test_502_is_retried_with_retry_transient_errors(gitlab_sandbox: Sandbox) -> None:
    client = gitlab.Gitlab(
        gitlab_sandbox.url, private_token=gitlab_sandbox.admin_token, retry_transient_errors=True
    )
    gitlab_sandbox.faults.fail_next(2, 502)
    client.auth()
    assert client.user is not None and client.user.username == "root"


def test_failures_can_target_one_path(gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab) -> None:
    gitlab_sandbox.faults.fail_next(1, 500, path_contains="/hooks")
    gitlab_admin.projects.list()  # not matched, still succeeds
    with pytest.raises(gitlab.GitlabListError):
        gitlab_admin.hooks.list()


def test_http_fault_endpoint_drives_a_subprocess_sandbox(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sandbox = run_sandbox_subprocess(tmp_path / "data")
    try:
        headers = {"PRIVATE-TOKEN": sandbox.admin_token}
        set_knob = requests.post(
            f"{sandbox.url}/-/sandbox/faults",
            json={"fail_next": {"count": 1, "status": 429, "retry_after": 1}},
            headers=headers,
            timeout=10,
        )
        assert set_knob.status_code == 201
        throttled = requests.get(f"{sandbox.url}/api/v4/user", headers=headers, timeout=10)
        assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")
        assert (
            requests.get(f"{sandbox.url}/api/v4/user", headers=headers, timeout=10).json()[
                "username"
            ]
            == "root"
        )
        anonymous = requests.post(f"{sandbox.url}/-/sandbox/faults", json={}, timeout=10)
        assert anonymous.status_code == 401
    finally:
        sandbox.stop()


def test_hang_holds_api_calls_until_the_window_ends(gitlab_sandbox: Sandbox) -> None:
    gitlab_sandbox.faults.hang_for(1.5)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):  # a client with a shorter timeout gives up
        requests.get(f"{gitlab_sandbox.url}/api/v4/projects", timeout=0.5)
    held = requests.get(f"{gitlab_sandbox.url}/api/v4/projects", timeout=10)
    assert held.status_code == 200 and time.monotonic() - started >= 1.4
    health = time.monotonic()
    assert requests.get(f"{gitlab_sandbox.url}/-/health", timeout=10).status_code == 200
    after = time.monotonic()
    assert requests.get(f"{gitlab_sandbox.url}/api/v4/projects", timeout=10).status_code == 200
    assert time.monotonic() - after < 1.0 and after - health < 1.0


def test_hang_is_set_over_http_and_reset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sandbox = run_sandbox_subprocess(tmp_path / "data")
    try:
        headers = {"PRIVATE-TOKEN": sandbox.admin_token}
        knobs = requests.post(
            f"{sandbox.url}/-/sandbox/faults", json={"hang": 30}, headers=headers, timeout=10
        ).json()
        assert 29 < knobs["hang"] <= 30
        # The sandbox's own endpoints are never held, so a hang can always be lifted.
        with pytest.raises(requests.Timeout):
            requests.get(f"{sandbox.url}/api/v4/user", headers=headers, timeout=0.5)
        reset = requests.delete(f"{sandbox.url}/-/sandbox/faults", headers=headers, timeout=10)
        assert reset.status_code == 204
        answer = requests.get(f"{sandbox.url}/api/v4/user", headers=headers, timeout=5)
        assert answer.json()["username"] == "root"
    finally:
        sandbox.stop()
