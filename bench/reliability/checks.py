"""The convergence check after a run or a fault: nothing lost, nothing corrupted, nothing dangling.

1. Settle: wait until the journal backlog and the RQ queue are empty and no job runs.
2. Events: the index (read straight from PostgreSQL) against GitLab's truth, read through
   python-gitlab by `tests.convergence.gitlab_ops.expected_index` — first as it is (drift:
   what the events alone left behind), then after `dshub reconcile`: every difference left
   is an event lost.
3. Objects: every object under the site's prefix re-hashed from S3 (moto itself, not through
   the proxy) — a key whose bytes do not hash to it is corrupted; every file dshub answered
   as committed must be there — else lost.
4. Pointers: every file of every ref in the index must have its object in the site.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.reliability.system import SITE_PREFIX, System
from bench.reliability.world import World
from indexer.data.pointers import object_key
from indexer.store import open_index
from tests.convergence.gitlab_ops import expected_index
from tests.support.index_snapshot import index_snapshot


@dataclass
class Convergence:
    """The outcome of one check; `problems()` is empty when every promise held."""

    drift_before: list[str] = field(default_factory=list)
    lost_after: list[str] = field(default_factory=list)
    reconcile: str = ""
    settle_seconds: float = 0.0
    reconcile_seconds: float = 0.0
    objects_checked: int = 0
    objects_lost: list[str] = field(default_factory=list)
    objects_corrupted: list[str] = field(default_factory=list)
    pointers_checked: int = 0
    dangling: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Each broken promise, one line each."""
        found = [f"event lost (after reconcile): {line}" for line in self.lost_after]
        found += [f"object lost: {key}" for key in self.objects_lost]
        found += [f"object corrupted: {key}" for key in self.objects_corrupted]
        found += [f"dangling pointer: {line}" for line in self.dangling]
        return found


def settle(system: System, timeout: float = 120.0) -> float:
    """Wait until nothing is journaled, queued or running (twice in a row); seconds waited."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < timeout and quiet < 2:
        busy = any(
            psutil.pid_exists(worker.pid) and psutil.Process(worker.pid).children()
            for worker in system.workers
            if worker.poll() is None
        )
        idle = system.journal_backlog() == 0 and system.queue_length() == 0 and not busy
        quiet = quiet + 1 if idle else 0
        time.sleep(1.0)
    return time.monotonic() - started


def differences(index: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """Each project whose index entry differs from GitLab's truth, said briefly."""
    lines = []
    for pid in sorted(set(index) | set(truth), key=int):
        ours, theirs = index.get(pid), truth.get(pid)
        if ours is None:
            lines.append(f"project {pid}: missing from the index")
            continue
        if theirs is None:
            lines.append(f"project {pid}: in the index, not a dataset in GitLab")
            continue
        facts = [k for k in theirs if k != "refs" and ours.get(k) != theirs[k]]
        if facts:
            lines.append(f"project {pid}: {', '.join(facts)} differ")
        for ref in sorted(set(ours["refs"]) | set(theirs["refs"])):
            a, b = ours["refs"].get(ref), theirs["refs"].get(ref)
            if a is None or b is None:
                lines.append(f"project {pid}: ref {ref} {'missing' if a is None else 'extra'}")
            elif a["commit_sha"] != b["commit_sha"]:
                lines.append(
                    f"project {pid}: ref {ref} at {a['commit_sha'][:8]}, GitLab {b['commit_sha'][:8]}"
                )
            elif a != b:
                missing = len(set(b["files"]) - set(a["files"]))
                extra = len(set(a["files"]) - set(b["files"]))
                lines.append(
                    f"project {pid}: ref {ref} files differ ({missing} missing, {extra} extra)"
                )
    return lines


def _snapshot(system: System) -> dict[str, Any]:
    with open_index(system.index_direct_url) as store:
        return index_snapshot(store)


def check(system: System, world: World, settle_timeout: float = 120.0) -> Convergence:
    """Run the whole check (the system must be healthy again: faults lifted)."""
    result = Convergence()
    result.settle_seconds = settle(system, settle_timeout)
    gl = system.gitlab()
    truth = expected_index(gl)
    result.drift_before = differences(_snapshot(system), truth)
    started = time.monotonic()
    done = system.dshub("reconcile")
    result.reconcile_seconds = time.monotonic() - started
    result.reconcile = (
        (done.stdout + done.stderr).strip().splitlines()[-1:][0]
        if (done.stdout + done.stderr).strip()
        else f"exit {done.returncode}"
    )
    settle(system, settle_timeout)
    truth = expected_index(gl)
    index = _snapshot(system)
    result.lost_after = differences(index, truth)
    _check_objects(system, world, index, result)
    return result


def _check_objects(
    system: System, world: World, index: dict[str, Any], result: Convergence
) -> None:
    s3 = system.s3()
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=system.bucket, Prefix=f"{SITE_PREFIX}/"
    ):
        keys.update(item["Key"] for item in page.get("Contents", []))
    for key in sorted(keys):
        parts = key.split("/")
        if len(parts) < 4 or parts[-4:-2] != ["files", "md5"]:
            continue  # not an object (dshub keeps nothing else there today)
        expected = parts[-2] + parts[-1].removesuffix(".dir")
        body = s3.get_object(Bucket=system.bucket, Key=key)["Body"].read()
        result.objects_checked += 1
        if hashlib.md5(body).hexdigest() != expected:  # noqa: S324 - DVC's id
            result.objects_corrupted.append(key)
    with world.lock:
        stored = list(world.files)
    for item in stored:
        key = object_key(f"{SITE_PREFIX}/{item.project_id}", item.md5, "md5", False)
        if key not in keys:
            result.objects_lost.append(f"{key} ({item.path})")
    for pid, dataset in index.items():
        for ref, entry in dataset["refs"].items():
            for path, (md5, hash_name, _size, _pointer, _in_dir, _status) in entry["files"].items():
                result.pointers_checked += 1
                key = object_key(f"{SITE_PREFIX}/{pid}", md5, hash_name, False)
                if key not in keys:
                    result.dangling.append(f"project {pid} {ref} {path} -> {key}")
