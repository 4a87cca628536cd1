"""Responses that GitLab has schemas for validate against them; production never imports the sandbox."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import gitlab
import pytest

from tests.sandbox_contract.gitlab_schemas import validate

ROOT = Path(__file__).resolve().parents[2]


def test_current_user_matches_public_user_schema(make_client: Any) -> None:
    _, client = make_client("plainuser")
    validate("public_api/v4/user/public.json", client.http_get("/user"))


def test_admin_current_user_matches_admin_schema(gitlab_admin: gitlab.Gitlab) -> None:
    validate("public_api/v4/user/admin.json", gitlab_admin.http_get("/user"))


def test_user_web_url_is_under_the_base_url(gitlab_admin: gitlab.Gitlab) -> None:
    assert gitlab_admin.user is not None
    assert gitlab_admin.user.web_url == f"{gitlab_admin.url}/root"


def test_admin_creates_users_and_tokens(gitlab_admin: gitlab.Gitlab) -> None:
    user = gitlab_admin.users.create(
        {"username": "made", "name": "Made", "email": "made@example.com"}
    )
    token = user.personal_access_tokens.create({"name": "t", "scopes": ["api"]})
    client = gitlab.Gitlab(gitlab_admin.url, private_token=token.token)
    client.auth()
    assert client.user is not None and client.user.username == "made"


def test_non_admin_cannot_create_users(make_client: Any) -> None:
    _, client = make_client("nobody")
    with pytest.raises(gitlab.GitlabCreateError) as err:
        client.users.create({"username": "x", "name": "x", "email": "x@example.com"})
    assert err.value.response_code == 403


@pytest.mark.parametrize("package", ["webhook_service", "indexer", "dshub"])
def test_production_code_never_imports_the_sandbox(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.startswith("tests.gitlab_sandbox") for n in names), path
