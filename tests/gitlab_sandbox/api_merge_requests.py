"""`/api/v4/projects/:id/merge_requests`: open, list, read, update, merge, and notes.

Permissions as GitLab: reading merge requests and their notes needs `read_repository`
(Reporter+ on private projects; 403 for a Guest, 404 for a non-member); opening, updating
and merging need Developer+ (`push`), and merging into the default branch — protected on a
new GitLab project — needs Maintainer+. Commenting needs a signed-in user who may read; a
note is edited by its author (or an admin) and deleted by its author or a Maintainer+.
Open, update, close, reopen and merge fire the `Merge Request Hook`.
"""

from __future__ import annotations

from typing import Any

from tests.gitlab_sandbox import merge_requests as mrs
from tests.gitlab_sandbox import permissions
from tests.gitlab_sandbox.gitrepo import CommitError, GitRepo
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    bad_request_error,
    forbidden,
    not_found,
    paginate,
    param_choice,
    param_str,
    require,
    router,
    unauthorized,
)
from tests.gitlab_sandbox.merge_requests import MergeRequest, Note
from tests.gitlab_sandbox.records import User

P = "/api/v4/projects/:id/merge_requests"


def _caller(req: Request) -> User:
    if req.user is None:
        raise unauthorized()
    return req.user


def _project(req: Request, need: str) -> Any:
    if need != "read_repository" and req.user is None:
        raise unauthorized()
    return req.state.find_project(req.path_params["id"], req.user, need)


def _iid(req: Request) -> int:
    raw = req.path_params["merge_request_iid"]
    if not raw.isdigit():
        raise bad_request_error("merge_request_iid is invalid")
    return int(raw)


def _mr(req: Request, project: Any) -> MergeRequest:
    found = mrs.book(req.state).find(project.id, _iid(req))
    if found is None:
        raise not_found("Merge Request")
    return found


def _detail(req: Request, project: Any, mr: MergeRequest, status: int = 200) -> Response:
    return Response(status, mrs.mr_json(req.state, project, mr, detail=True))


# --------------------------------------------------------------------------- merge requests


@router.route("POST", P)
def create_merge_request(req: Request) -> Response:
    """Open a merge request between two branches of the project (Developer+)."""
    project = _project(req, "push")
    require(req, "source_branch", "target_branch", "title")
    source = str(param_str(req, "source_branch"))
    target = str(param_str(req, "target_branch"))
    repo = GitRepo(project.repo_path)
    problems = []
    if repo.branch_sha(source) is None:
        problems.append(f'Source branch "{source}" does not exist')
    if repo.branch_sha(target) is None:
        problems.append(f'Target branch "{target}" does not exist')
    if source == target:
        problems.append("You can't use same project/branch for source and target")
    if problems:
        raise ApiError(400, {"message": problems})
    with req.state.lock:
        records = mrs.book(req.state)
        for other in records.of_project(project.id):
            if other.state == "opened" and (other.source_branch, other.target_branch) == (
                source,
                target,
            ):
                raise ApiError(
                    409,
                    {
                        "message": [
                            "Another open merge request already exists for this source "
                            f"branch: !{other.iid}"
                        ]
                    },
                )
        now = req.state.now()
        mr = MergeRequest(
            id=records.next_id("mr"),
            iid=records.next_id(f"iid:{project.id}"),
            project_id=project.id,
            title=str(param_str(req, "title")),
            description=param_str(req, "description") or "",
            source_branch=source,
            target_branch=target,
            author_id=_caller(req).id,
            created_at=now,
            updated_at=now,
        )
        mrs.refresh_refs(repo, mr)
        records.items[mr.id] = mr
        records.save()
    mrs.fire(req.state, project, mr, _caller(req), "open")
    return _detail(req, project, mr, 201)


@router.route("GET", P)
def list_merge_requests(req: Request) -> Response:
    """The project's merge requests, newest first; `state` filters (opened/closed/merged/all)."""
    project = _project(req, "read_repository")
    state = param_choice(req, "state", ("opened", "closed", "locked", "merged", "all"), "all")
    with req.state.lock:
        items = mrs.book(req.state).of_project(project.id)
        items = [mr for mr in items if state in ("all", mr.state)]
        return paginate(req, items, lambda mr: mrs.mr_json(req.state, project, mr))


@router.route("GET", f"{P}/:merge_request_iid")
def get_merge_request(req: Request) -> Response:
    """One merge request with `diff_refs`, `changes_count` and `merge_commit_sha`."""
    project = _project(req, "read_repository")
    with req.state.lock:
        return _detail(req, project, _mr(req, project))


