"""Which jobs an event needs: `route(event)` returns `JobRequest`s, pure and deterministic.

Job functions live in `indexer.sync.jobs` and re-read GitLab, so an event only says *what* may
have changed; `before`/`after` are hints. Job ids are stable per (job, project, ref), e.g.
`sync_ref-15-<sha1 of the ref>`, so
events for the same ref coalesce into one queued job (see `indexer.ingest.queue`).
Refs are passed as full names (`refs/heads/main`, `refs/tags/v1`): a branch and a tag may
share a short name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from indexer.ingest.events import (
    Event,
    GroupEvent,
    IgnoredEvent,
    MemberEvent,
    MergeRequestEvent,
    ProjectEvent,
    PushEvent,
    RefChange,
    ReleaseEvent,
    RepositoryUpdateEvent,
    TagPushEvent,
    UserEvent,
)

JOBS_MODULE = "indexer.sync.jobs"

JobArg = int | str | None


@dataclass(frozen=True)
class JobRequest:
    """One call of a job function: its dotted name, positional arguments and stable id."""

    func: str
    args: tuple[JobArg, ...]
    job_id: str

    @property
    def name(self) -> str:
        """The job function's short name (`sync_ref`)."""
        return self.func.rsplit(".", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, the inverse of `from_dict`."""
        return {"func": self.func, "args": list(self.args), "job_id": self.job_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRequest:
        """Rebuild a request stored with `to_dict`."""
        return cls(str(data["func"]), tuple(data["args"]), str(data["job_id"]))


def dump_jobs(jobs: list[JobRequest]) -> str:
    """Serialise job requests for the journal."""
    return json.dumps([job.to_dict() for job in jobs], separators=(",", ":"))


def load_jobs(text: str) -> list[JobRequest]:
    """Inverse of `dump_jobs`."""
    return [JobRequest.from_dict(item) for item in json.loads(text)]


def _ref_key(ref: str) -> str:
    # Refs may hold any byte git allows; a digest keeps the id short and Redis-key safe.
    return hashlib.sha1(ref.encode("utf-8", "surrogatepass")).hexdigest()  # noqa: S324 - not security


def _job(name: str, args: tuple[JobArg, ...], *key: JobArg) -> JobRequest:
    # RQ accepts only letters, digits, `_` and `-` in job ids.
    suffix = "-".join("any" if part is None else str(part) for part in key)
    return JobRequest(f"{JOBS_MODULE}.{name}", args, f"{name}-{suffix}")


def sync_project_job(project_id: int) -> JobRequest:
    """Re-read a project's metadata (name, path, visibility, default branch)."""
    return _job("sync_project", (project_id,), project_id)


def remove_project_job(project_id: int) -> JobRequest:
    """Drop a project and all its versions from the index."""
    return _job("remove_project", (project_id,), project_id)


def sync_ref_job(project_id: int, ref: str, before: str | None, after: str | None) -> JobRequest:
    """Re-index one branch or tag; the job decides whether the ref matters (default branch)."""
    return _job("sync_ref", (project_id, ref, before, after), project_id, _ref_key(ref))


def remove_ref_job(project_id: int, ref: str) -> JobRequest:
    """Forget one deleted branch or tag."""
    return _job("remove_ref", (project_id, ref), project_id, _ref_key(ref))


def sync_merge_request_job(project_id: int, iid: int) -> JobRequest:
    """Re-read one merge request (for data-diff notes)."""
    return _job("sync_merge_request", (project_id, iid), project_id, iid)


def invalidate_permissions_job(
    project_id: int | None = None, user_id: int | None = None, group_id: int | None = None
) -> JobRequest:
    """Drop cached permissions for a project, a user, a group or a combination."""
    return _job(
        "invalidate_permissions",
        (project_id, user_id, group_id),
        project_id,
        user_id,
        group_id,
    )


def reconcile_job(project_id: int | None = None) -> JobRequest:
    """Compare the index with GitLab (one project, or everything) and repair any drift."""
    return _job("reconcile", (project_id,), "all" if project_id is None else project_id)


def _ref_job(project_id: int, change: RefChange | PushEvent | TagPushEvent) -> JobRequest:
    if change.deleted:
        return remove_ref_job(project_id, change.ref)
    return sync_ref_job(project_id, change.ref, change.before, change.after)


def route(event: Event) -> list[JobRequest]:
    """The jobs `event` needs, without duplicates, in the order they should run."""
    jobs: list[JobRequest] = []
    match event:
        case PushEvent() | TagPushEvent():
            jobs.append(_ref_job(event.project_id, event))
        case ReleaseEvent():
            # The notes live in GitLab's Release, read with the tag: re-sync the tag (a ref
            # at an unchanged commit only has its release fields compared and updated).
            jobs.append(sync_ref_job(event.project_id, event.tag, None, None))
        case RepositoryUpdateEvent():
            jobs.extend(_ref_job(event.project_id, change) for change in event.changes)
        case MergeRequestEvent():
            jobs.append(sync_merge_request_job(event.project_id, event.iid))
        case ProjectEvent(action="destroy"):
            jobs.append(remove_project_job(event.project_id))
        case ProjectEvent(action="update" | "transfer" | "create"):
            # Visibility and inherited membership may have changed (a new project is readable
            # by its namespace's members at once): both must be re-read.
            jobs.append(sync_project_job(event.project_id))
            jobs.append(invalidate_permissions_job(project_id=event.project_id))
        case ProjectEvent():
            jobs.append(sync_project_job(event.project_id))
        case MemberEvent():
            jobs.append(
                invalidate_permissions_job(
                    project_id=event.project_id, user_id=event.user_id, group_id=event.group_id
                )
            )
        case GroupEvent():
            # Projects below the group moved or vanished; the payload does not list them.
            jobs.append(invalidate_permissions_job(group_id=event.group_id))
            jobs.append(reconcile_job())
        case UserEvent():
            jobs.append(invalidate_permissions_job(user_id=event.user_id))
        case IgnoredEvent():
            pass
    unique: dict[str, JobRequest] = {}
    for job in jobs:
        unique.setdefault(job.job_id, job)
    return list(unique.values())
