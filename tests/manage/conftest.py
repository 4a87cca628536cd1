"""A GitLab world for dataset management, served by the real app on both index backends.

Group `imaging` (internal) has a guest, a reporter, a developer and a maintainer; group
`vault` is private; `outsider` belongs to neither. dshub's service token is the sandbox
admin's, and every write goes through the API with the caller's own token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import pytest
from flask.testing import FlaskClient

from tests.gitlab_sandbox.server import Sandbox
from webhook_service import create_app

ROLES = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40}
VIEWERS = ("anonymous", "nonmember", "guest", "reporter", "developer", "maintainer")


@dataclass
class ManageWorld:
    """The sandbox, the app's client, tokens and user ids by name, group ids by path."""

    sandbox: Sandbox
    admin: gitlab.Gitlab
    client: FlaskClient
    tokens: dict[str, str | None]
    user_ids: dict[str, int]
    groups: dict[str, int]
    settings: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        """The PRIVATE-TOKEN header of `who` (none for anonymous)."""
        token = self.tokens[who]
        return {"PRIVATE-TOKEN": token} if token else {}

    def call(self, who: str, method: str, url: str, body: Any = None, **query: Any) -> Any:
        """One API request as `who`; a `body` is sent as JSON."""
        kwargs: dict[str, Any] = {"headers": self.headers(who), "query_string": query}
        if body is not None:
            kwargs["json"] = body
        return self.client.open(url, method=method, **kwargs)

    def create(self, who: str, **body: Any) -> Any:
        """`POST /api/v1/datasets` as `who`."""
        return self.call(who, "POST", "/api/v1/datasets", body)


@pytest.fixture(params=["sqlite", "postgres"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def build_world(
    tmp_path: Path,
    sandbox: Sandbox,
    admin: gitlab.Gitlab,
    index_url: str,
    extra: dict[str, str] | None = None,
) -> ManageWorld:
    """The groups, users and app (settings `extra` added to the app's environment)."""
    imaging = admin.groups.create({"name": "Imaging", "path": "imaging", "visibility": "internal"})
    vault = admin.groups.create({"name": "Vault", "path": "vault", "visibility": "private"})
    tokens: dict[str, str | None] = {"anonymous": None}
    user_ids: dict[str, int] = {}
    for name in ("nonmember", *ROLES):
        user, tokens[name] = sandbox.create_user(name)
        user_ids[name] = user.id
        if name in ROLES:
            imaging.members.create({"user_id": user.id, "access_level": ROLES[name]})
    tokens["admin"] = sandbox.admin_token
    settings = {
        "DSHUB_DATA_DIR": str(tmp_path / "data"),
        "DSHUB_INDEX_URL": index_url,
        "DSHUB_GITLAB_URL": sandbox.url,
        "DSHUB_GITLAB_TOKEN": sandbox.admin_token,
        "DSHUB_RECONCILE_INTERVAL": "0",
        "DSHUB_LOG_FORMAT": "text",
        **(extra or {}),
    }
    app = create_app(settings)
    return ManageWorld(
        sandbox=sandbox,
        admin=admin,
        client=app.test_client(),
        tokens=tokens,
        user_ids=user_ids,
        groups={"imaging": imaging.id, "vault": vault.id},
        settings=settings,
    )


@pytest.fixture
def manage(
    tmp_path: Path, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, index_url: str
) -> Iterator[ManageWorld]:
    yield build_world(tmp_path, gitlab_sandbox, gitlab_admin, index_url)
