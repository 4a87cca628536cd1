"""Fixtures for the merge request data-diff tests: a served dshub with Redis and MR notes on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from indexer.sites import SiteRegistry
from indexer.storage import StorageSite
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import ROOT, Gunicorn, start_gunicorn

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


def dshub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `dshub` CLI with `env` on top of the process environment."""
    return subprocess.run(
        [sys.executable, "-m", "dshub", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def work_until(env: dict[str, str], done: Callable[[], bool], timeout: float = 60.0) -> None:
    """Run `dshub worker --burst` until `done()` (hand-over from the journal may lag a 202)."""
    deadline = time.monotonic() + timeout
    while True:
        result = dshub(env, "worker", "--burst", "--no-drain")
        assert result.returncode == 0, result.stdout + result.stderr
        if done():
            return
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not reach the expected state in time")
        time.sleep(0.2)
