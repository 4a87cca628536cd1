"""Protected tags and Releases, as GitLab documents them.

Protected tags (`/projects/:id/protected_tags`, Maintainer+ to manage): a name or wildcard
(`v*`) with one `create_access_level` (0 No one, 30 Developers + Maintainers, 40
Maintainers). Creating a matching tag — through the tags API, the Releases API or `git
push` — needs that level (admins always may); a push may never move one ("Protected tags
cannot be updated.") and deletes one only through the API or UI, where GitLab lets
Maintainers delete it.

Releases (`/projects/:id/releases`): `POST` with `tag_name`, optional `ref` (a missing tag
is created there, annotated with `tag_message`), `name` and `description` — Developer+
(`push`), the tag rules above applying; 409 `Release already exists`. `GET` list (newest
`released_at` first) and one; `DELETE` removes the release, not its tag. Deleting a tag
removes its release (GitLab's `Tags::DestroyService`).
"""

from __future__ import annotations

import re
from typing import Any

from tests.gitlab_sandbox import permissions, push_events
from tests.gitlab_sandbox.entities import user_basic
from tests.gitlab_sandbox.gitrepo import ZERO_SHA, GitRepo, Person, RefError
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    bad_request_error,
    forbidden,
    not_found,
    paginate,
    param_int,
    param_str,
    require,
    router,
)
from tests.gitlab_sandbox.records import DEVELOPER, MAINTAINER, NO_ACCESS

ACCESS_DESCRIPTIONS = {
    NO_ACCESS: "No one",
    DEVELOPER: "Developers + Maintainers",
    MAINTAINER: "Maintainers",
}
CREATE_PROTECTED = "You are not allowed to create this tag as it is protected."
UPDATE_PROTECTED = "Protected tags cannot be updated."
DELETE_PROTECTED_PUSH = "You can only delete protected tags using the web interface."
DELETE_PROTECTED = (
    "You are not allowed to delete protected tags from this project. Only a project "
    "maintainer or owner can delete a protected tag."
)


# --------------------------------------------------------------------------- protection rules


def _rules(project: Any) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = project.extra.setdefault("protected_tags", [])
    return rules


def _matches(pattern: str, name: str) -> bool:
    """GitLab's wildcard: `*` matches any run of characters, everything else literally."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, name) is not None


def protection(project: Any, name: str) -> dict[str, Any] | None:
    """The protected-tag rule `name` falls under (an exact name wins over a wildcard)."""
    found = [rule for rule in _rules(project) if _matches(rule["name"], name)]
    found.sort(key=lambda rule: "*" in rule["name"])
    return found[0] if found else None


def may_create_tag(state: Any, user: Any, project: Any, name: str) -> bool:
    """Whether `user` may create tag `name` (unprotected: `push`; protected: its level)."""
    if not permissions.can(state, user, project, "push"):
        return False
    rule = protection(project, name)
    if rule is None or (user is not None and user.admin):
        return True
    level = int(rule["create_access_level"])
    if level == NO_ACCESS:
        return False
    return permissions.project_level(state, user, project) >= level


def may_delete_tag(state: Any, user: Any, project: Any, name: str) -> bool:
    """Through the API: Developer+ for a plain tag, Maintainer+ for a protected one."""
    need = "push_protected" if protection(project, name) is not None else "push"
    return permissions.can(state, user, project, need)


def check_tag_push(state: Any, user: Any, project: Any, updates: list[Any]) -> str | None:
    """`git push`'s refusal for a protected tag update, or None."""
    for old, new, ref in updates:
        if not ref.startswith("refs/tags/"):
            continue
        name = ref.removeprefix("refs/tags/")
        if protection(project, name) is None:
            continue
        if set(new) == {"0"}:
            return DELETE_PROTECTED_PUSH
        if set(old) != {"0"}:
            return UPDATE_PROTECTED
        if not may_create_tag(state, user, project, name):
            return CREATE_PROTECTED
    return None


def _rule_json(project: Any, rule: dict[str, Any]) -> dict[str, Any]:
    level = int(rule["create_access_level"])
    return {
        "name": rule["name"],
        "create_access_levels": [
            {
                "id": rule["id"],
                "access_level": level,
                "access_level_description": ACCESS_DESCRIPTIONS[level],
                "deploy_key_id": None,
                "user_id": None,
                "group_id": None,
            }
        ],
    }


