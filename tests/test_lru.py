"""The composition root's least-recently-used cache (indexer/read/lru.py)."""

from __future__ import annotations

import pytest

from indexer.read.lru import LruCache


def test_keeps_at_most_max_entries_dropping_the_least_recently_used() -> None:
    cache: LruCache[str, int | None] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", None)  # None is an answer, not a miss
    assert cache.lookup("a") == (1,)  # "a" is now the most recently used
    cache.put("c", 3)
    assert cache.lookup("b") is None and len(cache) == 2
    assert cache.lookup("a") == (1,) and cache.lookup("c") == (3,)


def test_get_or_make_keeps_only_what_it_is_told_to_keep() -> None:
    cache: LruCache[str, str | None] = LruCache(8)
    calls: list[str] = []

    def make(value: str | None, keep: bool) -> tuple[str | None, bool]:
        calls.append(str(value))
        return value, keep

    assert cache.get_or_make("k", lambda: make(None, True)) is None
    assert cache.get_or_make("k", lambda: make("other", True)) is None  # held: not made again
    assert cache.get_or_make("gone", lambda: make("failed", False)) == "failed"
    assert cache.get_or_make("gone", lambda: make("fine", True)) == "fine"  # asked again
    assert calls == ["None", "failed", "fine"]


def test_a_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LruCache(0)
