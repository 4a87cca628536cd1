"""Which of a dataset's object keys its storage site holds, answered by the storage itself.

This backs `POST /dvc/<id>/missing`, the batch presence answer of dshub's DVC remote: a CI job
proving that storage holds every object a version references asks once per ten thousand keys
instead of once per object. The index is never consulted (bytes can be lost or pushed without
dshub noticing); only the site is.

How the site is asked (a cost model in the spirit of DVC's own `HashFileDB.oids_exist`,
weighted by measurement: bench/ci/presence.py, docs/benchmarks.md):

- a local site: one `stat` per key;
- S3: costs are counted in HEAD latencies. `n` keys by parallel HEADs cost n/THREADS; a
  listing request costs PAGE_WEIGHT. Few keys (HEADs cheaper than one listing request) are
  HEADed at once. Otherwise the layout's size is estimated from its `00/` prefix (count x
  256, the listing stopped once it alone costs as much as the HEADs would) and the cheapest
  of three is taken: parallel HEADs; the whole layout listed page by page; or only the
  `<xx>/` prefixes the keys fall in, listed in parallel. Listings are streamed and compared
  against the keys; nothing else is held.

DVC's own model counts a listing page like one HEAD and ignores that HEADs run in parallel;
measured on moto it listed 10,000 objects to answer for 100 keys (3.1 s against 0.3 s of
HEADs). The DVC 2 layout lives at the dataset's root, beside `files/`, so it is never listed
whole.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from indexer.data.object_ids import ObjectKey, parse_object_key
from indexer.data.storage import ObjectStore, S3ObjectStore
from indexer.errors import DshubError, InvalidInput

MAX_KEYS = 10_000
THREADS = 16  # S3 requests in flight per presence request (the client pools 32 connections)
PAGE = 1000  # objects per S3 listing page
PREFIXES = 256  # `<2 hex>/` directories per layout
# One listing request takes about as long as ten HEADs: measured on moto, a listing of a
# small prefix 38 ms against 3-4 ms per HEAD; a full page of 1,000 keys far more.
PAGE_WEIGHT = 10
DVC3 = "files/md5/"
DVC2 = ""


class TooManyKeys(DshubError):
    """A presence request with more keys than one request may carry."""

    status = 413
    code = "too_many_keys"
    exit_code = 2


@dataclass(frozen=True)
class Checked:
    """How one layout's keys were checked, and which of them the site does not hold."""

    layout: str  # "dvc3" | "dvc2"
    method: str  # "stat" | "head" | "list" | "list-prefixes"
    keys: int
    missing: frozenset[str]


