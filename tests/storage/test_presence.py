"""`indexer.data.presence`: which keys a storage site holds, and how the site is asked.

On moto's S3 server every request the store makes is recorded from botocore's own events, so
the tests see exactly which HEADs and listings each path of the cost model makes, and that the
answer is the truth of the bucket whichever path was taken.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from indexer.data import presence
from indexer.data.object_ids import ObjectKey, parse_object_key
from indexer.data.presence import Checked, TooManyKeys, check_presence, choose_method, parse_keys
from indexer.data.storage import (
    Credentials,
    LocalObjectStore,
    S3ObjectStore,
    StorageSite,
    open_objects,
)
from indexer.errors import InvalidInput, Unavailable
from tests.conftest import S3Bucket

PREFIX = "team/data/42/"


def _key(seed: str, legacy: bool = False, head: str | None = None) -> str:
    md5 = hashlib.md5(seed.encode()).hexdigest()
    if head is not None:
        md5 = head + md5[2:]
    return f"{md5[:2]}/{md5[2:]}" if legacy else f"files/md5/{md5[:2]}/{md5[2:]}"


def _parsed(keys: list[str]) -> list[ObjectKey]:
    result = [parse_object_key(key) for key in keys]
    assert all(item is not None for item in result)
    return [item for item in result if item is not None]


class Recorded:
    """The S3 operations a store's client made, with their parameters."""

    def __init__(self, store: S3ObjectStore) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        store.client.meta.events.register("before-parameter-build.s3", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def count(self, name: str) -> int:
        """How many `name` operations (HeadObject, ListObjectsV2) were made."""
        return sum(1 for operation, _ in self.calls if operation == name)

    def listed(self) -> list[str]:
        """The prefixes listed, relative to the dataset's prefix."""
        return [
            params["Prefix"][len(PREFIX) :]
            for operation, params in self.calls
            if operation == "ListObjectsV2"
        ]


@pytest.fixture
def s3_store(s3_bucket: S3Bucket) -> Iterator[tuple[S3ObjectStore, Any]]:
    site = StorageSite(
        name="s3",
        kind="s3",
        bucket=s3_bucket.name,
        prefix="team/data",
        endpoint_url=s3_bucket.endpoint_url,
        region=s3_bucket.region,
        credentials_ref="main",
    )
    creds = {"main": Credentials(s3_bucket.access_key, s3_bucket.secret_key)}
    store = open_objects(site, 42, creds)
    assert isinstance(store, S3ObjectStore)
    client = s3_bucket.client()

    def put(*keys: str) -> None:
        for key in keys:
            client.put_object(Bucket=s3_bucket.name, Key=PREFIX + key, Body=b"x")

    yield store, put


def _missing(checked: list[Checked]) -> set[str]:
    return {key for part in checked for key in part.missing}


@pytest.mark.parametrize(
    ("keys", "prefixes", "estimated", "whole", "method"),
    [
        (1000, 250, 1024, True, "list"),  # a push proof, young dataset: 2 pages, not 63 HEADs
        (10_000, 256, 10_240, True, "list"),  # validate-storage over a whole version
        (100, 85, 10_000, True, "head"),  # an MR touching a few pointers
        (1001, 252, 50_000, True, "head"),
        (200, 2, 2048, True, "list-prefixes"),  # many keys in few prefixes
        (10_000, 256, 1_000_000, True, "head"),
        (1000, 250, 1024, False, "head"),  # the DVC 2 layout is never listed whole
    ],
)
def test_the_cost_model_picks_the_cheapest(
    keys: int, prefixes: int, estimated: int, whole: bool, method: str
) -> None:
    assert choose_method(keys, prefixes, estimated, whole) == method


def test_a_small_layout_is_listed_whole(s3_store: tuple[S3ObjectStore, Any]) -> None:
    store, put = s3_store
    stored = [_key(f"s{i}") for i in range(150)]
    absent = [_key(f"a{i}") for i in range(20)]
    put(*stored, "README", "files/md5/zz-not-an-object")
    calls = Recorded(store)
    checked = check_presence(store, _parsed([*absent, *stored]))
    assert [(part.layout, part.method, part.keys) for part in checked] == [("dvc3", "list", 170)]
    assert _missing(checked) == set(absent)
    assert calls.listed() == ["files/md5/00/", "files/md5/"]
    assert calls.count("HeadObject") == 0


def test_few_keys_are_asked_with_heads_without_estimating(
    s3_store: tuple[S3ObjectStore, Any],
) -> None:
    store, put = s3_store
    stored = [_key("s1"), _key("s2"), _key("s3", head="00")]
    absent = [_key("a1"), _key("a2", head="00")]
    put(*stored)
    calls = Recorded(store)
    checked = check_presence(store, _parsed([*stored, *absent]))
    assert [(part.method, part.keys) for part in checked] == [("head", 5)]
    assert _missing(checked) == set(absent)
    assert calls.count("HeadObject") == 5 and calls.count("ListObjectsV2") == 0


def test_many_keys_in_few_prefixes_list_only_those(
    s3_store: tuple[S3ObjectStore, Any],
) -> None:
    store, put = s3_store
    crowd = [_key(f"c{i}", head="00") for i in range(5)]  # estimated 1,280 objects: 2 pages
    stored = [_key(f"s{i}", head="ab") for i in range(100)]
    absent = [_key(f"a{i}", head="cd") for i in range(100)]
    put(*crowd, *stored, _key("elsewhere", head="ef"))
    calls = Recorded(store)
    checked = check_presence(store, _parsed([*stored, *absent]))
    assert [(part.method, part.keys) for part in checked] == [("list-prefixes", 200)]
    assert _missing(checked) == set(absent)
    assert sorted(calls.listed()) == ["files/md5/00/", "files/md5/ab/", "files/md5/cd/"]
    assert calls.count("HeadObject") == 0


def test_a_probe_cut_short_never_reports_a_stored_key_missing(
    s3_store: tuple[S3ObjectStore, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, put = s3_store
    # Stop the probe after 11 objects (the real cap, 1,000 and more, needs a large bucket).
    monkeypatch.setattr(presence, "PAGE", 10)
    crowd = [f"files/md5/00/{i:030x}" for i in range(15)]
    put(*crowd)
    last = crowd[-1]  # listed after the probe stopped
    absent = [_key(f"a{i}") for i in range(169)]
    calls = Recorded(store)
    checked = check_presence(store, _parsed([last, *absent]))
    assert [part.method for part in checked] == ["head"]
    assert _missing(checked) == set(absent)
    assert calls.count("HeadObject") == 170 and calls.listed() == ["files/md5/00/"]


def test_one_key_is_one_head(s3_store: tuple[S3ObjectStore, Any]) -> None:
    store, put = s3_store
    put(_key("one"))
    calls = Recorded(store)
    assert _missing(check_presence(store, _parsed([_key("one")]))) == set()
    assert _missing(check_presence(store, _parsed([_key("two")]))) == {_key("two")}
    assert calls.count("HeadObject") == 2 and calls.count("ListObjectsV2") == 0


def test_the_dvc_2_layout_is_never_listed_from_the_dataset_root(
    s3_store: tuple[S3ObjectStore, Any],
) -> None:
    store, put = s3_store
    stored = [_key(f"l{i}", legacy=True, head="ab") for i in range(100)]
    absent = [_key(f"m{i}", legacy=True, head="cd") for i in range(69)]
    absent.append(_key("la.dir", legacy=True, head="cd") + ".dir")
    put(*stored, *[_key(f"s{i}") for i in range(5)])
    new = [_key("n1"), _key("n2")]
    calls = Recorded(store)
    checked = check_presence(store, _parsed([*stored, *absent, *new]))
    assert [(part.layout, part.method) for part in checked] == [
        ("dvc2", "list-prefixes"),
        ("dvc3", "head"),
    ]
    assert _missing(checked) == {*absent, *new}
    assert sorted(calls.listed()) == ["00/", "ab/", "cd/"]
    # Even when a whole listing is asked for.
    calls.calls.clear()
    forced = check_presence(store, _parsed([*stored, *absent]), "list")
    assert [(part.layout, part.method) for part in forced] == [("dvc2", "list-prefixes")]
    assert _missing(forced) == set(absent)
    assert "" not in calls.listed()


def test_a_local_site_is_asked_with_stat(tmp_path: Any) -> None:
    store = LocalObjectStore(tmp_path)
    stored = [_key("s1"), _key("s2", legacy=True), _key("s3") + ".dir"]
    for key in stored:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"x")
    absent = [_key("a1"), _key("a2", legacy=True)]
    checked = check_presence(store, _parsed([*stored, *absent]))
    assert {(part.layout, part.method) for part in checked} == {("dvc2", "stat"), ("dvc3", "stat")}
    assert _missing(checked) == set(absent)


def test_an_unreachable_site_is_unavailable_naming_it() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = StorageSite(
        name="gone", kind="s3", bucket="gone", endpoint_url=f"http://127.0.0.1:{port}"
    )
    store = open_objects(site, 42, {})
    for keys in ([_key("one")], [_key("one"), _key("two")]):
        with pytest.raises(Unavailable, match="storage site 'gone' is unreachable"):
            check_presence(store, _parsed(keys))


def test_keys_are_parsed_strictly_and_deduplicated() -> None:
    keys = [_key("a"), _key("b", legacy=True), _key("a")]
    assert [key.key for key in parse_keys(keys)] == keys[:2]
    with pytest.raises(InvalidInput, match=r"^keys must be a list"):
        parse_keys("files/md5/ab/" + "c" * 30)
    with pytest.raises(InvalidInput, match=r"^keys\[1\] 'FILES/md5/"):
        parse_keys([_key("a"), "FILES/md5/ab/" + "c" * 30, 7])
    with pytest.raises(TooManyKeys, match="at most 10000"):
        parse_keys([_key("a")] * 10_001)
