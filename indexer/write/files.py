"""Upload, replace, move and delete a dataset's files: bytes to its site, then ONE commit.

`write_files` is the whole write: plan the change on the branch head (`changes.Workspace`),
refuse what must be refused before anything is stored, store each uploaded object (already
hashed and staged) and each new manifest at its DVC key through the verified path
(`objects.store_verified`), then commit the pointers and `.gitignore` lines with the caller's
python-gitlab client. Each update and delete action carries its file's `last_commit_id`;
GitLab's 400 for a file changed meanwhile (or a lost race on the branch) makes it re-plan
from the new head — shared files are derived again, and if a path this request owns changed
(`Plan.claims`) it is a 409 and nothing is committed. A GitLab failure after the bytes are
stored leaves only unreferenced objects, which gc removes after `min_age_hours`.
"""

from __future__ import annotations

import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import gitlab.exceptions
import requests

from indexer.data.object_ids import parse_object_key
from indexer.data.pointers import object_key
from indexer.data.storage import ObjectStore
from indexer.errors import DshubError, InvalidInput, NotAuthenticated, Unavailable
from indexer.read.resolve import validate_path, validate_ref
from indexer.write.changes import Operations, Outcome, Plan, Workspace
from indexer.write.errors import TooManyPointers, WriteConflict, WriteForbidden
from indexer.write.objects import StagedObject, store_bytes, store_verified
from indexer.write.repository import RepoView

log = logging.getLogger("dshub.write")
MAX_ATTEMPTS = 5
STORE_CONCURRENCY = 8
_RETRYABLE = (
    "has changed since you started editing it",
    "A file with this name already exists",
    "A file with this name doesn't exist",
    "Please refresh and try again",
)


@dataclass
class WriteRequest:
    """One write: where (`branch`, optionally committed to `new_branch`), what, and how."""

    project_id: int
    branch: str
    message: str
    operations: Operations
    new_branch: str | None = None
    merge_request: bool = False
    pointer_warn: int = 100
    confirm: bool = False
    staged: dict[str, StagedObject] = field(default_factory=dict)  # md5 → staged bytes


@dataclass
class WriteResult:
    """What the write did: the commit (None when nothing changed), per-path outcomes."""

    commit: str | None
    branch: str
    outcomes: list[Outcome]
    merge_request: dict[str, Any] | None = None
    attempts: int = 1

    @property
    def unchanged(self) -> bool:
        """True when every file already was as asked: nothing was committed."""
        return self.commit is None


def clean_path(path: str, what: str = "path") -> str:
    """A dataset path as downloads accept it (no traversal, `.git`/`.dvc` internals, control
    characters, backslashes or drive letters); raises `InvalidInput` (400)."""
    try:
        cleaned = validate_path(path.strip("/"))
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc.message}") from None
    first = cleaned.split("/", 1)[0]
    if first in (".git", ".dvc") or any(part == ".git" for part in cleaned.split("/")):
        raise InvalidInput(f"{what} {cleaned!r} is inside git's or DVC's own files")
    return cleaned


def _branch_head(project: Any, branch: str) -> str:
    try:
        return str(project.branches.get(branch).commit["id"])
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code == 404:
            raise WriteConflict(f"branch {branch!r} does not exist") from None
        raise _gitlab_error(exc, f"branch {branch!r}") from None
    except requests.RequestException:
        raise Unavailable("GitLab could not be reached; nothing was written") from None


def _gitlab_error(exc: gitlab.exceptions.GitlabError, what: str) -> DshubError:
    message = str(exc.error_message)
    if exc.response_code == 401:
        return NotAuthenticated("GitLab did not accept the token")
    if exc.response_code == 403:
        reason = message.removeprefix("403 Forbidden - ").removeprefix("403 Forbidden")
        return WriteForbidden(f"GitLab refused {what}: {reason or 'forbidden'}")
    if exc.response_code == 400 and "already exists. Switch to that branch" in message:
        return WriteConflict(f"GitLab refused {what}: {message}")
    if exc.response_code == 400:
        return WriteConflict(f"GitLab refused {what}: {message}")
    return Unavailable(
        f"GitLab answered {exc.response_code} to {what}; the bytes are stored, nothing is "
        "committed: retry the request"
    )


def _plan(project: Any, sha: str, objects: ObjectStore, request: WriteRequest) -> Plan:
    workspace = Workspace(RepoView(project, sha), objects)
    sizes = {md5: staged.size for md5, staged in request.staged.items()}

    def size_of(md5: str) -> int | None:
        return sizes.get(md5) if md5 in sizes else workspace._stored_size(md5)

    workspace.size_of = size_of
    return request.operations.apply(workspace)


