"""The upload UI's writable world: the uploads tests' `lab/cells` (GitLab sandbox, moto S3 as
its selected site, members of every role; `tests.uploads.conftest.make_world`) served by
gunicorn, built once for the package. The tests write to it in order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest

from indexer.data.dvc_env import dvc_environment
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn
from tests.uploads.conftest import UploadWorld, make_world
from webhook_service.app_settings import services as app_services


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[UploadWorld]:
    root = tmp_path_factory.mktemp("ui-upload-world")
    sandbox = Sandbox(root / "gitlab").start()
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"t-{uuid.uuid4().hex[:24]}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    made = make_world(root, sandbox, admin, bucket, dvc_environment(root / "dvc-state"))
    try:
        yield made
    finally:
        app_services(made.app).close()
        sandbox.stop()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket.name)


@pytest.fixture(scope="package")
def server(world: UploadWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The world's service under gunicorn (its own process, the same index and data dir)."""
    started = start_gunicorn(tmp_path_factory.mktemp("gunicorn"), world.config, workers=1)
    yield started
    started.stop()


@pytest.fixture(scope="package")
def artifacts() -> Path:
    """The git-ignored folder screenshots go to."""
    folder = Path(__file__).resolve().parents[2] / "artifacts" / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
