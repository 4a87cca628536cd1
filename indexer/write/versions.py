"""Versions (tags with a GitLab Release), revert and restore — as the caller, in GitLab.

- `create_version`: ONE call to GitLab's Releases API (`tag_name`, `ref`, `tag_message`,
  `description`) makes the annotated tag and the Release whose notes are the message. A
  version is never moved: a name that exists is a 409 saying to make a new version. GitLab
  decides who may (Developer+; tags matching a protected pattern such as `v*`, which new
  datasets protect, need its `create_access_level`, Maintainer).
- `delete_version`: GitLab's tag delete (its Release goes with it); protected tags only
  Maintainers.
- `revert_commit`: GitLab's commit revert on the branch.
- `restore_version`: ONE new commit on the branch whose data pointers (`*.dvc`, `dvc.lock`)
  and `.gitignore` files equal the version's; everything else — the dataset's `.dvc/config`
  (its storage remote), `.gitlab-ci.yml`, README — stays as it is on the branch.

Revert and restore honour the part-1 commit rule: a protected branch (GitLab's 403) is
answered with the way round — `new_branch` (and `merge_request`) proposes the change on a
new branch instead. Nothing here touches the index; the HTTP edge re-indexes after a write.
"""

from __future__ import annotations

import base64
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import gitlab.exceptions
import requests

from indexer.data.pointers import is_pointer_path
from indexer.errors import Conflict, DshubError, InvalidInput, NotFound, Unavailable
from indexer.read.resolve import validate_ref
from indexer.write.changes import Operations
from indexer.write.errors import WriteConflict, WriteForbidden
from indexer.write.files import WriteRequest, _branch_head, _gitlab_error, _open_merge_request
from indexer.write.layout import GITIGNORE
from indexer.write.repository import RepoView

VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
SHA = re.compile(r"[0-9a-fA-F]{7,40}")
PROTECTED_VERSIONS = "v*"  # new datasets protect these tags: only Maintainers create them
MAX_MESSAGE = 10_000
KEPT = (
    "only data pointers (*.dvc, dvc.lock) and .gitignore files were restored; the dataset's "
    ".dvc/config, .gitlab-ci.yml and every other file stay as they are on the branch"
)
NEW_BRANCH_HINT = (
    "send new_branch=<name> (and merge_request=true) to propose the change on a new branch"
)


@dataclass(frozen=True)
class Version:
    """A version as GitLab made it: the tag, its commit and the Release's notes and author."""

    name: str
    commit_sha: str
    message: str
    release_notes: str
    author_username: str
    author_name: str


@dataclass(frozen=True)
class Target:
    """Where a revert or restore commits: `branch`, or `new_branch` started from it (with a
    merge request back when `merge_request`)."""

    branch: str
    new_branch: str | None = None
    merge_request: bool = False

    def check(self) -> None:
        """Both names as git accepts them (400 else)."""
        validate_ref(self.branch)
        if self.new_branch:
            validate_ref(self.new_branch)

    @property
    def name(self) -> str:
        """The branch the commit lands on."""
        return self.new_branch or self.branch


@dataclass
class Revision:
    """What a revert or restore committed (`commit` None: the branch already was so)."""

    commit: str | None
    branch: str
    changed: list[str]
    merge_request: dict[str, Any] | None = None


# --------------------------------------------------------------------------- validation


def check_version_name(name: Any) -> str:
    """A version name: letters, digits, `.`, `_`, `+`, `-`, starting alphanumeric (400 else)."""
    if not isinstance(name, str) or not VERSION_NAME.fullmatch(name):
        raise InvalidInput(
            "a version name is 1-100 letters, digits, '.', '_', '+' or '-', starting with a "
            "letter or digit (e.g. v0.2.0)"
        )
    if SHA.fullmatch(name) and len(name) == 40:
        raise InvalidInput("a version name must not look like a commit sha")
    try:
        return validate_ref(name)
    except InvalidInput as exc:
        raise InvalidInput(f"version name: {exc.message}") from None


def check_sha(sha: Any) -> str:
    """A commit sha, 7-40 hexadecimal characters (400 else)."""
    if not isinstance(sha, str) or not SHA.fullmatch(sha):
        raise InvalidInput("sha must be a commit id: 7 to 40 hexadecimal characters")
    return sha.lower()


def _reason(exc: gitlab.exceptions.GitlabError) -> str:
    message = str(exc.error_message)
    return message.removeprefix("403 Forbidden - ").removeprefix("403 Forbidden") or "forbidden"


