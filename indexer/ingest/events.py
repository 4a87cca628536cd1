"""GitLab webhook and system-hook deliveries parsed into typed events, without any I/O.

`parse_event(headers, body)` is the whole contract: it reads the `X-Gitlab-Event` header and
the body's `event_name` / `object_kind`, checks that they agree, and returns one frozen
dataclass per kind of event dshub acts on, or an `IgnoredEvent` saying why it does not act.
Malformed deliveries raise `InvalidEvent` (an `InvalidInput`) naming the bad field.

Payload URLs (`web_url`, `git_http_url`, ...) are never read: they are data, not addresses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from indexer.errors import InvalidInput
from indexer.json_input import decode_object

EVENT_HEADER = "X-Gitlab-Event"
SYSTEM_HOOK = "System Hook"

# A blank object id is all zeros: 40 characters for SHA-1 repositories, 64 for SHA-256 ones.
_BLANK_SHA = re.compile(r"0+")
_MAX_REF_LENGTH = 1024
# GitLab's ids are bigint; SQLite's INTEGER and PostgreSQL's bigint hold up to this, so a
# larger "id" is a malformed delivery (its own 400), never a journal write that fails a batch.
MAX_ID = 2**63 - 1


class InvalidEvent(InvalidInput):
    """A delivery whose header, body or fields do not make a usable GitLab event."""


class MissingField(InvalidEvent):
    """A field the event needs is absent (the message names it with its JSON path)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"missing field '{field}'")
        self.field = field


class InvalidField(InvalidEvent):
    """A field is present but has the wrong type or value (the message names it)."""

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"field '{field}' must be {expected}")
        self.field = field


@dataclass(frozen=True)
class PushEvent:
    """A branch was created, moved or deleted (project, group or system hook)."""

    project_id: int
    ref: str
    before: str | None
    after: str | None
    deleted: bool
    kind: str = "push"


@dataclass(frozen=True)
class TagPushEvent:
    """A tag was created or deleted."""

    project_id: int
    ref: str
    before: str | None
    after: str | None
    deleted: bool
    kind: str = "tag_push"


@dataclass(frozen=True)
class ReleaseEvent:
    """A GitLab Release of a tag was created, edited or deleted (project and group hooks only:
    system hooks carry no release events). The tag itself may be unchanged: only the notes."""

    project_id: int
    tag: str
    action: str | None
    kind: str = "release"


@dataclass(frozen=True)
class RefChange:
    """One ref moved by a `repository_update` system hook."""

    ref: str
    before: str | None
    after: str | None
    deleted: bool


@dataclass(frozen=True)
class RepositoryUpdateEvent:
    """The system hook sent once per push with every changed ref."""

    project_id: int
    changes: tuple[RefChange, ...]
    kind: str = "repository_update"


@dataclass(frozen=True)
class MergeRequestEvent:
    """A merge request was opened, updated, merged, closed, approved, ..."""

    project_id: int
    iid: int
    action: str | None
    kind: str = "merge_request"


@dataclass(frozen=True)
class ProjectEvent:
    """A project was created, destroyed, renamed, transferred or updated (`action`)."""

    project_id: int
    action: str
    path_with_namespace: str | None
    visibility: str | None
    kind: str = "project"


@dataclass(frozen=True)
class MemberEvent:
    """Someone's access to a project or a group was added, changed or removed."""

    action: str
    user_id: int
    project_id: int | None
    group_id: int | None
    kind: str = "member"


@dataclass(frozen=True)
class GroupEvent:
    """A group or subgroup was renamed or destroyed (projects below it may have moved)."""

    action: str
    group_id: int
    kind: str = "group"


@dataclass(frozen=True)
class UserEvent:
    """A user account was removed or blocked, so every permission they had is stale."""

    action: str
    user_id: int
    kind: str = "user"


@dataclass(frozen=True)
class IgnoredEvent:
    """A well-formed delivery dshub has no use for; `reason` says why."""

    name: str
    reason: str
    project_id: int | None = None
    kind: str = "ignored"


Event = (
    PushEvent
    | TagPushEvent
    | ReleaseEvent
    | RepositoryUpdateEvent
    | MergeRequestEvent
    | ProjectEvent
    | MemberEvent
    | GroupEvent
    | UserEvent
    | IgnoredEvent
)


