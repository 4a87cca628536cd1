"""Project hooks (Maintainer+) and system hooks (admin) CRUD, plus their test triggers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from tests.gitlab_sandbox import entities, push_events
from tests.gitlab_sandbox.api_users import admin, signed_in
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    bad_request_error,
    paginate,
    param_bool,
    param_choice,
    param_str,
    record_not_found,
    require,
    router,
    unprocessable,
)
from tests.gitlab_sandbox.records import Hook
from tests.gitlab_sandbox.state import Project
from tests.support import leakcheck

STRATEGIES = ("wildcard", "regex", "all_branches")
PROJECT_DEFAULTS = {flag: False for flag in entities.HOOK_EVENT_FLAGS} | {"push_events": True}
SYSTEM_DEFAULTS = {
    "push_events": False,
    "tag_push_events": False,
    "merge_requests_events": False,
    "repository_update_events": True,
}
TRIGGERS = tuple(f for f in entities.HOOK_EVENT_FLAGS if f != "repository_update_events")


def _valid_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _apply(req: Request, hook: Hook, flags: tuple[str, ...]) -> None:
    """Copy hook attributes from the request onto `hook`, with GitLab's 422 validations."""
    url = param_str(req, "url")
    if url is not None:
        if not _valid_url(url):
            raise unprocessable("Invalid url given")
        if url != hook.url and "token" not in req.params:
            hook.token = ""  # GitLab resets the secret when the URL changes
        hook.url = url
    if "token" in req.params:
        hook.token = param_str(req, "token") or ""
        leakcheck.register(hook.token, "webhook secret token")
    for text in ("name", "description", "custom_webhook_template"):
        if text in req.params:
            setattr(hook, text, param_str(req, text) or "")
    for flag in flags:
        value = param_bool(req, flag)
        if value is not None:
            hook.flags[flag] = value
    value = param_bool(req, "enable_ssl_verification")
    if value is not None:
        hook.enable_ssl_verification = value
    strategy = param_choice(req, "branch_filter_strategy", STRATEGIES, None)
    if strategy:
        hook.branch_filter_strategy = strategy
    if "push_events_branch_filter" in req.params:
        hook.push_events_branch_filter = param_str(req, "push_events_branch_filter") or ""
    if hook.branch_filter_strategy == "regex" and hook.push_events_branch_filter:
        try:
            re.compile(hook.push_events_branch_filter)
        except re.error:
            raise unprocessable("Invalid branch filter given") from None
    headers = req.params.get("custom_headers")
    if isinstance(headers, list):
        if any(not isinstance(h, dict) or not h.get("key") for h in headers) or len(headers) > 20:
            raise unprocessable("Custom headers validation failed")
        hook.custom_headers = [
            {"key": str(h["key"]), "value": str(h.get("value", ""))} for h in headers
        ]


# ------------------------------------------------------------------------- project hooks


def _project(req: Request) -> Project:
    signed_in(req)
    return req.state.find_project(req.path_params["id"], req.user, "admin")


def _project_hook(req: Request, project: Project) -> Hook:
    hook_id = req.path_params["hook_id"]
    hook = req.state.hooks.get(int(hook_id)) if hook_id.isdigit() else None
    if hook is None or hook.kind != "project" or hook.owner_id != project.id:
        raise record_not_found()
    return hook


@router.route("GET", "/api/v4/projects/:id/hooks")
def list_project_hooks(req: Request) -> Response:
    """A project's hooks (Maintainer+)."""
    project = _project(req)
    hooks = sorted(
        (h for h in req.state.hooks.values() if h.kind == "project" and h.owner_id == project.id),
        key=lambda h: h.id,
    )
    return paginate(req, hooks, entities.hook_json)


@router.route("GET", "/api/v4/projects/:id/hooks/:hook_id")
def get_project_hook(req: Request) -> Response:
    """One project hook; 404 `404 Not found` for an unknown id."""
    return Response(200, entities.hook_json(_project_hook(req, _project(req))))


@router.route("POST", "/api/v4/projects/:id/hooks")
def create_project_hook(req: Request) -> Response:
    """Create a project hook (201); `url` required, `push_events` on by default."""
    project = _project(req)
    require(req, "url")
    state = req.state
    hook = Hook(
        id=0,
        kind="project",
        url="",
        owner_id=project.id,
        flags=dict(PROJECT_DEFAULTS),
        created_at=state.now(),
    )
    _apply(req, hook, entities.HOOK_EVENT_FLAGS)
    with state.mutation():
        hook.id = state.next_id("hooks")
        state.hooks[hook.id] = hook
    return Response(201, entities.hook_json(hook))


@router.route("PUT", "/api/v4/projects/:id/hooks/:hook_id")
def edit_project_hook(req: Request) -> Response:
    """Edit a project hook; 400 `No parameters provided` when nothing is given."""
    project = _project(req)
    hook = _project_hook(req, project)
    known = {"url", "token", "name", "description", *entities.HOOK_EVENT_FLAGS}
    if not known & set(req.params):
        raise bad_request_error("No parameters provided")
    with req.state.mutation():
        _apply(req, hook, entities.HOOK_EVENT_FLAGS)
    return Response(200, entities.hook_json(hook))


