"""How dshub's batch presence answer should ask S3: each method of `indexer.data.presence`, timed.

Command: `.venv/bin/python -m bench.ci.presence` (starts its own moto S3 server on loopback).
Per scenario (objects the dataset holds, keys asked, all of them stored) it runs
`check_presence` with each method forced — `head` (parallel HEADs), `list` (the layout's
whole listing), `list-prefixes` (the `<xx>/` prefixes the keys fall in, in parallel) — and
with the cost model's own choice, and prints seconds and S3 requests of each. The methods
alternate their order between rounds; the figure is the median.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from indexer.data.object_ids import ObjectKey, parse_object_key
from indexer.data.presence import check_presence
from indexer.data.storage import Credentials, S3ObjectStore, StorageSite, open_objects
from tests.support import services

METHODS = ("head", "list", "list-prefixes", None)
# (objects stored in the dataset, keys asked): a push proof, validate-storage over a whole
# version, a merge request touching a few pointers of a large dataset.
SCENARIOS = ((1_001, 1_001), (10_000, 10_000), (10_000, 100), (50_000, 1_001))


def _keys(dataset: int, count: int) -> list[str]:
    result = []
    for i in range(count):
        md5 = hashlib.md5(f"{dataset}:{i}".encode()).hexdigest()  # noqa: S324 - content address
        result.append(f"files/md5/{md5[:2]}/{md5[2:]}")
    return result


def _fill(client: Any, prefix: str, keys: list[str]) -> None:
    def put(key: str) -> None:
        client.put_object(Bucket="bench", Key=prefix + key, Body=b"x")

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, keys))


def _timed(store: S3ObjectStore, keys: list[ObjectKey], method: str | None) -> tuple[float, int]:
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    store.client.meta.events.register("before-parameter-build.s3", record)
    try:
        start = time.perf_counter()
        checked = check_presence(store, keys, method)
        seconds = time.perf_counter() - start
    finally:
        store.client.meta.events.unregister("before-parameter-build.s3", record)
    assert not any(part.missing for part in checked), "every key asked is stored"
    return seconds, len(calls)


def main() -> None:
    """Time every method in every scenario and print a table."""
    parser = argparse.ArgumentParser(prog="python -m bench.ci.presence")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-presence-"))
    endpoint, moto = services.start_moto(base / "moto")
    try:
        client = services.moto_client(endpoint)
        client.create_bucket(Bucket="bench")
        site = StorageSite(
            name="bench",
            kind="s3",
            bucket="bench",
            prefix="sites",
            endpoint_url=endpoint,
            region=services.S3_REGION,
            credentials_ref="moto",
        )
        creds = {"moto": Credentials(services.S3_ACCESS_KEY, services.S3_SECRET_KEY)}
        print("objects  keys  " + "  ".join(f"{m or 'chosen'!s:>22}" for m in METHODS))
        for dataset, (stored, asked) in enumerate(SCENARIOS, start=1):
            keys = _keys(dataset, stored)
            _fill(client, site.dataset_prefix(dataset), keys)
            store = open_objects(site, dataset, creds)
            assert isinstance(store, S3ObjectStore)
            wanted = [k for k in map(parse_object_key, keys[:asked]) if k is not None]
            seconds: dict[str | None, list[float]] = {m: [] for m in METHODS}
            requests: dict[str | None, int] = {}
            chosen = check_presence(store, wanted)[0].method
            for number in range(args.rounds):
                order = METHODS if number % 2 == 0 else tuple(reversed(METHODS))
                for method in order:
                    took, calls = _timed(store, wanted, method)
                    seconds[method].append(took)
                    requests[method] = calls
            cells = [
                f"{statistics.median(seconds[m]):7.2f} s {requests[m]:6,} req"
                + (f" ({chosen})" if m is None else "")
                for m in METHODS
            ]
            print(f"{stored:7,} {asked:6,}  " + "  ".join(f"{c:>22}" for c in cells))
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
