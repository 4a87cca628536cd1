"""Merge requests and their notes: records, persistence, GitLab's JSON and `Merge Request Hook`.

Records live in `<data dir>/merge-requests.json` (written atomically under the state lock),
apart from the main state file. `diff_refs` follow GitLab: `base_sha` is the merge base of
target and source, `start_sha` the target tip and `head_sha` the source tip, recomputed
whenever the source branch moves (a push then fires the hook with `action: update` and
`oldrev`, like `MergeRequests::RefreshService`).
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tests.gitlab_sandbox import entities, push_events
from tests.gitlab_sandbox.gitrepo import GitRepo, commit_title

if TYPE_CHECKING:
    from tests.gitlab_sandbox.state import Project, SandboxState, User

STORE_FILE = "merge-requests.json"
STATE_IDS = {"opened": 1, "closed": 2, "merged": 3, "locked": 4}


@dataclass
class Note:
    """A comment on a merge request (never a system note in the sandbox)."""

    id: int
    body: str
    author_id: int
    created_at: str
    updated_at: str


@dataclass
class MergeRequest:
    """One merge request of a project (same-project source and target)."""

    id: int
    iid: int
    project_id: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author_id: int
    created_at: str
    updated_at: str
    state: str = "opened"
    sha: str | None = None
    base_sha: str | None = None
    start_sha: str | None = None
    merge_commit_sha: str | None = None
    merged_at: str | None = None
    merged_by_id: int | None = None
    closed_at: str | None = None
    closed_by_id: int | None = None
    last_edited_at: str | None = None
    last_edited_by_id: int | None = None
    notes: list[Note] = field(default_factory=list)


class MergeRequestBook:
    """Every merge request of one sandbox, persisted next to its state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.path = state.data_dir / STORE_FILE
        self.items: dict[int, MergeRequest] = {}
        self.counters: dict[str, int] = {}
        if self.path.exists():
            data = json.loads(self.path.read_text())
            self.counters = dict(data.get("counters", {}))
            for raw in data.get("merge_requests", []):
                notes = [Note(**n) for n in raw.pop("notes", [])]
                mr = MergeRequest(**raw, notes=notes)
                self.items[mr.id] = mr

    def next_id(self, kind: str) -> int:
        """The next global id of `kind` (`mr`, `note`) or per-project iid (`iid:<project>`)."""
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return self.counters[kind]

    def save(self) -> None:
        """Write every record atomically (call with the state lock held)."""
        data = {
            "counters": self.counters,
            "merge_requests": [asdict(mr) for mr in self.items.values()],
        }
        tmp = self.path.with_suffix(f".tmp{threading.get_ident()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def of_project(self, project_id: int) -> list[MergeRequest]:
        """The project's merge requests, newest first (GitLab's default order)."""
        found = [mr for mr in self.items.values() if mr.project_id == project_id]
        return sorted(found, key=lambda mr: mr.id, reverse=True)

    def find(self, project_id: int, iid: int) -> MergeRequest | None:
        """The merge request `!iid` of the project, or None."""
        for mr in self.items.values():
            if mr.project_id == project_id and mr.iid == iid:
                return mr
        return None


_BOOKS: weakref.WeakKeyDictionary[SandboxState, MergeRequestBook] = weakref.WeakKeyDictionary()
_BOOKS_LOCK = threading.Lock()


def book(state: SandboxState) -> MergeRequestBook:
    """The merge requests of this sandbox state (loaded on first use)."""
    with _BOOKS_LOCK:
        found = _BOOKS.get(state)
        if found is None:
            found = MergeRequestBook(state)
            _BOOKS[state] = found
        return found


# ------------------------------------------------------------------------------ git facts


def refresh_refs(repo: GitRepo, mr: MergeRequest) -> None:
    """Recompute `sha` and `diff_refs` from the branches as they are now (open MRs only)."""
    source = repo.branch_sha(mr.source_branch)
    target = repo.branch_sha(mr.target_branch)
    mr.sha = source or mr.sha
    mr.start_sha = target or mr.start_sha
    if source and target:
        proc = repo.git("merge-base", target, source, check=False)
        mr.base_sha = proc.stdout.decode().strip() or target


def diff_refs(mr: MergeRequest) -> dict[str, str | None] | None:
    """GitLab's `diff_refs` (null until both branches existed once)."""
    if mr.sha is None:
        return None
    return {"base_sha": mr.base_sha, "head_sha": mr.sha, "start_sha": mr.start_sha}


def changes_count(repo: GitRepo, mr: MergeRequest) -> str:
    """How many files the MR changes, as GitLab's string (`"1000+"` beyond 1000)."""
    if not (mr.base_sha and mr.sha):
        return "0"
    changes = repo.changed_paths(mr.base_sha, mr.sha)
    count = sum(len(v) for v in changes.values())
    return "1000+" if count > 1000 else str(count)


# ------------------------------------------------------------------------------ JSON


def _user(state: SandboxState, user_id: int | None) -> dict[str, Any] | None:
    user = state.users.get(user_id or 0)
    return entities.user_basic(state, user) if user else None


def mr_json(
    state: SandboxState, project: Project, mr: MergeRequest, detail: bool = False
) -> dict[str, Any]:
    """The REST merge request (`detail` adds the single-MR fields such as `diff_refs`)."""
    ref = f"!{mr.iid}"
    body: dict[str, Any] = {
        "id": mr.id,
        "iid": mr.iid,
        "project_id": mr.project_id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "created_at": mr.created_at,
        "updated_at": mr.updated_at,
        "merged_by": _user(state, mr.merged_by_id),
        "merge_user": _user(state, mr.merged_by_id),
        "merged_at": mr.merged_at,
        "closed_by": _user(state, mr.closed_by_id),
        "closed_at": mr.closed_at,
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "user_notes_count": len(mr.notes),
        "upvotes": 0,
        "downvotes": 0,
        "author": _user(state, mr.author_id),
        "assignees": [],
        "assignee": None,
        "reviewers": [],
        "source_project_id": mr.project_id,
        "target_project_id": mr.project_id,
        "labels": [],
        "draft": False,
        "work_in_progress": False,
        "milestone": None,
        "merge_when_pipeline_succeeds": False,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "mergeable" if mr.state == "opened" else "not_open",
        "sha": mr.sha or "",
        "merge_commit_sha": mr.merge_commit_sha,
        "squash_commit_sha": None,
        "discussion_locked": None,
        "should_remove_source_branch": None,
        "force_remove_source_branch": None,
        "prepared_at": mr.created_at,
        "reference": ref,
        "references": {
            "short": ref,
            "relative": ref,
            "full": f"{project.path_with_namespace}{ref}",
        },
        "web_url": f"{project.web_url}/-/merge_requests/{mr.iid}",
        "time_stats": {
            "time_estimate": 0,
            "total_time_spent": 0,
            "human_time_estimate": None,
            "human_total_time_spent": None,
        },
        "squash": False,
        "squash_on_merge": False,
        "task_completion_status": {"count": 0, "completed_count": 0},
        "has_conflicts": False,
        "blocking_discussions_resolved": True,
    }
    if detail:
        body.update(
            {
                "subscribed": False,
                "changes_count": changes_count(GitRepo(project.repo_path), mr),
                "latest_build_started_at": None,
                "latest_build_finished_at": None,
                "first_deployed_to_production_at": None,
                "pipeline": None,
                "head_pipeline": None,
                "diff_refs": diff_refs(mr),
                "merge_error": None,
                "first_contribution": False,
                "user": {"can_merge": True},
            }
        )
    return body


def note_json(state: SandboxState, mr: MergeRequest, note: Note) -> dict[str, Any]:
    """A merge request note, limited to the keys GitLab's `notes.json` schema allows."""
    return {
        "id": note.id,
        "type": None,
        "body": note.body,
        "attachment": None,
        "author": _user(state, note.author_id),
        "created_at": note.created_at,
        "updated_at": note.updated_at,
        "system": False,
        "noteable_id": mr.id,
        "noteable_iid": mr.iid,
        "noteable_type": "MergeRequest",
        "resolvable": False,
        "confidential": False,
        "internal": False,
    }


# ------------------------------------------------------------------------------ hooks


def _last_commit(repo: GitRepo, project: Project, sha: str | None) -> dict[str, Any]:
    info = repo.commit_info(sha) if sha else None
    if info is None:
        return {}
    return {
        "id": info["id"],
        "message": info["message"],
        "title": commit_title(info["message"]),
        "timestamp": str(info["authored_date"]).replace(".000", "", 1),
        "url": f"{project.web_url}/-/commit/{info['id']}",
        "author": {"name": info["author_name"], "email": info["author_email"]},
    }


def hook_payload(
    state: SandboxState,
    project: Project,
    mr: MergeRequest,
    user: User,
    action: str,
    changes: dict[str, Any],
    oldrev: str | None = None,
) -> dict[str, Any]:
    """`Gitlab::HookData::MergeRequestBuilder` output for `action` (open/update/close/merge/reopen)."""
    repo = GitRepo(project.repo_path)
    project_json = state.project_json(project, None, with_access=False)
    attrs = {**push_events.project_hook_attrs(project_json), "ci_config_path": ""}
    source = {k: v for k, v in attrs.items() if k not in ("id", "ci_config_path")}
    attributes: dict[str, Any] = {
        "id": mr.id,
        "iid": mr.iid,
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "source_project_id": mr.project_id,
        "author_id": mr.author_id,
        "assignee_ids": [],
        "assignee_id": None,
        "reviewer_ids": [],
        "title": mr.title,
        "created_at": mr.created_at,
        "updated_at": mr.updated_at,
        "last_edited_at": mr.last_edited_at,
        "last_edited_by_id": mr.last_edited_by_id,
        "milestone_id": None,
        "state_id": STATE_IDS[mr.state],
        "state": mr.state,
        "blocking_discussions_resolved": True,
        "work_in_progress": False,
        "draft": False,
        "first_contribution": False,
        "merge_status": "can_be_merged",
        "target_project_id": mr.project_id,
        "description": mr.description,
        "prepared_at": mr.created_at,
        "total_time_spent": 0,
        "time_change": 0,
        "human_total_time_spent": None,
        "human_time_change": None,
        "human_time_estimate": None,
        "url": f"{project.web_url}/-/merge_requests/{mr.iid}",
        "source": source,
        "target": source,
        "last_commit": _last_commit(repo, project, mr.sha),
        "labels": [],
        "action": action,
        "detailed_merge_status": "mergeable" if mr.state == "opened" else "not_open",
    }
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {
            "id": user.id,
            "name": user.name,
            "username": user.username,
            "avatar_url": entities.avatar_url(state, user),
            "email": "[REDACTED]",
        },
        "project": attrs,
        "repository": {
            "name": attrs["name"],
            "url": attrs["url"],
            "description": attrs["description"],
            "homepage": attrs["homepage"],
        },
        "object_attributes": attributes,
        "labels": [],
        "changes": changes,
        "assignees": [],
        "reviewers": [],
    }


