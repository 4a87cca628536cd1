"""A thread-safe least-recently-used cache (cachetools' `LRUCache` behind a lock), for facts that
never change once known and for pooled clients.

Instances are owned by their owner (the composition root `dshub.services.Services`, the
resolver), never by a module, so each process (and each test's application) has its own and
`Services.close()` drops it. Used for what is fixed by a commit sha: a dataset's README card
at a commit, the last commit that touched a path up to a commit; and the resolver's object
stores per site.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most `max_entries` answers; the least recently used goes first."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: LRUCache[K, tuple[V]] = LRUCache(
            maxsize=max_entries
        )  # boxed: None is an answer
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def lookup(self, key: K) -> tuple[V] | None:
        """`(answer,)` when `key` is held, else None; marks it recently used."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `key`, evicting the least recently used beyond `max_entries`."""
        with self._lock:
            self._entries[key] = (value,)

    def get_or_make(self, key: K, make: Callable[[], tuple[V, bool]]) -> V:
        """The held answer, else `make()` → (answer, keep): kept only when `keep` (an answer
        that depends on a passing failure is returned but not remembered). Two threads asking
        at once may both make it; the answers are equal."""
        held = self.lookup(key)
        if held is not None:
            return held[0]
        made, keep = make()
        if keep:
            self.put(key, made)
        return made
