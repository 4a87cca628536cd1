"""`/api/v4/projects/:id/repository/...`: tree, files, blobs, commits, compare, branches, tags, archive.

Handlers read and write the project's bare repository through `GitRepo` and answer with
GitLab's shapes, status codes and error bodies. Reads need `read_repository` (Reporter+ on
private projects); writes need `push` (Developer+), and the default branch is protected
(Maintainer+), as on a new GitLab project. Every ref change calls `state.fire_push` so push
and tag push webhooks fire exactly as for `git push`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any
from urllib.parse import quote, urlencode

from tests.gitlab_sandbox import api_releases, permissions
from tests.gitlab_sandbox.gitrepo import (
    ZERO_SHA,
    CommitError,
    GitRepo,
    Person,
    RefError,
    RevertError,
    archive_prefix,
    valid_ref_input,
)
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    bad_request_error,
    forbidden,
    not_found,
    page_params,
    paginate,
    param_bool,
    param_choice,
    param_str,
    require,
    router,
)

P = "/api/v4/projects/:id/repository"
ARCHIVE_FORMATS = {
    "tar.gz": "tar.gz",
    "tar": "tar",
    "tar.bz2": "tar.bz2",
    "tbz": "tar.bz2",
    "tbz2": "tar.bz2",
    "tb2": "tar.bz2",
    "bz2": "tar.bz2",
    "zip": "zip",
}


# --------------------------------------------------------------------------- helpers


def _project(req: Request, need: str) -> Any:
    return req.state.find_project(req.path_params["id"], req.user, need)


def _repo(project: Any) -> GitRepo:
    return GitRepo(project.repo_path)


def _commit_json(project: Any, info: dict[str, Any]) -> dict[str, Any]:
    return {**info, "web_url": f"{project.web_url}/-/commit/{info['id']}"}


def _commit_detail(
    project: Any, repo: GitRepo, info: dict[str, Any], stats: bool = True
) -> dict[str, Any]:
    body = _commit_json(project, info)
    if stats:
        body["stats"] = repo.stats(info["id"])
    body.update({"status": None, "last_pipeline": None, "project_id": project.id})
    return body


def _author(req: Request) -> tuple[str, str]:
    user = req.user
    name = param_str(req, "author_name") or (user.name if user else "")
    email = param_str(req, "author_email") or (user.email if user else "")
    return name, email


def _check_branch_push(req: Request, project: Any, branch: str) -> None:
    """GitLab protects the default branch: only Maintainers (and admins) may push to it.

    GitLab's `authorize_push_to_branch!` answers through `forbidden!(reason)`, so the body
    is `{"message": "403 Forbidden - You are not allowed to push into this branch"}`."""
    if branch == project.default_branch and not permissions.can(
        req.state, req.user, project, "push_protected"
    ):
        raise forbidden("You are not allowed to push into this branch")


def _fire(req: Request, project: Any, updates: list[tuple[str, str, str]]) -> None:
    if req.user is not None and updates:
        req.state.fire_push(project, req.user, updates)


def _file_path(req: Request) -> str:
    path = req.path_params["file_path"]
    parts = path.split("/")
    if path.startswith("/") or any(p in ("..", "") for p in parts) or "\0" in path:
        raise bad_request_error("file_path should be a valid file path")
    return path


def _ref_or_default(req: Request, project: Any, name: str) -> str:
    ref = param_str(req, name) or ""
    return ref if ref and ref != "HEAD" else str(project.default_branch)


def _link(req: Request, overrides: dict[str, Any], drop: tuple[str, ...] = ()) -> str:
    merged = {**req.path_params, **req.query, **overrides}
    for key in drop:
        merged.pop(key, None)
    pairs = [(k, _text(merged[k])) for k in sorted(merged)]
    return f"{req.base_url}{req.raw_path}?{urlencode(pairs, quote_via=quote)}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _page_without_total(req: Request, chunk: list[Any], page: int, per_page: int) -> Response:
    """GitLab's commits pagination: no X-Total(-Pages), no `last`, next whenever the page is full."""
    next_page = page + 1 if len(chunk) >= per_page else None
    prev_page = page - 1 if page > 1 else None
    links = []
    if prev_page:
        links.append(f'<{_link(req, {"page": prev_page, "per_page": per_page})}>; rel="prev"')
    if next_page:
        links.append(f'<{_link(req, {"page": next_page, "per_page": per_page})}>; rel="next"')
    links.append(f'<{_link(req, {"page": 1, "per_page": per_page})}>; rel="first"')
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(next_page or ""),
        "X-Prev-Page": str(prev_page or ""),
        "Link": ", ".join(links),
    }
    return Response(200, chunk, headers)


