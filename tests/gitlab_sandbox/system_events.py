"""System-hook payloads for project and membership events (keys as in GitLab's documented examples).

Admin events always go to every system hook (`X-Gitlab-Event: System Hook`), whatever the
hook's event switches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.gitlab_sandbox.records import OWNER, ROLE_NAMES, Group, Member, User

if TYPE_CHECKING:
    from tests.gitlab_sandbox.state import Project, SandboxState


def _owners(state: SandboxState, project: Project) -> tuple[str, str, list[dict[str, str]]]:
    ns = project.namespace
    if ns.kind == "user":
        owner = state.users.get(ns.owner_id or 0)
        if owner is None:
            return ns.name, "", []
        return owner.name, owner.email, [{"name": owner.name, "email": owner.email}]
    owners = [
        state.users[m.user_id]
        for m in state.members
        if m.source_type == "Namespace"
        and m.source_id in {g.id for g in state.ancestors(ns)}
        and m.access_level >= OWNER
        and m.user_id in state.users
    ]
    unique = {u.id: u for u in owners}.values()
    # A group owns the project: GitLab reports the group's name and no e-mail.
    return ns.name, "", [{"name": u.name, "email": u.email} for u in unique]


def project_event(
    state: SandboxState, project: Project, event_name: str, old_path: str | None = None
) -> dict[str, Any]:
    """`project_create|destroy|update|rename|transfer` (the last two carry `old_path_with_namespace`)."""
    owner_name, owner_email, owners = _owners(state, project)
    body: dict[str, Any] = {
        "created_at": project.created_at,
        "updated_at": project.updated_at,
        "event_name": event_name,
        "name": project.name,
        "owner_email": owner_email,
        "owner_name": owner_name,
        "owners": owners,
        "path": project.path,
        "path_with_namespace": project.path_with_namespace,
        "project_id": project.id,
        # GitLab reports the project's own ProjectNamespace id; the sandbox has none and
        # reports the parent namespace id (same JSON type).
        "project_namespace_id": project.namespace_id,
        "project_visibility": project.visibility,
    }
    if old_path is not None:
        body["old_path_with_namespace"] = old_path
    return body


def team_event(
    state: SandboxState, project: Project, member: Member, event_name: str
) -> dict[str, Any]:
    """`user_add_to_team|user_update_for_team|user_remove_from_team` for a project member."""
    user = state.users[member.user_id]
    return {
        "created_at": member.created_at,
        "updated_at": state.now(),
        "event_name": event_name,
        "access_level": ROLE_NAMES.get(member.access_level, str(member.access_level)),
        "project_id": project.id,
        "project_name": project.name,
        "project_path": project.path,
        "project_path_with_namespace": project.path_with_namespace,
        "user_email": user.email,
        "user_name": user.name,
        "user_username": user.username,
        "user_id": user.id,
        "project_visibility": project.visibility,
    }


def group_member_event(
    state: SandboxState, group: Group, member: Member, event_name: str
) -> dict[str, Any]:
    """`user_add_to_group|user_update_for_group|user_remove_from_group` for a group member."""
    user: User = state.users[member.user_id]
    return {
        "created_at": member.created_at,
        "updated_at": state.now(),
        "event_name": event_name,
        "group_access": ROLE_NAMES.get(member.access_level, str(member.access_level)),
        "group_id": group.id,
        "group_name": group.name,
        "group_path": group.path,
        "user_email": user.email,
        "user_name": user.name,
        "user_username": user.username,
        "user_id": user.id,
    }


def send(state: SandboxState, body: dict[str, Any]) -> None:
    """Queue an admin event for every system hook (no-op when no dispatcher runs)."""
    if state.webhooks is not None:
        state.webhooks.system_event(body)
