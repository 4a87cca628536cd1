"""The sandbox's state: users, tokens, namespaces, projects, members, hooks, variables.

Everything is guarded by one re-entrant lock and persisted as one JSON file under the data
directory (written atomically after every mutation), so a restarted sandbox keeps its
projects. Bare repositories live under `<data dir>/repositories/<project id>.git`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.gitlab_sandbox import permissions
from tests.gitlab_sandbox.http import ApiError, forbidden, not_found
from tests.gitlab_sandbox.records import (
    Group,
    Hook,
    Member,
    Namespace,
    ProjectRecord,
    Token,
    User,
    Variable,
)
from tests.support import leakcheck

if TYPE_CHECKING:
    from tests.gitlab_sandbox.webhooks import WebhookDispatcher

__all__ = [
    "Group",
    "Hook",
    "Member",
    "Namespace",
    "Project",
    "SandboxState",
    "Token",
    "User",
    "Variable",
]

STATE_FILE = "sandbox-state.json"


@dataclass
class Project(ProjectRecord):
    """A project with its computed paths and URLs (needs the owning state for those)."""

    state: Any = field(default=None, repr=False, compare=False)

    @property
    def namespace(self) -> Group:
        """The namespace (group or user namespace) the project lives in."""
        ns: Group = self.state.namespaces[self.namespace_id]
        return ns

    @property
    def path_with_namespace(self) -> str:
        """`<namespace full path>/<path>`."""
        return f"{self.state.full_path(self.namespace)}/{self.path}"

    @property
    def name_with_namespace(self) -> str:
        """`<namespace full name> / <name>` as GitLab shows it."""
        return f"{self.state.full_name(self.namespace)} / {self.name}"

    @property
    def web_url(self) -> str:
        """`<base>/<path_with_namespace>`."""
        return f"{self.state.base_url}/{self.path_with_namespace}"

    @property
    def http_url_to_repo(self) -> str:
        """The smart-HTTP clone URL `<base>/<path_with_namespace>.git`."""
        return f"{self.web_url}.git"

    @property
    def ssh_url_to_repo(self) -> str:
        """An SSH URL of GitLab's form (the sandbox serves no SSH)."""
        host = self.state.base_url.split("://", 1)[-1].split(":")[0]
        return f"git@{host}:{self.path_with_namespace}.git"

    @property
    def repo_path(self) -> Path:
        """The bare repository on disk (stable across renames and transfers)."""
        path: Path = self.state.repos_dir / f"{self.id}.git"
        return path


