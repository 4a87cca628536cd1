"""GitLab's read rule, token extraction and the shared invalidation counter."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from indexer.errors import NotAuthenticated
from indexer.gitlab.permissions import (
    ANONYMOUS,
    GENERATION_KEY,
    FileGeneration,
    RedisGeneration,
    token_from_headers,
)
from indexer.read.search import Viewer
from indexer.store.base import Dataset

MEMBER = Viewer(user_id=7, readable_private_ids=frozenset({11}))
ADMIN = Viewer(user_id=1, is_admin=True)


@pytest.mark.parametrize(
    ("viewer", "visibility", "project_id", "expected"),
    [
        (ANONYMOUS, "public", 1, True),
        (ANONYMOUS, "internal", 1, False),
        (ANONYMOUS, "private", 11, False),
        (MEMBER, "internal", 1, True),
        (MEMBER, "private", 11, True),
        (MEMBER, "private", 12, False),
        (MEMBER, "secret-ish", 11, True),  # unknown visibility is treated as private
        (MEMBER, "secret-ish", 12, False),
        (ADMIN, "private", 99, True),
    ],
)
def test_read_rule_follows_gitlab(
    viewer: Viewer, visibility: str, project_id: int, expected: bool
) -> None:
    dataset = Dataset(project_id, "d", "g/d", "g", visibility)
    assert viewer.can_read(dataset) is expected


def test_token_sources_in_order_of_precedence() -> None:
    assert token_from_headers({"PRIVATE-TOKEN": "a"}, {"tokenGitLab": "c"}) == "a"
    assert token_from_headers({"Authorization": "Bearer b"}, {"tokenGitLab": "c"}) == "b"
    assert token_from_headers({}, {"tokenGitLab": "c"}) == "c"
    assert token_from_headers({}, {}) is None


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer   ", "token"])
def test_malformed_authorization_is_refused(value: str) -> None:
    with pytest.raises(NotAuthenticated, match="Bearer <GitLab token>"):
        token_from_headers({"Authorization": value})


def test_file_generation_counts_up(tmp_path: Path) -> None:
    generation = FileGeneration(tmp_path / "perm" / "generation")
    assert generation.current() == 0
    generation.bump()
    generation.bump()
    assert FileGeneration(tmp_path / "perm" / "generation").current() == 2


def test_redis_generation_is_shared(redis_url: str) -> None:
    first, second = RedisGeneration(redis_url), RedisGeneration(redis_url)
    assert first.current() == 0
    first.bump()
    assert second.current() == 1
    assert redis.Redis.from_url(redis_url).get(GENERATION_KEY) == b"1"


def test_unreachable_redis_never_serves_stale_answers() -> None:
    from tests.support.services import free_port

    assert RedisGeneration(f"redis://127.0.0.1:{free_port()}/0").current() == -1
