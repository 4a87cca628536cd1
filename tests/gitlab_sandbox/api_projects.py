"""Projects: list, get, create, edit, delete, fork, forks, transfer."""

from __future__ import annotations

import re
import shutil
from typing import Any

from tests.gitlab_sandbox import entities, permissions, system_events
from tests.gitlab_sandbox.api_users import signed_in
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    bad_request_error,
    keyset_paginate,
    not_found,
    paginate,
    param_bool,
    param_choice,
    param_int,
    param_list,
    param_str,
    router,
    validation_error,
)
from tests.gitlab_sandbox.records import (
    ACCESS_LEVELS,
    DEVELOPER,
    GUEST,
    MAINTAINER,
    OWNER,
    VISIBILITIES,
    VISIBILITY_LEVEL,
    Group,
    User,
)
from tests.gitlab_sandbox.state import Project, SandboxState

ORDER_BY = (
    "id",
    "name",
    "path",
    "created_at",
    "updated_at",
    "last_activity_at",
    "star_count",
    "similarity",
)
PATH_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$")
EDITABLE = ("name", "path", "description", "visibility", "default_branch", "topics", "archived")


def _gitrepo() -> Any:
    from tests.gitlab_sandbox import gitrepo

    return gitrepo


def path_from_name(name: str) -> str:
    """GitLab's path derived from a name: lower case, runs of other characters become `-`."""
    slug = re.sub(r"[^a-z0-9_.]+", "-", name.strip().lower()).strip("-.")
    return slug or "project"


def visible_projects(state: SandboxState, user: User | None) -> list[Project]:
    """Every project `user` may see, by id."""
    with state.lock:
        return [
            p
            for p in sorted(state.projects.values(), key=lambda p: p.id)
            if permissions.can(state, user, p, "read")
        ]


def _matches_search(project: Project, terms: list[str], namespaces: bool) -> bool:
    haystack = f"{project.path} {project.name} {project.description or ''}".lower()
    if namespaces:
        haystack += " " + project.path_with_namespace.lower()
    return all(term in haystack for term in terms)


@router.route("GET", "/api/v4/projects")
def list_projects(req: Request) -> Response:
    """`GET /projects` with GitLab's filters, ordering and offset or keyset pagination."""
    state, user = req.state, req.user
    order_by = param_choice(req, "order_by", ORDER_BY, "created_at") or "created_at"
    sort = param_choice(req, "sort", ("asc", "desc"), "desc") or "desc"
    visibility = param_choice(req, "visibility", VISIBILITIES, None)
    min_level = param_int(req, "min_access_level")
    if min_level is not None and min_level not in ACCESS_LEVELS:
        raise bad_request_error("min_access_level does not have a valid value")
    keyset = param_choice(req, "pagination", ("keyset", "offset"), "offset") == "keyset"
    if keyset and order_by != "id":
        raise ApiError(
            405,
            {
                "message": "405 Method Not Allowed - Keyset pagination is not yet available for this type of request"
            },
        )
    search = (param_str(req, "search") or "").lower().split()
    topics = [t.lower() for t in (param_list(req, "topic") or [])]
    with state.lock:
        projects = visible_projects(state, user)
        if param_bool(req, "membership", False) and user is not None:
            projects = [p for p in projects if permissions.project_level(state, user, p) >= GUEST]
        if param_bool(req, "owned", False) and user is not None:
            projects = [p for p in projects if permissions.project_level(state, user, p) >= OWNER]
        if min_level is not None:
            projects = [
                p for p in projects if permissions.project_level(state, user, p) >= min_level
            ]
        if visibility:
            projects = [p for p in projects if p.visibility == visibility]
        if search:
            with_ns = bool(param_bool(req, "search_namespaces", False))
            projects = [p for p in projects if _matches_search(p, search, with_ns)]
        if topics:
            projects = [p for p in projects if set(topics) <= {t.lower() for t in p.topics}]
        archived = param_bool(req, "archived")
        if archived is not None:
            projects = [p for p in projects if p.archived == archived]
        id_after, id_before = param_int(req, "id_after"), param_int(req, "id_before")
        if id_after is not None:
            projects = [p for p in projects if p.id > id_after]
        if id_before is not None:
            projects = [p for p in projects if p.id < id_before]
        key = "id" if order_by in ("similarity", "star_count") else order_by
        projects.sort(key=lambda p: (getattr(p, key), p.id), reverse=sort == "desc")
        simple = bool(param_bool(req, "simple", False)) or user is None

        def render(project: Project) -> dict[str, Any]:
            if simple:
                return entities.project_simple(state, project)
            return entities.project_json(state, project, user)

        if keyset:
            return keyset_paginate(req, projects, render, lambda p: p.id, sort == "desc")
        return paginate(req, projects, render)


