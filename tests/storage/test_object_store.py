"""Storage-site byte access: the same behaviour on a local directory and on S3 (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.data.storage import (
    Credentials,
    LocalObjectStore,
    ObjectMissing,
    S3ObjectStore,
    StorageSite,
    load_credentials,
    open_objects,
)
from indexer.errors import InvalidInput
from tests.conftest import S3Bucket

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB, crosses the 1 MiB chunk size


@pytest.fixture(params=["local", "s3"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[LocalObjectStore | S3ObjectStore]:
    if request.param == "local":
        site = StorageSite(name="disk", kind="local", prefix="sites/a", path=str(tmp_path))
        yield open_objects(site, 42, {})
    else:
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        site = StorageSite(
            name="s3",
            kind="s3",
            bucket=bucket.name,
            prefix="team/data",
            endpoint_url=bucket.endpoint_url,
            region=bucket.region,
            credentials_ref="main",
        )
        creds = {"main": load_credentials_from(tmp_path, bucket)["main"]}
        yield open_objects(site, 42, creds)


def load_credentials_from(tmp_path: Path, bucket: S3Bucket) -> dict[str, Credentials]:
    path = tmp_path / "creds.json"
    path.write_text(
        json.dumps(
            {"main": {"access_key_id": bucket.access_key, "secret_access_key": bucket.secret_key}}
        )
    )
    return load_credentials(path)


def _put(store: LocalObjectStore | S3ObjectStore, tmp_path: Path, key: str, data: bytes) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    store.put_file(key, source)


def test_round_trip_and_head(store: LocalObjectStore | S3ObjectStore, tmp_path: Path) -> None:
    _put(store, tmp_path, "files/md5/ab/cdef", PAYLOAD)
    meta = store.head("files/md5/ab/cdef")
    assert meta is not None and meta.size == len(PAYLOAD)
    assert b"".join(store.read("files/md5/ab/cdef")) == PAYLOAD


def test_ranges_are_exact(store: LocalObjectStore | S3ObjectStore, tmp_path: Path) -> None:
    _put(store, tmp_path, "obj", PAYLOAD)
    assert b"".join(store.read("obj", 10, 19)) == PAYLOAD[10:20]
    assert b"".join(store.read("obj", len(PAYLOAD) - 5)) == PAYLOAD[-5:]
    assert b"".join(store.read("obj", 1_000_000, 1_100_000)) == PAYLOAD[1_000_000:1_100_001]


def test_missing_object_is_named(store: LocalObjectStore | S3ObjectStore) -> None:
    assert store.head("nope") is None
    with pytest.raises(ObjectMissing, match="object nope is missing"):
        b"".join(store.read("nope"))


def test_read_bytes_refuses_oversized_objects(
    store: LocalObjectStore | S3ObjectStore, tmp_path: Path
) -> None:
    _put(store, tmp_path, "big", PAYLOAD)
    with pytest.raises(InvalidInput, match="more than the 1000 allowed"):
        store.read_bytes("big", limit=1000)
    assert store.read_bytes("big", limit=len(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("key", ["../other/x", "/etc/passwd", "a/../../b", "a\\b", "a\x00b", ""])
def test_keys_cannot_escape_the_dataset_prefix(
    store: LocalObjectStore | S3ObjectStore, key: str
) -> None:
    with pytest.raises(InvalidInput):
        store.head(key)


def test_listing_is_confined_to_the_dataset(
    store: LocalObjectStore | S3ObjectStore, tmp_path: Path
) -> None:
    _put(store, tmp_path, "files/md5/aa/1", b"one")
    _put(store, tmp_path, "files/md5/bb/2", b"two!")
    _put(store, tmp_path, "aa/legacy", b"3")
    listed = {meta.key: meta.size for meta in store.list("files/")}
    assert listed == {"files/md5/aa/1": 3, "files/md5/bb/2": 4}
    store.delete("files/md5/aa/1")
    store.delete("files/md5/aa/1")  # deleting twice is fine
    assert {meta.key for meta in store.list()} == {"files/md5/bb/2", "aa/legacy"}


def test_datasets_on_one_site_do_not_see_each_other(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    site = StorageSite(
        name="s3", kind="s3", bucket=s3_bucket.name, prefix="p", endpoint_url=s3_bucket.endpoint_url
    )
    first, second = open_objects(site, 1, {}), open_objects(site, 2, {})
    _put(first, tmp_path, "files/md5/aa/x", b"x")
    assert second.head("files/md5/aa/x") is None
    keys = [o["Key"] for o in s3_bucket.client().list_objects_v2(Bucket=s3_bucket.name)["Contents"]]
    assert keys == ["p/1/files/md5/aa/x"]


def test_credentials_never_show_in_repr(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"k": {"access_key_id": "AKIA1", "secret_access_key": "s3cr3t-v"}}))
    creds = load_credentials(path)
    assert "s3cr3t-v" not in repr(creds)


def test_credentials_file_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("[1, 2]")
    with pytest.raises(InvalidInput, match="must hold a JSON object"):
        load_credentials(path)
    path.write_text("{not json")
    with pytest.raises(InvalidInput, match="not readable JSON"):
        load_credentials(path)


def test_unknown_credentials_reference_is_refused() -> None:
    site = StorageSite(name="s3", kind="s3", bucket="b", credentials_ref="missing")
    with pytest.raises(InvalidInput, match="which the credentials file does not hold"):
        open_objects(site, 1, {})


@pytest.mark.parametrize("move", [False, True])
def test_put_file_stores_small_and_multipart_objects_whole(
    store: LocalObjectStore | S3ObjectStore, tmp_path: Path, move: bool
) -> None:
    big = PAYLOAD * 8  # 10.24 MB: above the 8 MiB single-request threshold on S3
    for key, data in (("files/md5/00/small", PAYLOAD[:100]), ("files/md5/00/big", big)):
        source = tmp_path / f"{key.rsplit('/', 1)[-1]}.part"
        source.write_bytes(data)
        store.put_file(key, source, move=move)
        assert b"".join(store.read(key)) == data
        # `move` lets a local store take the file; S3 never touches the caller's copy.
        assert source.exists() == (not move or isinstance(store, S3ObjectStore))
    assert not [p for p in tmp_path.rglob(".tmp-*")]