@router.route("PUT", f"{P}/:merge_request_iid")
def update_merge_request(req: Request) -> Response:
    """Edit title/description/target branch, or `state_event=close|reopen` (Developer+)."""
    project = _project(req, "push")
    event = param_choice(req, "state_event", ("close", "reopen"), None)
    editable = [key for key in ("title", "description", "target_branch") if key in req.params]
    if not editable and event is None:
        raise bad_request_error(
            "assignee_id, assignee_ids, description, labels, milestone_id, remove_source_branch, "
            "state_event, target_branch, title, discussion_locked, squash are missing, "
            "at least one parameter must be provided"
        )
    repo = GitRepo(project.repo_path)
    with req.state.lock:
        records = mrs.book(req.state)
        mr = _mr(req, project)
        if mr.state == "merged" and (event or "target_branch" in editable):
            raise ApiError(405, {"message": "405 Method Not Allowed"})
        changes: dict[str, Any] = {}
        now = req.state.now()
        for key in editable:
            value = param_str(req, key) or ""
            if key == "target_branch" and repo.branch_sha(value) is None:
                raise ApiError(400, {"message": [f'Target branch "{value}" does not exist']})
            if key == "title" and not value:
                raise ApiError(400, {"message": {"title": ["can't be blank"]}})
            if getattr(mr, key) != value:
                changes[key] = {"previous": getattr(mr, key), "current": value}
                setattr(mr, key, value)
        action = "update"
        if event == "close" and mr.state == "opened":
            mr.state, mr.closed_at, mr.closed_by_id = "closed", now, _caller(req).id
            action = "close"
        elif event == "reopen" and mr.state == "closed":
            mr.state, mr.closed_at, mr.closed_by_id = "opened", None, None
            mrs.refresh_refs(repo, mr)
            action = "reopen"
        if changes:
            mr.last_edited_at, mr.last_edited_by_id = now, _caller(req).id
            changes["updated_at"] = {"previous": mr.updated_at, "current": now}
        if "target_branch" in changes:
            mrs.refresh_refs(repo, mr)
        fire = bool(changes) or action != "update"
        if fire:
            mr.updated_at = now
            records.save()
    if fire:
        mrs.fire(req.state, project, mr, _caller(req), action, changes)
    return _detail(req, project, mr)


@router.route("PUT", f"{P}/:merge_request_iid/merge")
def merge_merge_request(req: Request) -> Response:
    """Merge: a merge commit, or a fast-forward when the project's `merge_method` is `ff`.

    401 for a caller who may not merge into the target (Developer+, Maintainer+ for the
    protected default branch), 405 unless open, 406 on conflicts, 409 for a stale `sha`.
    """
    project = _project(req, "read_repository")
    repo = GitRepo(project.repo_path)
    with req.state.lock:
        records = mrs.book(req.state)
        mr = _mr(req, project)
        need = "push_protected" if mr.target_branch == project.default_branch else "push"
        if req.user is None or not permissions.can(req.state, req.user, project, need):
            raise unauthorized()  # GitLab: `unauthorized! unless can_be_merged_by?(user)`
        if mr.state != "opened":
            raise ApiError(405, {"message": "405 Method Not Allowed"})
        source = repo.branch_sha(mr.source_branch)
        target = repo.branch_sha(mr.target_branch)
        if source is None or target is None:
            raise ApiError(405, {"message": "405 Method Not Allowed"})
        wanted = param_str(req, "sha")
        if wanted and wanted != source:
            raise ApiError(409, {"message": "SHA does not match HEAD of source branch"})
        new = _merge(req, project, repo, mr, source, target)
        try:
            repo.update_ref(f"refs/heads/{mr.target_branch}", new, target)
        except CommitError:
            raise ApiError(409, {"message": "Failed to merge: the target branch moved"}) from None
        now = req.state.now()
        mrs.refresh_refs(repo, mr)
        mr.state, mr.merged_at, mr.merged_by_id, mr.updated_at = "merged", now, _caller(req).id, now
        mr.merge_commit_sha = new if new != source else None
        records.save()
    req.state.fire_push(project, _caller(req), [(target, new, f"refs/heads/{mr.target_branch}")])
    mrs.fire(req.state, project, mr, _caller(req), "merge")
    return _detail(req, project, mr)


