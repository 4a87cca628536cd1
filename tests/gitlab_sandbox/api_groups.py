"""Groups (create with parent, get by id or encoded path, projects, subgroups) and namespaces."""

from __future__ import annotations

import re
from typing import Any

from tests.gitlab_sandbox import entities, permissions
from tests.gitlab_sandbox.api_projects import visible_projects
from tests.gitlab_sandbox.api_users import signed_in
from tests.gitlab_sandbox.http import (
    Request,
    Response,
    bad_request_error,
    forbidden,
    not_found,
    paginate,
    param_bool,
    param_choice,
    param_int,
    param_str,
    require,
    router,
    validation_error,
)
from tests.gitlab_sandbox.records import (
    GUEST,
    MAINTAINER,
    OWNER,
    PROJECT_CREATION_LEVELS,
    VISIBILITIES,
    Group,
)
from tests.gitlab_sandbox.state import SandboxState

GROUP_PATH_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$")


def visible_groups(state: SandboxState, req: Request) -> list[Group]:
    """Groups the caller may see, by id."""
    with state.lock:
        return [
            g
            for g in sorted(state.namespaces.values(), key=lambda g: g.id)
            if g.kind == "group" and permissions.can_see_namespace(state, req.user, g)
        ]


@router.route("GET", "/api/v4/groups")
def list_groups(req: Request) -> Response:
    """Visible groups, filtered by `search`, `owned`, `min_access_level`, `top_level_only`."""
    state = req.state
    groups = visible_groups(state, req)
    search = (param_str(req, "search") or "").lower()
    if search:
        groups = [g for g in groups if search in g.path.lower() or search in g.name.lower()]
    if param_bool(req, "top_level_only", False):
        groups = [g for g in groups if g.parent_id is None]
    if param_bool(req, "owned", False):
        groups = [g for g in groups if permissions.group_level(state, req.user, g) >= OWNER]
    level = param_int(req, "min_access_level")
    if level is not None:
        groups = [g for g in groups if permissions.group_level(state, req.user, g) >= level]
    return paginate(req, groups, lambda g: entities.group_json(state, g))


@router.route("GET", "/api/v4/groups/:id")
def get_group(req: Request) -> Response:
    """One group by id or URL-encoded full path; 404 `Group Not Found` when invisible."""
    group = req.state.find_group(req.path_params["id"], req.user)
    body = entities.group_json(req.state, group)
    if param_bool(req, "with_projects", True):
        body["projects"] = [
            entities.project_json(req.state, p, req.user, with_access=False)
            for p in visible_projects(req.state, req.user)
            if p.namespace_id == group.id
        ]
        body["shared_projects"] = []
    return Response(200, body)


@router.route("POST", "/api/v4/groups")
def create_group(req: Request) -> Response:
    """`POST /groups` (`name`, `path`, optional `parent_id`); the creator becomes Owner."""
    user = signed_in(req)
    state = req.state
    require(req, "name", "path")
    name, path = param_str(req, "name") or "", param_str(req, "path") or ""
    if not GROUP_PATH_RE.match(path):
        raise validation_error({"path": ["can contain only letters, digits, '_', '-' and '.'"]})
    visibility = param_choice(req, "visibility", VISIBILITIES, "private") or "private"
    creation = param_choice(req, "project_creation_level", PROJECT_CREATION_LEVELS, "maintainer")
    parent_id = param_int(req, "parent_id")
    with state.mutation():
        parent = None
        if parent_id is not None:
            parent = state.namespaces.get(parent_id)
            if parent is None or parent.kind != "group":
                raise not_found("Parent Group")
            if not permissions.can_see_namespace(state, user, parent):
                raise not_found("Parent Group")
            if not permissions.can_admin_group(state, user, parent, MAINTAINER):
                raise forbidden()
        elif not (user.admin or user.can_create_group):
            raise forbidden()
        siblings = [
            n
            for n in state.namespaces.values()
            if n.parent_id == parent_id and (parent_id is not None or n.kind in ("group", "user"))
        ]
        if any(n.path.lower() == path.lower() for n in siblings) or (
            parent is not None
            and any(
                p.namespace_id == parent.id and p.path.lower() == path.lower()
                for p in state.projects.values()
            )
        ):
            raise validation_error({"path": ["has already been taken"]})
        group = Group(
            id=state.next_id("namespaces"),
            name=name,
            path=path,
            kind="group",
            parent_id=parent_id,
            visibility=visibility,
            description=param_str(req, "description") or "",
            created_at=state.now(),
            project_creation_level=creation or "maintainer",
        )
        state.namespaces[group.id] = group
        if permissions.group_level(state, user, group) < OWNER:
            state.add_member("Namespace", group.id, user, OWNER, user)
    return Response(201, entities.group_json(state, group))