def _shown(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_keys(raw: object) -> list[ObjectKey]:
    """The distinct object keys of a request's `keys`, in order; `InvalidInput` naming the first
    entry that is not exactly a DVC object key, `TooManyKeys` above `MAX_KEYS`."""
    if not isinstance(raw, list):
        raise InvalidInput('keys must be a list of object keys, like ["files/md5/ab/cdef..."]')
    if len(raw) > MAX_KEYS:
        raise TooManyKeys(
            f"{len(raw)} keys in one request; at most {MAX_KEYS} are checked per request: "
            "send them in several requests"
        )
    parsed: dict[str, ObjectKey] = {}
    for position, item in enumerate(raw):
        key = parse_object_key(item) if isinstance(item, str) else None
        if key is None:
            raise InvalidInput(
                f"keys[{position}] {_shown(item)} is not a DVC object key "
                "(files/md5/<2 hex>/<30 hex>[.dir] or <2 hex>/<30 hex>[.dir], lowercase); "
                "nothing was checked"
            )
        parsed.setdefault(key.key, key)
    return list(parsed.values())


def method_costs(
    keys: int, prefixes: int, estimated_objects: int, whole: bool = True
) -> dict[str, int]:
    """What each method costs, in HEAD latencies, for `keys` keys in `prefixes` distinct
    `<xx>/` prefixes of a layout of about `estimated_objects` objects (`whole`: the layout
    may be listed whole)."""
    pages = max(1, math.ceil(estimated_objects / PAGE))
    per_prefix = max(1, math.ceil(estimated_objects / PREFIXES / PAGE))
    costs = {"head": math.ceil(keys / THREADS)}
    if whole:
        costs["list"] = PAGE_WEIGHT * pages
    costs["list-prefixes"] = PAGE_WEIGHT * math.ceil(prefixes * per_prefix / THREADS)
    return costs


def choose_method(keys: int, prefixes: int, estimated_objects: int, whole: bool = True) -> str:
    """The cheapest of `method_costs` (`head` on a tie, then `list`)."""
    costs = method_costs(keys, prefixes, estimated_objects, whole)
    return min(costs, key=lambda method: costs[method])


def check_presence(
    store: ObjectStore, keys: Sequence[ObjectKey], method: str | None = None
) -> list[Checked]:
    """Ask `store` which of `keys` it holds: one `Checked` per layout among the keys.

    `method` overrides the cost model's choice on S3 (for measurements: bench/ci/presence.py).
    Raises `indexer.errors.Unavailable` (503) when the site cannot answer."""
    by_layout: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        by_layout[DVC2 if key.legacy else DVC3].append(key.key)
    results: list[Checked] = []
    for layout, wanted in sorted(by_layout.items()):
        name = "dvc2" if layout == DVC2 else "dvc3"
        if isinstance(store, S3ObjectStore):
            how, found = _s3_present(store, layout, set(wanted), method)
        else:
            how, found = "stat", {key for key in wanted if store.head(key) is not None}
        results.append(Checked(name, how, len(wanted), frozenset(set(wanted) - found)))
    return results


def _heads(store: ObjectStore, keys: Iterable[str]) -> set[str]:
    ordered = sorted(keys)
    if len(ordered) <= 1:
        return {key for key in ordered if store.head(key) is not None}
    with ThreadPoolExecutor(max_workers=min(THREADS, len(ordered))) as pool:
        answers = list(pool.map(store.head, ordered))
    return {key for key, meta in zip(ordered, answers, strict=True) if meta is not None}


def _listed(store: ObjectStore, prefix: str, wanted: set[str]) -> set[str]:
    return {meta.key for meta in store.list(prefix) if meta.key in wanted}


def _probe(store: ObjectStore, prefix: str, wanted: set[str], limit: int) -> tuple[int, set[str]]:
    """Objects under `prefix` (counting stops past `limit`), and the wanted keys among them."""
    counted = 0
    found: set[str] = set()
    for meta in store.list(prefix):
        counted += 1
        if meta.key in wanted:
            found.add(meta.key)
        if counted > limit:
            break
    return counted, found


def _s3_present(
    store: S3ObjectStore, layout: str, wanted: set[str], forced: str | None
) -> tuple[str, set[str]]:
    heads = math.ceil(len(wanted) / THREADS)
    if forced is None and heads <= PAGE_WEIGHT:
        return "head", _heads(store, wanted)  # cheaper than the estimate's own listing
    probe = f"{layout}00/"
    limit = PAGE * max(1, heads // PAGE_WEIGHT)  # past this, probing costs what HEADs would
    counted, found = _probe(store, probe, wanted, limit)
    complete = counted <= limit
    resolved = {key for key in wanted if key.startswith(probe)} if complete else set()
    rest = wanted - resolved
    groups: dict[str, set[str]] = defaultdict(set)
    for key in rest:
        groups[key[: len(layout) + 3]].add(key)
    if forced is not None:
        method = forced
    elif not complete:
        method = "head"  # so large a layout is never worth listing for these keys
    else:
        estimated = PREFIXES * max(counted, 1)
        method = choose_method(len(rest), len(groups), estimated, whole=layout != DVC2)
    if method == "list" and layout == DVC2:
        method = "list-prefixes"  # the DVC 2 layout's root holds every other key as well
    if not rest:
        return method, found
    if method == "head":
        return method, found | _heads(store, rest)
    if method == "list":
        return method, _listed(store, layout, wanted)
    with ThreadPoolExecutor(max_workers=min(THREADS, len(groups))) as pool:
        for part in pool.map(lambda item: _listed(store, *item), sorted(groups.items())):
            found |= part
    return method, found