@router.route("GET", "/api/v4/projects/:id/protected_tags")
def list_protected_tags(req: Request) -> Response:
    """Every protected tag rule of the project (Maintainer+)."""
    project = req.state.find_project(req.path_params["id"], req.user, "admin")
    return paginate(req, list(_rules(project)), lambda rule: _rule_json(project, rule))


@router.route("GET", "/api/v4/projects/:id/protected_tags/:name")
def get_protected_tag(req: Request) -> Response:
    """One rule by its exact name (wildcards included) or 404 `Not found`."""
    project = req.state.find_project(req.path_params["id"], req.user, "admin")
    for rule in _rules(project):
        if rule["name"] == req.path_params["name"]:
            return Response(200, _rule_json(project, rule))
    raise ApiError(404, {"message": "404 Not found"})


@router.route("POST", "/api/v4/projects/:id/protected_tags")
def protect_tag(req: Request) -> Response:
    """`name` (or wildcard) with `create_access_level` (default 40): 201; 422 when taken."""
    require(req, "name")
    project = req.state.find_project(req.path_params["id"], req.user, "admin")
    name = str(param_str(req, "name"))
    level = param_int(req, "create_access_level", MAINTAINER)
    if level not in ACCESS_DESCRIPTIONS:
        raise bad_request_error("create_access_level does not have a valid value")
    with req.state.mutation():
        if any(rule["name"] == name for rule in _rules(project)):
            raise ApiError(422, {"message": ["Name has already been taken"]})
        rule = {
            "id": req.state.next_id("protected_tag"),
            "name": name,
            "create_access_level": level,
        }
        _rules(project).append(rule)
    return Response(201, _rule_json(project, rule))


@router.route("DELETE", "/api/v4/projects/:id/protected_tags/:name")
def unprotect_tag(req: Request) -> Response:
    """Remove a rule (Maintainer+): 204, or 404."""
    project = req.state.find_project(req.path_params["id"], req.user, "admin")
    with req.state.mutation():
        rules = _rules(project)
        kept = [rule for rule in rules if rule["name"] != req.path_params["name"]]
        if len(kept) == len(rules):
            raise ApiError(404, {"message": "404 Not found"})
        project.extra["protected_tags"] = kept
    return Response(204)


# --------------------------------------------------------------------------- releases


