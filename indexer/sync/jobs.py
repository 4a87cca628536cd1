"""The job functions RQ workers and the embedded worker run (JSON-serialisable arguments).

Each is a thin wrapper over `indexer.sync.refs` with the process's `SyncContext`. RQ finds a job
by name with JSON arguments, so a job reaches its context through the one process-wide
state allowed: the provider the process installs once (`dshub worker`, the embedded worker:
`dshub.services.Services.install_jobs`) and clears at shutdown. The queue decides when;
these decide what. All are idempotent and safe to run concurrently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from indexer.errors import Unavailable
from indexer.sync import mr_note
from indexer.sync import refs as sync

log = logging.getLogger("dshub.jobs")

_provider: Callable[[], sync.SyncContext] | None = None
_lock = threading.Lock()


def install(provider: Callable[[], sync.SyncContext]) -> None:
    """Make jobs in this process run with the context `provider` returns (built on first use)."""
    global _provider  # noqa: PLW0603 - one provider per process, by design
    with _lock:
        _provider = provider


def clear() -> None:
    """Forget the installed context (the process's services are closing)."""
    global _provider  # noqa: PLW0603 - one provider per process, by design
    with _lock:
        _provider = None


def context() -> sync.SyncContext:
    """The context jobs run with; `Unavailable` when this process installed none."""
    with _lock:
        provider = _provider
    if provider is None:
        raise Unavailable("no job context is installed in this process (start `dshub worker`)")
    return provider()


def sync_project(project_id: int) -> str:
    """Converge a project's dataset facts, default branch and tags with GitLab."""
    return _run("sync_project", lambda: sync.sync_project(context(), int(project_id)))


def sync_ref(project_id: int, ref: str, before: str | None = None, after: str | None = None) -> str:
    """Converge one ref (a tag, or the default branch) with GitLab and the storage site."""
    return _run(
        "sync_ref",
        lambda: sync.sync_ref(context(), int(project_id), str(ref), before, after),
    )


def remove_ref(project_id: int, ref: str) -> str:
    """Remove a ref GitLab deleted (after checking it is really gone)."""
    return _run("remove_ref", lambda: sync.remove_ref(context(), int(project_id), str(ref)))


def remove_project(project_id: int) -> str:
    """Remove a project GitLab deleted (after checking it is really gone)."""
    return _run("remove_project", lambda: sync.remove_project(context(), int(project_id)))


def sync_merge_request(project_id: int, iid: int) -> str:
    """With `DSHUB_MR_NOTES=1`, keep the MR's one data-diff note up to date; else nothing."""
    if not context().mr_notes:
        return f"merge request {project_id}!{iid}: DSHUB_MR_NOTES is off, no data-diff note kept"
    return _run(
        "sync_merge_request",
        lambda: mr_note.sync_note(context(), int(project_id), int(iid)),
    )


def invalidate_permissions(
    project_id: int | None = None, user_id: int | None = None, group_id: int | None = None
) -> str:
    """Drop every cached permission answer (membership or visibility changed)."""
    return _run("invalidate_permissions", lambda: sync.invalidate_permissions(context()))


def reconcile(project_id: int | None = None) -> str:
    """Walk GitLab (every project, or one) and repair any drift in the index."""
    report = sync.reconcile(context(), None if project_id is None else int(project_id))
    outcome = (
        f"seen {report.seen}, synced {report.synced}, removed {report.removed}, "
        f"failed {len(report.failed)}"
    )
    log.info("reconcile finished: %s", outcome, extra={"project_id": project_id})
    return outcome


def _run(name: str, work: Callable[[], str]) -> str:
    outcome = work()
    log.info("%s: %s", name, outcome)
    return outcome
