"""indexer.gc.collect: what may be deleted, decided from a listing, a keep set and object ages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.data.storage import LocalObjectStore, ObjectMeta
from indexer.errors import InvalidInput, Unavailable
from indexer.gc.collect import collect_garbage, object_id, plan_gc

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
A = "0123456789abcdef0123456789abcdef"
B = "fedcba9876543210fedcba9876543210"


def _meta(key: str, hours_old: float, size: int = 10) -> ObjectMeta:
    return ObjectMeta(key, size, NOW - timedelta(hours=hours_old))


def test_object_ids_are_read_from_both_remote_layouts() -> None:
    assert object_id(f"files/md5/{A[:2]}/{A[2:]}") == A
    assert object_id(f"{A[:2]}/{A[2:]}.dir") == A + ".dir"
    assert object_id("README") is None
    assert object_id(f"files/md5/{A[:2]}/{A[2:]}.tmp") is None


def test_referenced_young_and_foreign_objects_are_kept() -> None:
    listing = [
        _meta(f"files/md5/{A[:2]}/{A[2:]}", 100),  # referenced
        _meta(f"{A[:2]}/{A[2:]}", 100),  # referenced, legacy layout
        _meta(f"files/md5/{B[:2]}/{B[2:]}", 71.9),  # young
        _meta(f"files/md5/{B[:2]}/{B[2:]}.dir", 72.1, size=5),  # old orphan
        _meta("notes/README", 1000),
    ]
    plan = plan_gc(listing, {A}, min_age_hours=72, now=NOW)
    assert [item.key for item in plan.candidates] == [f"files/md5/{B[:2]}/{B[2:]}.dir"]
    assert (plan.kept_referenced, plan.kept_young, plan.candidate_bytes) == (2, 1, 5)
    assert plan.ignored_keys == ("notes/README",)


@given(
    ages=st.lists(st.floats(min_value=0, max_value=500), min_size=1, max_size=20),
    min_age=st.floats(min_value=0, max_value=200),
)
def test_no_candidate_is_ever_referenced_or_younger_than_the_minimum(
    ages: list[float], min_age: float
) -> None:
    listing = [_meta(f"files/md5/{i:02x}/{i:030x}", age) for i, age in enumerate(ages)]
    keep = {f"{i:02x}{i:030x}" for i in range(0, len(ages), 2)}
    plan = plan_gc(listing, keep, min_age_hours=min_age, now=NOW)
    for item in plan.candidates:
        assert object_id(item.key) not in keep
        assert NOW - item.last_modified >= timedelta(hours=min_age)
    assert len(plan.candidates) + plan.kept_referenced + plan.kept_young == len(listing)


def test_negative_minimum_age_and_bad_keep_entries_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="min_age_hours must be 0 or more"):
        plan_gc([], set(), min_age_hours=-1, now=NOW)
    with pytest.raises(InvalidInput, match="not object ids"):
        collect_garbage(LocalObjectStore(tmp_path), {"../etc/passwd"}, now=NOW)


def test_real_run_deletes_candidates_and_dry_run_deletes_nothing(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    for oid in (A, B):
        path = tmp_path / "files/md5" / oid[:2] / oid[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 3)
    later = datetime.now(UTC) + timedelta(hours=100)
    dry = collect_garbage(store, {A}, now=later)
    assert [item.key for item in dry.plan.candidates] == [
        f"files/md5/{B[:2]}/{B[2:]}"
    ] and not dry.deleted
    assert (tmp_path / "files/md5" / B[:2] / B[2:]).exists()
    real = collect_garbage(store, {A}, now=later, dry_run=False)
    assert [item.key for item in real.deleted] == [
        f"files/md5/{B[:2]}/{B[2:]}"
    ] and real.deleted_bytes == 3
    assert not (tmp_path / "files/md5" / B[:2] / B[2:]).exists()
    assert (tmp_path / "files/md5" / A[:2] / A[2:]).exists()


class _FailingStore:
    def list(self, prefix: str = "") -> Iterator[ObjectMeta]:
        yield _meta(f"files/md5/{B[:2]}/{B[2:]}", 100)

    def delete(self, key: str) -> None:
        raise Unavailable("storage site 'x' is unreachable (EndpointConnectionError)")


def test_a_failed_deletion_is_recorded_and_the_run_goes_on() -> None:
    result = collect_garbage(_FailingStore(), set(), now=NOW, dry_run=False)
    assert result.deleted == []
    assert [error for _, error in result.failed] == [
        "storage site 'x' is unreachable (EndpointConnectionError)"
    ]
