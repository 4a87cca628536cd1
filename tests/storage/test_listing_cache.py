"""Presence answered from a cached listing (`indexer.data.listing_cache`): on moto S3 and a
local site, with the file log and the Redis log; gc deletes, writes of other processes, TTL,
listings of several pages and storage errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from indexer.data.listing_cache import (
    FileObjectLog,
    ListingCache,
    LoggedObjects,
    LogTrimmed,
    ObjectLog,
    RedisObjectLog,
)
from indexer.data.storage import (
    Credentials,
    LocalObjectStore,
    S3ObjectStore,
    StorageSite,
    open_objects,
)
from indexer.gc.collect import collect_garbage
from tests.conftest import S3Bucket
from tests.storage.test_presence import Recorded
from tests.support.services import free_port

PID = 42
OLD = "files/md5/aa/" + "1" * 30
NEW = "files/md5/bb/" + "2" * 30
LEGACY = "cc/" + "3" * 30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LocalObjectStore | S3ObjectStore:
    if request.param == "local":
        site = StorageSite(name="disk", kind="local", prefix="sites", path=str(tmp_path / "site"))
        return open_objects(site, PID, {})
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return _s3(bucket)


def _s3(bucket: S3Bucket) -> S3ObjectStore:
    site = StorageSite(
        name="s3",
        kind="s3",
        bucket=bucket.name,
        prefix="team",
        endpoint_url=bucket.endpoint_url,
        region=bucket.region,
        credentials_ref="main",
    )
    store = open_objects(site, PID, {"main": Credentials(bucket.access_key, bucket.secret_key)})
    assert isinstance(store, S3ObjectStore)
    return store


@pytest.fixture(params=["file", "redis"])
def objects_log(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectLog:
    if request.param == "file":
        return FileObjectLog(tmp_path / "object-log")
    return RedisObjectLog(request.getfixturevalue("redis_url"))


def _put(store: Any, tmp_path: Path, key: str, data: bytes = b"four") -> None:
    source = tmp_path / "object.bin"
    source.write_bytes(data)
    store.put_file(key, source)


def test_present_and_absent_come_from_one_listing(
    store: LocalObjectStore | S3ObjectStore, objects_log: ObjectLog, tmp_path: Path
) -> None:
    _put(store, tmp_path, OLD, b"12345")
    _put(store, tmp_path, LEGACY)
    cache = ListingCache(objects_log)
    recorded = Recorded(store) if isinstance(store, S3ObjectStore) else None
    for _ in range(3):
        meta = cache.head(PID, store, OLD)
        assert meta is not None and meta.size == 5
        assert cache.head(PID, store, LEGACY) is not None
        assert cache.head(PID, store, NEW) is None
    assert cache.listings == 1
    if recorded is not None:
        assert recorded.count("HeadObject") == 0
        assert recorded.count("ListObjectsV2") == 1


def test_a_gc_delete_after_the_listing_is_absent_at_once(
    store: LocalObjectStore | S3ObjectStore, objects_log: ObjectLog, tmp_path: Path
) -> None:
    _put(store, tmp_path, OLD)
    _put(store, tmp_path, NEW)
    workers = [ListingCache(objects_log), ListingCache(objects_log)]  # two processes
    for worker in workers:
        assert worker.head(PID, store, OLD) is not None
    later = datetime.now(UTC) + timedelta(days=30)
    result = collect_garbage(
        LoggedObjects(store, objects_log, PID),
        {"bb" + "2" * 30},
        min_age_hours=1,
        dry_run=False,
        now=later,
    )
    assert [item.key for item in result.deleted] == [OLD]
    assert store.head(OLD) is None
    for worker in workers:
        assert worker.head(PID, store, OLD) is None  # never "present" after the delete
        assert worker.head(PID, store, NEW) is not None
        assert worker.listings == 1  # the log, not a new listing, said so


def test_a_listing_taken_while_a_delete_is_under_way(
    store: LocalObjectStore | S3ObjectStore, objects_log: ObjectLog, tmp_path: Path
) -> None:
    """The position is read after the first log entry and the listing still sees the object:
    the entry written after the delete removes it."""
    _put(store, tmp_path, OLD)
    cache = ListingCache(objects_log)
    go, started = threading.Event(), threading.Event()

    class Slow:  # the site is slow to delete
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def delete(self, key: str) -> None:
            started.set()
            assert go.wait(30)
            store.delete(key)

    deleting = threading.Thread(target=LoggedObjects(Slow(), objects_log, PID).delete, args=(OLD,))
    deleting.start()
    assert started.wait(30)
    assert cache.head(PID, store, OLD) is not None  # listed before the delete: still true
    go.set()
    deleting.join()
    assert store.head(OLD) is None
    assert cache.head(PID, store, OLD) is None
    assert cache.listings == 1


def test_a_write_of_another_process_is_present_with_its_size(
    store: LocalObjectStore | S3ObjectStore, objects_log: ObjectLog, tmp_path: Path
) -> None:
    cache = ListingCache(objects_log)
    assert cache.head(PID, store, NEW) is None
    _put(LoggedObjects(store, objects_log, PID), tmp_path, NEW, b"123456")
    meta = cache.head(PID, store, NEW)
    assert meta is not None and meta.size == 6
    assert cache.listings == 1


def test_changes_behind_dshubs_back_show_after_the_ttl(
    store: LocalObjectStore | S3ObjectStore, tmp_path: Path
) -> None:
    clock = Clock()
    cache = ListingCache(FileObjectLog(tmp_path / "log"), ttl=10, clock=clock)
    assert cache.head(PID, store, NEW) is None
    _put(store, tmp_path, NEW)  # not through dshub: no log entry
    clock.now += 9
    assert cache.head(PID, store, NEW) is None
    clock.now += 2
    assert cache.head(PID, store, NEW) is not None
    assert cache.listings == 2


def test_a_listing_of_several_pages(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = _s3(s3_bucket)
    client = s3_bucket.client()
    keys = [f"files/md5/{n % 256:02x}/{n:030x}" for n in range(1500)]
    for key in keys:
        client.put_object(Bucket=s3_bucket.name, Key=store.base + key, Body=b"x")
    recorded = Recorded(store)
    cache = ListingCache(FileObjectLog(tmp_path / "log"))
    assert all(cache.head(PID, store, key) is not None for key in keys)
    assert cache.head(PID, store, NEW) is None
    assert recorded.count("ListObjectsV2") == 2  # 1,000 + 500
    assert recorded.count("HeadObject") == 0


def test_too_large_a_prefix_is_answered_per_object(
    store: LocalObjectStore | S3ObjectStore, tmp_path: Path
) -> None:
    for n in range(3):
        _put(store, tmp_path, f"files/md5/aa/{n:030x}")
    cache = ListingCache(FileObjectLog(tmp_path / "log"), max_listed=2)
    assert cache.head(PID, store, f"files/md5/aa/{1:030x}") is not None
    assert cache.head(PID, store, NEW) is None
    _put(store, tmp_path, NEW)  # behind dshub's back: a per-object answer sees it
    assert cache.head(PID, store, NEW) is not None


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def test_a_failing_listing_falls_back_to_heads(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = _s3(s3_bucket)
    _put(store, tmp_path, OLD)
    failures: list[str] = []

    def unavailable(request: Any, **_: Any) -> AWSResponse:
        failures.append(request.url)
        body = b"<Error><Code>ServiceUnavailable</Code><Message>slow down</Message></Error>"
        return AWSResponse(request.url, 503, {}, _Raw(body))

    store.client.meta.events.register("before-send.s3.ListObjectsV2", unavailable)
    recorded = Recorded(store)
    cache = ListingCache(FileObjectLog(tmp_path / "log"))
    assert cache.head(PID, store, OLD) is not None
    assert cache.head(PID, store, NEW) is None
    store.delete(OLD)  # even behind dshub's back: a HEAD answers
    assert cache.head(PID, store, OLD) is None
    assert failures and recorded.count("HeadObject") == 3
    assert cache.listings == 1  # not retried at every request


def test_an_unreadable_log_falls_back_to_heads(
    store: LocalObjectStore | S3ObjectStore, tmp_path: Path
) -> None:
    _put(store, tmp_path, OLD)
    cache = ListingCache(RedisObjectLog(f"redis://127.0.0.1:{free_port()}/0"))
    assert cache.head(PID, store, OLD) is not None
    store.delete(OLD)
    assert cache.head(PID, store, OLD) is None


def test_a_delete_is_refused_when_the_log_cannot_be_written(
    store: LocalObjectStore | S3ObjectStore, tmp_path: Path
) -> None:
    _put(store, tmp_path, OLD)
    logged = LoggedObjects(store, RedisObjectLog(f"redis://127.0.0.1:{free_port()}/0"), PID)
    with pytest.raises(Exception, match="could not be recorded") as raised:
        logged.delete(OLD)
    assert getattr(raised.value, "status", None) == 503
    assert store.head(OLD) is not None  # nothing deleted that the log cannot tell


@pytest.fixture(params=["file", "redis"])
def small_log(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectLog:
    """A log that trims itself after a few entries."""
    if request.param == "file":
        return FileObjectLog(tmp_path / "small-log", max_bytes=400)
    return RedisObjectLog(request.getfixturevalue("redis_url"), max_entries=8)


def test_the_log_is_trimmed_and_positions_stay_absolute(small_log: ObjectLog) -> None:
    entries = [f"+files/md5/aa/{i:030d} {i}" for i in range(60)]
    for entry in entries[:30]:
        small_log.append(PID, entry)
    middle = small_log.position(PID)
    for entry in entries[30:]:
        small_log.append(PID, entry)
    end = small_log.position(PID)
    assert end > middle
    assert small_log.since(PID, end) == ([], end)
    if isinstance(small_log, RedisObjectLog):
        assert small_log.client.llen("dshub:objects:42") <= 8
    else:
        assert isinstance(small_log, FileObjectLog)
        assert (small_log.directory / "42.log").stat().st_size <= 400
    with pytest.raises(LogTrimmed):
        small_log.since(PID, middle)  # entries 30.. are partly gone
    # The newest entries are still read from a recent position.
    recent, position = small_log.since(
        PID, end - (1 if isinstance(small_log, RedisObjectLog) else len(entries[-1]) + 1)
    )
    assert recent == [entries[-1]] and position == end


def test_a_listing_behind_a_trimmed_log_lists_again_and_sees_a_delete(
    store: LocalObjectStore | S3ObjectStore, tmp_path: Path, redis_url: str
) -> None:
    small = RedisObjectLog(redis_url, max_entries=4)
    _put(store, tmp_path, OLD)
    cache = ListingCache(small)
    assert cache.head(PID, store, OLD) is not None
    logged = LoggedObjects(store, small, PID)
    for i in range(6):  # other processes' writes push the listing's position off the log
        _put(logged, tmp_path, f"files/md5/dd/{i:030d}")
    logged.delete(OLD)
    assert cache.head(PID, store, OLD) is None  # never "present" after the delete
    assert cache.head(PID, store, "files/md5/dd/" + "5".zfill(30)) is not None
    assert cache.listings == 2  # the trimmed log forced a new listing


def test_many_keys_are_answered_by_one_lookup_and_a_delete_is_never_held(
    store: LocalObjectStore | S3ObjectStore, objects_log: ObjectLog, tmp_path: Path
) -> None:
    _put(store, tmp_path, OLD)
    cache = ListingCache(objects_log)
    recorded = Recorded(store) if isinstance(store, S3ObjectStore) else None
    assert cache.held(PID, store, [OLD, NEW, LEGACY]) == {OLD}
    logged = LoggedObjects(store, objects_log, PID)
    _put(logged, tmp_path, NEW)  # another upload through dshub: in the log
    assert cache.held(PID, store, [OLD, NEW]) == {OLD, NEW}
    logged.delete(OLD)
    assert cache.held(PID, store, [OLD, NEW]) == {NEW}
    assert cache.listings == 1
    if recorded is not None:
        assert recorded.count("HeadObject") == 0
        assert recorded.count("ListObjectsV2") == 1


def test_held_cannot_say_for_too_large_a_prefix(
    store: LocalObjectStore | S3ObjectStore, objects_log: ObjectLog, tmp_path: Path
) -> None:
    _put(store, tmp_path, OLD)
    _put(store, tmp_path, NEW)
    assert ListingCache(objects_log, max_listed=1).held(PID, store, [OLD]) is None
