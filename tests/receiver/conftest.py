"""Fixtures of the receiver tests: fixture payloads, an app per test, headers GitLab sends."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.paths import WEBHOOK_FIXTURES
from webhook_service import create_app
from webhook_service.app_settings import services

# GitLab's documented examples, kept next to the repository (see their NOTES.md).
FIXTURES = WEBHOOK_FIXTURES
SECRET = "s3cret-token-for-tests"


def fixture_body(name: str) -> bytes:
    """The raw bytes of one of GitLab's documented example payloads."""
    return (FIXTURES / name).read_bytes()


def gitlab_headers(event: str, key: str | None = None, token: str = SECRET) -> dict[str, str]:
    """The headers GitLab sends with a delivery (a fresh Idempotency-Key unless one is given)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/18.3.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "Idempotency-Key": key or str(uuid.uuid4()),
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "X-Gitlab-Instance": "https://gitlab.example.com",
    }


def push_body(project_id: Any = 15, ref: str = "refs/heads/main", **extra: Any) -> bytes:
    """A minimal push payload with the fields the receiver reads."""
    payload: dict[str, Any] = {
        "object_kind": "push",
        "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "ref": ref,
        "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "project_id": project_id,
        "project": {"id": project_id},
    }
    payload.update(extra)
    return json.dumps(payload).encode()


def make_app(tmp_path: Path, **env: str) -> Flask:
    """An app with its own data directory and the test secret."""
    config = {"DSHUB_DATA_DIR": str(tmp_path / "data"), "DSHUB_WEBHOOK_SECRET": SECRET}
    config.update(env)
    return create_app(config)


@pytest.fixture
def app(tmp_path: Path, redis_url: str) -> Iterator[Flask]:
    """The service on real Redis (this test's database)."""
    application = make_app(tmp_path, DSHUB_REDIS_URL=redis_url)
    yield application
    services(application).close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
