"""Helpers for the sandbox contract tests: users with clients, a project factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gitlab
import pytest

from tests.gitlab_sandbox.server import Sandbox


@pytest.fixture
def make_client(gitlab_sandbox: Sandbox) -> Callable[..., tuple[Any, gitlab.Gitlab]]:
    """`make_client(username, admin=False)` → (user record, python-gitlab client for that user)."""

    def make(username: str, admin: bool = False) -> tuple[Any, gitlab.Gitlab]:
        user, token = gitlab_sandbox.create_user(username, admin=admin)
        return user, gitlab.Gitlab(gitlab_sandbox.url, private_token=token)

    return make


@pytest.fixture
def anonymous(gitlab_sandbox: Sandbox) -> gitlab.Gitlab:
    """A python-gitlab client without a token."""
    return gitlab.Gitlab(gitlab_sandbox.url)