def _file_headers(project: Any, ref: str, blob: Any) -> dict[str, str]:
    return {
        "X-Gitlab-Blob-Id": blob.blob_id,
        "X-Gitlab-Commit-Id": blob.commit_id,
        "X-Gitlab-Content-Sha256": hashlib.sha256(blob.content).hexdigest(),
        "X-Gitlab-Encoding": "base64",
        "X-Gitlab-File-Name": blob.path.rsplit("/", 1)[-1],
        "X-Gitlab-File-Path": blob.path,
        "X-Gitlab-Last-Commit-Id": blob.last_commit_id,
        "X-Gitlab-Ref": ref,
        "X-Gitlab-Size": str(blob.size),
        "X-Gitlab-Execute-Filemode": "true" if blob.executable else "false",
    }


def _read_file(req: Request, ref: str) -> tuple[Any, Any]:
    project = _project(req, "read_repository")
    path = _file_path(req)
    repo = _repo(project)
    if repo.resolve(ref) is None:
        raise not_found("Commit")
    blob = repo.read_blob(ref, path)
    if blob is None:
        raise not_found("File")
    return project, blob


# --------------------------------------------------------------------------- tree


@router.route("GET", f"{P}/tree")
def get_tree(req: Request) -> Response:
    """`GET /repository/tree`: entries at `path`/`ref`, offset or keyset (`page_token`) pages."""
    project = _project(req, "read_repository")
    recursive = bool(param_bool(req, "recursive", False))
    mode = param_choice(req, "pagination", ("legacy", "keyset", "none"), "legacy")
    if mode == "none" and not recursive:
        raise bad_request_error('pagination cannot be "none" unless "recursive" is true')
    ref = _ref_or_default(req, project, "ref")
    repo = _repo(project)
    if repo.resolve(ref) is None:
        raise not_found("Tree")
    entries = repo.tree(ref, param_str(req, "path") or "", recursive)
    if entries is None:
        raise not_found("invalid revision or path")
    if mode == "none":
        return Response(200, entries)
    if mode == "keyset":
        return _keyset_tree(req, entries)
    return paginate(req, entries, lambda e: e)


def _keyset_tree(req: Request, entries: list[dict[str, str]]) -> Response:
    _, per_page = page_params(req)
    token = param_str(req, "page_token")
    start = 0
    if token:
        # GitLab's cursor is the last entry's id; a path is accepted too.
        positions = [i for i, e in enumerate(entries) if token in (e["id"], e["path"])]
        if not positions:
            raise ApiError(422, {"message": "Invalid page token"})
        start = positions[0] + 1
    chunk = entries[start : start + per_page]
    headers: dict[str, str] = {}
    if len(chunk) == per_page and start + per_page < len(entries):
        url = _link(req, {"page_token": chunk[-1]["id"], "per_page": per_page}, drop=("page",))
        headers["Link"] = f'<{url}>; rel="next"'
    return Response(200, chunk, headers)


# --------------------------------------------------------------------------- files


@router.route("GET", f"{P}/files/:file_path")
def get_file(req: Request) -> Response:
    """`GET|HEAD /repository/files/:file_path?ref=`: base64 content plus `X-Gitlab-*` headers."""
    require(req, "ref")
    ref = str(param_str(req, "ref"))
    project, blob = _read_file(req, ref)
    body = {
        "file_name": blob.path.rsplit("/", 1)[-1],
        "file_path": blob.path,
        "size": blob.size,
        "encoding": "base64",
        "content": base64.b64encode(blob.content).decode(),
        "content_sha256": hashlib.sha256(blob.content).hexdigest(),
        "ref": ref,
        "blob_id": blob.blob_id,
        "commit_id": blob.commit_id,
        "last_commit_id": blob.last_commit_id,
        "execute_filemode": blob.executable,
    }
    return Response(200, body, _file_headers(project, ref, blob))


