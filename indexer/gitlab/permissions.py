"""Who may read what: a caller's GitLab token turned into the datasets they may read.

GitLab is the only authority. A token is checked with `GET /user`; the private projects
whose repository the user may read (Reporter or more, directly or through groups — GitLab's
rule that Guests do not read private code) come from one paginated project listing. The
answer is cached briefly per token (keyed by a hash, never the token) and dropped early when
a membership, visibility or transfer event bumps the shared generation counter.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import redis

from indexer.errors import NotAuthenticated
from indexer.gitlab.reader import GitLabReader
from indexer.gitlab.tokens import header_safe
from indexer.read.search import Viewer

DEFAULT_TTL = 60.0
GENERATION_KEY = "dshub:permissions:generation"
T = TypeVar("T")


ANONYMOUS = Viewer.anonymous()


class Generation(Protocol):
    """A counter shared by every process; bumping it invalidates every cached answer."""

    def current(self) -> int: ...

    def bump(self) -> None: ...


class RedisGeneration:
    """The generation counter in Redis (production: many processes on many hosts)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def current(self) -> int:
        """The counter's value; -1 when Redis is unreachable (so nothing is served stale)."""
        try:
            value = self.client.get(GENERATION_KEY)
        except redis.RedisError:
            return -1
        return int(value) if value else 0

    def bump(self) -> None:
        """Invalidate every process's cache."""
        self.client.incr(GENERATION_KEY)


class FileGeneration:
    """The generation counter as a file's contents (embedded default: one machine)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[tuple[int, int, int], int] | None = None

    def current(self) -> int:
        """The counter's value (0 before the first bump).

        Asked on every authenticated request, so the file is read again only when a `stat`
        shows it changed (a bump replaces it: a new inode)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return 0
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        seen = self._seen
        if seen is not None and seen[0] == stamp:
            return seen[1]
        try:
            value = int(self.path.read_text(encoding="ascii") or "0")
        except (FileNotFoundError, ValueError):
            return 0
        self._seen = (stamp, value)
        return value

    def bump(self) -> None:
        """Invalidate every process's cache (atomic replace of the counter file)."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(str(self.current() + 1), encoding="ascii")
            tmp.replace(self.path)


@dataclass
class _Entry(Generic[T]):
    value: T
    expires: float
    generation: int


def token_key(token: str, scope: str = "") -> str:
    """The cache key of a token (and an optional scope such as a project): a hash, never the
    token itself."""
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    return f"{digest}:{scope}" if scope else digest


class TokenCache(Generic[T]):
    """Answers GitLab gave about tokens, kept `ttl` seconds and dropped early when the shared
    generation counter moves (a membership, visibility or transfer event). Keys come from
    `token_key`, so no token is ever held. Thread-safe."""

    def __init__(
        self,
        generation: Generation,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self.generation = generation
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._cache: dict[str, _Entry[T]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[T | None, int]:
        """(the cached answer or None, the generation a fresh answer is to be stored with)."""
        generation = self.generation.current()
        now = self.clock()
        with self._lock:
            entry = self._cache.get(key)
        if entry and entry.expires > now and entry.generation == generation >= 0:
            return entry.value, generation
        return None, generation

    def put(self, key: str, value: T, generation: int) -> None:
        """Keep `value` for `ttl` seconds under the generation `get` reported."""
        now = self.clock()
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._evict(now)
            self._cache[key] = _Entry(value, now + self.ttl, generation)

    def forget(self, key: str) -> None:
        """Drop one cached answer."""
        with self._lock:
            self._cache.pop(key, None)

    def _evict(self, now: float) -> None:
        expired = [key for key, entry in self._cache.items() if entry.expires <= now]
        for key in expired:
            del self._cache[key]
        while len(self._cache) >= self.max_entries:
            self._cache.pop(next(iter(self._cache)))


class PermissionResolver:
    """Resolves tokens to `Viewer`s through GitLab, with a short per-token cache."""

    def __init__(
        self,
        reader_for_token: Callable[[str], GitLabReader],
        generation: Generation,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self.reader_for_token = reader_for_token
        self.generation = generation
        self._cache: TokenCache[Viewer] = TokenCache(
            generation, ttl=ttl, clock=clock, max_entries=max_entries
        )

    def resolve(self, token: str | None) -> Viewer:
        """The caller behind `token` (None: anonymous); raises `NotAuthenticated` if invalid."""
        if not token:
            return ANONYMOUS
        key = token_key(token)
        viewer, generation = self._cache.get(key)
        if viewer is not None:
            return viewer
        viewer = self._ask_gitlab(token)
        self._cache.put(key, viewer, generation)
        return viewer

    def _ask_gitlab(self, token: str) -> Viewer:
        reader = self.reader_for_token(token)
        user = reader.current_user()
        readable = frozenset() if user.is_admin else reader.readable_private_project_ids()
        return Viewer(
            user_id=user.id,
            readable_private_ids=readable,
            is_admin=user.is_admin,
            username=user.username,
        )

    def forget(self, token: str) -> None:
        """Drop one token's cached answer (e.g. after GitLab refused it)."""
        self._cache.forget(token_key(token))


def token_from_headers(
    headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None
) -> str | None:
    """The GitLab token of a request: `PRIVATE-TOKEN`, `Authorization: Bearer`, or the
    `tokenGitLab` cookie (the seed's curl example). A malformed Authorization, or a token an
    HTTP header cannot carry (`tokens.header_safe`), is `NotAuthenticated`."""
    headers = {key.lower(): value for key, value in (headers or {}).items()}
    private = headers.get("private-token")
    if private and private.strip():
        return header_safe(private.strip(), "the PRIVATE-TOKEN header")
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise NotAuthenticated("Authorization must be 'Bearer <GitLab token>'")
        return header_safe(value.strip(), "the Bearer token")
    cookie = (cookies or {}).get("tokenGitLab")
    if cookie and cookie.strip():
        return header_safe(cookie.strip(), "the tokenGitLab cookie")
    return None


def generation_for(redis_url: str | None, data_dir: Path) -> Generation:
    """The invalidation counter every process of a deployment shares (Redis, else a file)."""
    if redis_url:
        return RedisGeneration(redis_url)
    return FileGeneration(data_dir / "permissions-generation")
