"""Fixtures of the storage-site tests: an app on the sandbox, callers of each kind, buckets.

`site_env` builds the service against the GitLab sandbox (embedded worker, SQLite index)
with a credentials file naming moto keys; `callers` are GitLab users with their tokens:
the admin `root`, a member of the admin group, and someone else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import gitlab
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support import services
from tests.conftest import S3Bucket
from tests.gitlab_sandbox.server import Sandbox
from webhook_service import create_app
from webhook_service.webhooks import receiver_of

ADMIN_GROUP = "storage-admins"
PUBLIC_URL = "http://dshub.test:8000"
RW = {"access_key_id": services.S3_ACCESS_KEY, "secret_access_key": services.S3_SECRET_KEY}
RO = {"access_key_id": "readonly-access-key", "secret_access_key": "readonly-secret-key-0123"}


@dataclass
class SiteEnv:
    """The service under test and who calls it."""

    app: Flask
    client: FlaskClient
    sandbox: Sandbox
    admin: gitlab.Gitlab
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    def call(self, method: str, path: str, who: str | None = None, **kwargs: Any) -> Any:
        """Send a request as `who` (a key of `tokens`; None = anonymous)."""
        headers = {"PRIVATE-TOKEN": self.tokens[who]} if who else {}
        return self.client.open(path, method=method, headers=headers, **kwargs)


@dataclass(frozen=True)
class IamMoto:
    """A moto server that enforces IAM, with a bucket and the keys of a user without rights."""

    endpoint_url: str
    bucket: str
    denied: dict[str, str]


@pytest.fixture
def make_site_env(
    tmp_path: Path, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab
) -> Iterator[Callable[..., SiteEnv]]:
    """Build the service with extra credentials entries; users are created once per test."""
    apps: list[Flask] = []

    def build(extra_credentials: dict[str, dict[str, str]] | None = None, **env: str) -> SiteEnv:
        creds = tmp_path / "credentials.json"
        creds.write_text(json.dumps({"moto-rw": RW, "moto-ro": RO, **(extra_credentials or {})}))
        config = {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_GITLAB_URL": gitlab_sandbox.url,
            "DSHUB_GITLAB_TOKEN": gitlab_sandbox.admin_token,
            "DSHUB_STORAGE_CREDENTIALS_FILE": str(creds),
            "DSHUB_ADMIN_GROUP": ADMIN_GROUP,
            "DSHUB_PUBLIC_URL": PUBLIC_URL,
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
            **env,
        }
        app = create_app(config)
        apps.append(app)
        site_env = SiteEnv(app, app.test_client(), gitlab_sandbox, gitlab_admin)
        site_env.tokens["admin"] = gitlab_sandbox.admin_token
        group = gitlab_admin.groups.create({"name": ADMIN_GROUP, "path": ADMIN_GROUP})
        for name in ("member", "other", "maintainer", "developer"):
            user, token = gitlab_sandbox.create_user(name)
            site_env.tokens[name] = token
            site_env.user_ids[name] = user.id
        group.members.create({"user_id": site_env.user_ids["member"], "access_level": 30})
        return site_env

    yield build
    for app in apps:
        receiver_of(app).stop()


@pytest.fixture
def site_env(make_site_env: Callable[..., SiteEnv]) -> SiteEnv:
    """The service with the default credentials file."""
    return make_site_env()


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamMoto]:
    """moto in server mode with IAM enforced after the three set-up calls."""
    previous = os.environ.get("INITIAL_NO_AUTH_ACTION_COUNT")
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    try:
        url, managed = services.start_moto(tmp_path_factory.mktemp("iam-moto"))
    finally:
        if previous is None:
            os.environ.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        else:
            os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = previous
    try:
        root = {
            "endpoint_url": url,
            "region_name": services.S3_REGION,
            "aws_access_key_id": services.S3_ACCESS_KEY,
            "aws_secret_access_key": services.S3_SECRET_KEY,
        }
        boto3.client("s3", **root).create_bucket(Bucket="iam-guarded")
        iam = boto3.client("iam", **root)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        denied = {
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
        }
        yield IamMoto(url, "iam-guarded", denied)
    finally:
        managed.stop()


def s3_site(s3: S3Bucket, name: str = "moto", **extra: Any) -> dict[str, Any]:
    """A registration body for the test's moto bucket."""
    return {
        "name": name,
        "kind": "s3",
        "endpoint_url": s3.endpoint_url,
        "bucket": s3.name,
        "prefix": "datasets",
        "region": s3.region,
        "description": "moto bucket for tests",
        "credentials_ref": "moto-rw",
        **extra,
    }


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory this process cannot create files in (immutable for root, 0555 otherwise)."""
    import subprocess

    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    else:
        directory.chmod(0o555)
    try:
        yield directory
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        else:
            directory.chmod(0o755)
