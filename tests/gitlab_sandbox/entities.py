"""GitLab API entities: how users, namespaces, groups, projects, members, hooks and variables look."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.gitlab_sandbox import permissions
from tests.gitlab_sandbox.records import Group, Hook, Member, User, Variable

if TYPE_CHECKING:
    from tests.gitlab_sandbox.state import Project, SandboxState

NOTIFICATION_LEVEL = 3  # "global", what GitLab reports for a fresh membership


def avatar_url(state: SandboxState, user: User) -> str:
    """A loopback avatar URL (never a third-party host)."""
    return f"{state.base_url}/uploads/-/system/user/avatar/{user.id}/avatar.png"


def user_basic(state: SandboxState, user: User) -> dict[str, Any]:
    """`UserBasic`: id, username, name, state, avatar and web URL."""
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": user.state,
        "locked": False,
        "avatar_url": avatar_url(state, user),
        "web_url": f"{state.base_url}/{user.username}",
    }


def user_json(state: SandboxState, user: User, admin_view: bool = False) -> dict[str, Any]:
    """`UserPublic` (GET /user); admins (or `admin_view`) also get the admin-only fields."""
    body = {
        **user_basic(state, user),
        "created_at": user.created_at,
        "bio": "",
        "location": "",
        "public_email": None,
        "skype": "",
        "linkedin": "",
        "twitter": "",
        "discord": "",
        "website_url": "",
        "organization": "",
        "job_title": "",
        "pronouns": None,
        "bot": False,
        "work_information": None,
        "local_time": None,
        "last_sign_in_at": None,
        "confirmed_at": user.created_at,
        "last_activity_on": None,
        "email": user.email,
        "theme_id": 1,
        "color_scheme_id": 1,
        "projects_limit": user.projects_limit,
        "current_sign_in_at": None,
        "identities": [],
        "can_create_group": user.can_create_group,
        "can_create_project": True,
        "two_factor_enabled": False,
        "external": user.external,
        "private_profile": False,
        "commit_email": user.email,
    }
    if admin_view or user.admin:
        body.update(
            {
                "is_admin": user.admin,
                "namespace_id": user.namespace_id,
                "note": None,
                "is_auditor": False,
                "using_license_seat": False,
            }
        )
    return body


def namespace_json(state: SandboxState, ns: Group) -> dict[str, Any]:
    """`Namespace` (GET /namespaces/:id and the `namespace` of a project)."""
    if ns.kind == "user":
        owner = state.users.get(ns.owner_id or 0)
        web_url = f"{state.base_url}/{owner.username if owner else ns.path}"
        avatar = avatar_url(state, owner) if owner else None
    else:
        web_url = f"{state.base_url}/groups/{state.full_path(ns)}"
        avatar = None
    return {
        "id": ns.id,
        "name": ns.name,
        "path": ns.path,
        "kind": ns.kind,
        "full_path": state.full_path(ns),
        "parent_id": ns.parent_id,
        "avatar_url": avatar,
        "web_url": web_url,
    }


def group_json(state: SandboxState, group: Group) -> dict[str, Any]:
    """`Group` (GET /groups/:id, without projects)."""
    return {
        "id": group.id,
        "web_url": f"{state.base_url}/groups/{state.full_path(group)}",
        "name": group.name,
        "path": group.path,
        "description": group.description,
        "visibility": group.visibility,
        "share_with_group_lock": False,
        "require_two_factor_authentication": False,
        "two_factor_grace_period": 48,
        "project_creation_level": group.project_creation_level,
        "auto_devops_enabled": None,
        "subgroup_creation_level": "maintainer",
        "emails_disabled": False,
        "emails_enabled": True,
        "mentions_disabled": None,
        "lfs_enabled": True,
        "default_branch": None,
        "request_access_enabled": True,
        "full_name": state.full_name(group),
        "full_path": state.full_path(group),
        "created_at": group.created_at,
        "parent_id": group.parent_id,
        "avatar_url": None,
    }


def _access(level: int | None) -> dict[str, int] | None:
    return {"access_level": level, "notification_level": NOTIFICATION_LEVEL} if level else None


def permissions_json(state: SandboxState, project: Project, user: User) -> dict[str, Any]:
    """`permissions`: the direct project membership and the group membership (ancestors incl.)."""
    direct = state.direct_member("Project", project.id, user.id)
    ns = project.namespace
    group_level = permissions.group_level(state, user, ns) if ns.kind == "group" else 0
    return {
        "project_access": _access(direct.access_level if direct else None),
        "group_access": _access(group_level or None),
    }


def project_json(
    state: SandboxState, project: Project, user: User | None, with_access: bool = True
) -> dict[str, Any]:
    """The full project object (`ProjectWithAccess` when `with_access` and signed in)."""
    base = state.base_url
    body: dict[str, Any] = {
        **project_simple(state, project),
        "updated_at": project.updated_at,
        "forks_count": sum(1 for p in state.projects.values() if p.forked_from_id == project.id),
        "empty_repo": repo_is_empty(project),
        "archived": project.archived,
        "readme_url": None,
        "container_registry_image_prefix": "",
        "_links": {
            "self": f"{base}/api/v4/projects/{project.id}",
            "issues": f"{base}/api/v4/projects/{project.id}/issues",
            "merge_requests": f"{base}/api/v4/projects/{project.id}/merge_requests",
            "repo_branches": f"{base}/api/v4/projects/{project.id}/repository/branches",
            "labels": f"{base}/api/v4/projects/{project.id}/labels",
            "events": f"{base}/api/v4/projects/{project.id}/events",
            "members": f"{base}/api/v4/projects/{project.id}/members",
            "cluster_agents": f"{base}/api/v4/projects/{project.id}/cluster_agents",
        },
        "creator_id": project.creator_id,
        "import_status": "none",
        "open_issues_count": 0,
        "issues_enabled": True,
        "merge_requests_enabled": True,
        "wiki_enabled": True,
        "jobs_enabled": True,
        "snippets_enabled": True,
        "container_registry_enabled": False,
        "shared_runners_enabled": True,
        "lfs_enabled": True,
        "request_access_enabled": True,
        "only_allow_merge_if_pipeline_succeeds": False,
        "shared_with_groups": [],
        "repository_access_level": "enabled",
    }
    owner_ns = project.namespace
    if owner_ns.kind == "user" and owner_ns.owner_id in state.users:
        body["owner"] = user_basic(state, state.users[owner_ns.owner_id])
    if project.forked_from_id is not None and project.forked_from_id in state.projects:
        parent = state.projects[project.forked_from_id]
        body["forked_from_project"] = project_simple(state, parent)
    if with_access and user is not None:
        body["permissions"] = permissions_json(state, project, user)
    return body


def project_simple(state: SandboxState, project: Project) -> dict[str, Any]:
    """The `simple=true` project fields (`BasicProjectDetails`)."""
    return {
        "id": project.id,
        "description": project.description,
        "name": project.name,
        "name_with_namespace": project.name_with_namespace,
        "path": project.path,
        "path_with_namespace": project.path_with_namespace,
        "created_at": project.created_at,
        "default_branch": project.default_branch,
        "tag_list": list(project.topics),
        "topics": list(project.topics),
        "ssh_url_to_repo": project.ssh_url_to_repo,
        "http_url_to_repo": project.http_url_to_repo,
        "web_url": project.web_url,
        "avatar_url": None,
        "star_count": 0,
        "last_activity_at": project.last_activity_at,
        "visibility": project.visibility,
        "namespace": namespace_json(state, project.namespace),
    }


def repo_is_empty(project: Project) -> bool:
    """True when the bare repository has no branch (reads refs without running git)."""
    repo = project.repo_path
    heads = repo / "refs" / "heads"
    if heads.is_dir() and any(p.is_file() for p in heads.rglob("*")):
        return False
    packed = repo / "packed-refs"
    if packed.is_file():
        return not any(" refs/heads/" in line for line in packed.read_text().splitlines())
    return True


def member_json(state: SandboxState, member: Member, level: int | None = None) -> dict[str, Any]:
    """A member (`access_level` is the effective one when `level` is given)."""
    user = state.users[member.user_id]
    creator = state.users.get(member.created_by_id or 0)
    return {
        **user_basic(state, user),
        "access_level": level if level is not None else member.access_level,
        "created_at": member.created_at,
        "created_by": user_basic(state, creator) if creator else None,
        "expires_at": member.expires_at,
        "membership_state": "active",
        "group_saml_identity": None,
    }


HOOK_EVENT_FLAGS = (
    "push_events",
    "tag_push_events",
    "merge_requests_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
    "job_events",
    "pipeline_events",
    "wiki_page_events",
    "deployment_events",
    "feature_flag_events",
    "releases_events",
    "emoji_events",
    "resource_access_token_events",
    "repository_update_events",
)
SYSTEM_HOOK_FLAGS = (
    "push_events",
    "tag_push_events",
    "merge_requests_events",
    "repository_update_events",
)


def hook_json(hook: Hook) -> dict[str, Any]:
    """A project hook as GET/POST/PUT return it (the token is never echoed)."""
    body: dict[str, Any] = {
        "id": hook.id,
        "url": hook.url,
        "name": hook.name,
        "description": hook.description,
        "created_at": hook.created_at,
        "project_id": hook.owner_id,
        "push_events_branch_filter": hook.push_events_branch_filter,
        "branch_filter_strategy": hook.branch_filter_strategy,
        "enable_ssl_verification": hook.enable_ssl_verification,
        "alert_status": hook.alert_status,
        "disabled_until": hook.disabled_until,
        "url_variables": [{"key": v["key"]} for v in hook.url_variables],
        "custom_headers": [{"key": h["key"]} for h in hook.custom_headers],
        "custom_webhook_template": hook.custom_webhook_template,
    }
    for flag in HOOK_EVENT_FLAGS:
        body[flag] = bool(hook.flags.get(flag, False))
    return body


def system_hook_json(hook: Hook) -> dict[str, Any]:
    """A system hook as GET/POST /hooks return it."""
    body: dict[str, Any] = {
        "id": hook.id,
        "url": hook.url,
        "name": hook.name,
        "description": hook.description,
        "created_at": hook.created_at,
        "enable_ssl_verification": hook.enable_ssl_verification,
        "alert_status": hook.alert_status,
        "disabled_until": hook.disabled_until,
        "url_variables": [{"key": v["key"]} for v in hook.url_variables],
        "custom_headers": [{"key": h["key"]} for h in hook.custom_headers],
        "custom_webhook_template": hook.custom_webhook_template,
        "push_events_branch_filter": hook.push_events_branch_filter,
        "branch_filter_strategy": hook.branch_filter_strategy,
    }
    for flag in SYSTEM_HOOK_FLAGS:
        body[flag] = bool(hook.flags.get(flag, False))
    return body


def variable_json(variable: Variable) -> dict[str, Any]:
    """A CI/CD variable in the REST shape (`value` is null when hidden)."""
    return {
        "variable_type": variable.variable_type,
        "key": variable.key,
        "value": None if variable.hidden else variable.value,
        "hidden": variable.hidden,
        "protected": variable.protected,
        "masked": variable.masked,
        "raw": variable.raw,
        "environment_scope": variable.environment_scope,
        "description": variable.description,
    }