@router.route("GET", f"{P}/files/:file_path/raw")
def get_file_raw(req: Request) -> Response:
    """`GET /repository/files/:file_path/raw`: the bytes (ref defaults to the default branch)."""
    project = _project(req, "read_repository")
    ref = _ref_or_default(req, project, "ref")
    project, blob = _read_file(req, ref)
    name = blob.path.rsplit("/", 1)[-1]
    headers = {
        **_file_headers(project, ref, blob),
        "Content-Disposition": f"inline; filename=\"{name}\"; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "max-age=0, private, must-revalidate, no-store, no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    try:
        blob.content.decode("utf-8")
        content_type = "text/plain; charset=utf-8"
    except UnicodeDecodeError:
        content_type = "application/octet-stream"
    return Response(200, blob.content, headers, content_type)


def _write_file(req: Request, action: str, status: int) -> Response:
    names = (
        ("branch", "commit_message")
        if action == "delete"
        else ("branch", "content", "commit_message")
    )
    missing = [
        n
        for n in names
        if req.params.get(n) is None or (n != "content" and req.params.get(n) == "")
    ]
    if missing:
        raise bad_request_error(", ".join(f"{n} is missing" for n in missing))
    project = _project(req, "push")
    path = _file_path(req)
    branch = str(param_str(req, "branch"))
    _check_branch_push(req, project, branch)
    repo = _repo(project)
    encoding = param_choice(req, "encoding", ("text", "base64"), "text")
    act: dict[str, Any] = {"action": action, "file_path": path, "encoding": encoding}
    if action != "delete":
        act["content"] = param_str(req, "content") or ""
    if req.params.get("execute_filemode") is not None:
        act["execute_filemode"] = param_bool(req, "execute_filemode")
    old = repo.branch_sha(branch)
    name, email = _author(req)
    try:
        sha = repo.commit(
            branch,
            [act],
            str(param_str(req, "commit_message")),
            name,
            email,
            start_branch=param_str(req, "start_branch") or None,
            last_commit_id=param_str(req, "last_commit_id") or None,
        )
    except CommitError as exc:
        raise ApiError(400, {"message": exc.message}) from None
    _fire(req, project, [(old or ZERO_SHA, sha, f"refs/heads/{branch}")])
    if status == 204:
        return Response(204)
    return Response(status, {"file_path": path, "branch": branch})


@router.route("POST", f"{P}/files/:file_path")
def create_file(req: Request) -> Response:
    """`POST /repository/files/:file_path`: 201 `{"file_path", "branch"}`."""
    return _write_file(req, "create", 201)


@router.route("PUT", f"{P}/files/:file_path")
def update_file(req: Request) -> Response:
    """`PUT /repository/files/:file_path` (honours `last_commit_id`): 200 `{"file_path", "branch"}`."""
    return _write_file(req, "update", 200)


@router.route("DELETE", f"{P}/files/:file_path")
def delete_file(req: Request) -> Response:
    """`DELETE /repository/files/:file_path` (params in the query or the body): 204."""
    return _write_file(req, "delete", 204)


# --------------------------------------------------------------------------- blobs


def _blob(req: Request) -> bytes:
    project = _project(req, "read_repository")
    data = _repo(project).blob(req.path_params["sha"])
    if data is None:
        raise not_found("Blob")
    return data


@router.route("GET", f"{P}/blobs/:sha")
def get_blob(req: Request) -> Response:
    """`GET /repository/blobs/:sha`: `{"size", "encoding": "base64", "content", "sha"}`."""
    data = _blob(req)
    project = _project(req, "read_repository")
    sha = _repo(project).blob_id(req.path_params["sha"])
    return Response(
        200,
        {
            "size": len(data),
            "encoding": "base64",
            "content": base64.b64encode(data).decode(),
            "sha": sha,
        },
    )


@router.route("GET", f"{P}/blobs/:sha/raw")
def get_blob_raw(req: Request) -> Response:
    """`GET /repository/blobs/:sha/raw`: the blob's bytes."""
    return Response(
        200, _blob(req), {"X-Content-Type-Options": "nosniff"}, "application/octet-stream"
    )


# --------------------------------------------------------------------------- commits


@router.route("GET", f"{P}/commits")
def list_commits(req: Request) -> Response:
    """`GET /repository/commits`: newest first, paginated without totals like GitLab."""
    project = _project(req, "read_repository")
    ref = param_str(req, "ref_name") or str(project.default_branch)
    if not valid_ref_input(ref):
        raise ApiError(400, {"message": "ref_name is invalid"})
    page, per_page = page_params(req)
    with_stats = bool(param_bool(req, "with_stats", False))
    repo = _repo(project)
    infos = repo.commits(
        ref,
        path=param_str(req, "path") or None,
        since=param_str(req, "since") or None,
        until=param_str(req, "until") or None,
        first_parent=bool(param_bool(req, "first_parent", False)),
        offset=(page - 1) * per_page,
        limit=per_page,
        all_refs=bool(param_bool(req, "all", False)),
    )
    items = []
    for info in infos or []:
        body = _commit_json(project, info)
        if with_stats:
            body["stats"] = repo.stats(info["id"])
        items.append(body)
    return _page_without_total(req, items, page, per_page)


@router.route("GET", f"{P}/commits/:sha")
def get_commit(req: Request) -> Response:
    """`GET /repository/commits/:sha`: the commit detail (with `stats` unless `stats=false`)."""
    project = _project(req, "read_repository")
    repo = _repo(project)
    info = repo.commit_info(req.path_params["sha"])
    if info is None:
        raise not_found("Commit")
    return Response(200, _commit_detail(project, repo, info, bool(param_bool(req, "stats", True))))


def _actions(req: Request) -> list[dict[str, Any]]:
    actions = req.params.get("actions")
    if isinstance(actions, dict):  # form-encoded actions[0][action]=...
        actions = [actions[k] for k in sorted(actions, key=lambda k: int(k) if k.isdigit() else 0)]
    if not isinstance(actions, list) or not actions:
        raise bad_request_error("actions is missing" if not actions else "actions is invalid")
    for index, action in enumerate(actions):
        if not isinstance(action, dict):
            raise bad_request_error(f"actions[{index}] is invalid")
        if action.get("action") not in ("create", "update", "move", "delete", "chmod"):
            raise bad_request_error(f"actions[{index}][action] does not have a valid value")
        if not action.get("file_path"):
            raise bad_request_error(f"actions[{index}][file_path] is missing")
        if action.get("encoding") not in (None, "text", "base64"):
            raise bad_request_error(f"actions[{index}][encoding] does not have a valid value")
        if action["action"] == "move" and not action.get("previous_path"):
            raise ApiError(400, {"message": "You must specify a previous_path for a move action"})
    return actions


@router.route("POST", f"{P}/commits")
def create_commit(req: Request) -> Response:
    """`POST /repository/commits` with `actions[]`: 201 commit detail."""
    require(req, "branch", "commit_message", "actions")
    if req.params.get("start_branch") and req.params.get("start_sha"):
        raise bad_request_error("start_branch, start_sha are mutually exclusive")
    project = _project(req, "push")
    actions = _actions(req)
    branch = str(param_str(req, "branch"))
    _check_branch_push(req, project, branch)
    repo = _repo(project)
    old = repo.branch_sha(branch)
    name, email = _author(req)
    try:
        sha = repo.commit(
            branch,
            actions,
            str(param_str(req, "commit_message")),
            name,
            email,
            start_branch=param_str(req, "start_branch") or None,
            start_sha=param_str(req, "start_sha") or None,
            force=bool(param_bool(req, "force", False)),
        )
    except CommitError as exc:
        raise ApiError(400, {"message": exc.message}) from None
    _fire(req, project, [(old or ZERO_SHA, sha, f"refs/heads/{branch}")])
    info = repo.commit_info(sha)
    assert info is not None
    return Response(201, _commit_detail(project, repo, info, bool(param_bool(req, "stats", True))))


@router.route("GET", f"{P}/commits/:sha/diff")
def commit_diff(req: Request) -> Response:
    """`GET /repository/commits/:sha/diff`: the commit's file diffs, offset-paginated."""
    project = _project(req, "read_repository")
    repo = _repo(project)
    info = repo.commit_info(req.path_params["sha"])
    if info is None:
        raise not_found("Commit")
    parent = (
        info["parent_ids"][0] if info["parent_ids"] else "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    )
    return paginate(req, repo.diffs(parent, info["id"]), lambda d: d)


@router.route("GET", f"{P}/commits/:sha/refs")
def commit_refs(req: Request) -> Response:
    """`GET /repository/commits/:sha/refs?type=branch|tag|all`: refs containing the commit."""
    project = _project(req, "read_repository")
    kind = param_choice(req, "type", ("branch", "tag", "all"), "branch")
    repo = _repo(project)
    sha = repo.resolve(req.path_params["sha"])
    if sha is None:
        raise not_found("Commit")
    page, per_page = page_params(req)
    refs = repo.refs_containing(sha, str(kind))
    return _page_without_total(req, refs[(page - 1) * per_page : page * per_page], page, per_page)


@router.route("POST", f"{P}/commits/:sha/revert")
def revert_commit(req: Request) -> Response:
    """`POST /repository/commits/:sha/revert` with `branch`: 201 commit, 400 with `error_code`."""
    require(req, "branch")
    project = _project(req, "push")
    branch = str(param_str(req, "branch"))
    repo = _repo(project)
    if repo.commit_info(req.path_params["sha"]) is None:
        raise not_found("Commit")
    old = repo.branch_sha(branch)
    if old is None:
        raise not_found("Branch")
    _check_branch_push(req, project, branch)
    name, email = _author(req)
    try:
        sha = repo.revert(req.path_params["sha"], branch, Person(name, email))
    except RevertError as exc:
        raise ApiError(400, {"message": exc.message, "error_code": exc.code}) from None
    _fire(req, project, [(old, sha, f"refs/heads/{branch}")])
    info = repo.commit_info(sha)
    assert info is not None
    return Response(201, _commit_detail(project, repo, info))


@router.route("GET", f"{P}/compare")
def compare(req: Request) -> Response:
    """`GET /repository/compare?from=&to=[&straight=]`: commits and diffs between two refs."""
    require(req, "from", "to")
    project = _project(req, "read_repository")
    repo = _repo(project)
    base, head = str(param_str(req, "from")), str(param_str(req, "to"))
    result = repo.compare(base, head, straight=bool(param_bool(req, "straight", False)))
    if result is None:
        raise not_found("Ref")
    result["commits"] = [_commit_json(project, c) for c in result["commits"]]
    if result["commit"] is not None:
        result["commit"] = _commit_json(project, result["commit"])
    result["web_url"] = f"{project.web_url}/-/compare/{repo.resolve(base)}...{repo.resolve(head)}"
    return Response(200, result)


# --------------------------------------------------------------------------- branches


def _branch_json(req: Request, project: Any, repo: GitRepo, name: str, sha: str) -> dict[str, Any]:
    info = repo.commit_info(sha)
    assert info is not None
    default = name == project.default_branch
    default_tip = repo.branch_sha(str(project.default_branch))
    need = "push_protected" if default else "push"
    return {
        "name": name,
        "commit": _commit_json(project, info),
        "merged": bool(not default and default_tip and repo.is_ancestor(sha, default_tip)),
        "protected": default,
        "developers_can_push": False,
        "developers_can_merge": False,
        "can_push": permissions.can(req.state, req.user, project, need),
        "default": default,
        "web_url": f"{project.web_url}/-/tree/{quote(name, safe='/')}",
    }


def _name_filter(search: str | None) -> Any:
    """GitLab's `search`: `^x` prefix, `x$` suffix, otherwise a case-insensitive substring."""
    if not search:
        return lambda _name: True
    term = search.lower()
    if term.startswith("^"):
        return lambda name: name.lower().startswith(term[1:])
    if term.endswith("$"):
        return lambda name: name.lower().endswith(term[:-1])
    return lambda name: term in name.lower()


@router.route("GET", f"{P}/branches")
def list_branches(req: Request) -> Response:
    """`GET /repository/branches[?search=|regex=]`: sorted by name, offset-paginated."""
    project = _project(req, "read_repository")
    repo = _repo(project)
    keep = _name_filter(param_str(req, "search"))
    regex = param_str(req, "regex")
    try:
        pattern = re.compile(regex) if regex else None
    except re.error:
        raise bad_request_error("regex is invalid") from None
    items = [
        (n, s) for n, s in repo.branches() if keep(n) and (pattern is None or pattern.search(n))
    ]
    return paginate(req, items, lambda item: _branch_json(req, project, repo, item[0], item[1]))


@router.route("GET", f"{P}/branches/:branch")
def get_branch(req: Request) -> Response:
    """`GET /repository/branches/:branch`: one branch or 404 `Branch Not Found`."""
    project = _project(req, "read_repository")
    repo = _repo(project)
    name = req.path_params["branch"]
    sha = repo.branch_sha(name)
    if sha is None:
        raise not_found("Branch")
    return Response(200, _branch_json(req, project, repo, name, sha))


@router.route("POST", f"{P}/branches")
def create_branch(req: Request) -> Response:
    """`POST /repository/branches` with `branch` and `ref`: 201 branch."""
    require(req, "branch", "ref")
    project = _project(req, "push")
    repo = _repo(project)
    name, ref = str(param_str(req, "branch")), str(param_str(req, "ref"))
    try:
        sha = repo.create_branch(name, ref)
    except (RefError, CommitError) as exc:
        raise ApiError(400, {"message": exc.message}) from None
    _fire(req, project, [(ZERO_SHA, sha, f"refs/heads/{name}")])
    return Response(201, _branch_json(req, project, repo, name, sha))


@router.route("DELETE", f"{P}/branches/:branch")
def delete_branch(req: Request) -> Response:
    """`DELETE /repository/branches/:branch`: 204; the default branch cannot be deleted (405)."""
    project = _project(req, "push")
    repo = _repo(project)
    name = req.path_params["branch"]
    if repo.branch_sha(name) is None:
        raise not_found("Branch")
    if name == project.default_branch:
        raise ApiError(405, {"message": "The default branch of a project cannot be deleted."})
    try:
        old = repo.delete_branch(name)
    except (RefError, CommitError) as exc:
        raise ApiError(400, {"message": exc.message}) from None
    _fire(req, project, [(old, ZERO_SHA, f"refs/heads/{name}")])
    return Response(204)


# --------------------------------------------------------------------------- tags


def _tag_json(project: Any, repo: GitRepo, tag: dict[str, Any]) -> dict[str, Any]:
    info = repo.commit_info(tag["commit_sha"]) if tag["commit_sha"] else None
    message = tag["message"]
    return {
        "name": tag["name"],
        "message": message.rstrip("\n") if message is not None else None,
        "target": tag["target"],
        "commit": _commit_json(project, info) if info else None,
        "release": _tag_release(project, tag["name"]),
        "protected": api_releases.protection(project, tag["name"]) is not None,
        "created_at": _tag_date(tag["tagger_date"]),
    }


def _tag_release(project: Any, name: str) -> dict[str, Any] | None:
    release = project.extra.get("releases", {}).get(name)
    return None if release is None else {"tag_name": name, "description": release["description"]}


def _tag_date(date: str | None) -> str | None:
    if not date:
        return None
    # git's iso-strict `2026-03-01T12:00:00+00:00` → GitLab's `2026-03-01T12:00:00.000+00:00`.
    return date[:19] + ".000" + (date[19:] if not date.endswith("Z") else "+00:00")


def _version_key(name: str) -> list[Any]:
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", name)
        if part
    ]


@router.route("GET", f"{P}/tags")
def list_tags(req: Request) -> Response:
    """`GET /repository/tags[?order_by=name|updated|version&sort=asc|desc&search=]`."""
    project = _project(req, "read_repository")
    order = param_choice(req, "order_by", ("name", "updated", "version"), "updated")
    sort = param_choice(req, "sort", ("asc", "desc"), "desc")
    repo = _repo(project)
    keep = _name_filter(param_str(req, "search"))
    tags = [t for t in repo.tags() if keep(t["name"])]
    jsons = [_tag_json(project, repo, t) for t in tags]
    keys = {
        "name": lambda t: t["name"],
        "version": lambda t: _version_key(t["name"]),
        "updated": lambda t: (t["commit"] or {}).get("committed_date", ""),
    }
    jsons.sort(key=keys[str(order)], reverse=sort == "desc")
    return paginate(req, jsons, lambda t: t)


@router.route("GET", f"{P}/tags/:tag_name")
def get_tag(req: Request) -> Response:
    """`GET /repository/tags/:tag_name`: one tag or 404 `Tag Not Found`."""
    project = _project(req, "read_repository")
    repo = _repo(project)
    tag = repo.tag(req.path_params["tag_name"])
    if tag is None:
        raise not_found("Tag")
    return Response(200, _tag_json(project, repo, tag))


@router.route("POST", f"{P}/tags")
def create_tag(req: Request) -> Response:
    """`POST /repository/tags` with `tag_name`, `ref` (and `message` for an annotated tag): 201."""
    require(req, "tag_name", "ref")
    project = _project(req, "push")
    repo = _repo(project)
    name, ref = str(param_str(req, "tag_name")), str(param_str(req, "ref"))
    if not api_releases.may_create_tag(req.state, req.user, project, name):
        raise forbidden(api_releases.CREATE_PROTECTED)
    user_name, email = _author(req)
    try:
        target = repo.create_tag(
            name, ref, param_str(req, "message") or None, Person(user_name, email)
        )
    except RefError as exc:
        raise ApiError(400, {"message": exc.message}) from None
    _fire(req, project, [(ZERO_SHA, target, f"refs/tags/{name}")])
    tag = repo.tag(name)
    assert tag is not None
    return Response(201, _tag_json(project, repo, tag))


@router.route("DELETE", f"{P}/tags/:tag_name")
def delete_tag(req: Request) -> Response:
    """`DELETE /repository/tags/:tag_name`: 204 or 404 `Tag Not Found`."""
    project = _project(req, "push")
    repo = _repo(project)
    name = req.path_params["tag_name"]
    if repo.tag(name) is not None and not api_releases.may_delete_tag(
        req.state, req.user, project, name
    ):
        raise forbidden(api_releases.DELETE_PROTECTED)
    try:
        old = repo.delete_tag(name)
    except RefError:
        raise not_found("Tag") from None
    api_releases.forget_release(req, project, name)
    _fire(req, project, [(old, ZERO_SHA, f"refs/tags/{name}")])
    return Response(204)


# --------------------------------------------------------------------------- archive


def _archive(req: Request, fmt: str) -> Response:
    project = _project(req, "read_repository")
    repo = _repo(project)
    ref = param_str(req, "sha") or str(project.default_branch)
    sha = repo.resolve(ref)
    if sha is None:
        raise not_found("File")
    path = param_str(req, "path") or None
    canonical = ARCHIVE_FORMATS[fmt]
    prefix = archive_prefix(project.path, ref, sha, path)
    data = repo.archive(sha, canonical, prefix, path)
    if data is None:
        raise not_found("File")
    headers = {
        "Content-Disposition": f'attachment; filename="{prefix}.{fmt}"',
        "Content-Transfer-Encoding": "binary",
    }
    content_type = "application/zip" if canonical == "zip" else "application/octet-stream"
    return Response(200, data, headers, content_type)


def _register_archive(fmt: str) -> None:
    suffix = "" if fmt == "" else f".{fmt}"

    @router.route("GET", f"{P}/archive{suffix}")
    def get_archive(req: Request) -> Response:
        """`GET /repository/archive[.format]?sha=&path=`: the archive bytes."""
        return _archive(
            req, fmt or param_choice(req, "format", ARCHIVE_FORMATS, "tar.gz") or "tar.gz"
        )


for _fmt in ["", *ARCHIVE_FORMATS]:
    _register_archive(_fmt)