def now_iso() -> str:
    """The current UTC time in GitLab's API format (`2024-01-31T12:00:00.123Z`)."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SandboxState:
    """All sandbox data plus the lock around it; `save()` persists it atomically."""

    def __init__(self, data_dir: Path, base_url: str = "http://127.0.0.1") -> None:
        self.lock = threading.RLock()
        self.data_dir = Path(data_dir)
        self.repos_dir = self.data_dir / "repositories"
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = base_url.rstrip("/")
        self.users: dict[int, User] = {}
        self.tokens: dict[str, Token] = {}
        self.namespaces: dict[int, Group] = {}
        self.projects: dict[int, Project] = {}
        self.members: list[Member] = []
        self.hooks: dict[int, Hook] = {}
        self.variables: list[Variable] = []
        self.redirects: dict[str, int] = {}
        self.counters: dict[str, int] = {}
        self.webhooks: WebhookDispatcher | None = None
        self._load()

    # ------------------------------------------------------------------ persistence

    def next_id(self, kind: str) -> int:
        """The next id of a kind (users, namespaces, projects, hooks, tokens)."""
        with self.lock:
            self.counters[kind] = self.counters.get(kind, 0) + 1
            return self.counters[kind]

    @contextlib.contextmanager
    def mutation(self) -> Iterator[None]:
        """Hold the lock for a change and persist the state when it completes."""
        with self.lock:
            yield
            self.save()

    def save(self) -> None:
        """Write the whole state to `<data dir>/sandbox-state.json` (temp file + rename)."""
        with self.lock:
            data = {
                "counters": self.counters,
                "users": [asdict(u) for u in self.users.values()],
                "tokens": [asdict(t) for t in self.tokens.values()],
                "namespaces": [asdict(n) for n in self.namespaces.values()],
                "projects": [_project_dict(p) for p in self.projects.values()],
                "members": [asdict(m) for m in self.members],
                "hooks": [asdict(h) for h in self.hooks.values()],
                "variables": [asdict(v) for v in self.variables],
                "redirects": self.redirects,
            }
            target = self.data_dir / STATE_FILE
            tmp = target.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, target)

    def _load(self) -> None:
        source = self.data_dir / STATE_FILE
        if not source.exists():
            return
        data = json.loads(source.read_text())
        self.counters = dict(data.get("counters", {}))
        self.users = {u["id"]: User(**u) for u in data.get("users", [])}
        self.tokens = {t["token"]: Token(**t) for t in data.get("tokens", [])}
        self.namespaces = {n["id"]: Group(**n) for n in data.get("namespaces", [])}
        self.projects = {p["id"]: Project(**p, state=self) for p in data.get("projects", [])}
        self.members = [Member(**m) for m in data.get("members", [])]
        self.hooks = {h["id"]: Hook(**h) for h in data.get("hooks", [])}
        self.variables = [Variable(**v) for v in data.get("variables", [])]
        self.redirects = dict(data.get("redirects", {}))

    # ------------------------------------------------------------------ clock and names

    def now(self) -> str:
        """The sandbox clock as a GitLab API timestamp (UTC, milliseconds, `Z`)."""
        return now_iso()

    def full_path(self, ns: Group) -> str:
        """A namespace's full path (`parent/child`)."""
        parts = [ns.path]
        while ns.parent_id is not None:
            ns = self.namespaces[ns.parent_id]
            parts.append(ns.path)
        return "/".join(reversed(parts))

    def full_name(self, ns: Group) -> str:
        """A namespace's full name (`Parent / Child`)."""
        parts = [ns.name]
        while ns.parent_id is not None:
            ns = self.namespaces[ns.parent_id]
            parts.append(ns.name)
        return " / ".join(reversed(parts))

    def ancestors(self, ns: Group) -> list[Group]:
        """`ns` and its parents up to the top-level group, nearest first."""
        chain = [ns]
        while ns.parent_id is not None:
            ns = self.namespaces[ns.parent_id]
            chain.append(ns)
        return chain

    def descendants(self, ns: Group) -> list[Group]:
        """Every subgroup below `ns` (not `ns` itself)."""
        found: list[Group] = []
        frontier = [ns.id]
        while frontier:
            parent = frontier.pop()
            for candidate in self.namespaces.values():
                if candidate.parent_id == parent:
                    found.append(candidate)
                    frontier.append(candidate.id)
        return found

    # ------------------------------------------------------------------ users and tokens

    def create_user(
        self, username: str, name: str | None = None, email: str | None = None, admin: bool = False
    ) -> User:
        """Create a user and their personal namespace (409-free: callers check uniqueness)."""
        with self.mutation():
            ns = Group(
                id=self.next_id("namespaces"),
                name=name or username,
                path=username,
                kind="user",
                visibility="public",
                created_at=self.now(),
            )
            user = User(
                id=self.next_id("users"),
                username=username,
                name=name or username,
                email=email or f"{username}@example.com",
                admin=admin,
                created_at=self.now(),
                namespace_id=ns.id,
            )
            ns.owner_id = user.id
            self.namespaces[ns.id] = ns
            self.users[user.id] = user
            return user

    def create_token(
        self,
        user: User,
        name: str = "sandbox",
        scopes: list[str] | None = None,
        token: str | None = None,
        expires_at: str | None = None,
    ) -> Token:
        """Issue a personal access token for `user` (`token` fixes the secret, e.g. root's)."""
        with self.mutation():
            record = Token(
                id=self.next_id("tokens"),
                user_id=user.id,
                token=token or f"glpat-{secrets.token_urlsafe(20)}",
                name=name,
                scopes=scopes or ["api"],
                created_at=self.now(),
                expires_at=expires_at,
            )
            self.tokens[record.token] = record
            leakcheck.register(record.token, "GitLab sandbox token")
            return record

    def user_for_token(self, secret: str) -> User | None:
        """The active user owning this token, or None for an unknown/revoked/expired token."""
        with self.lock:
            record = self.tokens.get(secret)
            if record is None or record.revoked:
                return None
            if record.expires_at and record.expires_at < self.now()[:10]:
                return None
            user = self.users.get(record.user_id)
            return user if user and user.state == "active" else None

    def user_by_username(self, username: str) -> User | None:
        """The user with this username (case-insensitive, as GitLab), or None."""
        with self.lock:
            for user in self.users.values():
                if user.username.lower() == username.lower():
                    return user
            return None

    def find_user(self, id_or_username: str) -> User:
        """A user by id or username, else 404 `User Not Found`."""
        with self.lock:
            if id_or_username.isdigit() and int(id_or_username) in self.users:
                return self.users[int(id_or_username)]
            user = self.user_by_username(id_or_username)
            if user is None:
                raise not_found("User")
            return user

    # ------------------------------------------------------------------ namespaces

    def namespace_by_path(self, full_path: str) -> Group | None:
        """The namespace whose full path is `full_path` (case-insensitive), or None."""
        with self.lock:
            wanted = full_path.strip("/").lower()
            for ns in self.namespaces.values():
                if self.full_path(ns).lower() == wanted:
                    return ns
            return None

    def find_namespace(
        self, id_or_path: str, user: User | None, resource: str = "Namespace"
    ) -> Group:
        """A namespace visible to `user` by id or full path, else 404 `<resource> Not Found`."""
        with self.lock:
            ns: Group | None
            if id_or_path.isdigit():
                ns = self.namespaces.get(int(id_or_path))
            else:
                ns = self.namespace_by_path(id_or_path)
            if ns is None or not permissions.can_see_namespace(self, user, ns):
                raise not_found(resource)
            return ns

    def find_group(self, id_or_path: str, user: User | None) -> Group:
        """A group (not a user namespace) visible to `user`, else 404 `Group Not Found`."""
        ns = self.find_namespace(id_or_path, user, "Group")
        if ns.kind != "group":
            raise not_found("Group")
        return ns

    # ------------------------------------------------------------------ projects

    def project_by_path(self, full_path: str) -> Project | None:
        """The project at `namespace/path` (case-insensitive), or None."""
        with self.lock:
            wanted = full_path.strip("/").lower()
            for project in self.projects.values():
                if project.path_with_namespace.lower() == wanted:
                    return project
            return None

    def find_project(self, id_or_path: str, user: User | None, need: str = "read") -> Project:
        """The project for `id_or_path` if `user` may do `need` on it.

        404 `Project Not Found` when it does not exist or the user cannot see it; 403 when they
        can see it but `need` (read, read_repository, push, admin, owner) is beyond their role.
        """
        with self.lock:
            project: Project | None
            if str(id_or_path).isdigit():
                project = self.projects.get(int(id_or_path))
            else:
                project = self.project_by_path(str(id_or_path))
            if project is None or not permissions.can(self, user, project, "read"):
                raise not_found("Project")
            if not permissions.can(self, user, project, need):
                raise forbidden()
            return project

    def project_json(
        self, project: Project, user: User | None, with_access: bool = True
    ) -> dict[str, Any]:
        """The GitLab project object as `user` sees it (`permissions` only when signed in)."""
        from tests.gitlab_sandbox import entities

        return entities.project_json(self, project, user, with_access=with_access)

    # ------------------------------------------------------------------ members

    def direct_member(self, source_type: str, source_id: int, user_id: int) -> Member | None:
        """The direct membership of a user in a project/namespace, or None."""
        with self.lock:
            for member in self.members:
                if (member.source_type, member.source_id, member.user_id) == (
                    source_type,
                    source_id,
                    user_id,
                ):
                    return member
            return None

    def add_member(
        self, source_type: str, source_id: int, user: User, level: int, by: User | None
    ) -> Member:
        """Add (or overwrite) a direct membership."""
        with self.mutation():
            existing = self.direct_member(source_type, source_id, user.id)
            if existing:
                existing.access_level = level
                return existing
            member = Member(
                source_type=source_type,
                source_id=source_id,
                user_id=user.id,
                access_level=level,
                created_at=self.now(),
                created_by_id=by.id if by else None,
            )
            self.members.append(member)
            return member

    # ------------------------------------------------------------------ pushes

    def fire_push(self, project: Project, user: User, updates: list[tuple[str, str, str]]) -> None:
        """Deliver push / tag push hooks (one per ref, none above 3 refs) and `repository_update`.

        Both API commits and `git push` call this after the refs moved.
        """
        from tests.gitlab_sandbox import push_delivery

        push_delivery.fire_push(self, project, user, updates)


def _project_dict(project: Project) -> dict[str, Any]:
    return {f.name: getattr(project, f.name) for f in fields(ProjectRecord)}


__all__ += ["ApiError", "now_iso"]
