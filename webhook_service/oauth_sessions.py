"""Server-side records of "Sign in with GitLab" sessions; the browser holds only their id.

A record holds the user's GitLab OAuth access and refresh tokens, encrypted with Fernet
under a key derived from `DSHUB_SECRET_KEY` (HKDF-SHA256), in Redis when the deployment has
one (every process and host shares it), else as files under `DSHUB_DATA_DIR/oauth-sessions`
— where the permission generation counter lives too. Records are keyed by a hash of the
session id, so neither Redis nor the file system ever holds the id the cookie carries.

`OAuthSessions` hands out the access token for a session id, refreshing it (one refresh at
a time per session, under a lock, since GitLab rotates refresh tokens) when it is about to
expire or GitLab refused it, and revokes it on sign-out.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import redis
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask

from indexer.errors import DshubError, NotAuthenticated
from indexer.gitlab import oauth
from indexer.gitlab.tokens import OAuthToken
from webhook_service.app_settings import settings_of

RECORD_AGE = 30 * 24 * 3600  # a session unused for 30 days is forgotten
REDIS_PREFIX = "dshub:oauth:session:"
LOCK_SECONDS = 30


@dataclass(frozen=True)
class SessionRecord:
    """One signed-in browser: its GitLab tokens, when to refresh them, and the user's name."""

    access_token: str
    refresh_token: str
    refresh_at: float
    username: str

    @classmethod
    def of(cls, pair: oauth.TokenPair, username: str) -> SessionRecord:
        """The record of a fresh token pair."""
        return cls(pair.access_token, pair.refresh_token, pair.refresh_at, username)


def fernet_for(secret_key: str) -> Fernet:
    """The cipher of the session records: a key derived from the service's secret key."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"dshub oauth sessions"
    ).derive(secret_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def _record_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class RecordBackend(Protocol):
    """Where encrypted records live: get/put/delete by key, and a per-key lock."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]: ...


class RedisRecords:
    """Records in Redis, expiring `RECORD_AGE` after their last write."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def get(self, key: str) -> bytes | None:
        """The encrypted record, or None."""
        value = self.client.get(REDIS_PREFIX + key)
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes) -> None:
        """Keep (or replace) a record."""
        self.client.set(REDIS_PREFIX + key, value, ex=RECORD_AGE)

    def delete(self, key: str) -> None:
        """Forget a record."""
        self.client.delete(REDIS_PREFIX + key)

    def lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        """A lock every process shares (held while one of them refreshes)."""
        held: contextlib.AbstractContextManager[object] = self.client.lock(
            f"{REDIS_PREFIX}{key}:lock", timeout=LOCK_SECONDS, blocking_timeout=LOCK_SECONDS
        )
        return held


class FileRecords:
    """Records as files of one directory (mode 0600), replaced atomically; `flock` locks."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key

    def get(self, key: str) -> bytes | None:
        """The encrypted record, or None (also once `RECORD_AGE` passed since its last write)."""
        path = self._path(key)
        try:
            if path.stat().st_mtime < time.time() - RECORD_AGE:
                path.unlink(missing_ok=True)
                return None
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, value: bytes) -> None:
        """Keep (or replace) a record."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._path(key).with_suffix(f".{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(value)
        tmp.replace(self._path(key))

    def delete(self, key: str) -> None:
        """Forget a record."""
        self._path(key).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[object]:
        """An exclusive `flock` on the record's lock file (every process of this machine)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self._path(key).with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class OAuthSessions:
    """Session id → GitLab access token, refreshed transparently, revoked on sign-out."""

    def __init__(self, client: oauth.OAuthClient, backend: RecordBackend, cipher: Fernet) -> None:
        self.client = client
        self.backend = backend
        self.cipher = cipher

    def create(self, record: SessionRecord) -> str:
        """Keep a new session's record; the id to put in the browser's cookie."""
        session_id = secrets.token_urlsafe(32)
        self._put(session_id, record)
        return session_id

    def record(self, session_id: str) -> SessionRecord | None:
        """The session's record (None: unknown, expired, or not readable with this key)."""
        sealed = self.backend.get(_record_key(session_id))
        if sealed is None:
            return None
        try:
            return SessionRecord(**json.loads(self.cipher.decrypt(sealed)))
        except (InvalidToken, ValueError, TypeError):
            return None

    def access_token(self, session_id: str) -> OAuthToken | None:
        """The session's access token, refreshed first when it is about to expire; None when
        the session is gone (signed out, or GitLab no longer refreshes it)."""
        found = self.record(session_id)
        if found is None:
            return None
        if time.time() >= found.refresh_at:
            return self.refresh(session_id, found.access_token)
        return OAuthToken(found.access_token)

    def refresh(self, session_id: str, stale: str) -> OAuthToken | None:
        """Replace the access token `stale` (expired, or refused by GitLab) with a fresh one.
        Concurrent requests of one session refresh once: the others find the new token."""
        key = _record_key(session_id)
        with self.backend.lock(key):
            found = self.record(session_id)
            if found is None:
                return None
            if found.access_token != stale:
                return OAuthToken(found.access_token)
            try:
                pair = oauth.refresh(self.client, found.refresh_token)
            except NotAuthenticated:
                self.backend.delete(key)
                return None
            self._put(session_id, SessionRecord.of(pair, found.username))
            return OAuthToken(pair.access_token)

    def sign_out(self, session_id: str) -> None:
        """Revoke the session's tokens at GitLab and forget the record (GitLab unreachable:
        the record is forgotten all the same; its tokens expire within two hours)."""
        found = self.record(session_id)
        self.backend.delete(_record_key(session_id))
        if found is None:
            return
        with contextlib.suppress(DshubError):
            oauth.revoke(self.client, found.refresh_token)
            oauth.revoke(self.client, found.access_token)

    def _put(self, session_id: str, record: SessionRecord) -> None:
        sealed = self.cipher.encrypt(json.dumps(asdict(record)).encode("utf-8"))
        self.backend.put(_record_key(session_id), sealed)


def backend_for(redis_url: str | None, data_dir: Path) -> RecordBackend:
    """Redis when the deployment has one, else files under the data directory."""
    if redis_url:
        return RedisRecords(redis_url)
    return FileRecords(data_dir / "oauth-sessions")


EXTENSION = "dshub.oauth_sessions"


def sessions_of(app: Flask) -> OAuthSessions | None:
    """The application's OAuth sessions (None: "Sign in with GitLab" is not configured)."""
    if EXTENSION not in app.extensions:
        settings = settings_of(app)
        found = None
        url, client_id, secret = (
            settings.gitlab_url,
            settings.oauth_client_id,
            settings.oauth_client_secret,
        )
        if url and client_id and secret:
            client = oauth.OAuthClient(
                gitlab_url=url,
                client_id=client_id,
                client_secret=secret,
                redirect_uri=settings.public_url.rstrip("/") + oauth.CALLBACK_PATH,
            )
            backend = backend_for(settings.redis_url, settings.data_dir)
            found = OAuthSessions(client, backend, fernet_for(app.config["SECRET_KEY"]))
        app.extensions[EXTENSION] = found
    sessions: OAuthSessions | None = app.extensions[EXTENSION]
    return sessions
