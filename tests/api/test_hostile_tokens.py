"""Tokens an HTTP header cannot carry are a 401 naming where they came from, never a 500,
and never appear in an answer or a log line (they used to reach `requests`, whose exception
quoted them in the traceback)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.gitlab.tokens import is_header_safe
from tests.gitlab_sandbox.server import Sandbox
from webhook_service import create_app

OBJECT = "/dvc/1/files/md5/ab/" + "c" * 30

# (route, method): a read of the API, a DVC remote object, gc and the indexed objects.
ROUTES = [
    ("/api/v1/datasets", "GET"),
    (OBJECT, "GET"),
    ("/api/v1/datasets/1/gc", "POST"),
    ("/api/v1/datasets/1/objects?indexed=true", "GET"),
]
BAD_TOKENS = [
    "glpat-\u20ac\u20ac",  # not Latin-1
    "glpat-\u00e9t\u00e9",  # Latin-1, not ASCII
    "glpat-abc\r\nX-Injected: 1",
    "glpat-abc\ndef",
    "glpat-\x00",
    "glpat abc",
    "glpat-\ud800",  # a lone surrogate
    "x" * 5000,
]


@pytest.fixture
def client(tmp_path: Path, gitlab_sandbox: Sandbox) -> Iterator[FlaskClient]:
    app = create_app(
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
            "DSHUB_GITLAB_URL": gitlab_sandbox.url,
            "DSHUB_GITLAB_TOKEN": gitlab_sandbox.admin_token,
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
        }
    )
    yield app.test_client(use_cookies=False)  # a jar would replace our raw Cookie headers


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of the request, dshub's own included (its logger does not propagate)."""
    caplog.set_level(logging.DEBUG)
    ours = logging.getLogger("dshub")
    ours.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        ours.removeHandler(caplog.handler)


def _wire(text: str) -> str:
    """`text` as a WSGI server hands a header value to the application (UTF-8 bytes read as
    Latin-1), so werkzeug decodes it back as a browser sent it."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def _quoted_cookie(token: str) -> str:
    """`token` as a quoted cookie value: octal escapes (which cookie parsers undo) for every
    byte outside printable ASCII, so CR/LF and non-Latin-1 text reach the application."""
    data = token.encode("utf-8", "surrogatepass")
    escaped = "".join(
        chr(byte) if 0x20 < byte < 0x7F and byte not in b'"\\;,' else f"\\{byte:03o}"
        for byte in data
    )
    return f'"{escaped}"'


def _carriers(token: str) -> dict[str, dict[str, str]]:
    """Every way a token reaches dshub, as request headers."""
    basic = base64.b64encode(f"someone:{token}".encode("utf-8", "surrogatepass")).decode()
    job = base64.b64encode(f"gitlab-ci-token:{token}".encode("utf-8", "surrogatepass")).decode()
    carriers = {
        "cookie": {"Cookie": f"tokenGitLab={_quoted_cookie(token)}"},
        "basic": {"Authorization": f"Basic {basic}"},
        "basic job": {"Authorization": f"Basic {job}"},
    }
    if "\r" not in token and "\n" not in token:  # a header line cannot carry CR/LF itself
        carriers["private-token"] = {"PRIVATE-TOKEN": _wire(token)}
        carriers["bearer"] = {"Authorization": f"Bearer {_wire(token)}"}
        carriers["job-token"] = {"JOB-TOKEN": _wire(token)}
    return carriers


def _assert_refused_quietly(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, token: str, expect_401: bool
) -> None:
    for url, method in ROUTES:
        for carrier, headers in _carriers(token).items():
            caplog.clear()
            answer = client.open(url, method=method, headers=headers)
            text = answer.get_data(as_text=True)
            assert answer.status_code < 500, (url, carrier, text)
            # Search does not take CI job tokens: it answers that caller as anonymous.
            ignored = url == "/api/v1/datasets" and carrier == "job-token"
            # A state-changing request the cookie authenticates meets the CSRF rule first: it is
            # refused (403) before the token is even looked at, and still never shown.
            csrf_first = carrier == "cookie" and method not in ("GET", "HEAD")
            if csrf_first:
                assert answer.status_code == 403, (url, carrier, text)
                assert answer.get_json()["error"]["code"] == "csrf_refused"
            elif expect_401 and not ignored:
                assert answer.status_code == 401, (url, carrier, text)
                error = answer.get_json()["error"]
                assert error["code"] == "not_authenticated"
                # Only the cookie and the Basic password can carry CR/LF or non-Latin-1 text; a
                # header's raw bytes may still decode to an unusable token.
                assert "token" in error["message"].lower() or "basic" in error["message"].lower()
            for shown in (token, repr(token)[1:-1], _wire(token)):
                if len(shown.strip()) > 6:
                    assert shown not in text, (url, carrier)
                    assert shown not in caplog.text, (url, carrier)


def test_tokens_no_header_can_carry_are_a_401_and_never_shown(
    client: FlaskClient, logs: pytest.LogCaptureFixture
) -> None:
    for token in BAD_TOKENS:
        _assert_refused_quietly(client, logs, token, expect_401=True)
    answer = client.get(
        "/api/v1/datasets", headers={"Cookie": f"tokenGitLab={_wire(BAD_TOKENS[0])}"}
    )
    assert "tokenGitLab cookie is not a GitLab token" in answer.get_json()["error"]["message"]


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(token=st.text(min_size=1, max_size=40))
def test_any_token_text_is_refused_or_asked_of_gitlab_never_a_500(
    client: FlaskClient, logs: pytest.LogCaptureFixture, token: str
) -> None:
    # Header-safe tokens go to GitLab, which refuses them (401); cookie syntax may make a
    # token vanish (anonymous); never a 500, never shown.
    _assert_refused_quietly(client, logs, f"glpat-Q{token}", expect_401=False)
    safe = token.isascii() and token.isprintable() and " " not in token and len(token) <= 1024
    assert is_header_safe(token) == safe
