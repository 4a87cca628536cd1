"""Builders of GitLab's push, tag push and repository_update payloads (pure, no I/O but git reads).

The shapes follow `Gitlab::DataBuilder::Push` and `Gitlab::DataBuilder::Repository`: one push
payload per changed ref with `commits` holding the newest 20 commits oldest first and the
real `total_commits_count`; a deleted ref has an all-zero `after`, `checkout_sha: null` and no
commits; an annotated tag's `after` is the tag object and `checkout_sha` the commit it points
to. System hooks receive the same push data; `repository_update` is system-hook only.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tests.gitlab_sandbox.gitrepo import ZERO_SHA, GitRepo

COMMITS_LIMIT = 20
VISIBILITY_LEVEL = {"private": 0, "internal": 10, "public": 20}


def is_blank(sha: str | None) -> bool:
    """True for GitLab's blank SHA (all zeros, SHA-1 or SHA-256 length) or a missing value."""
    return not sha or set(sha) == {"0"}


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def avatar_url(user: Any) -> str:
    """The user's avatar URL, GitLab's Gravatar default when none is set (never fetched)."""
    explicit = _get(user, "avatar_url")
    if explicit:
        return str(explicit)
    digest = hashlib.md5(str(_get(user, "email", "")).lower().encode(), usedforsecurity=False)
    return f"https://www.gravatar.com/avatar/{digest.hexdigest()}?s=80&d=identicon"


def project_hook_attrs(project_json: dict[str, Any]) -> dict[str, Any]:
    """`Project#hook_attrs`: the `project` object of push payloads, from the API project JSON."""
    if "git_http_url" in project_json:
        return dict(project_json)
    namespace = project_json.get("namespace") or {}
    ssh = project_json.get("ssh_url_to_repo") or ""
    http = project_json.get("http_url_to_repo") or ""
    web = project_json.get("web_url") or ""
    return {
        "id": project_json["id"],
        "name": project_json.get("name", ""),
        "description": project_json.get("description") or "",
        "web_url": web,
        "avatar_url": project_json.get("avatar_url"),
        "git_ssh_url": ssh,
        "git_http_url": http,
        "namespace": namespace.get("name", "") if isinstance(namespace, dict) else str(namespace),
        "visibility_level": VISIBILITY_LEVEL.get(str(project_json.get("visibility")), 0),
        "path_with_namespace": project_json.get("path_with_namespace", ""),
        "default_branch": project_json.get("default_branch"),
        "homepage": web,
        "url": ssh,
        "ssh_url": ssh,
        "http_url": http,
    }


def _repository_attrs(project: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "name",
        "url",
        "description",
        "homepage",
        "git_http_url",
        "git_ssh_url",
        "visibility_level",
    )
    return {key: project.get(key) for key in keys}


def commit_entry(
    info: dict[str, Any], changes: dict[str, list[str]], web_url: str
) -> dict[str, Any]:
    """One element of a push payload's `commits` (from `GitRepo.commit_info` + changed files)."""
    stamp = str(info["authored_date"])
    # GitLab renders hook timestamps without milliseconds: 2011-12-12T14:27:31+02:00.
    timestamp = stamp.replace(".000", "", 1)
    return {
        "id": info["id"],
        "message": info["message"],
        "title": info["title"],
        "timestamp": timestamp,
        "url": f"{web_url}/-/commit/{info['id']}",
        "author": {"name": info["author_name"], "email": info["author_email"]},
        "added": list(changes.get("added", [])),
        "modified": list(changes.get("modified", [])),
        "removed": list(changes.get("removed", [])),
    }


def _base(
    kind: str,
    project_json: dict[str, Any],
    user: Any,
    ref: str,
    *,
    before: str,
    after: str,
    checkout_sha: str | None,
    message: str | None,
    commits: list[dict[str, Any]],
    total_commits_count: int,
    ref_protected: bool,
) -> dict[str, Any]:
    project = project_hook_attrs(project_json)
    return {
        "object_kind": kind,
        "event_name": kind,
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": ref_protected,
        "checkout_sha": checkout_sha,
        "message": message,
        "user_id": _get(user, "id"),
        "user_name": _get(user, "name"),
        "user_username": _get(user, "username"),
        "user_email": _get(user, "public_email") or "",
        "user_avatar": avatar_url(user),
        "project_id": project["id"],
        "project": project,
        # GitLab keeps the newest 20 commits, oldest first ("Get latest 20 commits ASC").
        "commits": commits[-COMMITS_LIMIT:],
        "total_commits_count": total_commits_count,
        "push_options": {},
        "repository": _repository_attrs(project),
    }


