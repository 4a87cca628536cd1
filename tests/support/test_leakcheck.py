"""The token-leak check finds a secret in a log, in every form a log writes it, and is wired in.

These tests use their own `SecretRegistry` (the session's would fail the run on purpose).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from urllib.parse import quote

from dshub.logs import JsonFormatter
from tests.gitlab_sandbox.server import Sandbox
from tests.support import leakcheck
from webhook_service import create_app

SECRET = "glpat-deliberately-logged-0123456789"


def _json_log(path: Path, message: str, **extra: object) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dshub.leakcheck-test")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.error(message, extra=extra)
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_a_secret_logged_by_our_json_logs_is_reported(tmp_path: Path) -> None:
    registry = leakcheck.SecretRegistry(tmp_path / "logs")
    registry.add(SECRET, "sandbox token")
    _json_log(registry.log_path("app.log"), "request failed", header=f"PRIVATE-TOKEN {SECRET}")
    hits = registry.scan()
    assert [(h.kind, h.line, h.form) for h in hits] == [("sandbox token", 1, "as is")]
    assert hits[0].source.endswith("app.log")
    assert SECRET not in hits[0].describe()


def test_percent_encoded_and_json_escaped_secrets_in_watched_logs_are_reported(
    tmp_path: Path,
) -> None:
    registry = leakcheck.SecretRegistry(tmp_path / "logs")
    odd = 'webhook "secret"/with+chars'
    registry.add(odd, "webhook secret")
    gunicorn = tmp_path / "gunicorn" / "gunicorn-1234.log"
    gunicorn.parent.mkdir()
    gunicorn.write_text(f'127.0.0.1 "GET /x?token={quote(odd, safe="")}" 400 0 1ms\n')
    _json_log(tmp_path / "gunicorn" / "app.log", "bad", value=odd)
    registry.watch(tmp_path / "gunicorn")
    forms = sorted(h.form for h in registry.scan())
    assert forms == ["JSON-escaped", "percent-encoded"]


def test_clean_logs_and_short_values_give_no_hits(tmp_path: Path) -> None:
    registry = leakcheck.SecretRegistry(tmp_path / "logs")
    registry.add("short", "too short to tell from text")
    registry.add(SECRET, "sandbox token")
    _json_log(registry.log_path("app.log"), "short answer", token="[redacted]")
    assert registry.scan() == []
    assert set(registry.secrets) == {SECRET}


def test_the_session_registers_sandbox_tokens_and_app_secrets(tmp_path: Path) -> None:
    registry = leakcheck.active()
    assert registry is not None, "tests/conftest.py installs the session's registry"
    with Sandbox(tmp_path / "sandbox") as sandbox:
        _, token = sandbox.create_user("leaky")
        assert registry.secrets[token] == "GitLab sandbox token"
        assert sandbox.admin_token in registry.secrets
    create_app(
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
            "DSHUB_WEBHOOK_SECRET": "registered-by-load-settings",
            "DSHUB_LOG_FORMAT": "text",
        }
    )
    assert registry.secrets["registered-by-load-settings"] == "DSHUB_WEBHOOK_SECRET"
    # This test's own temp dir (where gunicorn and worker logs go) is read at the end.
    assert any(tmp_path.is_relative_to(root) for root in registry.watched())


def test_the_check_s_own_test_headers_are_not_scanned(tmp_path: Path) -> None:
    registry = leakcheck.SecretRegistry(tmp_path / "logs")
    # Only this registry knows the value (the session's would fail the run on it).
    registry.add(SECRET, "webhook secret")
    registry.log_path("pytest-captured.log").write_text(
        f"{leakcheck.HEADER}tests/x.py::test_y[{SECRET}x]\nclean line\necho {SECRET}\n"
    )
    assert [hit.line for hit in registry.scan()] == [3]


def test_a_secret_in_a_basic_authorization_header_is_reported(tmp_path: Path) -> None:
    registry = leakcheck.SecretRegistry(tmp_path / "logs")
    registry.add(SECRET, "sandbox token")
    for user in ("u", "us", "usr"):  # each puts the secret at another base64 offset
        header = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
        registry.log_path(f"{user}.log").write_text(
            f"Invalid header: Authorization Basic {header}\n"
        )
    hits = registry.scan()
    assert len({hit.source for hit in hits}) == 3
    assert all(hit.form.startswith("base64") for hit in hits)
