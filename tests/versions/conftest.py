"""One world per module and index backend for versions, compare, revert and restore.

The GitLab sandbox, a moto bucket as the storage site, and dshub (SQLite or PostgreSQL
index) served on a loopback port (for the command line) as well as through Flask's test
client. Group `lab` is private: mia Maintainer, dev Developer, rep Reporter; out is in no
project. The dataset `lab/cells` is created through `POST /api/v1/datasets` as mia (so it
protects `v*` tags like every new dataset), its site selected, and three files uploaded.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from indexer.data.dvc_env import dvc_environment
from indexer.data.storage import StorageSite
from indexer.sites.registry import SiteRecord, SiteRegistry, validated
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from tests.support import services
from webhook_service import create_app
from webhook_service.app_settings import services as app_services

ROLES = {"mia": 40, "dev": 30, "rep": 20}
KEYS = {"access_key_id": services.S3_ACCESS_KEY, "secret_access_key": services.S3_SECRET_KEY}
HOOK_SECRET = "versions-hook-secret"
FILES = {"a.png": b"A" * 1000, "b.png": b"B" * 2000, "c.png": b"C" * 3000}


@dataclass
class VersionsWorld:
    """The service under test, its sandbox and bucket, and who calls it."""

    app: Flask
    client: FlaskClient
    sandbox: Sandbox
    admin: gitlab.Gitlab
    root: Path
    url: str
    pid: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # what earlier tests of the story made

    def call(self, method: str, path: str, who: str | None = None, **kwargs: Any) -> Any:
        """A request as `who` (None = anonymous)."""
        headers = {"PRIVATE-TOKEN": self.tokens[who]} if who else {}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def upload(self, who: str, files: dict[str, bytes], **fields: Any) -> Any:
        data: dict[str, Any] = {**fields}
        data["files[]"] = [(io.BytesIO(content), name) for name, content in files.items()]
        return self.call(
            "POST",
            f"/api/v1/datasets/{self.pid}/files",
            who,
            data=data,
            content_type="multipart/form-data",
        )

    def project(self) -> Any:
        return self.admin.projects.get(self.pid)

    def git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        if check and done.returncode:
            raise AssertionError(f"git {args}: {done.stderr}")
        return done.stdout if check else str(done.returncode)

    def clone(self, name: str) -> Path:
        """A fresh clone (as root) of the dataset, with its tags."""
        project = self.project()
        url = project.http_url_to_repo.replace("://", f"://oauth2:{self.sandbox.admin_token}@")
        self.git("clone", "-q", url, name)
        return self.root / name


def _index_url(backend: str, root: Path, admin_url: str | None) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{root / 'index.sqlite3'}"
        return
    assert admin_url is not None
    with services.scratch_database(admin_url, f"dshub_v_{uuid.uuid4().hex[:16]}") as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    s3_endpoint: str,
) -> Iterator[VersionsWorld]:
    root = tmp_path_factory.mktemp(f"versions-{request.param}")
    admin_url = (
        request.getfixturevalue("postgres_admin_url") if request.param == "postgres" else None
    )
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"v-{uuid.uuid4().hex[:24]}")
    bucket.client().create_bucket(Bucket=bucket.name)
    sandbox = Sandbox(root / "gitlab-sandbox").start()
    indexes = _index_url(request.param, root, admin_url)
    index_url = next(indexes)
    server = None
    try:
        admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
        admin.auth()
        creds = root / "credentials.json"
        creds.write_text(json.dumps({"moto-rw": KEYS, "moto-ro": KEYS}))
        port = services.free_port()  # known before the app: the dataset remote names it
        config = {
            "DSHUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DSHUB_DATA_DIR": str(root / "data"),
            "DSHUB_INDEX_URL": index_url,
            "DSHUB_GITLAB_URL": sandbox.url,
            "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
            "DSHUB_STORAGE_CREDENTIALS_FILE": str(creds),
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
            "DSHUB_WEBHOOK_SECRET": HOOK_SECRET,
        }
        for key, value in dvc_environment(root / "dvc-state", base={}).items():
            os.environ.setdefault(key, value)
        app = create_app(config)
        site = StorageSite(
            name="moto",
            kind="s3",
            bucket=bucket.name,
            prefix="datasets",
            endpoint_url=bucket.endpoint_url,
            region=bucket.region,
            # a module may ask for dshub's DVC remote (proxy) with ACCESS_MODE = "proxy"
            access_mode=getattr(request.module, "ACCESS_MODE", "direct"),
            credentials_ref="moto-rw",
        )
        SiteRegistry(index_url).save(validated(SiteRecord(site, "moto-ro")))
        server = make_server("127.0.0.1", port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        world = VersionsWorld(
            app, app.test_client(), sandbox, admin, root, f"http://127.0.0.1:{server.port}"
        )
        group = admin.groups.create({"name": "lab", "path": "lab", "visibility": "private"})
        for name in (*ROLES, "out"):
            user, world.tokens[name] = sandbox.create_user(name)
            if name in ROLES:
                group.members.create({"user_id": user.id, "access_level": ROLES[name]})
        created = world.call(
            "POST", "/api/v1/datasets", "mia", json={"name": "cells", "namespace": "lab"}
        )
        assert created.status_code == 201, created.get_json()
        world.pid = int(created.get_json()["id"])
        chosen = world.call(
            "POST", f"/api/v1/datasets/{world.pid}/storage-site", "mia", json={"name": "moto"}
        )
        assert chosen.status_code == 201, chosen.get_json()
        uploaded = world.upload("mia", FILES, message="Three cells")
        assert uploaded.status_code == 201, uploaded.get_json()
        yield world
        app_services(app).close()
    finally:
        if server is not None:
            server.shutdown()
        sandbox.stop()
        next(indexes, None)