def build_push(
    project_json: dict[str, Any],
    user: Any,
    ref: str,
    before: str,
    after: str,
    commits: list[dict[str, Any]],
    total_commits_count: int,
    *,
    ref_protected: bool = False,
) -> dict[str, Any]:
    """A branch push payload; `commits` are entries oldest first (only the newest 20 are kept).

    Deletion (all-zero `after`) always has `checkout_sha: null`, no commits and a count of 0.
    """
    deleted = is_blank(after)
    return _base(
        "push",
        project_json,
        user,
        ref,
        before=before,
        after=after,
        checkout_sha=None if deleted else after,
        message=None,
        commits=[] if deleted else commits,
        total_commits_count=0 if deleted else total_commits_count,
        ref_protected=ref_protected,
    )


def build_tag_push(
    project_json: dict[str, Any],
    user: Any,
    ref: str,
    before: str,
    after: str,
    *,
    checkout_sha: str | None,
    message: str | None,
    commits: list[dict[str, Any]],
    ref_protected: bool = False,
) -> dict[str, Any]:
    """A tag push payload: `after` is the tag object for annotated tags, `checkout_sha` the commit.

    Deletion (all-zero `after`): `checkout_sha` and `message` null, no commits.
    """
    deleted = is_blank(after)
    return _base(
        "tag_push",
        project_json,
        user,
        ref,
        before=before,
        after=after,
        checkout_sha=None if deleted else checkout_sha,
        message=None if deleted else message,
        commits=[] if deleted else commits,
        total_commits_count=0 if deleted else len(commits),
        ref_protected=ref_protected,
    )


def build_repository_update(
    project_json: dict[str, Any], user: Any, updates: list[tuple[str, str, str]]
) -> dict[str, Any]:
    """The system hook `repository_update`: one per push, listing every changed ref."""
    project = project_hook_attrs(project_json)
    return {
        "event_name": "repository_update",
        "user_id": _get(user, "id"),
        "user_name": _get(user, "name"),
        "user_email": _get(user, "email") or "",
        "user_avatar": avatar_url(user),
        "project_id": project["id"],
        "project": project,
        "changes": [{"before": old, "after": new, "ref": ref} for old, new, ref in updates],
        "refs": [ref for _, _, ref in updates],
    }


def push_payload(
    repo: GitRepo,
    project_json: dict[str, Any],
    user: Any,
    update: tuple[str, str, str],
    *,
    ref_protected: bool = False,
) -> tuple[str, dict[str, Any]] | None:
    """`("push" | "tag_push", payload)` for one `(old, new, ref)` update, reading commits from `repo`.

    Call it after the ref moved. Refs outside `refs/heads/` and `refs/tags/` fire nothing (None).
    """
    old, new, ref = update
    web_url = str(project_json.get("web_url", ""))
    if ref.startswith("refs/tags/"):
        if is_blank(new):
            return "tag_push", build_tag_push(
                project_json, user, ref, old, new, checkout_sha=None, message=None, commits=[]
            )
        commit = repo.resolve(new)
        info = repo.commit_info(commit) if commit else None
        tag = repo.tag(ref[len("refs/tags/") :])
        message = (tag or {}).get("message") or ""
        entries = [commit_entry(info, repo.commit_changes(info["id"]), web_url)] if info else []
        return "tag_push", build_tag_push(
            project_json,
            user,
            ref,
            old,
            new,
            checkout_sha=commit,
            message=message,
            commits=entries,
            ref_protected=ref_protected,
        )
    if not ref.startswith("refs/heads/"):
        return None
    if is_blank(new):
        return "push", build_push(
            project_json, user, ref, old, new, [], 0, ref_protected=ref_protected
        )
    exclude: list[str] = []
    if is_blank(old):
        default = project_json.get("default_branch")
        default_tip = repo.branch_sha(str(default)) if default else None
        # A new branch lists the commits not on the default branch (GitLab's heuristic); the
        # first push of the default branch itself counts every commit of the ref.
        if default_tip and ref != f"refs/heads/{default}":
            exclude = [default_tip]
    else:
        exclude = [old]
    infos = repo.commits_between(exclude, new, limit=COMMITS_LIMIT)
    total = repo.count_commits(exclude[0] if exclude else None, new)
    entries = [commit_entry(info, repo.commit_changes(info["id"]), web_url) for info in infos]
    payload = build_push(
        project_json,
        user,
        ref,
        old if old else ZERO_SHA,
        new,
        entries,
        total,
        ref_protected=ref_protected,
    )
    return "push", payload
