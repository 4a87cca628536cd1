"""Every fault of `bench.reliability.faults`, once, at small scale, on one shared system.

The system is the harness's (gunicorn, dshub workers, private Redis and PostgreSQL behind
fault proxies, moto S3, the sandbox in a subprocess); each test injects one fault under a
light load and asserts the convergence check: no event lost after `dshub reconcile`, no
object lost or corrupted (every object re-hashed from S3), no dangling pointer, no 5xx
other than dshub's documented 503 — and for the kill faults, that the interrupted transfer
was really cut by the kill and then completed with the right bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.reliability.faults import SCALES, FaultResult, Harness, start_harness

FAULTS = [
    "redis_restart",
    "rq_worker_kill",
    "web_kill_upload",
    "web_kill_download",
    "postgres_restart",
    "gitlab_errors",
    "gitlab_hang",
    "s3_503",
    "s3_slow",
    "hook_disabled",
]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    workdir: Path = tmp_path_factory.mktemp("faults")
    started = start_harness(workdir, SCALES["small"], seed=7)
    try:
        yield started
    finally:
        started.system.stop()


def _assert_converged(result: FaultResult) -> None:
    convergence = result.convergence
    assert convergence.lost_after == [], result.detail
    assert convergence.objects_lost == []
    assert convergence.objects_corrupted == []
    assert convergence.dangling == []
    assert convergence.objects_checked > 0 and convergence.pointers_checked > 0
    assert result.undocumented_5xx == {}, result.detail
    assert result.requests > 0


def test_the_harness_lists_exactly_these_faults(harness: Harness) -> None:
    assert list(harness.faults()) == FAULTS


@pytest.mark.parametrize("name", FAULTS)
def test_fault_loses_nothing(harness: Harness, name: str) -> None:
    result = harness.run(name)
    _assert_converged(result)
    assert result.transfer_ok, result.detail
    if name == "hook_disabled":
        # Changes were made while no hook was there: the events alone left the index behind,
        # and reconcile is what repaired it.
        assert result.convergence.drift_before, "the dropped events left no drift"
    if name == "rq_worker_kill":
        assert result.detail == "killed mid-job"
        assert result.worker_restarts >= 1
