"""The world the contract tests call: the GitLab sandbox, dshub under gunicorn, moto S3.

Group `lab` (public) holds `open` (public) and `closed` (private) datasets, made with API
commits; their objects are in the S3 storage site `vault` (proxy mode), which both datasets
have selected and applied (so the one-time site selection can only answer 409 here). Users:
`maintainer` (Maintainer of both datasets, not a member of `lab`) and `stranger` (member of
nothing); anonymous callers send no token. DSHUB_NAMESPACES is `lab`, so no caller here can
create a dataset. Built once per test package.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gitlab
import pytest
from PIL import Image

from indexer.data.storage import StorageSite
from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRecord, SiteRegistry
from indexer.store import open_index
from indexer.sync import refs as sync
from tests.conftest import S3Bucket
from tests.convergence.gitlab_ops import DVC_CONFIG
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn

SITE = "vault"
CREDENTIALS_REF = "vault-rw"
MAX_OBJECT_BYTES = 1024 * 1024


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


FILES = {
    "data/a.csv": b"x,y\n1,2\n",
    "data/nested/b.json": b'{"k": 1}\n',
    "pics/p.png": _png(),
}


@dataclass
class World:
    """Ids, tokens and the server of the contract tests."""

    sandbox: Sandbox
    server: Gunicorn
    bucket: S3Bucket
    ids: dict[str, int]
    tokens: dict[str, str | None] = field(default_factory=dict, repr=False)
    oids: dict[str, str] = field(default_factory=dict)
    webhook_secret: str = field(default="", repr=False)


def _pointer(name: str, data: bytes) -> str:
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return f"outs:\n- md5: {md5}\n  size: {len(data)}\n  hash: md5\n  path: {name}\n"


def _dataset(admin: gitlab.Gitlab, group_id: int, name: str, visibility: str) -> Any:
    project = admin.projects.create(
        {
            "name": name,
            "path": name,
            "namespace_id": group_id,
            "visibility": visibility,
            "initialize_with_readme": True,
            "description": f"{name} dataset for the contract tests",
            "topics": ["contract"],
        }
    )
    project.variables.create({"key": "DSHUB_STORAGE_SITE", "value": SITE})
    actions = [{"action": "create", "file_path": ".dvc/config", "content": DVC_CONFIG}]
    for path, data in FILES.items():
        actions.append(
            {
                "action": "create",
                "file_path": f"{path}.dvc",
                "content": _pointer(path.rsplit("/", 1)[-1], data),
            }
        )
    project.commits.create(
        {"branch": "main", "commit_message": "Make it a dataset", "actions": actions}
    )
    project.tags.create({"tag_name": "v1", "ref": "main"})
    return project


@pytest.fixture(scope="package")
def contract_bucket(s3_endpoint: str) -> Iterator[S3Bucket]:
    """This package's bucket on the session's moto server (emptied afterwards)."""
    bucket = S3Bucket(endpoint_url=s3_endpoint, name=f"c-{uuid.uuid4().hex[:24]}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    yield bucket
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket.name)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory, contract_bucket: S3Bucket) -> Iterator[World]:
    root = tmp_path_factory.mktemp("contract")
    sandbox = Sandbox(root / "sandbox").start()
    server: Gunicorn | None = None
    try:
        index_url = f"sqlite:///{root / 'index.sqlite3'}"
        webhook_secret = f"contract-{uuid.uuid4().hex}"
        ids, oids = _build(sandbox, contract_bucket, index_url)
        credentials = root / "credentials.json"
        credentials.write_text(
            json.dumps(
                {
                    CREDENTIALS_REF: {
                        "access_key_id": contract_bucket.access_key,
                        "secret_access_key": contract_bucket.secret_key,
                    }
                }
            )
        )
        server = start_gunicorn(
            root / "gunicorn",
            {
                "DSHUB_DATA_DIR": str(root / "data"),
                "DSHUB_INDEX_URL": index_url,
                "DSHUB_GITLAB_URL": sandbox.url,
                "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
                "DSHUB_WEBHOOK_SECRET": webhook_secret,
                "DSHUB_RECONCILE_INTERVAL": "0",
                "DSHUB_STORAGE_CREDENTIALS_FILE": str(credentials),
                "DSHUB_DVC_MAX_OBJECT_BYTES": str(MAX_OBJECT_BYTES),
                # Datasets live in `lab` only, where neither user may create projects: every
                # POST /api/v1/datasets is refused (a user's own namespace is not `lab`).
                "DSHUB_NAMESPACES": "lab",
                "DSHUB_LOG_FORMAT": "json",
            },
            workers=2,
        )
        made = World(
            sandbox, server, contract_bucket, ids, oids=oids, webhook_secret=webhook_secret
        )
        admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
        made.tokens["anonymous"] = None
        _, made.tokens["stranger"] = sandbox.create_user("stranger")
        keeper, made.tokens["maintainer"] = sandbox.create_user("keeper")
        for pid in ids.values():
            admin.projects.get(pid).members.create({"user_id": keeper.id, "access_level": 40})
        yield made
    finally:
        if server is not None:
            server.stop()
        sandbox.stop()


def _build(
    sandbox: Sandbox, bucket: S3Bucket, index_url: str
) -> tuple[dict[str, int], dict[str, str]]:
    admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
    site = StorageSite(
        name=SITE,
        kind="s3",
        bucket=bucket.name,
        prefix="sets",
        endpoint_url=bucket.endpoint_url,
        region=bucket.region,
        credentials_ref=CREDENTIALS_REF,
    )
    registry = SiteRegistry(index_url)
    registry.save(SiteRecord(site))
    group = admin.groups.create({"name": "lab", "path": "lab", "visibility": "public"})
    ids: dict[str, int] = {}
    oids: dict[str, str] = {}
    client = bucket.client()
    for name, visibility in (("open", "public"), ("closed", "private")):
        project = _dataset(admin, group.id, name, visibility)
        ids[name] = project.id
        # Selected and applied: POST .../storage-site can only be refused (409) in this world.
        registry.select(project.id, SITE, None)
        registry.mark_applied(project.id)
        for path, data in FILES.items():
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            oids[path] = md5
            key = f"{site.dataset_prefix(project.id)}files/md5/{md5[:2]}/{md5[2:]}"
            client.put_object(Bucket=bucket.name, Key=key, Body=data)
    with open_index(index_url) as store:
        ctx = sync.SyncContext(
            reader=GitLabReader(sandbox.url, sandbox.admin_token, max_retries=1),
            store=store,
            sites=registry.get,
        )
        for pid in ids.values():
            assert sync.sync_project(ctx, pid) == "synced"
    return ids, oids