@router.route("GET", "/api/v4/projects/:id")
def get_project(req: Request) -> Response:
    """One project by id or URL-encoded path (`permissions` when signed in); 301 for moved paths."""
    id_or_path = req.path_params["id"]
    state = req.state
    with state.lock:
        if not id_or_path.isdigit() and state.project_by_path(id_or_path) is None:
            moved = state.redirects.get(id_or_path.lower())
            if moved is not None and moved in state.projects:
                project = state.find_project(str(moved), req.user)
                location = f"{state.base_url}/api/v4/projects/{project.id}"
                return Response(301, {"message": "301 Moved Permanently"}, {"Location": location})
        project = state.find_project(id_or_path, req.user)
        return Response(200, entities.project_json(state, project, req.user))


def _namespace_for_create(req: Request, user: User, key: str = "namespace_id") -> Group:
    state = req.state
    wanted = param_str(req, key)
    if wanted is None or wanted == "":
        return state.namespaces[user.namespace_id]
    ns = state.namespaces.get(int(wanted)) if wanted.isdigit() else state.namespace_by_path(wanted)
    if ns is None or not permissions.can_see_namespace(state, user, ns):
        raise not_found("Namespace")
    return ns


def can_create_in(state: SandboxState, user: User, ns: Group) -> bool:
    """Personal namespace of the caller; in a group, as its `project_creation_level` allows
    (maintainer: Maintainer+, developer: Developer+, noone: nobody); admins anywhere."""
    if user.admin:
        return True
    if ns.kind == "user":
        return ns.owner_id == user.id
    level = permissions.group_level(state, user, ns)
    if ns.project_creation_level == "developer":
        return level >= DEVELOPER
    if ns.project_creation_level == "maintainer":
        return level >= MAINTAINER
    return False


def namespace_refused() -> ApiError:
    """GitLab's answer when the caller may not create projects in the namespace."""
    return validation_error({"namespace": ["is not valid"]})


def check_visibility_allowed(ns: Group, visibility: str) -> None:
    """A project's visibility may not exceed its group's: GitLab's 400 validation message."""
    if ns.kind != "group" or VISIBILITY_LEVEL[visibility] <= VISIBILITY_LEVEL[ns.visibility]:
        return
    raise validation_error(
        {"visibility_level": [f"{visibility} is not allowed in a {ns.visibility} group."]}
    )


