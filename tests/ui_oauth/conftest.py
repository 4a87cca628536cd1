"""The OAuth UI tests' world: the sandbox with a registered OAuth application, one private
dataset `lab/secret` that alice (Reporter) may read, and gunicorn with the OAuth settings
and `DSHUB_PUBLIC_URL` on the port it serves (the exact redirect URI)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gitlab
import pytest
import requests

from tests.conftest import S3Bucket
from tests.download.world import World
from tests.gitlab_sandbox.server import Sandbox
from tests.receiver.serving import Gunicorn, start_gunicorn
from tests.support.services import free_port

TOKEN_TTL = 8  # seconds the sandbox's access tokens live in this world


@dataclass
class OAuthWorld:
    sandbox: Sandbox
    server: Gunicorn
    dataset: str


@pytest.fixture(scope="package")
def oauth_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthWorld]:
    root = tmp_path_factory.mktemp("ui-oauth")
    sandbox = Sandbox(root / "gitlab").start()
    try:
        admin = gitlab.Gitlab(sandbox.url, private_token=sandbox.admin_token)
        alice, _ = sandbox.create_user("alice")
        group = admin.groups.create({"name": "lab", "path": "lab", "visibility": "private"})
        group.members.create({"user_id": alice.id, "access_level": 20})
        project: Any = admin.projects.create(
            {"name": "secret", "namespace_id": group.id, "visibility": "private"}
        )
        project.commits.create(
            {
                "branch": "main",
                "commit_message": "A private dataset",
                "actions": [
                    {"action": "create", "file_path": ".dvc/config", "content": "[core]\n"}
                ],
            }
        )
        world = World(
            sandbox=sandbox,
            admin=admin,
            bucket=S3Bucket(endpoint_url="http://127.0.0.1:9", name="unused"),
            index_url=f"sqlite:///{root / 'data' / 'index.sqlite3'}",
            data_dir=root / "data",
            local_site=root / "site",
        )
        world.data_dir.mkdir()
        world.sync(project.id)
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        registered = requests.post(
            f"{sandbox.url}/api/v4/applications",
            headers={"PRIVATE-TOKEN": sandbox.admin_token},
            json={"name": "dshub", "redirect_uri": f"{public}/-/oauth/callback", "scopes": "api"},
            timeout=10,
        ).json()
        requests.post(
            f"{sandbox.url}/-/sandbox/oauth/settings",
            headers={"PRIVATE-TOKEN": sandbox.admin_token},
            json={"access_token_ttl": TOKEN_TTL},
            timeout=10,
        ).raise_for_status()
        env = world.env(
            DSHUB_PUBLIC_URL=public,
            DSHUB_OAUTH_CLIENT_ID=registered["application_id"],
            DSHUB_OAUTH_CLIENT_SECRET=registered["secret"],
            DSHUB_SECRET_KEY="oauth-ui-tests-secret-key-0123456789abcdef",
        )
        server = start_gunicorn(root / "gunicorn", env, workers=1, port=port)
        try:
            yield OAuthWorld(sandbox=sandbox, server=server, dataset="lab/secret")
        finally:
            server.stop()
    finally:
        sandbox.stop()
