"""A small GitLab world indexed on both backends, served by the real app (WSGI test client).

Datasets: public, internal, and two private ones in a public group; users: a non-member,
a guest, a reporter and a developer of the first private dataset, and an administrator.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import pytest
from flask.testing import FlaskClient

from indexer.gitlab.reader import GitLabReader
from indexer.sites.registry import SiteRegistry
from indexer.store import open_index
from indexer.sync import refs as sync
from tests.convergence.gitlab_ops import create_dataset
from tests.gitlab_sandbox.server import Sandbox
from webhook_service import create_app

VIEWERS = ("anonymous", "nonmember", "guest", "reporter", "developer", "admin")
WORD = "matrixword"


@dataclass
class World:
    """Ids by name, tokens by viewer, what each viewer may read, and an HTTP client."""

    ids: dict[str, int]
    tokens: dict[str, str | None]
    readable: dict[str, set[int]]
    client: FlaskClient

    def get(self, viewer: str, url: str, **params: Any) -> Any:
        """GET `url` as `viewer` (PRIVATE-TOKEN header; none for anonymous)."""
        token = self.tokens[viewer]
        headers = {"PRIVATE-TOKEN": token} if token else {}
        return self.client.get(url, query_string=params, headers=headers)


@pytest.fixture
def world(
    tmp_path: Path, gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, index_url: str
) -> Iterator[World]:
    group = gitlab_admin.groups.create({"name": "lab", "path": "lab", "visibility": "public"})
    specs = {
        "public": ("alpha", "public", {"open/a.csv": ("a", 10), "open/pic.png": ("p", 20)}),
        "internal": ("beta", "internal", {"inner/b.csv": ("b", 30), "inner/b.json": ("j", 5)}),
        "private": ("gamma", "private", {"hidden/secret.csv": ("s", 7), "hidden/s.png": ("t", 9)}),
        "other_private": ("delta", "private", {"vault/secret.json": ("v", 3)}),
    }
    ids: dict[str, int] = {}
    for key, (name, visibility, files) in specs.items():
        project = create_dataset(
            gitlab_admin,
            group.id,
            name,
            visibility,
            files,
            description=f"{name} {WORD}",
            topics=["shared", f"only-{name}"],
        )
        project.tags.create({"tag_name": "v1", "ref": "main"})
        ids[key] = project.id
    tokens: dict[str, str | None] = {"anonymous": None}
    for name, level in (("nonmember", None), ("guest", 10), ("reporter", 20), ("developer", 30)):
        user, tokens[name] = gitlab_sandbox.create_user(name)
        if level is not None:
            gitlab_admin.projects.get(ids["private"]).members.create(
                {"user_id": user.id, "access_level": level}
            )
    _, tokens["admin"] = gitlab_sandbox.create_user("boss", admin=True)

    with open_index(index_url) as store:
        report = sync.reconcile(
            sync.SyncContext(
                reader=GitLabReader(gitlab_sandbox.url, gitlab_sandbox.admin_token),
                store=store,
                sites=SiteRegistry(index_url).get,
            )
        )
        assert report.synced == 4 and not report.failed
    app = create_app(
        {
            "DSHUB_DATA_DIR": str(tmp_path / "data"),
            "DSHUB_INDEX_URL": index_url,
            "DSHUB_GITLAB_URL": gitlab_sandbox.url,
            "DSHUB_RECONCILE_INTERVAL": "0",
            "DSHUB_LOG_FORMAT": "text",
        }
    )
    everyone = {ids["public"]}
    signed_in = everyone | {ids["internal"]}
    readers = signed_in | {ids["private"]}
    readable = {
        "anonymous": everyone,
        "nonmember": signed_in,
        "guest": signed_in,
        "reporter": readers,
        "developer": readers,
        "admin": set(ids.values()),
    }
    yield World(ids, tokens, readable, app.test_client())
