"""The sandbox's stored records (plain dataclasses, JSON-serialisable through `asdict`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Access levels as GitLab numbers them (members API).
NO_ACCESS = 0
MINIMAL_ACCESS = 5
GUEST = 10
PLANNER = 15
REPORTER = 20
DEVELOPER = 30
MAINTAINER = 40
OWNER = 50
ACCESS_LEVELS = (MINIMAL_ACCESS, GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER)
ROLE_NAMES = {
    MINIMAL_ACCESS: "Minimal Access",
    GUEST: "Guest",
    PLANNER: "Planner",
    REPORTER: "Reporter",
    DEVELOPER: "Developer",
    MAINTAINER: "Maintainer",
    OWNER: "Owner",
}
VISIBILITIES = ("private", "internal", "public")
VISIBILITY_LEVEL = {"private": 0, "internal": 10, "public": 20}


@dataclass
class User:
    """A GitLab user; `namespace_id` is their personal namespace."""

    id: int
    username: str
    name: str
    email: str
    admin: bool = False
    state: str = "active"
    created_at: str = ""
    namespace_id: int = 0
    can_create_group: bool = True
    projects_limit: int = 100
    external: bool = False


@dataclass
class Token:
    """A personal access token (the secret itself is `token`)."""

    id: int
    user_id: int
    token: str
    name: str
    scopes: list[str] = field(default_factory=lambda: ["api"])
    created_at: str = ""
    expires_at: str | None = None
    revoked: bool = False


@dataclass
class Group:
    """A namespace: a group (`kind="group"`, may have `parent_id`) or a user's own (`kind="user"`)."""

    id: int
    name: str
    path: str
    kind: str = "group"
    parent_id: int | None = None
    visibility: str = "private"
    description: str = ""
    created_at: str = ""
    owner_id: int | None = None
    # Who may create projects in a group: "noone", "maintainer" (GitLab's default) or
    # "developer" (Developers and Maintainers).
    project_creation_level: str = "maintainer"


Namespace = Group
PROJECT_CREATION_LEVELS = ("noone", "maintainer", "developer")


@dataclass
class Member:
    """A direct membership of a user in a project (`source_type="Project"`) or a group (`"Namespace"`)."""

    source_type: str
    source_id: int
    user_id: int
    access_level: int
    created_at: str = ""
    created_by_id: int | None = None
    expires_at: str | None = None


@dataclass
class Hook:
    """A project, group or system webhook; `flags` holds the `*_events` switches."""

    id: int
    kind: str  # "project" | "group" | "system"
    url: str
    owner_id: int | None = None  # project id or group id; None for system hooks
    token: str = ""
    name: str = ""
    description: str = ""
    flags: dict[str, bool] = field(default_factory=dict)
    push_events_branch_filter: str = ""
    branch_filter_strategy: str = "wildcard"
    enable_ssl_verification: bool = True
    custom_webhook_template: str | None = None
    custom_headers: list[dict[str, str]] = field(default_factory=list)
    url_variables: list[dict[str, str]] = field(default_factory=list)
    created_at: str = ""
    recent_failures: int = 0
    disabled_until: str | None = None
    alert_status: str = "executable"


@dataclass
class Variable:
    """A project CI/CD variable (REST shape, unique per key and environment scope)."""

    project_id: int
    key: str
    value: str
    variable_type: str = "env_var"
    protected: bool = False
    masked: bool = False
    hidden: bool = False
    raw: bool = False
    environment_scope: str = "*"
    description: str | None = None


@dataclass
class ProjectRecord:
    """The stored fields of a project (the live `Project` adds computed URLs and paths)."""

    id: int
    name: str
    path: str
    namespace_id: int
    description: str | None = None
    visibility: str = "private"
    topics: list[str] = field(default_factory=list)
    default_branch: str = "main"
    created_at: str = ""
    updated_at: str = ""
    last_activity_at: str = ""
    creator_id: int | None = None
    forked_from_id: int | None = None
    archived: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
