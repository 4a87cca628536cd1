"""The server-side OAuth session records: encrypted with a key derived from the secret key,
keyed by a hash of the session id, in Redis or files — never a token or id in the clear."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from indexer.gitlab import oauth
from indexer.gitlab.tokens import is_oauth
from webhook_service.oauth_sessions import (
    REDIS_PREFIX,
    FileRecords,
    OAuthSessions,
    RecordBackend,
    RedisRecords,
    SessionRecord,
    fernet_for,
)

KEY = "x" * 40
CLIENT = oauth.OAuthClient("http://127.0.0.1:9", "id", "secret", "http://127.0.0.1:9/cb")
RECORD = SessionRecord("access-abc123", "refresh-def456", time.time() + 3600, "alice")


@pytest.fixture(params=["redis", "files"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> RecordBackend:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return RedisRecords(url)
    return FileRecords(tmp_path / "oauth-sessions")


def _stored_bytes(backend: RecordBackend, tmp_path: Path) -> bytes:
    if isinstance(backend, RedisRecords):
        client: redis.Redis = backend.client
        return b"".join(
            key + (client.get(key) or b"") for key in client.scan_iter(f"{REDIS_PREFIX}*")
        )
    return b"".join(
        p.name.encode() + p.read_bytes() for p in (tmp_path / "oauth-sessions").iterdir()
    )


def test_records_are_encrypted_and_keyed_by_a_hash(backend: RecordBackend, tmp_path: Path) -> None:
    sessions = OAuthSessions(CLIENT, backend, fernet_for(KEY))
    session_id = sessions.create(RECORD)
    assert sessions.record(session_id) == RECORD
    token = sessions.access_token(session_id)
    assert token == "access-abc123" and is_oauth(token)
    stored = _stored_bytes(backend, tmp_path)
    for secret in (b"access-abc123", b"refresh-def456", b"alice", session_id.encode()):
        assert secret not in stored


def test_another_secret_key_reads_nothing(backend: RecordBackend) -> None:
    session_id = OAuthSessions(CLIENT, backend, fernet_for(KEY)).create(RECORD)
    other = OAuthSessions(CLIENT, backend, fernet_for("y" * 40))
    assert other.record(session_id) is None
    assert other.access_token(session_id) is None


def test_sign_out_forgets_the_record_even_when_gitlab_is_unreachable(
    backend: RecordBackend,
) -> None:
    sessions = OAuthSessions(CLIENT, backend, fernet_for(KEY))
    session_id = sessions.create(RECORD)
    sessions.sign_out(session_id)
    assert sessions.record(session_id) is None
