"""One shared world for the download tests: sandbox, moto bucket, local site, datasets, gunicorn.

Built once per test package (datasets are read-only for the tests; the few tests that change
storage use objects no other test reads).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import gitlab
import pytest

from indexer.data.dvc_env import dvc_environment
from tests.conftest import S3Bucket
from tests.download.world import World, build
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[World]:
    """Datasets pushed with real git and dvc, indexed, ready to download."""
    root = tmp_path_factory.mktemp("download-world")
    sandbox = Sandbox(root / "gitlab").start()
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"t-{uuid.uuid4().hex[:24]}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    made = World(
        sandbox=sandbox,
        admin=admin,
        bucket=bucket,
        index_url=f"sqlite:///{root / 'data' / 'index.sqlite3'}",
        data_dir=root / "data",
        local_site=root / "site",
    )
    made.data_dir.mkdir()
    made.local_site.mkdir()
    dvc_env = dvc_environment(root / "dvc-state")
    try:
        (root / "work").mkdir()
        build(made, root / "work", dvc_env)
        yield made
    finally:
        sandbox.stop()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket.name)


@pytest.fixture(scope="package")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The service under gunicorn (gthread), streaming downloads."""
    started = start_gunicorn(tmp_path_factory.mktemp("gunicorn"), world.env(), workers=1)
    yield started
    started.stop()
