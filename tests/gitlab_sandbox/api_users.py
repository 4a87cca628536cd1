"""Users, the current user, personal access tokens and `/version`."""

from __future__ import annotations

import re

from tests.gitlab_sandbox import entities
from tests.gitlab_sandbox.http import (
    Request,
    Response,
    forbidden,
    not_found,
    paginate,
    param_bool,
    param_list,
    param_str,
    require,
    router,
    unauthorized,
    validation_error,
)
from tests.gitlab_sandbox.records import User
from tests.gitlab_sandbox.webhooks import GITLAB_VERSION

USERNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
TOKEN_SCOPES = {
    "api",
    "read_api",
    "read_user",
    "read_repository",
    "write_repository",
    "sudo",
    "admin_mode",
    "create_runner",
    "ai_features",
    "k8s_proxy",
}


def signed_in(req: Request) -> User:
    """The caller, or 401 `401 Unauthorized`."""
    if req.user is None:
        raise unauthorized()
    return req.user


def admin(req: Request) -> User:
    """The caller if an admin; 401 anonymous, 403 otherwise."""
    user = signed_in(req)
    if not user.admin:
        raise forbidden()
    return user


@router.route("GET", "/api/v4/version")
def version(req: Request) -> Response:
    """The GitLab version the sandbox imitates (signed-in only, as GitLab)."""
    signed_in(req)
    return Response(200, {"version": GITLAB_VERSION, "revision": "sandbox", "enterprise": False})


@router.route("GET", "/api/v4/user")
def current_user(req: Request) -> Response:
    """`GET /user`: the caller (admin fields for admins)."""
    return Response(200, entities.user_json(req.state, signed_in(req)))


@router.route("GET", "/api/v4/users")
def list_users(req: Request) -> Response:
    """Users, filtered by `username` or `search`; anonymous callers see basics only."""
    with req.state.lock:
        users = sorted(req.state.users.values(), key=lambda u: u.id)
        username = param_str(req, "username")
        if username:
            users = [u for u in users if u.username.lower() == username.lower()]
        search = (param_str(req, "search") or "").lower()
        if search:
            users = [
                u
                for u in users
                if search in u.username.lower() or search in u.name.lower() or search == u.email
            ]
        viewer = req.user
        return paginate(
            req,
            users,
            lambda u: (
                entities.user_json(req.state, u, admin_view=True)
                if viewer and viewer.admin
                else entities.user_basic(req.state, u)
            ),
        )


@router.route("GET", "/api/v4/users/:id")
def get_user(req: Request) -> Response:
    """One user by id (basic fields; all fields for admins)."""
    if not req.path_params["id"].isdigit():
        raise not_found("User")
    user = req.state.find_user(req.path_params["id"])
    if req.user and req.user.admin:
        return Response(200, entities.user_json(req.state, user, admin_view=True))
    return Response(200, entities.user_basic(req.state, user))


@router.route("POST", "/api/v4/users")
def create_user(req: Request) -> Response:
    """Admin-only: create a user (`email`, `username`, `name`; `admin`)."""
    admin(req)
    require(req, "email", "name", "username")
    username = param_str(req, "username") or ""
    errors: dict[str, list[str]] = {}
    if not USERNAME_RE.match(username):
        errors["username"] = ["can contain only letters, digits, '_', '-' and '.'"]
    with req.state.mutation():
        if req.state.user_by_username(username) or req.state.namespace_by_path(username):
            errors["username"] = ["has already been taken"]
        email = param_str(req, "email") or ""
        if "@" not in email:
            errors["email"] = ["is invalid"]
        elif any(u.email.lower() == email.lower() for u in req.state.users.values()):
            errors["email"] = ["has already been taken"]
        if errors:
            raise validation_error(errors)
        user = req.state.create_user(
            username, param_str(req, "name"), email, bool(param_bool(req, "admin", False))
        )
        user.can_create_group = bool(param_bool(req, "can_create_group", True))
    return Response(201, entities.user_json(req.state, user, admin_view=True))


@router.route("POST", "/api/v4/users/:id/personal_access_tokens")
def create_token(req: Request) -> Response:
    """Admin-only: issue a personal access token for a user; the secret is in `token`."""
    admin(req)
    user = req.state.find_user(req.path_params["id"])
    require(req, "name")
    scopes = param_list(req, "scopes") or ["api"]
    bad = [s for s in scopes if s not in TOKEN_SCOPES]
    if bad:
        raise validation_error({"scopes": [f"can only contain available scopes: {bad}"]})
    record = req.state.create_token(
        user, param_str(req, "name") or "", scopes, expires_at=param_str(req, "expires_at")
    )
    return Response(
        201,
        {
            "id": record.id,
            "name": record.name,
            "revoked": False,
            "created_at": record.created_at,
            "description": param_str(req, "description"),
            "scopes": record.scopes,
            "user_id": user.id,
            "last_used_at": None,
            "active": True,
            "expires_at": record.expires_at,
            "token": record.token,
        },
    )
