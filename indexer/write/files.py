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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitlab
import gitlab.exceptions
import requests

from indexer.data.listing_cache import LoggedObjects
from indexer.data.object_ids import ObjectKey, parse_object_key
from indexer.data.pointers import object_key
from indexer.data.presence import check_presence
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
    seconds: dict[str, float] = field(default_factory=dict)  # plan, store, commit
    parent: str | None = None  # the commit the change was made on
    written: dict[str, bytes | None] = field(default_factory=dict)  # path → committed bytes

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


def object_key_of(md5: str) -> ObjectKey:
    """The DVC 3 object key of an md5 (`files/md5/xx/...`)."""
    key = parse_object_key(object_key("", md5, "md5", False))
    if key is None:  # pragma: no cover - object_key always makes a valid key
        raise InvalidInput(f"invalid md5 {md5}")
    return key


Held = Callable[[list[str]], "set[str] | None"]
"""Which of these object keys the site holds, from a cached listing kept true by the object
log (`ListingCache.held`), or None when it cannot say."""


def _store_objects(objects: ObjectStore, request: WriteRequest, held: Held | None) -> None:
    """Store every staged object the site does not hold yet, `STORE_CONCURRENCY` at a time;
    the first failure is raised once all have finished (a failure commits nothing; stored
    objects wait for gc). Which are held is asked once for all — `held`, else the site
    (`check_presence`: a listing of the dataset's prefix when that is cheaper than a HEAD per
    object) — so an object is never rewritten, including those an upload session stored as
    each PUT completed."""
    keys = {md5: object_key_of(md5) for md5 in request.staged}
    present = held([key.key for key in keys.values()]) if held is not None else None
    if present is not None:
        missing = {key.key for key in keys.values()} - present
    else:
        base = objects.store if isinstance(objects, LoggedObjects) else objects
        missing = set()
        for checked in check_presence(base, list(keys.values())):
            missing |= checked.missing
    todo = []
    for md5, staged in request.staged.items():
        if keys[md5].key in missing:
            todo.append((keys[md5], staged))
        else:
            staged.discard()  # content-addressed: these bytes are stored already
    if len(todo) <= 1:
        for key, staged in todo:
            store_verified(objects, key, staged)
        return
    with ThreadPoolExecutor(STORE_CONCURRENCY, thread_name_prefix="dshub-store") as pool:
        futures = [pool.submit(store_verified, objects, key, staged) for key, staged in todo]
    for future in futures:
        future.result()


def _store_manifests(objects: ObjectStore, plan: Plan, staging: Path) -> None:
    for oid, data in plan.manifests:
        key = parse_object_key(object_key("", oid.removesuffix(".dir"), "md5", True))
        if key is None or objects.head(key.key) is not None:
            continue
        store_bytes(objects, key, data, staging)


def write_files(
    project: Any,
    objects: ObjectStore,
    request: WriteRequest,
    staging: Path,
    held: Held | None = None,
) -> WriteResult:
    """Make the change of `request` on `project` (a python-gitlab project of the CALLER's
    client) with bytes in `objects`; `held` answers which objects are stored already (see
    `_store_objects`). See the module docstring for the guarantees."""
    validate_ref(request.branch)
    if request.new_branch:
        validate_ref(request.new_branch)
    clock = _Clock()
    head = _branch_head(project, request.branch)
    try:
        plan = _plan(project, head, objects, request)
        clock.lap("plan")
        if plan.pointers_written > request.pointer_warn and not request.confirm:
            raise TooManyPointers(
                f"this would write {plan.pointers_written} per-file pointers, more than "
                f"{request.pointer_warn} (DSHUB_UPLOAD_POINTER_WARN); upload them as one tracked "
                "directory (layout=directory), or send confirm=true to write them anyway"
            )
        _store_objects(objects, request, held)
        clock.lap("store")
    finally:
        for staged in request.staged.values():
            staged.discard()
    claims = plan.claims
    target = request.new_branch or request.branch
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if not plan.actions:
            return WriteResult(None, target, plan.outcomes, None, attempt, clock.seconds)
        _store_manifests(objects, plan, staging)
        clock.lap("store")
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
            clock.lap("plan")
            _check_claims(claims, plan.claims)
            continue
        except requests.RequestException:
            raise Unavailable(
                "GitLab could not be reached; the bytes are stored, nothing is committed: "
                "retry the request"
            ) from None
        sha = str(commit.id)
        clock.lap("commit")
        result = WriteResult(
            sha, target, plan.outcomes, None, attempt, clock.seconds, head, _written(plan)
        )
        if request.new_branch and request.merge_request:
            result.merge_request = _open_merge_request(project, request)
        return result
    raise WriteConflict("the branch kept moving; nothing was committed, retry")  # pragma: no cover


def _written(plan: Plan) -> dict[str, bytes | None]:
    """What the commit of `plan` wrote: each file's bytes, None for a deleted one."""
    return {
        str(action["file_path"]): (
            None if action["action"] == "delete" else str(action["content"]).encode("utf-8")
        )
        for action in plan.actions
    }


class _Clock:
    """Seconds per phase of a write (added up over re-plans), for `Server-Timing`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


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
