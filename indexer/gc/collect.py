"""Garbage collection of one dataset's storage: the single deletion implementation.

Both callers use it: the dvc-gc CI job in direct mode (with the read-write keys) and, later,
dshub's `POST /api/v1/datasets/<id>/gc` in proxy mode. The caller computes the keep set
(every object referenced by any commit, branch or tag of the full history, plus objects of
indexed versions) and hands over a store; this module decides what may go and deletes it.

Rules, in order: a key that is not shaped like a DVC object is never touched; an object whose
id is in the keep set is kept, in either remote layout (DVC 3 `files/md5/xx/...` and the DVC 2
root layout), as `dvc gc -c` does; an object younger than `min_age_hours` is kept, because
bytes reach storage before the commit that references them; everything else is a candidate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from indexer.data.storage import ObjectMeta
from indexer.errors import DshubError, InvalidInput

log = logging.getLogger(__name__)

# `<xx>/<30 hex>` (DVC 2 root layout) or `files/md5/<xx>/<30 hex>` (DVC 3), `.dir` for manifests.
_OBJECT_KEY = re.compile(r"^(?:files/md5/)?([0-9a-f]{2})/([0-9a-f]{30}(?:\.dir)?)$")
_OID = re.compile(r"^[0-9a-f]{32}(?:\.dir)?$")

DEFAULT_MIN_AGE_HOURS = 72.0


class GcStore(Protocol):
    """What gc needs from a storage site: list a dataset's objects and delete one of them."""

    def list(self, prefix: str = "") -> Iterator[ObjectMeta]: ...

    def delete(self, key: str) -> None: ...


def object_id(key: str) -> str | None:
    """The DVC object id (md5, with `.dir` for manifests) a key holds, or None for other keys."""
    match = _OBJECT_KEY.match(key)
    return match.group(1) + match.group(2) if match else None


def validate_keep(keep: Iterable[str]) -> frozenset[str]:
    """Return the keep set as a frozenset, refusing anything that is not an object id."""
    result = frozenset(keep)
    bad = sorted(oid for oid in result if not _OID.match(oid))
    if bad:
        shown = ", ".join(repr(oid) for oid in bad[:5])
        raise InvalidInput(f"keep set holds {len(bad)} entries that are not object ids: {shown}")
    return result


@dataclass(frozen=True)
class GcPlan:
    """What a gc run decided: the deletion candidates and why everything else stays."""

    candidates: tuple[ObjectMeta, ...]
    kept_referenced: int
    kept_young: int
    ignored_keys: tuple[str, ...]

    @property
    def candidate_bytes(self) -> int:
        """Total size of the candidates in bytes."""
        return sum(item.size for item in self.candidates)


@dataclass
class GcResult:
    """The outcome of `collect_garbage`: the plan, and what was deleted or failed."""

    plan: GcPlan
    dry_run: bool
    deleted: list[ObjectMeta] = field(default_factory=list)
    failed: list[tuple[ObjectMeta, str]] = field(default_factory=list)

    @property
    def deleted_bytes(self) -> int:
        """Total size of the deleted objects in bytes."""
        return sum(item.size for item in self.deleted)


def plan_gc(
    listing: Iterable[ObjectMeta],
    keep: Collection[str],
    *,
    min_age_hours: float = DEFAULT_MIN_AGE_HOURS,
    now: datetime | None = None,
) -> GcPlan:
    """Decide which listed objects may be deleted: unreferenced and at least `min_age_hours` old."""
    if min_age_hours < 0:
        raise InvalidInput(f"min_age_hours must be 0 or more (got {min_age_hours})")
    current = now or datetime.now(UTC)
    if current.tzinfo is None:
        raise InvalidInput("now must be timezone-aware")
    cutoff = current - timedelta(hours=min_age_hours)
    candidates: list[ObjectMeta] = []
    ignored: list[str] = []
    referenced = young = 0
    for item in listing:
        oid = object_id(item.key)
        if oid is None:
            ignored.append(item.key)
        elif oid in keep:
            referenced += 1
        elif _aware(item.last_modified) > cutoff:
            young += 1
        else:
            candidates.append(item)
    candidates.sort(key=lambda item: item.key)
    return GcPlan(tuple(candidates), referenced, young, tuple(sorted(ignored)))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def collect_garbage(
    store: GcStore,
    keep: Collection[str],
    *,
    min_age_hours: float = DEFAULT_MIN_AGE_HOURS,
    dry_run: bool = True,
    now: datetime | None = None,
    on_delete: Callable[[ObjectMeta], None] | None = None,
) -> GcResult:
    """List `store`, plan with `plan_gc`, and unless `dry_run` delete each candidate, logging each.

    A failed deletion is recorded in `GcResult.failed` and the run continues with the next one.
    """
    keep_set = validate_keep(keep)
    plan = plan_gc(store.list(), keep_set, min_age_hours=min_age_hours, now=now)
    result = GcResult(plan=plan, dry_run=dry_run)
    if dry_run:
        return result
    for item in plan.candidates:
        try:
            store.delete(item.key)
        except (DshubError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.error("gc: could not delete %s: %s", item.key, message)
            result.failed.append((item, message))
            continue
        log.info("gc: deleted %s (%d bytes)", item.key, item.size)
        result.deleted.append(item)
        if on_delete is not None:
            on_delete(item)
    return result