def fire(
    state: SandboxState,
    project: Project,
    mr: MergeRequest,
    user: User,
    action: str,
    changes: dict[str, Any] | None = None,
    oldrev: str | None = None,
) -> None:
    """Queue the `Merge Request Hook` for project hooks and system hooks with MR events on."""
    dispatcher = state.webhooks
    if dispatcher is None:
        return
    payload = hook_payload(state, project, mr, user, action, changes or {}, oldrev)
    dispatcher.project_event(project, payload, "merge_requests_events")
    dispatcher.system_event(payload, "merge_requests_events")


def refresh_after_push(
    state: SandboxState, project: Project, user: User, updates: list[tuple[str, str, str]]
) -> None:
    """A push moved branches: open MRs whose source moved get new diff refs and an update hook."""
    moved = {ref.removeprefix("refs/heads/"): new for _, new, ref in updates}
    pending: list[tuple[MergeRequest, str | None]] = []
    with state.lock:
        records = book(state)
        repo = GitRepo(project.repo_path)
        for mr in records.of_project(project.id):
            if mr.state != "opened" or mr.source_branch not in moved:
                continue
            if set(moved[mr.source_branch]) == {"0"}:
                continue  # the source branch was deleted; GitLab keeps the MR as it was
            oldrev = mr.sha
            refresh_refs(repo, mr)
            if mr.sha != oldrev:
                mr.updated_at = state.now()
                pending.append((mr, oldrev))
        if pending:
            records.save()
    for mr, oldrev in pending:
        fire(state, project, mr, user, "update", {}, oldrev)
