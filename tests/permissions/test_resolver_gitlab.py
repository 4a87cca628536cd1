"""Tokens resolved through GitLab (the sandbox over HTTP): who may read which private dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gitlab
import pytest

from indexer.errors import NotAuthenticated, Unavailable
from indexer.gitlab.permissions import FileGeneration, PermissionResolver
from indexer.gitlab.reader import GitLabReader
from tests.gitlab_sandbox.server import Sandbox


@pytest.fixture
def world(gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab) -> dict[str, Any]:
    group = gitlab_admin.groups.create(
        {"name": "vision", "path": "vision", "visibility": "private"}
    )
    secret = gitlab_admin.projects.create(
        {"name": "secret", "namespace_id": group.id, "visibility": "private"}
    )
    other = gitlab_admin.projects.create(
        {"name": "other", "namespace_id": group.id, "visibility": "private"}
    )
    tokens: dict[str, str] = {}
    for name, level, target in [
        ("guest", 10, group),
        ("reporter", 20, group),
        ("developer", 30, secret),
        ("outsider", None, None),
    ]:
        user, token = gitlab_sandbox.create_user(name)
        tokens[name] = token
        if target is not None:
            target.members.create({"user_id": user.id, "access_level": level})
    _, tokens["admin"] = gitlab_sandbox.create_user("boss", admin=True)
    return {"secret": secret.id, "other": other.id, "tokens": tokens}


def _resolver(sandbox: Sandbox, tmp_path: Path) -> PermissionResolver:
    return PermissionResolver(
        lambda token: GitLabReader(sandbox.url, token, max_retries=0, obey_rate_limit=False),
        FileGeneration(tmp_path / "generation"),
    )


def test_readable_private_datasets_follow_gitlab_roles(
    gitlab_sandbox: Sandbox, world: dict[str, Any], tmp_path: Path
) -> None:
    resolver = _resolver(gitlab_sandbox, tmp_path)
    tokens = world["tokens"]
    reporter = resolver.resolve(tokens["reporter"])
    assert reporter.readable_private_ids == {world["secret"], world["other"]}
    developer = resolver.resolve(tokens["developer"])
    assert developer.readable_private_ids == {world["secret"]}
    # Guests see a private project in GitLab but may not read its repository.
    assert resolver.resolve(tokens["guest"]).readable_private_ids == frozenset()
    assert resolver.resolve(tokens["outsider"]).readable_private_ids == frozenset()
    admin = resolver.resolve(tokens["admin"])
    assert admin.is_admin and admin.signed_in
    anonymous = resolver.resolve(None)
    assert not anonymous.signed_in


def test_a_token_gitlab_refuses_is_not_authenticated(
    gitlab_sandbox: Sandbox, tmp_path: Path
) -> None:
    with pytest.raises(NotAuthenticated):
        _resolver(gitlab_sandbox, tmp_path).resolve("glpat-not-a-real-token")


def test_answers_are_cached_until_the_generation_moves(
    gitlab_sandbox: Sandbox, gitlab_admin: gitlab.Gitlab, world: dict[str, Any], tmp_path: Path
) -> None:
    resolver = _resolver(gitlab_sandbox, tmp_path)
    token = world["tokens"]["outsider"]
    assert resolver.resolve(token).readable_private_ids == frozenset()
    # GitLab now fails every call: the cached answer is still served, no request is made.
    gitlab_sandbox.faults.fail_next(count=100, status=500)
    assert resolver.resolve(token).readable_private_ids == frozenset()
    # A membership event bumps the generation: the next resolve must ask GitLab again.
    FileGeneration(tmp_path / "generation").bump()
    with pytest.raises(Unavailable, match="GitLab answered 500"):
        resolver.resolve(token)
    gitlab_sandbox.faults.reset()
    outsider = gitlab_admin.users.list(username="outsider")[0]
    gitlab_admin.projects.get(world["other"]).members.create(
        {"user_id": outsider.id, "access_level": 20}
    )
    assert resolver.resolve(token).readable_private_ids == {world["other"]}


def test_cache_expires_after_its_ttl(
    gitlab_sandbox: Sandbox, world: dict[str, Any], tmp_path: Path
) -> None:
    now = [1000.0]
    resolver = PermissionResolver(
        lambda token: GitLabReader(gitlab_sandbox.url, token, max_retries=0),
        FileGeneration(tmp_path / "generation"),
        ttl=60,
        clock=lambda: now[0],
    )
    token = world["tokens"]["reporter"]
    resolver.resolve(token)
    gitlab_sandbox.faults.fail_next(count=100, status=502)
    now[0] += 59
    resolver.resolve(token)
    now[0] += 2
    with pytest.raises(Unavailable):
        resolver.resolve(token)
