"""The CI/CD job token allowlist ("inbound" job token scope) of a project, and its effect.

doc/api/project_job_token_scopes.md: every route needs the Maintainer role (or more) on the
project (404 for a project the caller cannot see, 403 below Maintainer).
`GET /projects/:id/job_token_scope` → `{"inbound_enabled", "outbound_enabled"}`; `PATCH` with
`enabled` (204); `GET …/allowlist` lists the projects allowed (the project itself first);
`POST …/allowlist {target_project_id}` → 201 `{"source_project_id", "target_project_id"}`;
`DELETE …/allowlist/:target_project_id` → 204; the same for groups under `groups_allowlist`
with `target_group_id`.

doc/ci/jobs/ci_job_token.md: a job token of project B reaches project A only when A == B, or
A's "Limit access to this project" setting is off, or B (or a group B is in) is on A's
allowlist — and, in every case, the job's user may read A. New projects have the setting on.
A git fetch refused by the allowlist answers 403 `Authentication by CI/CD job token not
allowed from <B> to <A>.` (gitlab-org/gitlab!161795). The scope is stored in the project's
`extra` so it survives a sandbox restart.
"""

from __future__ import annotations

from typing import Any

from tests.gitlab_sandbox import entities
from tests.gitlab_sandbox.api_users import signed_in
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    bad_request_error,
    not_found,
    paginate,
    param_bool,
    param_int,
    router,
)
from tests.gitlab_sandbox.state import Project, SandboxState

KEY = "ci_job_token_scope"


def scope_of(project: Project) -> dict[str, Any]:
    """The project's stored scope `{"inbound_enabled", "projects", "groups"}` (created on use)."""
    scope: dict[str, Any] = project.extra.setdefault(
        KEY, {"inbound_enabled": True, "projects": [], "groups": []}
    )
    return scope


def job_token_allowed(state: SandboxState, source_project_id: int, target: Project) -> bool:
    """Whether a job token of `source_project_id` passes `target`'s allowlist (the job's user
    must still be able to read `target`; that is checked by the caller)."""
    if source_project_id == target.id:
        return True
    scope = scope_of(target)
    if not scope["inbound_enabled"] or source_project_id in scope["projects"]:
        return True
    source = state.projects.get(source_project_id)
    if source is None:
        return False
    groups = {group.id for group in state.ancestors(source.namespace)}
    return bool(groups & set(scope["groups"]))


def _project(req: Request) -> Project:
    signed_in(req)
    return req.state.find_project(req.path_params["id"], req.user, "admin")


def _target_id(req: Request, name: str) -> int:
    value = param_int(req, name)
    if value is None:
        raise bad_request_error(f"{name} is missing")
    return value


@router.route("GET", "/api/v4/projects/:id/job_token_scope")
def get_scope(req: Request) -> Response:
    """The project's job token access settings."""
    scope = scope_of(_project(req))
    return Response(200, {"inbound_enabled": scope["inbound_enabled"], "outbound_enabled": False})


@router.route("PATCH", "/api/v4/projects/:id/job_token_scope")
def patch_scope(req: Request) -> Response:
    """Turn "Limit access to this project" on or off (`enabled`, required); 204."""
    project = _project(req)
    enabled = param_bool(req, "enabled")
    if enabled is None:
        raise bad_request_error("enabled is missing")
    with req.state.mutation():
        scope_of(project)["inbound_enabled"] = enabled
    return Response(204)


@router.route("GET", "/api/v4/projects/:id/job_token_scope/allowlist")
def list_projects(req: Request) -> Response:
    """The projects whose job tokens may reach this one: itself, then the allowlist."""
    project = _project(req)
    ids = [project.id, *scope_of(project)["projects"]]
    found = [req.state.projects[i] for i in ids if i in req.state.projects]
    return paginate(req, found, lambda p: entities.project_simple(req.state, p))


@router.route("POST", "/api/v4/projects/:id/job_token_scope/allowlist")
def add_project(req: Request) -> Response:
    """Add `target_project_id` (a project the caller can see) to the allowlist; 201."""
    project = _project(req)
    target = req.state.find_project(str(_target_id(req, "target_project_id")), req.user)
    with req.state.mutation():
        allowed: list[int] = scope_of(project)["projects"]
        if target.id in allowed or target.id == project.id:
            raise ApiError(400, {"message": "This project is already in the job token scope"})
        allowed.append(target.id)
    return Response(201, {"source_project_id": project.id, "target_project_id": target.id})


@router.route("DELETE", "/api/v4/projects/:id/job_token_scope/allowlist/:target_project_id")
def remove_project(req: Request) -> Response:
    """Remove a project from the allowlist; 204 (404 when it is not on it)."""
    project = _project(req)
    raw = req.path_params["target_project_id"]
    target_id = int(raw) if raw.isdigit() else -1
    with req.state.mutation():
        allowed: list[int] = scope_of(project)["projects"]
        if target_id not in allowed:
            raise not_found()
        allowed.remove(target_id)
    return Response(204)


@router.route("GET", "/api/v4/projects/:id/job_token_scope/groups_allowlist")
def list_groups(req: Request) -> Response:
    """The groups whose projects' job tokens may reach this one."""
    project = _project(req)
    ids = scope_of(project)["groups"]
    found = [req.state.namespaces[i] for i in ids if i in req.state.namespaces]
    return paginate(req, found, lambda g: entities.namespace_json(req.state, g))


@router.route("POST", "/api/v4/projects/:id/job_token_scope/groups_allowlist")
def add_group(req: Request) -> Response:
    """Add `target_group_id` (a group the caller can see) to the allowlist; 201."""
    project = _project(req)
    group = req.state.find_group(str(_target_id(req, "target_group_id")), req.user)
    with req.state.mutation():
        allowed: list[int] = scope_of(project)["groups"]
        if group.id in allowed:
            raise ApiError(400, {"message": "This group is already in the job token scope"})
        allowed.append(group.id)
    return Response(201, {"source_project_id": project.id, "target_group_id": group.id})


@router.route("DELETE", "/api/v4/projects/:id/job_token_scope/groups_allowlist/:target_group_id")
def remove_group(req: Request) -> Response:
    """Remove a group from the allowlist; 204 (404 when it is not on it)."""
    project = _project(req)
    raw = req.path_params["target_group_id"]
    group_id = int(raw) if raw.isdigit() else -1
    with req.state.mutation():
        allowed: list[int] = scope_of(project)["groups"]
        if group_id not in allowed:
            raise not_found()
        allowed.remove(group_id)
    return Response(204)
