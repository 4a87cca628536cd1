"""GitLab's permission model, reduced to what the sandbox serves.

* visibility: anonymous callers see public projects/groups, signed-in users also internal
  ones, private ones are visible to members (direct, or through an ancestor group) and admins;
* a user's effective level on a project is the highest of their direct project membership,
  their memberships in the project's group and its ancestors, and Owner of their own
  personal namespace;
* needs: `read` (see it), `read_repository` (private: Reporter+; public/internal: whoever sees
  it), `push` (Developer+), `admin` (Maintainer+), `owner` (Owner). Admins may do everything;
* an archived project is read-only: nobody, not even an admin, may `push` or `push_protected`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.gitlab_sandbox.records import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    NO_ACCESS,
    OWNER,
    REPORTER,
    Group,
    User,
)

if TYPE_CHECKING:
    from tests.gitlab_sandbox.state import Project, SandboxState

NEEDS = ("read", "read_repository", "push", "push_protected", "admin", "owner")
NEED_LEVEL = {
    "read_repository": REPORTER,
    "push": DEVELOPER,
    "push_protected": MAINTAINER,
    "admin": MAINTAINER,
    "owner": OWNER,
}


def group_level(state: SandboxState, user: User | None, ns: Group) -> int:
    """Highest membership level of `user` in group `ns` or any ancestor (0 if none)."""
    if user is None:
        return NO_ACCESS
    if ns.kind == "user":
        return OWNER if ns.owner_id == user.id else NO_ACCESS
    best = NO_ACCESS
    for group in state.ancestors(ns):
        member = state.direct_member("Namespace", group.id, user.id)
        if member:
            best = max(best, member.access_level)
    return best


def project_level(state: SandboxState, user: User | None, project: Project) -> int:
    """Effective access level of `user` on `project` (direct or inherited; 0 if none)."""
    if user is None:
        return NO_ACCESS
    direct = state.direct_member("Project", project.id, user.id)
    best = direct.access_level if direct else NO_ACCESS
    return max(best, group_level(state, user, project.namespace))


def _visible_by_visibility(user: User | None, visibility: str) -> bool:
    return visibility == "public" or (visibility == "internal" and user is not None)


def can(state: SandboxState, user: User | None, project: Project, need: str) -> bool:
    """True when `user` may do `need` on `project` (see the module docstring)."""
    if need not in NEEDS:
        raise ValueError(f"unknown permission need {need!r}")
    if need in ("push", "push_protected") and project.archived:
        return False
    if user is not None and user.admin:
        return True
    level = project_level(state, user, project)
    visible = _visible_by_visibility(user, project.visibility) or level >= GUEST
    if need == "read":
        return visible
    if need == "read_repository":
        if not visible:
            return False
        return project.visibility != "private" or level >= REPORTER
    return level >= NEED_LEVEL[need]


def can_see_namespace(state: SandboxState, user: User | None, ns: Group) -> bool:
    """Groups follow visibility plus membership (in it, an ancestor, or anything below it)."""
    if user is not None and user.admin:
        return True
    if ns.kind == "user":
        return True
    if _visible_by_visibility(user, ns.visibility) or group_level(state, user, ns) >= GUEST:
        return True
    if user is None:
        return False
    below = {g.id for g in state.descendants(ns)}
    if any(
        m.user_id == user.id and m.source_type == "Namespace" and m.source_id in below
        for m in state.members
    ):
        return True
    return any(
        m.user_id == user.id
        and m.source_type == "Project"
        and m.source_id in state.projects
        and state.projects[m.source_id].namespace_id in below | {ns.id}
        for m in state.members
    )


def can_admin_group(state: SandboxState, user: User | None, ns: Group, level: int = OWNER) -> bool:
    """True when `user` holds at least `level` on group `ns` (admins always)."""
    if user is None:
        return False
    return user.admin or group_level(state, user, ns) >= level