@router.route("DELETE", "/api/v4/projects/:id/hooks/:hook_id")
def delete_project_hook(req: Request) -> Response:
    """Delete a project hook (204)."""
    hook = _project_hook(req, _project(req))
    with req.state.mutation():
        req.state.hooks.pop(hook.id, None)
    return Response(204)


def _sample_push(req: Request, project: Project, trigger: str) -> tuple[str, dict[str, Any]]:
    from tests.gitlab_sandbox.gitrepo import GitRepo

    repo = GitRepo(project.repo_path)
    head = repo.branch_sha(project.default_branch)
    if head is None:
        raise ApiError(422, {"message": "Ensure the project has at least one commit."})
    info = repo.commit_info(head) or {}
    parent = (info.get("parent_ids") or ["0" * 40])[0]
    project_json = req.state.project_json(project, None, with_access=False)
    if trigger == "tag_push_events":
        update = ("0" * 40, head, "refs/tags/v1.0.0")
        payload = push_events.build_tag_push(
            project_json,
            req.user,
            update[2],
            update[0],
            head,
            checkout_sha=head,
            message="",
            commits=[],
        )
        return "Tag Push Hook", payload
    built = push_events.push_payload(
        repo, project_json, req.user, (parent, head, f"refs/heads/{project.default_branch}")
    )
    assert built is not None
    return "Push Hook", built[1]


@router.route("POST", "/api/v4/projects/:id/hooks/:hook_id/test/:trigger")
def test_project_hook(req: Request) -> Response:
    """Send a sample event synchronously; 201 `{"message": "201 Created"}` or 422 on failure."""
    project = _project(req)
    hook = _project_hook(req, project)
    trigger = req.path_params["trigger"]
    if trigger not in TRIGGERS:
        raise bad_request_error("trigger does not have a valid value")
    if trigger not in ("push_events", "tag_push_events"):
        raise ApiError(422, {"message": f"The sandbox has no sample data for {trigger}"})
    event, body = _sample_push(req, project, trigger)
    dispatcher = req.state.webhooks
    if dispatcher is None:
        raise ApiError(422, {"message": "webhook delivery is not running"})
    record = dispatcher.deliver_now(hook, body, event)
    if record.outcome != "delivered":
        raise ApiError(422, {"message": f"Hook execution failed: {record.error}"})
    return Response(201, {"message": "201 Created"})


# -------------------------------------------------------------------------- system hooks


def _system_hook(req: Request) -> Hook:
    admin(req)
    hook_id = req.path_params["hook_id"]
    hook = req.state.hooks.get(int(hook_id)) if hook_id.isdigit() else None
    if hook is None or hook.kind != "system":
        raise record_not_found()
    return hook


@router.route("GET", "/api/v4/hooks")
def list_system_hooks(req: Request) -> Response:
    """System hooks (admin only)."""
    admin(req)
    hooks = sorted((h for h in req.state.hooks.values() if h.kind == "system"), key=lambda h: h.id)
    return paginate(req, hooks, entities.system_hook_json)


@router.route("GET", "/api/v4/hooks/:hook_id")
def get_system_hook(req: Request) -> Response:
    """One system hook (admin only)."""
    return Response(200, entities.system_hook_json(_system_hook(req)))


@router.route("POST", "/api/v4/hooks")
def create_system_hook(req: Request) -> Response:
    """Create a system hook (admin only): `repository_update_events` on, the others off by default."""
    admin(req)
    require(req, "url")
    state = req.state
    hook = Hook(id=0, kind="system", url="", flags=dict(SYSTEM_DEFAULTS), created_at=state.now())
    _apply(req, hook, entities.SYSTEM_HOOK_FLAGS)
    with state.mutation():
        hook.id = state.next_id("hooks")
        state.hooks[hook.id] = hook
    return Response(201, entities.system_hook_json(hook))


@router.route("PUT", "/api/v4/hooks/:hook_id")
def edit_system_hook(req: Request) -> Response:
    """Edit a system hook (admin only)."""
    hook = _system_hook(req)
    with req.state.mutation():
        _apply(req, hook, entities.SYSTEM_HOOK_FLAGS)
    return Response(200, entities.system_hook_json(hook))


@router.route("DELETE", "/api/v4/hooks/:hook_id")
def delete_system_hook(req: Request) -> Response:
    """Delete a system hook (admin only, 204)."""
    hook = _system_hook(req)
    with req.state.mutation():
        req.state.hooks.pop(hook.id, None)
    return Response(204)


@router.route("POST", "/api/v4/hooks/:hook_id")
def test_system_hook(req: Request) -> Response:
    """Send GitLab's sample system-hook data synchronously and return it (201)."""
    hook = _system_hook(req)
    sample = {
        "project_id": 1,
        "owner_email": "example@gitlabhq.com",
        "owner_name": "Someone",
        "name": "Ruby",
        "path": "ruby",
        "event_name": "project_create",
    }
    if req.state.webhooks is not None:
        req.state.webhooks.deliver_now(hook, sample, "System Hook")
    return Response(201, sample)