@router.route("PUT", "/api/v4/groups/:id")
def edit_group(req: Request) -> Response:
    """`PUT /groups/:id` (Owner): name, description, visibility, project_creation_level."""
    user = signed_in(req)
    state = req.state
    group = state.find_group(req.path_params["id"], user)
    if not permissions.can_admin_group(state, user, group):
        raise forbidden()
    visibility = param_choice(req, "visibility", VISIBILITIES, None)
    creation = param_choice(req, "project_creation_level", PROJECT_CREATION_LEVELS, None)
    with state.mutation():
        if creation:
            group.project_creation_level = creation
        if param_str(req, "name"):
            group.name = param_str(req, "name") or group.name
        if "description" in req.params:
            group.description = param_str(req, "description") or ""
        if visibility:
            group.visibility = visibility
    return Response(200, entities.group_json(state, group))


@router.route("GET", "/api/v4/groups/:id/projects")
def group_projects(req: Request) -> Response:
    """Projects directly in the group (or also in subgroups with `include_subgroups`)."""
    state = req.state
    group = state.find_group(req.path_params["id"], req.user)
    ids = {group.id}
    if param_bool(req, "include_subgroups", False):
        ids |= {g.id for g in state.descendants(group)}
    projects = [p for p in visible_projects(state, req.user) if p.namespace_id in ids]
    return paginate(req, projects, lambda p: entities.project_json(state, p, req.user))


@router.route("GET", "/api/v4/groups/:id/subgroups")
def subgroups(req: Request) -> Response:
    """Visible direct subgroups of a group."""
    state = req.state
    group = state.find_group(req.path_params["id"], req.user)
    found = [g for g in visible_groups(state, req) if g.parent_id == group.id]
    return paginate(req, found, lambda g: entities.group_json(state, g))


# ----------------------------------------------------------------------------- namespaces


def _namespace_listing(state: SandboxState, req: Request) -> list[Group]:
    user = signed_in(req)
    with state.lock:
        spaces = sorted(state.namespaces.values(), key=lambda n: n.id)
        if user.admin:
            return spaces
        return [
            n
            for n in spaces
            if (n.kind == "user" and n.owner_id == user.id)
            or (n.kind == "group" and permissions.group_level(state, user, n) >= GUEST)
        ]


def _namespace_json(state: SandboxState, ns: Group) -> dict[str, Any]:
    body = entities.namespace_json(state, ns)
    if ns.kind == "group":
        ids = {ns.id} | {g.id for g in state.descendants(ns)}
        users = {
            m.user_id for m in state.members if m.source_type == "Namespace" and m.source_id in ids
        }
        body["members_count_with_descendants"] = len(users)
    return body


@router.route("GET", "/api/v4/namespaces")
def list_namespaces(req: Request) -> Response:
    """Namespaces available to the caller (all for admins), `search` and `owned_only` filters."""
    state = req.state
    spaces = _namespace_listing(state, req)
    search = (param_str(req, "search") or "").lower()
    if search:
        full = bool(param_bool(req, "full_path_search", False))
        spaces = [
            n
            for n in spaces
            if search in (state.full_path(n).lower() if full else n.path.lower())
            or search in n.name.lower()
        ]
    if param_bool(req, "owned_only", False):
        spaces = [n for n in spaces if permissions.group_level(state, req.user, n) >= OWNER]
    if param_bool(req, "top_level_only", False):
        spaces = [n for n in spaces if n.parent_id is None]
    return paginate(req, spaces, lambda n: _namespace_json(state, n))


@router.route("GET", "/api/v4/namespaces/:id")
def get_namespace(req: Request) -> Response:
    """One namespace the caller belongs to (admins: any), by id or URL-encoded path."""
    state = req.state
    allowed = {n.id for n in _namespace_listing(state, req)}
    ns = state.find_namespace(req.path_params["id"], req.user)
    if ns.id not in allowed:
        raise not_found("Namespace")
    return Response(200, _namespace_json(state, ns))


@router.route("GET", "/api/v4/namespaces/:id/exists")
def namespace_exists(req: Request) -> Response:
    """`{"exists": bool, "suggests": [...]}` for a path (optionally under `parent_id`)."""
    signed_in(req)
    state = req.state
    path = req.path_params["id"]
    parent_id = param_int(req, "parent_id")
    if parent_id is not None and parent_id not in state.namespaces:
        raise bad_request_error("parent_id is invalid")

    def taken(candidate: str) -> bool:
        return any(
            n.parent_id == parent_id and n.path.lower() == candidate.lower()
            for n in state.namespaces.values()
        )

    with state.lock:
        exists = taken(path)
        suggests: list[str] = []
        if exists:
            counter = 1
            while taken(f"{path}{counter}"):
                counter += 1
            suggests = [f"{path}{counter}"]
    return Response(200, {"exists": exists, "suggests": suggests})
