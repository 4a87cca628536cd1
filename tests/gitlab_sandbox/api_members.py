"""Project and group members: direct (`/members`) and effective (`/members/all`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.gitlab_sandbox import entities, permissions, system_events
from tests.gitlab_sandbox.api_users import signed_in
from tests.gitlab_sandbox.http import (
    ApiError,
    Request,
    Response,
    bad_request_error,
    forbidden,
    paginate,
    param_int,
    param_str,
    record_not_found,
    require,
    router,
)
from tests.gitlab_sandbox.records import ACCESS_LEVELS, MAINTAINER, OWNER, Group, Member, User
from tests.gitlab_sandbox.state import Project, SandboxState


class _Source:
    """A project or group whose members are managed, with its event names."""

    def __init__(self, state: SandboxState, project: Project | None, group: Group | None) -> None:
        self.state, self.project, self.group = state, project, group
        self.type = "Project" if project else "Namespace"
        self.id = project.id if project else group.id  # type: ignore[union-attr]

    def chain(self) -> list[tuple[str, int]]:
        """(source_type, id) of the source and every group it inherits members from."""
        ns = self.project.namespace if self.project else self.group
        assert ns is not None
        inherited = (
            [("Namespace", g.id) for g in self.state.ancestors(ns)] if ns.kind == "group" else []
        )
        if self.project:
            return [("Project", self.project.id), *inherited]
        return inherited

    def level(self, user: User | None) -> int:
        """The caller's effective level on this source."""
        if self.project:
            return permissions.project_level(self.state, user, self.project)
        assert self.group is not None
        return permissions.group_level(self.state, user, self.group)

    def event(self, member: Member, kind: str) -> dict[str, Any]:
        """The system-hook payload for add/update/remove of `member`."""
        if self.project:
            name = {
                "add": "user_add_to_team",
                "update": "user_update_for_team",
                "remove": "user_remove_from_team",
            }[kind]
            return system_events.team_event(self.state, self.project, member, name)
        assert self.group is not None
        name = {
            "add": "user_add_to_group",
            "update": "user_update_for_group",
            "remove": "user_remove_from_group",
        }[kind]
        return system_events.group_member_event(self.state, self.group, member, name)


def _project_source(req: Request) -> _Source:
    return _Source(req.state, req.state.find_project(req.path_params["id"], req.user), None)


def _group_source(req: Request) -> _Source:
    return _Source(req.state, None, req.state.find_group(req.path_params["id"], req.user))


def _direct(source: _Source) -> list[Member]:
    return [
        m for m in source.state.members if (m.source_type, m.source_id) == (source.type, source.id)
    ]


def _effective(source: _Source) -> dict[int, tuple[Member, int]]:
    chain = source.chain()
    best: dict[int, tuple[Member, int]] = {}
    for member in source.state.members:
        if (member.source_type, member.source_id) not in chain:
            continue
        current = best.get(member.user_id)
        if current is None or member.access_level > current[1]:
            best[member.user_id] = (member, member.access_level)
    return best


def _filter_query(req: Request, members: list[Member]) -> list[Member]:
    query = (param_str(req, "query") or "").lower()
    users = req.state.users
    if query:
        members = [
            m
            for m in members
            if query in users[m.user_id].username.lower() or query in users[m.user_id].name.lower()
        ]
    wanted = req.params.get("user_ids")
    if isinstance(wanted, list):
        ids = {int(v) for v in wanted if str(v).isdigit()}
        members = [m for m in members if m.user_id in ids]
    return members


def _list(req: Request, source: _Source) -> Response:
    with req.state.lock:
        members = _filter_query(req, sorted(_direct(source), key=lambda m: m.user_id))
        return paginate(req, members, lambda m: entities.member_json(req.state, m))


def _list_all(req: Request, source: _Source) -> Response:
    with req.state.lock:
        best = _effective(source)
        members = _filter_query(req, [best[k][0] for k in sorted(best)])
        return paginate(
            req, members, lambda m: entities.member_json(req.state, m, best[m.user_id][1])
        )


def _user_id(req: Request) -> int:
    value = req.path_params["user_id"]
    if not value.isdigit():
        raise bad_request_error("user_id is invalid")
    return int(value)


def _get(req: Request, source: _Source) -> Response:
    member = source.state.direct_member(source.type, source.id, _user_id(req))
    if member is None:
        raise record_not_found()
    return Response(200, entities.member_json(req.state, member))


def _get_all(req: Request, source: _Source) -> Response:
    found = _effective(source).get(_user_id(req))
    if found is None:
        raise record_not_found()
    return Response(200, entities.member_json(req.state, found[0], found[1]))


def _may_manage(req: Request, source: _Source, level: int) -> User:
    user = signed_in(req)
    mine = source.level(user)
    needed = OWNER if source.type == "Namespace" else MAINTAINER
    if not user.admin and (mine < needed or level > mine):
        raise forbidden()
    return user


def _level(req: Request) -> int:
    level = param_int(req, "access_level")
    if level not in ACCESS_LEVELS:
        raise bad_request_error("access_level does not have a valid value")
    return level


def _add(req: Request, source: _Source) -> Response:
    require(req, "access_level")
    level = _level(req)
    user = _may_manage(req, source, level)
    state = req.state
    target_id = param_str(req, "user_id")
    username = param_str(req, "username")
    if not target_id and not username:
        raise bad_request_error(
            "user_id, username are missing, exactly one parameter must be provided"
        )
    target = state.find_user(target_id or username or "")
    with state.mutation():
        if state.direct_member(source.type, source.id, target.id):
            raise ApiError(409, {"message": "Member already exists"})
        member = state.add_member(source.type, source.id, target, level, user)
        member.expires_at = param_str(req, "expires_at")
        event = source.event(member, "add")
    system_events.send(state, event)
    return Response(201, entities.member_json(state, member))


def _update(req: Request, source: _Source) -> Response:
    require(req, "access_level")
    level = _level(req)
    _may_manage(req, source, level)
    state = req.state
    with state.mutation():
        member = state.direct_member(source.type, source.id, _user_id(req))
        if member is None:
            raise record_not_found()
        member.access_level = level
        if "expires_at" in req.params:
            member.expires_at = param_str(req, "expires_at")
        event = source.event(member, "update")
    system_events.send(state, event)
    return Response(200, entities.member_json(state, member))


def _remove(req: Request, source: _Source) -> Response:
    state = req.state
    member = state.direct_member(source.type, source.id, _user_id(req))
    if member is None:
        raise record_not_found()
    caller = signed_in(req)
    if caller.id != member.user_id:
        _may_manage(req, source, member.access_level)
    with state.mutation():
        event = source.event(member, "remove")
        state.members.remove(member)
    system_events.send(state, event)
    return Response(204)


Handler = Callable[[Request, _Source], Response]
_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/members", _list),
    ("GET", "/members/all", _list_all),
    ("GET", "/members/:user_id", _get),
    ("GET", "/members/all/:user_id", _get_all),
    ("POST", "/members", _add),
    ("PUT", "/members/:user_id", _update),
    ("DELETE", "/members/:user_id", _remove),
]


def _bind(handler: Handler, pick: Callable[[Request], _Source]) -> Callable[[Request], Response]:
    def route(req: Request) -> Response:
        return handler(req, pick(req))

    route.__doc__ = handler.__doc__
    return route


for _method, _suffix, _handler in _ROUTES:
    router.route(_method, f"/api/v4/projects/:id{_suffix}")(_bind(_handler, _project_source))
    router.route(_method, f"/api/v4/groups/:id{_suffix}")(_bind(_handler, _group_source))