def _store_one(objects: ObjectStore, md5: str, staged: StagedObject) -> None:
    key = parse_object_key(object_key("", md5, "md5", False))
    if key is None:  # pragma: no cover - object_key always makes a valid key
        raise InvalidInput(f"invalid md5 {md5}")
    if objects.head(key.key) is not None:
        staged.discard()  # content-addressed: these bytes are stored already
        return
    store_verified(objects, key, staged)


def _store_objects(objects: ObjectStore, request: WriteRequest) -> None:
    """Store every staged object, `STORE_CONCURRENCY` at a time; the first failure is raised
    once all have finished (a failure commits nothing; stored objects wait for gc)."""
    items = list(request.staged.items())
    if len(items) <= 1:
        for md5, staged in items:
            _store_one(objects, md5, staged)
        return
    with ThreadPoolExecutor(STORE_CONCURRENCY, thread_name_prefix="dshub-store") as pool:
        futures = [pool.submit(_store_one, objects, md5, staged) for md5, staged in items]
    for future in futures:
        future.result()


def _store_manifests(objects: ObjectStore, plan: Plan, staging: Path) -> None:
    for oid, data in plan.manifests:
        key = parse_object_key(object_key("", oid.removesuffix(".dir"), "md5", True))
        if key is None or objects.head(key.key) is not None:
            continue
        store_bytes(objects, key, data, staging)


def write_files(
    project: Any, objects: ObjectStore, request: WriteRequest, staging: Path
) -> WriteResult:
    """Make the change of `request` on `project` (a python-gitlab project of the CALLER's
    client) with bytes in `objects`. See the module docstring for the guarantees."""
    validate_ref(request.branch)
    if request.new_branch:
        validate_ref(request.new_branch)
    head = _branch_head(project, request.branch)
    try:
        plan = _plan(project, head, objects, request)
        if plan.pointers_written > request.pointer_warn and not request.confirm:
            raise TooManyPointers(
                f"this would write {plan.pointers_written} per-file pointers, more than "
                f"{request.pointer_warn} (DSHUB_UPLOAD_POINTER_WARN); upload them as one tracked "
                "directory (layout=directory), or send confirm=true to write them anyway"
            )
        _store_objects(objects, request)
    finally:
        for staged in request.staged.values():
            staged.discard()
    claims = plan.claims
    target = request.new_branch or request.branch
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if not plan.actions:
            return WriteResult(None, target, plan.outcomes, attempts=attempt)
        _store_manifests(objects, plan, staging)
        data: dict[str, Any] = {
            "branch": target,
            "commit_message": request.message,
            "actions": plan.actions,
        }
        if request.new_branch:
            data["start_branch"] = request.branch
        try:
            commit = project.commits.create(data)
        except gitlab.exceptions.GitlabCreateError as exc:
            stale = exc.response_code == 400 and any(
                text in str(exc.error_message) for text in _RETRYABLE
            )
            if not stale or request.new_branch or attempt == MAX_ATTEMPTS:
                raise _gitlab_error(exc, f"the commit to {target!r}") from None
            log.info(
                "commit re-derived on a moved branch",
                extra={"project_id": request.project_id, "attempt": attempt},
            )
            head = _branch_head(project, request.branch)
            plan = _plan(project, head, objects, request)
            _check_claims(claims, plan.claims)
            continue
        except requests.RequestException:
            raise Unavailable(
                "GitLab could not be reached; the bytes are stored, nothing is committed: "
                "retry the request"
            ) from None
        sha = str(commit.id)
        result = WriteResult(sha, target, plan.outcomes, attempts=attempt)
        if request.new_branch and request.merge_request:
            result.merge_request = _open_merge_request(project, request)
        return result
    raise WriteConflict("the branch kept moving; nothing was committed, retry")  # pragma: no cover


def _check_claims(first: dict[str, str | None], again: dict[str, str | None]) -> None:
    for key, value in first.items():
        if again.get(key, value) != value:
            path = key.split(":", 1)[1]
            raise WriteConflict(
                f"{path.removesuffix('.dvc')} was changed by another commit while this one was "
                "being made; nothing was written — reload and try again"
            )


def _open_merge_request(project: Any, request: WriteRequest) -> dict[str, Any]:
    title = request.message.splitlines()[0] if request.message else "Update data"
    try:
        made = project.mergerequests.create(
            {
                "source_branch": request.new_branch,
                "target_branch": request.branch,
                "title": title,
            }
        )
    except gitlab.exceptions.GitlabError as exc:
        raise _gitlab_error(exc, "the merge request") from None
    attrs = made.asdict()
    return {"iid": attrs.get("iid"), "web_url": attrs.get("web_url")}


def upload_path(folder: str, filename: str) -> str:
    """The dataset path of an uploaded file: its (validated) name below `folder`."""
    name = clean_path(filename, "file name")
    return posixpath.join(folder, name) if folder else name