def _releases(project: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = project.extra.setdefault("releases", {})
    return found


def forget_release(req: Request, project: Any, tag_name: str) -> None:
    """Drop the release of a deleted tag (as `Tags::DestroyService` does)."""
    with req.state.mutation():
        _releases(project).pop(tag_name, None)


def _release_json(req: Request, project: Any, release: dict[str, Any]) -> dict[str, Any]:
    repo = GitRepo(project.repo_path)
    tag = release["tag_name"]
    sha = repo.resolve(f"refs/tags/{tag}")
    info = repo.commit_info(sha) if sha else None
    author = req.state.users.get(release["author_id"])
    return {
        "tag_name": tag,
        "name": release["name"],
        "description": release["description"],
        "description_html": None,
        "created_at": release["created_at"],
        "released_at": release["released_at"],
        "upcoming_release": False,
        "author": user_basic(req.state, author) if author else None,
        "commit": {**info, "web_url": f"{project.web_url}/-/commit/{info['id']}"} if info else None,
        "commit_path": f"/{project.path_with_namespace}/-/commit/{sha}" if sha else None,
        "tag_path": f"/{project.path_with_namespace}/-/tags/{tag}",
        "assets": {"count": 0, "sources": [], "links": []},
        "evidences": [],
        "_links": {
            "self": f"{project.web_url}/-/releases/{tag}",
            "edit_url": f"{project.web_url}/-/releases/{tag}/edit",
        },
    }


@router.route("GET", "/api/v4/projects/:id/releases")
def list_releases(req: Request) -> Response:
    """Releases, newest `released_at` first (`sort=asc` reverses)."""
    project = req.state.find_project(req.path_params["id"], req.user, "read_repository")
    releases = sorted(
        _releases(project).values(),
        key=lambda r: r["released_at"],
        reverse=param_str(req, "sort") != "asc",
    )
    return paginate(req, releases, lambda r: _release_json(req, project, r))


@router.route("GET", "/api/v4/projects/:id/releases/:tag_name")
def get_release(req: Request) -> Response:
    """One release by its tag name, or 404 `Not Found`."""
    project = req.state.find_project(req.path_params["id"], req.user, "read_repository")
    release = _releases(project).get(req.path_params["tag_name"])
    if release is None:
        raise not_found()
    return Response(200, _release_json(req, project, release))


@router.route("POST", "/api/v4/projects/:id/releases")
def create_release(req: Request) -> Response:
    """Create a release (and its tag at `ref`, annotated with `tag_message`, when missing)."""
    require(req, "tag_name")
    project = req.state.find_project(req.path_params["id"], req.user, "push")
    tag_name = str(param_str(req, "tag_name"))
    repo = GitRepo(project.repo_path)
    with req.state.mutation():
        if tag_name in _releases(project):
            raise ApiError(409, {"message": "Release already exists"})
        if repo.tag(tag_name) is None:
            ref = param_str(req, "ref")
            if not ref:
                raise ApiError(
                    422, {"message": "Ref is not specified", "error": "Ref is not specified"}
                )
            if not may_create_tag(req.state, req.user, project, tag_name):
                raise forbidden()
            user = req.user
            try:
                target = repo.create_tag(
                    tag_name,
                    ref,
                    param_str(req, "tag_message") or None,
                    Person(user.name if user else "", user.email if user else ""),
                )
            except RefError as exc:
                raise ApiError(422, {"message": exc.message}) from None
            if user is not None:
                req.state.fire_push(project, user, [(ZERO_SHA, target, f"refs/tags/{tag_name}")])
        now = req.state.now()
        release = {
            "id": req.state.next_id("release"),
            "tag_name": tag_name,
            "name": param_str(req, "name") or tag_name,
            "description": param_str(req, "description") or "",
            "created_at": now,
            "released_at": param_str(req, "released_at") or now,
            "author_id": req.user.id if req.user else None,
        }
        _releases(project)[tag_name] = release
    _fire_release(req, project, release, "create")
    return Response(201, _release_json(req, project, release))


@router.route("PUT", "/api/v4/projects/:id/releases/:tag_name")
def update_release(req: Request) -> Response:
    """Edit a release's `name`, `description` or `released_at` (Developer+, as creating)."""
    project = req.state.find_project(req.path_params["id"], req.user, "push")
    with req.state.mutation():
        release = _releases(project).get(req.path_params["tag_name"])
        if release is None:
            raise not_found()
        for key in ("name", "description", "released_at"):
            value = param_str(req, key)
            if value is not None:
                release[key] = value
    _fire_release(req, project, release, "update")
    return Response(200, _release_json(req, project, release))


def _fire_release(req: Request, project: Any, release: dict[str, Any], action: str) -> None:
    """Deliver GitLab's Release Hook (`object_kind: release`, `action` create/update/delete)
    to the project's hooks with `releases_events` — system hooks get no release events."""
    dispatcher = req.state.webhooks
    if dispatcher is None:
        return
    shown = _release_json(req, project, release)
    commit = shown["commit"] or {}
    project_json = req.state.project_json(project, None, with_access=False)
    body = {
        "id": release.get("id"),
        "created_at": release["created_at"],
        "description": release["description"],
        "name": release["name"],
        "released_at": release["released_at"],
        "tag": release["tag_name"],
        "object_kind": "release",
        "project": {
            **push_events.project_hook_attrs(project_json),
            "ci_config_path": project_json.get("ci_config_path"),
        },
        "url": shown["_links"]["self"],
        "action": action,
        "assets": shown["assets"],
        "commit": {
            "id": commit.get("id"),
            "message": commit.get("message"),
            "title": commit.get("title"),
            "timestamp": commit.get("committed_date"),
            "url": commit.get("web_url"),
            "author": {"name": commit.get("author_name"), "email": commit.get("author_email")},
        },
    }
    dispatcher.project_event(project, body, "releases_events")


@router.route("DELETE", "/api/v4/projects/:id/releases/:tag_name")
def delete_release(req: Request) -> Response:
    """Delete a release (its tag stays): 200 with the deleted release, or 404."""
    project = req.state.find_project(req.path_params["id"], req.user, "push")
    with req.state.mutation():
        release = _releases(project).pop(req.path_params["tag_name"], None)
    if release is None:
        raise not_found()
    _fire_release(req, project, release, "delete")
    return Response(200, _release_json(req, project, release))
