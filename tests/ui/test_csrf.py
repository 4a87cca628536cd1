"""The CSRF rule (`webhook_service.csrf`) on every state-changing route a cookie authenticates,
through the real app and a GitLab sandbox (WSGI test client: fast, one app per test)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.gitlab_sandbox.server import Sandbox
from webhook_service import create_app
from webhook_service.csrf import csrf_token, token_for

HOST = "http://localhost"
OBJECT = "/dvc/1/files/md5/ab/cdef0123456789abcdef0123456789"
SITE = {"name": "s", "kind": "local", "path": "/nonexistent"}


@dataclass
class Setup:
    client: FlaskClient
    token: str
    other: str
    secret: str


@pytest.fixture
def setup(tmp_path: Path, gitlab_sandbox: Sandbox) -> Iterator[Setup]:
    _, token = gitlab_sandbox.create_user("alice")
    _, other = gitlab_sandbox.create_user("bob")
    app = create_app(
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
            "DSHUB_GITLAB_URL": gitlab_sandbox.url,
            "DSHUB_GITLAB_TOKEN": gitlab_sandbox.admin_token,
            "DSHUB_SECRET_KEY": "k" * 40,
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
        }
    )
    yield Setup(app.test_client(), token, other, "k" * 40)


def _signed_in(setup: Setup, token: str | None = None) -> FlaskClient:
    setup.client.set_cookie("tokenGitLab", token or setup.token, domain="localhost")
    return setup.client


def _code(answer: object) -> str | None:
    body = answer.get_json(silent=True)  # type: ignore[attr-defined]
    return body["error"]["code"] if body and "error" in body else None


def test_cross_site_form_post_is_refused_with_a_clear_page(setup: Setup) -> None:
    client = _signed_in(setup)
    answer = client.post(
        "/-/sign-out",
        data={"csrf_token": token_for(setup.token, setup.secret)},
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert "cross-site request" in page
    assert "dshub&#39;s own pages" in page or "dshub's own pages" in page
    assert setup.token not in page
    assert "tokenGitLab=;" not in answer.headers.get("Set-Cookie", "")  # still signed in


def test_form_post_from_another_origin_is_refused(setup: Setup) -> None:
    client = _signed_in(setup)
    answer = client.post(
        "/-/sign-out",
        data={"csrf_token": token_for(setup.token, setup.secret)},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert "another origin" in answer.get_data(as_text=True)


def test_sign_out_from_our_own_page_works(setup: Setup) -> None:
    client = _signed_in(setup)
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert token is not None
    answer = client.post(
        "/-/sign-out",
        data={"csrf_token": token.group(1)},
        headers={"Origin": HOST, "Sec-Fetch-Site": "same-origin"},
    )
    assert answer.status_code == 303
    assert "tokenGitLab=;" in answer.headers["Set-Cookie"]


def test_missing_or_foreign_token_is_refused(setup: Setup) -> None:
    client = _signed_in(setup)
    assert client.post("/-/sign-out").status_code == 403
    foreign = token_for(setup.other, setup.secret)  # bob's token, alice's cookie
    answer = client.post("/-/sign-out", data={"csrf_token": foreign})
    assert answer.status_code == 403
    assert "does not match" in answer.get_data(as_text=True)


def test_cookie_authenticated_api_post_needs_token_and_json(setup: Setup) -> None:
    client = _signed_in(setup)
    good = token_for(setup.token, setup.secret)
    missing = client.post("/api/v1/storage-sites", json=SITE)
    assert missing.status_code == 403 and _code(missing) == "csrf_refused"
    assert "CSRF token is missing" in missing.get_json()["error"]["message"]
    as_form = client.post("/api/v1/storage-sites", data={**SITE, "csrf_token": good})
    assert (
        as_form.status_code == 403 and "application/json" in as_form.get_json()["error"]["message"]
    )
    cross = client.post(
        "/api/v1/storage-sites",
        json=SITE,
        headers={"X-CSRF-Token": good, "Sec-Fetch-Site": "same-site"},
    )
    assert cross.status_code == 403 and _code(cross) == "csrf_refused"
    passed = client.post(
        "/api/v1/storage-sites",
        json=SITE,
        headers={"X-CSRF-Token": good, "Origin": HOST, "Sec-Fetch-Site": "same-origin"},
    )
    # Through the CSRF rule: now the route itself answers (alice is no site administrator).
    assert passed.status_code == 403 and _code(passed) == "forbidden", passed.get_json()


def test_put_routes_are_covered(setup: Setup) -> None:
    client = _signed_in(setup)
    answer = client.put("/api/v1/storage-sites/s", json=SITE)
    assert answer.status_code == 403 and _code(answer) == "csrf_refused"


def test_dvc_upload_with_only_the_cookie_is_refused(setup: Setup) -> None:
    client = _signed_in(setup)
    answer = client.put(OBJECT, data=b"bytes", headers={"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403 and _code(answer) == "csrf_refused"
    answer = client.post(OBJECT, data=b"bytes")
    assert answer.status_code == 403 and _code(answer) == "csrf_refused"


@pytest.mark.parametrize(
    "scheme",
    ["PRIVATE-TOKEN", "Bearer", "Basic", "JOB-TOKEN"],
)
def test_header_token_requests_are_unaffected(setup: Setup, scheme: str) -> None:
    client = _signed_in(setup)  # even with the cookie present: the header authenticates
    headers = {"Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"}
    if scheme == "PRIVATE-TOKEN":
        headers["PRIVATE-TOKEN"] = setup.token
    elif scheme == "Bearer":
        headers["Authorization"] = f"Bearer {setup.token}"
    elif scheme == "Basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"u:{setup.token}".encode()).decode()
    else:
        headers["JOB-TOKEN"] = "not-a-real-job-token"
    answer = client.put(OBJECT, data=b"bytes", headers=headers)
    assert _code(answer) != "csrf_refused", answer.get_json()
    api = client.post("/api/v1/storage-sites", data="x", headers=headers)
    assert _code(api) != "csrf_refused", api.get_json()


def test_webhooks_without_cookies_are_unaffected(setup: Setup) -> None:
    answer = setup.client.post("/webhooks/gitlab", json={}, headers={"X-Gitlab-Token": "wrong!"})
    assert _code(answer) != "csrf_refused"


def test_sign_in_needs_the_pre_sign_in_cookie_and_token(setup: Setup) -> None:
    client = setup.client
    refused = client.post("/-/sign-in", data={"token": setup.token})
    assert refused.status_code == 403
    form = client.get("/-/sign-in")
    assert "dshub_csrf=" in form.headers["Set-Cookie"]
    assert "HttpOnly" in form.headers["Set-Cookie"]
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.get_data(as_text=True))
    assert token is not None
    answer = client.post(
        "/-/sign-in",
        data={"token": setup.token, "csrf_token": token.group(1), "next": "/-/storage-sites"},
        headers={"Origin": HOST},
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/-/storage-sites"
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("tokenGitLab="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/").get_data(as_text=True)
    assert "@alice" in page
    assert setup.token not in page


def test_sign_in_refuses_a_token_gitlab_refuses(setup: Setup) -> None:
    client = setup.client
    form = client.get("/-/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form)
    assert token is not None
    answer = client.post(
        "/-/sign-in", data={"token": "glpat-not-a-token", "csrf_token": token.group(1)}
    )
    assert answer.status_code == 401
    page = answer.get_data(as_text=True)
    assert "GitLab did not accept this token" in page
    assert "glpat-not-a-token" not in page
    assert "tokenGitLab=" not in answer.headers.get("Set-Cookie", "")


def test_sign_in_never_redirects_off_site(setup: Setup) -> None:
    client = setup.client
    form = client.get("/-/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form)
    assert token is not None
    answer = client.post(
        "/-/sign-in",
        data={"token": setup.token, "csrf_token": token.group(1), "next": "//evil.example/x"},
    )
    assert answer.headers["Location"] == "/"


def test_csrf_token_is_bound_to_the_cookie(setup: Setup) -> None:
    app = setup.client.application
    with app.test_request_context("/", headers={"Cookie": f"tokenGitLab={setup.token}"}):
        mine = csrf_token()
    with app.test_request_context("/", headers={"Cookie": f"tokenGitLab={setup.other}"}):
        theirs = csrf_token()
    assert mine != theirs
    assert mine == token_for(setup.token, setup.secret)
    assert setup.token not in mine


def test_unexpected_errors_on_pages_are_a_page_without_internals(setup: Setup) -> None:
    from webhook_service.ui import render_error

    app = setup.client.application
    with app.test_request_context("/datasets/a/b"):
        answer = render_error("internal_error", "Traceback: secret internals", 500)
        assert isinstance(answer, tuple)
        page, status = str(answer[0]), answer[1]
    assert status == 500
    assert "Something went wrong on our side" in page
    assert "Traceback" not in page
    with app.test_request_context("/api/v1/datasets"):
        assert render_error("internal_error", "x", 500) is None  # the API keeps JSON