def _taken(
    state: SandboxState, ns: Group, name: str, path: str, skip: int | None = None
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for other in state.projects.values():
        if other.namespace_id != ns.id or other.id == skip:
            continue
        if other.name.lower() == name.lower():
            errors["name"] = ["has already been taken"]
        if other.path.lower() == path.lower():
            errors["path"] = ["has already been taken"]
    if ns.kind == "group" and any(
        g.parent_id == ns.id and g.path.lower() == path.lower() for g in state.namespaces.values()
    ):
        errors["path"] = ["has already been taken"]
    return errors


def _validate_path(path: str) -> None:
    if not PATH_RE.match(path) or path.endswith((".git", ".atom")):
        raise validation_error(
            {
                "path": [
                    "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.git' or end in '.atom'"
                ]
            }
        )


def new_project(
    state: SandboxState,
    user: User,
    ns: Group,
    name: str,
    path: str,
    **attrs: Any,
) -> Project:
    """Store a project, its bare repository and the creator's membership; fire project_create."""
    with state.mutation():
        now = state.now()
        project = Project(
            id=state.next_id("projects"),
            name=name,
            path=path,
            namespace_id=ns.id,
            created_at=now,
            updated_at=now,
            last_activity_at=now,
            creator_id=user.id,
            state=state,
            **attrs,
        )
        state.projects[project.id] = project
        # A personal namespace's owner becomes a direct Owner member of the project (GitLab
        # records it, so `members` and `permissions.project_access` show it); in a group the
        # creator is made Maintainer unless the group already gives them that.
        personal = ns.kind == "user" and ns.owner_id == user.id
        level = OWNER if ns.kind == "user" else MAINTAINER
        if personal or permissions.project_level(state, user, project) < level:
            member = state.add_member("Project", project.id, user, level, user)
        else:
            member = None
    system_events.send(state, system_events.project_event(state, project, "project_create"))
    if member is not None:
        system_events.send(
            state, system_events.team_event(state, project, member, "user_add_to_team")
        )
    return project


@router.route("POST", "/api/v4/projects")
def create_project(req: Request) -> Response:
    """`POST /projects` (201, no `permissions`); `initialize_with_readme` makes the first commit."""
    user = signed_in(req)
    state = req.state
    name, path = param_str(req, "name"), param_str(req, "path")
    if not name and not path:
        raise bad_request_error("name, path are missing, at least one parameter must be provided")
    name = name or path or ""
    path = path or path_from_name(name)
    _validate_path(path)
    visibility = param_choice(req, "visibility", VISIBILITIES, "private") or "private"
    topics = param_list(req, "topics") or param_list(req, "tag_list") or []
    default_branch = param_str(req, "default_branch") or "main"
    with state.mutation():
        ns = _namespace_for_create(req, user)
        if not can_create_in(state, user, ns):
            raise namespace_refused()
        check_visibility_allowed(ns, visibility)
        errors = _taken(state, ns, name, path)
        if errors:
            raise validation_error(errors)
        project = new_project(
            state,
            user,
            ns,
            name,
            path,
            description=param_str(req, "description") or "",
            visibility=visibility,
            topics=topics,
            default_branch=default_branch,
        )
    gitrepo = _gitrepo()
    repo = gitrepo.GitRepo(project.repo_path)
    repo.init_bare(default_branch)
    if param_bool(req, "initialize_with_readme", False):
        readme = f"# {name}\n\n{param_str(req, 'description') or ''}".rstrip() + "\n"
        sha = repo.commit(
            default_branch,
            [{"action": "create", "file_path": "README.md", "content": readme}],
            "Initial commit",
            user.name,
            user.email,
        )
        state.fire_push(project, user, [("0" * 40, sha, f"refs/heads/{default_branch}")])
    return Response(201, entities.project_json(state, project, user, with_access=False))


@router.route("PUT", "/api/v4/projects/:id")
def edit_project(req: Request) -> Response:
    """`PUT /projects/:id` (Maintainer+): rename/path fires project_rename, others project_update."""
    state = req.state
    user = signed_in(req)
    project = state.find_project(req.path_params["id"], user, "admin")
    given = [k for k in EDITABLE if k in req.params or (k == "topics" and "tag_list" in req.params)]
    if not given:
        raise bad_request_error(
            "name, path, description, visibility, default_branch, topics, archived are missing, at least one parameter must be provided"
        )
    visibility = param_choice(req, "visibility", VISIBILITIES, None)
    with state.mutation():
        old_full_path = project.path_with_namespace
        name = param_str(req, "name") or project.name
        path = param_str(req, "path") or project.path
        if path != project.path:
            _validate_path(path)
        errors = _taken(state, project.namespace, name, path, skip=project.id)
        if errors:
            raise validation_error(errors)
        branch = param_str(req, "default_branch")
        if branch and branch != project.default_branch:
            repo = _gitrepo().GitRepo(project.repo_path)
            if not repo.is_empty() and repo.branch_sha(branch) is None:
                raise validation_error(
                    {"base": [f"Could not change HEAD: branch '{branch}' does not exist"]}
                )
            repo.set_default_branch(branch)
            project.default_branch = branch
        if visibility:
            check_visibility_allowed(project.namespace, visibility)
        project.name, project.path = name, path
        if "description" in req.params:
            project.description = param_str(req, "description") or ""
        if visibility:
            project.visibility = visibility
        topics = param_list(req, "topics")
        if topics is None:
            topics = param_list(req, "tag_list")
        if topics is not None:
            project.topics = topics
        archived = param_bool(req, "archived")
        if archived is not None:
            project.archived = archived
        project.updated_at = state.now()
        if project.path_with_namespace != old_full_path:
            state.redirects[old_full_path.lower()] = project.id
            event = system_events.project_event(state, project, "project_rename", old_full_path)
        else:
            event = system_events.project_event(state, project, "project_update")
    system_events.send(state, event)
    return Response(200, entities.project_json(state, project, user, with_access=False))


def remove_project(state: SandboxState, project: Project) -> None:
    """Delete a project with its members, hooks, variables and repository; fire project_destroy."""
    event = system_events.project_event(state, project, "project_destroy")
    with state.mutation():
        state.projects.pop(project.id, None)
        state.members = [
            m
            for m in state.members
            if not (m.source_type == "Project" and m.source_id == project.id)
        ]
        state.hooks = {
            k: h
            for k, h in state.hooks.items()
            if not (h.kind == "project" and h.owner_id == project.id)
        }
        state.variables = [v for v in state.variables if v.project_id != project.id]
        state.redirects = {k: v for k, v in state.redirects.items() if v != project.id}
    shutil.rmtree(project.repo_path, ignore_errors=True)
    system_events.send(state, event)


@router.route("DELETE", "/api/v4/projects/:id")
def delete_project(req: Request) -> Response:
    """`DELETE /projects/:id` (Owner): 202 `{"message": "202 Accepted"}`."""
    user = signed_in(req)
    project = req.state.find_project(req.path_params["id"], user, "owner")
    remove_project(req.state, project)
    return Response(202, {"message": "202 Accepted"})


def _set_archived(req: Request, archived: bool) -> Response:
    user = signed_in(req)
    state = req.state
    project = state.find_project(req.path_params["id"], user, "owner")
    with state.mutation():
        changed = project.archived != archived
        project.archived = archived
        if changed:
            project.updated_at = state.now()
        event = system_events.project_event(state, project, "project_update")
    if changed:
        system_events.send(state, event)
    return Response(201, entities.project_json(state, project, user, with_access=False))


@router.route("POST", "/api/v4/projects/:id/archive")
def archive_project(req: Request) -> Response:
    """`POST /projects/:id/archive` (Owner; idempotent): 201 with the project, read-only now."""
    return _set_archived(req, True)


@router.route("POST", "/api/v4/projects/:id/unarchive")
def unarchive_project(req: Request) -> Response:
    """`POST /projects/:id/unarchive` (Owner; idempotent): 201 with the project."""
    return _set_archived(req, False)


def _protected_branch_json(project: Project) -> dict[str, Any]:
    maintainers = [
        {
            "id": 1,
            "access_level": MAINTAINER,
            "access_level_description": "Maintainers",
            "deploy_key_id": None,
            "user_id": None,
            "group_id": None,
        }
    ]
    return {
        "id": project.id,
        "name": project.default_branch,
        "push_access_levels": maintainers,
        "merge_access_levels": [dict(maintainers[0], id=2)],
        "unprotect_access_levels": [],
        "allow_force_push": False,
        "code_owner_approval_required": False,
    }


@router.route("GET", "/api/v4/projects/:id/protected_branches")
def list_protected_branches(req: Request) -> Response:
    """The default branch, protected as GitLab protects a new project's (Maintainers push/merge)."""
    project = req.state.find_project(req.path_params["id"], req.user, "read_repository")
    return paginate(req, [project], _protected_branch_json)


@router.route("GET", "/api/v4/projects/:id/protected_branches/:name")
def get_protected_branch(req: Request) -> Response:
    """One protected branch; `404 Protected Branch Not Found` for any other name."""
    project = req.state.find_project(req.path_params["id"], req.user, "read_repository")
    if req.path_params["name"] != project.default_branch:
        raise not_found("Protected Branch")
    return Response(200, _protected_branch_json(project))


@router.route("POST", "/api/v4/projects/:id/fork")
def fork_project(req: Request) -> Response:
    """`POST /projects/:id/fork`: copy the repository into a namespace; 201 with `forked_from_project`."""
    user = signed_in(req)
    state = req.state
    source = state.find_project(req.path_params["id"], user)
    if not permissions.can(state, user, source, "read_repository"):
        raise not_found("Project")
    key = "namespace_path" if param_str(req, "namespace_path") else "namespace_id"
    if param_str(req, "namespace") and not param_str(req, key):
        key = "namespace"
    try:
        ns = _namespace_for_create(req, user, key)
    except ApiError:
        raise not_found("Target Namespace") from None
    if not can_create_in(state, user, ns):
        raise not_found("Target Namespace")
    name = param_str(req, "name") or source.name
    path = param_str(req, "path") or source.path
    _validate_path(path)
    with state.mutation():
        errors = _taken(state, ns, name, path)
        if errors:
            raise ApiError(409, {"message": errors})
        fork = new_project(
            state,
            user,
            ns,
            name,
            path,
            description=param_str(req, "description") or source.description,
            visibility=param_choice(req, "visibility", VISIBILITIES, None) or source.visibility,
            topics=list(source.topics),
            default_branch=source.default_branch,
            forked_from_id=source.id,
        )
    shutil.copytree(source.repo_path, fork.repo_path)
    return Response(201, entities.project_json(state, fork, user, with_access=False))


@router.route("GET", "/api/v4/projects/:id/forks")
def list_forks(req: Request) -> Response:
    """Forks of a project that the caller can see."""
    source = req.state.find_project(req.path_params["id"], req.user)
    forks = [p for p in visible_projects(req.state, req.user) if p.forked_from_id == source.id]
    return paginate(req, forks, lambda p: entities.project_json(req.state, p, req.user))


@router.route("PUT", "/api/v4/projects/:id/transfer")
def transfer_project(req: Request) -> Response:
    """`PUT /projects/:id/transfer` (Owner): move to `namespace`; fires project_transfer."""
    user = signed_in(req)
    state = req.state
    project = state.find_project(req.path_params["id"], user, "owner")
    if not param_str(req, "namespace"):
        raise bad_request_error("namespace is missing")
    try:
        ns = _namespace_for_create(req, user, "namespace")
    except ApiError:
        raise not_found("Namespace") from None
    if not can_create_in(state, user, ns) or (
        ns.kind == "group"
        and not user.admin
        and permissions.group_level(state, user, ns) < MAINTAINER
    ):
        raise ApiError(
            400,
            {
                "message": "Transfer failed: You don't have permission to transfer projects into that namespace."
            },
        )
    if ns.id == project.namespace_id:
        raise ApiError(400, {"message": "Transfer failed: Project is already in this namespace."})
    with state.mutation():
        if _taken(state, ns, project.name, project.path):
            raise ApiError(
                400,
                {
                    "message": "Transfer failed: Project with same name or path in target namespace already exists"
                },
            )
        old = project.path_with_namespace
        project.namespace_id = ns.id
        project.updated_at = state.now()
        state.redirects[old.lower()] = project.id
        event = system_events.project_event(state, project, "project_transfer", old)
    system_events.send(state, event)
    return Response(200, entities.project_json(state, project, user, with_access=False))
