"""The job functions RQ workers and the embedded worker run (JSON-serialisable arguments).

Each is a thin wrapper over `indexer.sync` with the process's `SyncContext`, built once from
the `DSHUB_*` settings (the service token reads GitLab; the index is `DSHUB_INDEX_URL`). The
queue decides when; these decide what. All are idempotent and safe to run concurrently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dshub.config import Settings, load_settings
from indexer import mr_note, sync
from indexer.errors import Unavailable
from indexer.gitlab_reader import GitLabReader
from indexer.permissions import generation_for
from indexer.sites import SiteRegistry
from indexer.storage import load_credentials
from indexer.store import open_store

log = logging.getLogger("dshub.jobs")

_context: sync.SyncContext | None = None
_settings: Settings | None = None
_lock = threading.Lock()


def configure(context: sync.SyncContext | None) -> None:
    """Set (or clear) the context jobs in this process run with; the service does this at start."""
    global _context  # noqa: PLW0603 - one context per process, by design
    with _lock:
        _context = context


def use_settings(settings: Settings) -> None:
    """Build this process's context from `settings` (not the environment) on first use.

    The application calls this so its embedded worker runs jobs with the app's own settings.
    """
    global _context, _settings
    with _lock:
        _settings, _context = settings, None


def context_from_settings(settings: Settings | None = None) -> sync.SyncContext:
    """Build the job context from `settings` (default: the environment's `DSHUB_*`)."""
    settings = settings or load_settings()
    if settings.gitlab_url is None:
        raise Unavailable("DSHUB_GITLAB_URL is not set: jobs cannot read GitLab")
    store = open_store(settings.index_url)
    return sync.SyncContext(
        reader=GitLabReader(settings.gitlab_url, settings.gitlab_token),
        store=store,
        sites=SiteRegistry(settings.index_url).get,
        credentials=load_credentials(settings.storage_credentials_file),
        generation=generation_for(settings.redis_url, settings.data_dir),
        namespaces=settings.namespaces,
    )


def context() -> sync.SyncContext:
    """The process's job context, built on first use."""
    global _context  # noqa: PLW0603 - one context per process, by design
    with _lock:
        if _context is None:
            _context = context_from_settings(_settings)
        return _context


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
    settings = _settings or load_settings()
    if not settings.mr_notes:
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
