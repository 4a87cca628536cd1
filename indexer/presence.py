"""Which of a dataset's object keys its storage site holds, answered by the storage itself.

This backs `POST /dvc/<id>/missing`, the batch presence answer of dshub's DVC remote: a CI job
proving that storage holds every object a version references asks once per ten thousand keys
instead of once per object. The index is never consulted (bytes can be lost or pushed without
dshub noticing); only the site is.

How the site is asked (the same cost model as DVC's own `HashFileDB.oids_exist` in
dvc-objects, whose constants come from DVC's measurements on S3; dshub's measurements on moto
are in docs/benchmarks.md):

- a local site: one `stat` per key;
- S3, one key: one HEAD;
- S3, several keys: the layout's size is estimated from its `00/` prefix (count x 256, the
  listing stopped once the count alone decides). Fewer keys than pages a full listing would
  take (weighted x5 above 500,000 objects) → parallel HEADs on a bounded pool; otherwise a
  listing compared against the keys: the whole layout when that is fewer than 256/THREADS
  pages (a few sequential pages beat hundreds of requests), else only the `<xx>/` prefixes the
  keys fall in, in parallel. Listings are streamed; only the wanted keys are held.

The DVC 2 layout lives at the dataset's root, beside `files/`, so it is never listed whole.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from indexer.errors import DshubError, InvalidInput
from indexer.object_ids import ObjectKey, parse_object_key
from indexer.storage import ObjectStore, S3ObjectStore

MAX_KEYS = 10_000
THREADS = 16  # S3 requests in flight per presence request (the client pools 32 connections)
PAGE = 1000  # objects per S3 listing page
PREFIXES = 256  # `<2 hex>/` directories per layout
# dvc-objects' FileSystem.TRAVERSE_THRESHOLD_SIZE and TRAVERSE_WEIGHT_MULTIPLIER: above this
# many objects a listing's size makes it slower than DVC's estimate of its pages.
TRAVERSE_THRESHOLD_SIZE = 500_000
TRAVERSE_WEIGHT = 5
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


def choose_method(keys: int, estimated_objects: int, threads: int = THREADS) -> str:
    """`head`, `list` (the whole layout) or `list-prefixes`, by dvc-objects' cost model."""
    pages = estimated_objects / PAGE
    weight = pages * TRAVERSE_WEIGHT if estimated_objects > TRAVERSE_THRESHOLD_SIZE else pages
    if keys < weight:
        return "head"
    return "list" if pages < PREFIXES / threads else "list-prefixes"


def check_presence(store: ObjectStore, keys: Sequence[ObjectKey]) -> list[Checked]:
    """Ask `store` which of `keys` it holds: one `Checked` per layout among the keys.

    Raises `indexer.errors.Unavailable` (503) when the site cannot answer."""
    by_layout: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        by_layout[DVC2 if key.legacy else DVC3].append(key.key)
    results: list[Checked] = []
    for layout, wanted in sorted(by_layout.items()):
        name = "dvc2" if layout == DVC2 else "dvc3"
        if isinstance(store, S3ObjectStore):
            method, found = _s3_present(store, layout, set(wanted))
        else:
            method, found = "stat", {key for key in wanted if store.head(key) is not None}
        results.append(Checked(name, method, len(wanted), frozenset(set(wanted) - found)))
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


def _s3_present(store: S3ObjectStore, layout: str, wanted: set[str]) -> tuple[str, set[str]]:
    if len(wanted) == 1:
        return "head", _heads(store, wanted)
    probe = f"{layout}00/"
    # Past this many objects in one prefix the estimate already says "HEADs" (dvc-objects'
    # `_max_estimation_size`): stop listing there.
    limit = max(TRAVERSE_THRESHOLD_SIZE, len(wanted) / TRAVERSE_WEIGHT * PAGE) / PREFIXES
    counted = 0
    found: set[str] = set()
    complete = True
    for meta in store.list(probe):
        counted += 1
        if meta.key in wanted:
            found.add(meta.key)
        if counted > limit:
            complete = False
            break
    resolved = {key for key in wanted if key.startswith(probe)} if complete else set()
    rest = wanted - resolved
    method = choose_method(len(wanted), PREFIXES * max(counted, 1))
    if method == "list" and layout == DVC2:
        method = "list-prefixes"  # the DVC 2 layout's root holds every other key as well
    if not rest:
        return method, found
    if method == "head":
        return method, found | _heads(store, rest)
    if method == "list":
        return method, _listed(store, layout, wanted)
    groups: dict[str, set[str]] = defaultdict(set)
    for key in rest:
        groups[key[: len(layout) + 3]].add(key)
    with ThreadPoolExecutor(max_workers=min(THREADS, len(groups))) as pool:
        for part in pool.map(lambda item: _listed(store, *item), sorted(groups.items())):
            found |= part
    return method, found
