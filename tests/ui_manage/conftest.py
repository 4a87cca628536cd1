"""A writable world for the dataset-management pages: the management tests' groups and users
(`tests.manage.conftest.build_world`: `imaging` internal with a reporter, developer and
maintainer; `vault` private), the moto S3 bucket registered as storage site `moto` (as the
upload tests register it), dataset `imaging/seed` without a site, and the service under
gunicorn on the same index. Built once per module; tests may change it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import pytest

from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRecord, SiteRegistry, validated
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.manage.conftest import ManageWorld, build_world
from tests.receiver.serving import Gunicorn, start_gunicorn
from tests.support.services import free_port
from tests.uploads.conftest import KEYS
from webhook_service.csrf import SESSION_COOKIE, token_for


@dataclass
class UiWorld:
    """The management world, its gunicorn, and the `imaging/seed` dataset's id."""

    manage: ManageWorld
    server: Gunicorn
    bucket: S3Bucket
    seed_id: int

    def form_client(self, who: str) -> tuple[Any, str]:
        """The Flask test client signed in as `who` by cookie, and the CSRF token its
        forms carry."""
        client = self.manage.client
        token = self.manage.tokens[who] or ""
        client.set_cookie(SESSION_COOKIE, token)
        return client, token_for(token, client.application.config["SECRET_KEY"])


@pytest.fixture(scope="module")
def ui_world(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[UiWorld]:
    root = tmp_path_factory.mktemp("ui-manage")
    sandbox = Sandbox(root / "gitlab").start()
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"t-{uuid.uuid4().hex[:24]}")
    s3 = bucket.client()
    s3.create_bucket(Bucket=bucket.name)
    port = free_port()
    creds = root / "credentials.json"
    creds.write_text(json.dumps({"moto-rw": KEYS, "moto-ro": KEYS}))
    index_url = f"sqlite:///{root / 'index.sqlite3'}"
    extra = {
        "DSHUB_STORAGE_CREDENTIALS_FILE": str(creds),
        "DSHUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DSHUB_SECRET_KEY": "ui-manage-tests-secret-key-0123456789abcdef",
    }
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    server: Gunicorn | None = None
    try:
        world = build_world(root, sandbox, admin, index_url, extra)
        site = StorageSite(
            name="moto",
            kind="s3",
            bucket=bucket.name,
            prefix="datasets",
            endpoint_url=bucket.endpoint_url,
            region=bucket.region,
            access_mode="direct",
            credentials_ref="moto-rw",
            description="The lab's bucket",
        )
        SiteRegistry(index_url).save(validated(SiteRecord(site, "moto-ro")))
        made = world.create("maintainer", name="seed", namespace="imaging", visibility="internal")
        assert made.status_code == 201, made.get_json()
        server = start_gunicorn(root / "gunicorn", world.settings, workers=1, port=port)
        yield UiWorld(world, server, bucket, made.get_json()["id"])
    finally:
        if server is not None:
            server.stop()
        sandbox.stop()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket.name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=bucket.name)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (the test's tmp dir)."""
    return tmp_path_factory.mktemp("ui-manage-shots")