def is_blank_sha(value: str | None) -> bool:
    """True for GitLab's blank object id: all zeros, of any length (SHA-1 or SHA-256)."""
    return value is not None and _BLANK_SHA.fullmatch(value) is not None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name`, looked up case-insensitively, stripped; None when absent."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value.strip()
    return None


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse a delivery body strictly: UTF-8 JSON, no NaN/Infinity, an object at the top, at
    most `json_input.MAX_DEPTH` levels deep."""
    return decode_object(body, "body", error=InvalidEvent)


def parse_event(headers: Mapping[str, str], body: bytes) -> Event:
    """Turn one delivery (its headers and raw body) into a typed event, or raise `InvalidEvent`."""
    hook = header(headers, EVENT_HEADER)
    if not hook:
        raise InvalidEvent(f"missing header '{EVENT_HEADER}'")
    data = decode_body(body)
    normalised = " ".join(hook.split()).title()
    expected = _HOOKS.get(normalised)
    if normalised != SYSTEM_HOOK and expected is None:
        name = data.get("event_name") or data.get("object_kind")
        shown = name if isinstance(name, str) else normalised
        return IgnoredEvent(shown[:100], f"'{hook[:100]}' events are not used by dshub")
    name = _event_name(data)
    if expected is None:
        parser = _SYSTEM.get(name)
        if parser is None:
            return IgnoredEvent(
                name[:100], f"system hook event '{name[:100]}' is not used by dshub"
            )
        return parser(data, name)
    names, parser = expected
    if name not in names:
        raise InvalidEvent(
            f"header {EVENT_HEADER} '{hook[:100]}' does not match the body's event '{name[:100]}'"
        )
    return parser(data, name)


# ------------------------------------------------------------------------------ fields


def _event_name(data: Mapping[str, Any]) -> str:
    for key in ("event_name", "object_kind"):
        value = data.get(key)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise InvalidField(key, "a non-empty string")
            return value
    raise MissingField("event_name")


def _get(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            raise MissingField(path)
        node = node[part]
    return node


def _int(data: Mapping[str, Any], *paths: str) -> int:
    """The first of `paths` that is present, as an id: an integer from 1 to `MAX_ID` (bool is
    not an int here)."""
    for path in paths:
        try:
            value = _get(data, path)
        except MissingField:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
            raise InvalidField(path, f"a positive integer of at most {MAX_ID}")
        return value
    raise MissingField(paths[0])


def _optional_int(data: Mapping[str, Any], path: str) -> int | None:
    try:
        return _int(data, path)
    except MissingField:
        return None


def _str(data: Mapping[str, Any], path: str) -> str:
    value = _get(data, path)
    if not isinstance(value, str) or not value:
        raise InvalidField(path, "a non-empty string")
    return value


def _optional_str(data: Mapping[str, Any], path: str) -> str | None:
    value = data.get(path)
    return value if isinstance(value, str) and value else None


def _sha(data: Mapping[str, Any], path: str) -> str | None:
    """An object id field: None when absent or null, otherwise a hex string."""
    value = data.get(path)
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{4,64}", value):
        raise InvalidField(path, "a hexadecimal object id")
    return value.lower()


def _ref(data: Mapping[str, Any], path: str, prefix: str) -> str:
    ref = _str(data, path)
    if not ref.startswith(prefix) or len(ref) == len(prefix) or len(ref) > _MAX_REF_LENGTH:
        raise InvalidField(path, f"a full ref name starting with '{prefix}'")
    if any(ord(char) < 32 or char == "\x7f" for char in ref):
        raise InvalidField(path, "a ref name without control characters")
    if any("\ud800" <= char <= "\udfff" for char in ref):  # a `\ud800` escape in the JSON
        raise InvalidField(path, "a ref name of valid Unicode text (no lone surrogates)")
    return ref


# ------------------------------------------------------------------------------ parsers


def _ref_update(
    data: Mapping[str, Any], prefix: str
) -> tuple[int, str, str | None, str | None, bool]:
    project_id = _int(data, "project_id", "project.id")
    ref = _ref(data, "ref", prefix)
    if "after" not in data:
        raise MissingField("after")
    before, after = _sha(data, "before"), _sha(data, "after")
    # GitLab marks a deleted ref with a blank `after` and a null `checkout_sha`.
    deleted = is_blank_sha(after) or ("checkout_sha" in data and data["checkout_sha"] is None)
    return (
        project_id,
        ref,
        None if is_blank_sha(before) else before,
        None if is_blank_sha(after) else after,
        deleted,
    )


def _push(data: Mapping[str, Any], _name: str) -> Event:
    project_id, ref, before, after, deleted = _ref_update(data, "refs/heads/")
    return PushEvent(project_id, ref, before, after, deleted)


def _tag_push(data: Mapping[str, Any], _name: str) -> Event:
    project_id, ref, before, after, deleted = _ref_update(data, "refs/tags/")
    return TagPushEvent(project_id, ref, before, after, deleted)


def _repository_update(data: Mapping[str, Any], _name: str) -> Event:
    project_id = _int(data, "project_id", "project.id")
    changes = _get(data, "changes")
    if not isinstance(changes, list):
        raise InvalidField("changes", "a list")
    parsed = []
    for index, change in enumerate(changes):
        if not isinstance(change, dict):
            raise InvalidField(f"changes[{index}]", "an object")
        ref = _ref(change, "ref", "refs/")
        before, after = _sha(change, "before"), _sha(change, "after")
        parsed.append(
            RefChange(
                ref,
                None if is_blank_sha(before) else before,
                None if is_blank_sha(after) else after,
                is_blank_sha(after),
            )
        )
    return RepositoryUpdateEvent(project_id, tuple(parsed))


def _release(data: Mapping[str, Any], _name: str) -> Event:
    project_id = _int(data, "project.id", "project_id")
    # GitLab sends the bare tag name (`v1.1`); the ref rules apply to its full name.
    ref = _ref({"ref": f"refs/tags/{_str(data, 'tag')}"}, "ref", "refs/tags/")
    action = data.get("action")
    return ReleaseEvent(project_id, ref, action if isinstance(action, str) else None)


def _merge_request(data: Mapping[str, Any], _name: str) -> Event:
    project_id = _int(data, "object_attributes.target_project_id", "project.id")
    iid = _int(data, "object_attributes.iid")
    action = _get(data, "object_attributes").get("action")
    return MergeRequestEvent(project_id, iid, action if isinstance(action, str) else None)


def _project(data: Mapping[str, Any], name: str) -> Event:
    return ProjectEvent(
        project_id=_int(data, "project_id"),
        action=name.removeprefix("project_"),
        path_with_namespace=_optional_str(data, "path_with_namespace"),
        visibility=_optional_str(data, "project_visibility"),
    )


def _project_member(data: Mapping[str, Any], name: str) -> Event:
    return MemberEvent(name, _int(data, "user_id"), _int(data, "project_id"), None)


def _group_member(data: Mapping[str, Any], name: str) -> Event:
    return MemberEvent(name, _int(data, "user_id"), None, _int(data, "group_id"))


def _group(data: Mapping[str, Any], name: str) -> Event:
    return GroupEvent(name, _int(data, "group_id"))


def _user(data: Mapping[str, Any], name: str) -> Event:
    return UserEvent(name, _int(data, "user_id"))


def _ignore(reason: str) -> Callable[[Mapping[str, Any], str], Event]:
    def parse(data: Mapping[str, Any], name: str) -> Event:
        project = data.get("project_id")
        project_id = project if isinstance(project, int) and not isinstance(project, bool) else None
        return IgnoredEvent(name, reason, project_id)

    return parse


_Parser = Callable[[Mapping[str, Any], str], Event]

_ACCESS_REQUEST = _ignore("an access request grants no access until it is approved")

# Project and group webhooks: header -> (accepted event names, parser).
_HOOKS: dict[str, tuple[frozenset[str], _Parser]] = {
    "Push Hook": (frozenset({"push"}), _push),
    "Tag Push Hook": (frozenset({"tag_push"}), _tag_push),
    "Merge Request Hook": (frozenset({"merge_request"}), _merge_request),
    "Release Hook": (frozenset({"release"}), _release),
    "Project Hook": (frozenset({"project_create", "project_destroy"}), _project),
    "Subgroup Hook": (
        frozenset({"subgroup_create", "subgroup_destroy"}),
        lambda data, name: (
            _group(data, name)
            if name == "subgroup_destroy"
            else _ignore("a new subgroup holds no projects yet")(data, name)
        ),
    ),
    "Member Hook": (
        frozenset(
            {
                "user_add_to_group",
                "user_update_for_group",
                "user_remove_from_group",
                "user_access_request_to_group",
                "user_access_request_denied_for_group",
            }
        ),
        lambda data, name: (
            _ACCESS_REQUEST(data, name) if "access_request" in name else _group_member(data, name)
        ),
    ),
}

# System hooks: every delivery has the same header, so the body's event name decides.
_SYSTEM: dict[str, _Parser] = {
    "push": _push,
    "tag_push": _tag_push,
    "merge_request": _merge_request,
    "repository_update": _repository_update,
    "project_create": _project,
    "project_destroy": _project,
    "project_rename": _project,
    "project_transfer": _project,
    "project_update": _project,
    "user_add_to_team": _project_member,
    "user_update_for_team": _project_member,
    "user_remove_from_team": _project_member,
    "user_add_to_group": _group_member,
    "user_update_for_group": _group_member,
    "user_remove_from_group": _group_member,
    "group_rename": _group,
    "group_destroy": _group,
    "user_destroy": _user,
    "user_block": _user,
    "group_create": _ignore("a new group holds no projects yet"),
    "user_create": _ignore("a new user has no access to any dataset yet"),
    "user_rename": _ignore("permissions are keyed by user id, which a rename keeps"),
    "user_failed_login": _ignore("a failed login changes nothing dshub indexes"),
    "key_create": _ignore("SSH keys are not used by dshub"),
    "key_destroy": _ignore("SSH keys are not used by dshub"),
    "user_access_request_to_group": _ACCESS_REQUEST,
    "user_access_request_to_project": _ACCESS_REQUEST,
    "user_access_request_revoked_for_group": _ACCESS_REQUEST,
    "user_access_request_revoked_for_project": _ACCESS_REQUEST,
}