def _merge(
    req: Request, project: Any, repo: GitRepo, mr: MergeRequest, source: str, target: str
) -> str:
    """The new target commit: `source` itself (fast-forward) or a new merge commit."""
    method = str(project.extra.get("merge_method", "merge"))
    if method == "ff":
        if not repo.is_ancestor(target, source):
            raise ApiError(406, {"message": "Branch cannot be merged"})
        return source
    proc = repo.git("merge-tree", "--write-tree", target, source, check=False)
    if proc.returncode != 0:
        raise ApiError(406, {"message": "Branch cannot be merged"})
    tree = proc.stdout.decode().split("\n", 1)[0].strip()
    message = param_str(req, "merge_commit_message") or (
        f"Merge branch '{mr.source_branch}' into '{mr.target_branch}'\n\n{mr.title}\n\n"
        f"See merge request {project.path_with_namespace}!{mr.iid}"
    )
    user = _caller(req)
    person = {
        "GIT_AUTHOR_NAME": user.name,
        "GIT_AUTHOR_EMAIL": user.email,
        "GIT_COMMITTER_NAME": user.name,
        "GIT_COMMITTER_EMAIL": user.email,
    }
    out = repo.git(
        "commit-tree", tree, "-p", target, "-p", source, input=message.encode(), env=person
    )
    return out.stdout.decode().strip()


# --------------------------------------------------------------------------- notes


def _note(mr: MergeRequest, req: Request) -> Note:
    raw = req.path_params["note_id"]
    for note in mr.notes:
        if raw.isdigit() and note.id == int(raw):
            return note
    raise not_found("Note")


@router.route("GET", f"{P}/:merge_request_iid/notes")
def list_notes(req: Request) -> Response:
    """The MR's notes; `sort` asc|desc (default desc) by `order_by` created_at|updated_at."""
    project = _project(req, "read_repository")
    order = param_choice(req, "order_by", ("created_at", "updated_at"), "created_at")
    sort = param_choice(req, "sort", ("asc", "desc"), "desc")
    with req.state.lock:
        mr = _mr(req, project)
        notes = sorted(
            mr.notes, key=lambda n: (getattr(n, str(order)), n.id), reverse=sort == "desc"
        )
        return paginate(req, notes, lambda n: mrs.note_json(req.state, mr, n))


@router.route("GET", f"{P}/:merge_request_iid/notes/:note_id")
def get_note(req: Request) -> Response:
    """One note of the MR."""
    project = _project(req, "read_repository")
    with req.state.lock:
        mr = _mr(req, project)
        return Response(200, mrs.note_json(req.state, mr, _note(mr, req)))


@router.route("POST", f"{P}/:merge_request_iid/notes")
def create_note(req: Request) -> Response:
    """Comment on the MR (signed in, and allowed to read it)."""
    if req.user is None:
        raise unauthorized()
    project = _project(req, "read_repository")
    require(req, "body")
    with req.state.lock:
        records = mrs.book(req.state)
        mr = _mr(req, project)
        now = req.state.now()
        note = Note(records.next_id("note"), str(param_str(req, "body")), _caller(req).id, now, now)
        mr.notes.append(note)
        records.save()
        return Response(201, mrs.note_json(req.state, mr, note))


@router.route("PUT", f"{P}/:merge_request_iid/notes/:note_id")
def update_note(req: Request) -> Response:
    """Edit a note's body (its author or an admin)."""
    if req.user is None:
        raise unauthorized()
    project = _project(req, "read_repository")
    require(req, "body")
    with req.state.lock:
        records = mrs.book(req.state)
        mr = _mr(req, project)
        note = _note(mr, req)
        if note.author_id != _caller(req).id and not req.user.admin:
            raise forbidden()
        note.body = str(param_str(req, "body"))
        note.updated_at = req.state.now()
        records.save()
        return Response(200, mrs.note_json(req.state, mr, note))


@router.route("DELETE", f"{P}/:merge_request_iid/notes/:note_id")
def delete_note(req: Request) -> Response:
    """Delete a note (its author, a Maintainer+ or an admin)."""
    if req.user is None:
        raise unauthorized()
    project = _project(req, "read_repository")
    with req.state.lock:
        records = mrs.book(req.state)
        mr = _mr(req, project)
        note = _note(mr, req)
        if note.author_id != _caller(req).id and not permissions.can(
            req.state, req.user, project, "admin"
        ):
            raise forbidden()
        mr.notes.remove(note)
        records.save()
    return Response(204)
