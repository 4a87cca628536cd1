"""Fixtures for the merge request data-diff tests: a served dshub with Redis and MR notes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRegistry
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn

SECRET = "mr-webhook-secret"


@pytest.fixture
def index_url(tmp_path: Path) -> str:
    """A fresh SQLite index (the diff reads pointers from GitLab, not from the backend)."""
    return f"sqlite:///{tmp_path / 'index.sqlite3'}"


@pytest.fixture
def lab_site(index_url: str, s3_bucket: S3Bucket) -> str:
    """The storage site `lab` (moto S3, prefix `team`) registered in the index."""
    SiteRegistry(index_url).put(
        StorageSite(
            name="lab",
            kind="s3",
            bucket=s3_bucket.name,
            prefix="team",
            endpoint_url=s3_bucket.endpoint_url,
            region=s3_bucket.region,
        )
    )
    return "lab"


@pytest.fixture
def service_env(
    tmp_path: Path, redis_url: str, gitlab_sandbox: Sandbox, index_url: str, dvc_env: dict[str, str]
) -> dict[str, str]:
    """Settings shared by gunicorn and the worker, with `DSHUB_MR_NOTES=1`."""
    return {
        **dvc_env,
        "DSHUB_DATA_DIR": str(tmp_path / "data"),
        "DSHUB_WEBHOOK_SECRET": SECRET,
        "DSHUB_REDIS_URL": redis_url,
        "DSHUB_GITLAB_URL": gitlab_sandbox.url,
        "DSHUB_GITLAB_TOKEN": gitlab_sandbox.admin_token,
        "DSHUB_INDEX_URL": index_url,
        "DSHUB_MR_NOTES": "1",
        "DSHUB_LOG_FORMAT": "text",
    }


@pytest.fixture
def service(tmp_path: Path, service_env: dict[str, str]) -> Iterator[Gunicorn]:
    """dshub under gunicorn (one worker)."""
    server = start_gunicorn(tmp_path / "gunicorn", service_env, workers=1)
    yield server
    server.stop()