def _network(what: str) -> Unavailable:
    return Unavailable(f"GitLab could not be reached while {what}; nothing was changed, retry")


def _tag(project: Any, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = project.tags.get(name).asdict()
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code == 404:
            return None
        raise _gitlab_error(exc, f"reading version {name!r}") from None
    except requests.RequestException:
        raise _network(f"reading version {name!r}") from None
    return found


def _commit_sha(project: Any, ref: str) -> str | None:
    try:
        return str(project.commits.get(ref).id)
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code == 404:
            return None
        raise _gitlab_error(exc, f"reading {ref!r}") from None
    except requests.RequestException:
        raise _network(f"reading {ref!r}") from None


# --------------------------------------------------------------------------- versions


def create_version(project: Any, project_id: int, name: str, ref: str, message: str) -> Version:
    """Tag `ref` as version `name` with a Release whose notes are `message` (one call)."""
    check_version_name(name)
    validate_ref(ref)
    existing = _tag(project, name)
    if existing is not None:
        at = str((existing.get("commit") or {}).get("id") or "")[:12]
        raise Conflict(
            f"version {name} already exists (at {at}); a version is never moved — make a new "
            "version (e.g. the next patch number) for the changed data"
        )
    sha = _commit_sha(project, ref)
    if sha is None:
        raise InvalidInput(f"ref {ref!r} names no branch, tag or commit of dataset {project_id}")
    try:
        release = project.releases.create(
            {
                "tag_name": name,
                "ref": sha,
                "name": name,
                "tag_message": message,
                "description": message,
            }
        )
    except gitlab.exceptions.GitlabCreateError as exc:
        if exc.response_code == 403:
            raise WriteForbidden(
                f"GitLab refused to create version {name}: {_reason(exc)} (versions need the "
                f"Developer role; protected names such as {PROTECTED_VERSIONS} need Maintainer)"
            ) from None
        if exc.response_code == 409:
            raise Conflict(
                f"version {name} already exists; a version is never moved — make a new version"
            ) from None
        if exc.response_code in (400, 422):
            raise InvalidInput(f"GitLab refused version {name}: {exc.error_message}") from None
        raise _gitlab_error(exc, f"creating version {name}") from None
    except requests.RequestException:
        raise _network(f"creating version {name}") from None
    attrs = release.asdict()
    author = attrs.get("author") or {}
    return Version(
        name=name,
        commit_sha=str((attrs.get("commit") or {}).get("id") or sha),
        message=message,
        release_notes=str(attrs.get("description") or ""),
        author_username=str(author.get("username") or ""),
        author_name=str(author.get("name") or ""),
    )


def delete_version(project: Any, project_id: int, name: str) -> None:
    """Delete version `name` (the tag; GitLab drops its Release with it)."""
    check_version_name(name)
    try:
        project.tags.delete(name)
    except gitlab.exceptions.GitlabDeleteError as exc:
        if exc.response_code == 404:
            raise NotFound(f"dataset {project_id} has no version {name}") from None
        if exc.response_code == 403:
            raise WriteForbidden(
                f"GitLab refused to delete version {name}: {_reason(exc)} (protected versions "
                "can be deleted by Maintainers only)"
            ) from None
        raise _gitlab_error(exc, f"deleting version {name}") from None
    except requests.RequestException:
        raise _network(f"deleting version {name}") from None


# --------------------------------------------------------------------------- revert, restore


def _forbidden(exc: gitlab.exceptions.GitlabError, what: str, new_branch: str | None) -> DshubError:
    if exc.response_code == 403:
        hint = "" if new_branch else f"; {NEW_BRANCH_HINT}"
        return WriteForbidden(f"GitLab refused {what}: {_reason(exc)}{hint}")
    return _gitlab_error(exc, what)


def _start_branch(project: Any, branch: str, new_branch: str) -> None:
    try:
        project.branches.create({"branch": new_branch, "ref": branch})
    except gitlab.exceptions.GitlabCreateError as exc:
        if exc.response_code == 400:
            raise WriteConflict(
                f"GitLab refused branch {new_branch!r}: {exc.error_message}; pick another name"
            ) from None
        raise _gitlab_error(exc, f"creating branch {new_branch!r}") from None
    except requests.RequestException:
        raise _network(f"creating branch {new_branch!r}") from None


def _finish(project: Any, revision: Revision, target: Target, title: str) -> Revision:
    if revision.commit and target.new_branch and target.merge_request:
        request = WriteRequest(0, target.branch, title, Operations(), target.new_branch, True)
        revision.merge_request = _open_merge_request(project, request)
    return revision


def revert_commit(project: Any, project_id: int, sha: str, target: Target) -> Revision:
    """GitLab's revert of commit `sha` on the target branch (a new branch is started first)."""
    check_sha(sha)
    target.check()
    _branch_head(project, target.branch)
    if _commit_sha(project, sha) is None:
        raise NotFound(f"dataset {project_id} has no commit {sha}")
    if target.new_branch:
        _start_branch(project, target.branch, target.new_branch)
    try:
        made = project.commits.get(sha, lazy=True).revert(branch=target.name)
    except gitlab.exceptions.GitlabRevertError as exc:
        if exc.response_code == 400:
            raise WriteConflict(
                f"GitLab cannot revert {sha[:12]} on {target.name!r}: {exc.error_message}"
            ) from None
        raise _forbidden(exc, f"the revert on {target.name!r}", target.new_branch) from None
    except requests.RequestException:
        raise _network(f"reverting {sha[:12]}") from None
    if not isinstance(made, dict):
        raise Unavailable("GitLab answered the revert with something other than a commit")
    revision = Revision(str(made["id"]), target.name, [])
    return _finish(project, revision, target, str(made.get("title") or f"Revert {sha[:12]}"))


def _is_data_file(path: str) -> bool:
    if path.split("/", 1)[0] == ".dvc":
        return False
    return is_pointer_path(path) or posixpath.basename(path) == GITIGNORE


def _file_at(project: Any, path: str, sha: str) -> str | None:
    try:
        attrs = project.files.get(path, ref=sha).asdict()
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code == 404:
            return None
        raise _gitlab_error(exc, f"reading {path}") from None
    except requests.RequestException:
        raise _network(f"reading {path}") from None
    return base64.b64decode(attrs.get("content") or "").decode("utf-8")


def _changed_paths(project: Any, base: str, head: str) -> list[str]:
    try:
        result = project.repository_compare(base, head, straight=True)
    except gitlab.exceptions.GitlabError as exc:
        raise _gitlab_error(exc, "comparing the version with the branch") from None
    except requests.RequestException:
        raise _network("comparing the version with the branch") from None
    if not isinstance(result, dict) or result.get("compare_timeout"):
        raise Unavailable("GitLab could not compare the version with the branch in time; retry")
    paths: set[str] = set()
    for diff in result.get("diffs") or []:
        paths.update((str(diff.get("old_path")), str(diff.get("new_path"))))
    return sorted(paths)


def _restore_action(view: RepoView, path: str, wanted: str | None) -> dict[str, Any] | None:
    """The commit action making `path` hold `wanted` (None: absent), or None when it does."""
    current = view.file(path)
    if current is None:
        return (
            None if wanted is None else {"action": "create", "file_path": path, "content": wanted}
        )
    if wanted is None:
        return {"action": "delete", "file_path": path, "last_commit_id": current.last_commit_id}
    if current.content == wanted.encode("utf-8"):
        return None
    return {
        "action": "update",
        "file_path": path,
        "content": wanted,
        "last_commit_id": current.last_commit_id,
    }


def restore_version(
    project: Any, project_id: int, version: str, target: Target, message: str
) -> Revision:
    """ONE commit on the target making its data pointers those of `version` (module doc)."""
    check_version_name(version)
    target.check()
    tag = _tag(project, version)
    if tag is None:
        raise NotFound(f"dataset {project_id} has no version {version}")
    version_sha = str((tag.get("commit") or {}).get("id"))
    head = _branch_head(project, target.branch)
    view = RepoView(project, head)
    actions: list[dict[str, Any]] = []
    for path in _changed_paths(project, head, version_sha):
        if _is_data_file(path):
            action = _restore_action(view, path, _file_at(project, path, version_sha))
            if action is not None:
                actions.append(action)
    if not actions:
        return Revision(None, target.name, [])
    data: dict[str, Any] = {"branch": target.name, "commit_message": message, "actions": actions}
    if target.new_branch:
        data["start_branch"] = target.branch
    try:
        commit = project.commits.create(data)
    except gitlab.exceptions.GitlabCreateError as exc:
        what = f"the restore commit to {target.name!r}"
        raise _forbidden(exc, what, target.new_branch) from None
    except requests.RequestException:
        raise _network(f"restoring version {version}") from None
    revision = Revision(str(commit.id), target.name, [a["file_path"] for a in actions])
    return _finish(project, revision, target, message)
