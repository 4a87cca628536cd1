"""Create, edit, archive and delete datasets, and read their history — as the caller, in GitLab.

A new dataset protects its `v*` tags (versions): only Maintainers create them, nobody moves
them (see `indexer.write.versions`).

Every call takes a python-gitlab client carrying the caller's own token, so GitLab decides
what the person may do (project creation level, visibility limits, roles) and every change
is theirs. GitLab's refusals become our errors with GitLab's reason in the message: a name
or path taken → `Conflict` (409), a visibility the namespace does not allow → `Unprocessable`
(422, naming the highest allowed), a namespace the caller may not create in → `Forbidden`
(403). Nothing here touches the index; the HTTP edge re-indexes after a write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gitlab
import gitlab.exceptions
import requests

from indexer.errors import (
    Conflict,
    DshubError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    Unavailable,
    Unprocessable,
)
from indexer.write import skeleton

log = logging.getLogger("dshub.write")

VISIBILITIES = ("private", "internal", "public")
DEVELOPER, MAINTAINER = 30, 40
T = TypeVar("T")


@dataclass(frozen=True)
class NamespaceChoice:
    """A namespace the caller may create a dataset in, with the highest visibility it allows."""

    id: int
    full_path: str
    name: str
    kind: str  # "group" or "user"
    max_visibility: str


@dataclass(frozen=True)
class NewDataset:
    """What `POST /datasets` asks for (validated by the caller of `create_project`)."""

    name: str
    namespace: str  # full path or numeric id
    description: str = ""
    visibility: str = "private"
    topics: tuple[str, ...] = ()
    path: str | None = None


@dataclass(frozen=True)
class DatasetChanges:
    """What `PATCH /datasets/<id>` changes; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    topics: tuple[str, ...] | None = None
    visibility: str | None = None

    def as_gitlab(self) -> dict[str, Any]:
        """The `PUT /projects/:id` attributes."""
        attrs: dict[str, Any] = {}
        if self.name is not None:
            attrs["name"] = self.name
        if self.description is not None:
            attrs["description"] = self.description
        if self.topics is not None:
            attrs["topics"] = list(self.topics)
        if self.visibility is not None:
            attrs["visibility"] = self.visibility
        return attrs


@dataclass(frozen=True)
class Commit:
    """One commit of a dataset's history, as GitLab reports it."""

    id: str
    short_id: str
    title: str
    message: str
    author_name: str
    author_email: str
    authored_date: str
    committer_name: str
    committed_date: str
    parent_ids: tuple[str, ...]
    web_url: str


@dataclass(frozen=True)
class CommitPage:
    """A page of history, newest first; `next_page` is None on the last page."""

    items: list[Commit]
    page: int
    per_page: int
    next_page: int | None = None


@dataclass
class CreatedProject:
    """What GitLab answered for a new project (id, clone URL) after the first commit."""

    id: int
    path_with_namespace: str
    http_url_to_repo: str
    default_branch: str
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)


# --------------------------------------------------------------------------- GitLab errors


def _message(exc: gitlab.exceptions.GitlabError) -> Any:
    return exc.error_message


def _flat(message: Any) -> str:
    """GitLab's message as one line: a validation hash becomes `field: reason; ...`."""
    if isinstance(message, dict):
        parts = []
        for key, value in message.items():
            reasons = value if isinstance(value, list) else [value]
            parts.append(f"{key} {', '.join(str(r) for r in reasons)}")
        return "; ".join(parts)
    return str(message)


def translate(exc: Exception, what: str) -> DshubError:
    """A python-gitlab or network failure while doing `what`, as one of our errors."""
    if isinstance(exc, gitlab.exceptions.GitlabAuthenticationError):
        return NotAuthenticated("GitLab did not accept this token; sign in again")
    if isinstance(exc, requests.RequestException):
        return Unavailable(f"GitLab could not be reached while {what}; try again")
    if not isinstance(exc, gitlab.exceptions.GitlabError):
        raise exc
    code = exc.response_code or 500
    reason = _flat(_message(exc))
    by_code: dict[int, Callable[[], DshubError]] = {
        400: lambda: _validation(_message(exc), what),
        403: lambda: Forbidden(f"GitLab refused {what}: {reason}"),
        404: lambda: NotFound(f"GitLab found nothing you can see for {what}"),
    }
    if code in by_code:
        return by_code[code]()
    if code < 500 and code != 429:
        return InvalidInput(f"GitLab refused {what}: {reason}")
    return Unavailable(f"GitLab answered {code} while {what}; try again")


def _validation(message: Any, what: str) -> DshubError:
    """GitLab's 400s: model validation hashes and Grape parameter errors."""
    if isinstance(message, dict):
        taken = [k for k in ("name", "path") if "has already been taken" in str(message.get(k))]
        if taken:
            return Conflict(
                f"a project with this {' and '.join(taken)} already exists in the namespace; "
                "choose another"
            )
        if "visibility_level" in message:
            return Unprocessable(f"GitLab refused the visibility: {_flat(message)}")
        if "namespace" in message:
            return Forbidden(
                f"GitLab refused {what}: {_flat(message)} "
                "(you may not create projects in this namespace)"
            )
    return InvalidInput(f"GitLab refused {what}: {_flat(message)}")


def _call(what: str, work: Callable[[], T]) -> T:
    try:
        return work()
    except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
        raise translate(exc, what) from exc


# --------------------------------------------------------------------------- namespaces


def in_dataset_namespaces(full_path: str, namespaces: tuple[str, ...]) -> bool:
    """Whether projects under `full_path` count as datasets (`DSHUB_NAMESPACES`; empty: all)."""
    if not namespaces:
        return True
    return any(full_path == ns or full_path.startswith(ns + "/") for ns in namespaces)


def _rank(visibility: str) -> int:
    return VISIBILITIES.index(visibility)


def creatable_namespaces(
    client: gitlab.Gitlab, namespaces: tuple[str, ...]
) -> list[NamespaceChoice]:
    """Where the caller may create a dataset: their own namespace and the groups whose
    `project_creation_level` their role meets (admins: every group), within `namespaces`.

    GitLab's instance-wide limits (restricted visibility levels) are not readable by
    everyone; a create that breaks them is refused by GitLab and relayed.
    """

    def read() -> list[NamespaceChoice]:
        client.auth()
        user = client.user
        if user is None:
            raise NotAuthenticated("GitLab did not accept this token; sign in again")
        admin = bool(getattr(user, "is_admin", False))
        choices: list[NamespaceChoice] = []
        personal = client.namespaces.get(user.username)
        choices.append(
            NamespaceChoice(
                personal.id, personal.full_path, personal.name, "user", VISIBILITIES[-1]
            )
        )
        if admin:
            groups = client.groups.list(all_available=True, get_all=True)
            maintained = {g.id for g in groups}
        else:
            groups = client.groups.list(min_access_level=DEVELOPER, get_all=True)
            maintained = {
                g.id for g in client.groups.list(min_access_level=MAINTAINER, get_all=True)
            }
        for group in groups:
            attrs = group.asdict()
            level = attrs.get("project_creation_level") or "maintainer"
            if (
                admin
                or (level == "developer")
                or (level == "maintainer" and group.id in maintained)
            ):
                choices.append(_group_choice(attrs))
        return choices

    found = _call("listing your namespaces", read)
    return sorted(
        (c for c in found if in_dataset_namespaces(c.full_path, namespaces)),
        key=lambda c: (c.kind != "user", c.full_path),
    )


def _group_choice(attrs: Mapping[str, Any]) -> NamespaceChoice:
    # A project may not be more visible than its group (GitLab's own rule).
    return NamespaceChoice(
        int(attrs["id"]),
        str(attrs["full_path"]),
        str(attrs.get("full_name") or attrs["name"]),
        "group",
        str(attrs.get("visibility") or "private"),
    )


def resolve_namespace(client: gitlab.Gitlab, wanted: str) -> NamespaceChoice:
    """The namespace `wanted` (full path or id) names, with the highest visibility it allows.

    A group the caller can see is found even if they may not create in it (GitLab then
    refuses the create, and the reason is relayed); a user namespace only if it is theirs.
    """
    try:
        group = client.groups.get(wanted, with_projects=False)
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code != 404:
            raise translate(exc, f"reading namespace {wanted!r}") from exc
    except requests.RequestException as exc:
        raise translate(exc, f"reading namespace {wanted!r}") from exc
    else:
        return _group_choice(group.asdict())
    try:
        ns = client.namespaces.get(wanted)
    except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
        if isinstance(exc, gitlab.exceptions.GitlabError) and exc.response_code == 404:
            raise NotFound(
                f"namespace {wanted!r} not found (or not visible to you); "
                "GET /api/v1/namespaces lists where you may create datasets"
            ) from None
        raise translate(exc, f"reading namespace {wanted!r}") from exc
    return NamespaceChoice(int(ns.id), str(ns.full_path), str(ns.name), str(ns.kind), "public")


def check_visibility(visibility: str, namespace: NamespaceChoice) -> None:
    """422 naming the highest allowed when `visibility` exceeds what the namespace allows."""
    if _rank(visibility) > _rank(namespace.max_visibility):
        raise Unprocessable(
            f"visibility {visibility!r} is not allowed in {namespace.full_path!r}: the highest "
            f"this namespace allows is {namespace.max_visibility!r}"
        )


# --------------------------------------------------------------------------- create


def create_project(
    client: gitlab.Gitlab,
    spec: NewDataset,
    namespaces: tuple[str, ...],
    dvc_state_dir: Any,
    dshub_url: str | None = None,
) -> CreatedProject:
    """Create the GitLab project and its first commit (DVC repository, README, pipeline).

    When the first commit fails the project is deleted again (best effort, as the caller)
    so a retry with the same name does not meet a half-made dataset.
    """
    namespace = resolve_namespace(client, spec.namespace)
    if not in_dataset_namespaces(namespace.full_path, namespaces):
        raise Unprocessable(
            f"projects in {namespace.full_path!r} are not datasets here (DSHUB_NAMESPACES: "
            f"{', '.join(namespaces)}); choose one of GET /api/v1/namespaces"
        )
    check_visibility(spec.visibility, namespace)
    dvc_files = skeleton.dvc_init_files(dvc_state_dir)
    attrs: dict[str, Any] = {
        "name": spec.name,
        "namespace_id": namespace.id,
        "description": spec.description,
        "visibility": spec.visibility,
        "topics": list(spec.topics),
    }
    if spec.path:
        attrs["path"] = spec.path
    project = _call(
        f"creating a project in {namespace.full_path!r}", lambda: client.projects.create(attrs)
    )
    branch = str(project.default_branch or "main")
    created = CreatedProject(
        id=int(project.id),
        path_with_namespace=str(project.path_with_namespace),
        http_url_to_repo=str(project.http_url_to_repo),
        default_branch=branch,
        attrs=project.asdict(),
    )
    files = {
        **dvc_files,
        "README.md": skeleton.readme_text(
            spec.name, spec.description, created.http_url_to_repo, created.id, dshub_url
        ),
        ".gitlab-ci.yml": skeleton.pipeline_text(),
    }
    actions = [
        {"action": "create", "file_path": path, "content": text} for path, text in files.items()
    ]
    try:
        project.commits.create(
            {
                "branch": branch,
                "commit_message": f"Create dataset {spec.name}\n\nDVC repository, README and "
                "pipeline, made by dshub.",
                "actions": actions,
            }
        )
    except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
        error = translate(exc, "the dataset's first commit")
        try:
            project.delete()
        except (gitlab.exceptions.GitlabError, requests.RequestException):
            log.warning(
                "could not remove project %s after its first commit failed",
                created.id,
                extra={"project_id": created.id},
            )
        raise error from exc
    try:
        # Versions are never moved and only Maintainers make them (GitLab's protected tags).
        project.protectedtags.create({"name": "v*", "create_access_level": MAINTAINER})
    except (gitlab.exceptions.GitlabError, requests.RequestException):
        log.warning(
            "could not protect the v* tags of project %s",
            created.id,
            extra={"project_id": created.id},
        )
    return created


# --------------------------------------------------------------------------- edit


def namespace_of_project(client: gitlab.Gitlab, project_id: int) -> NamespaceChoice:
    """The namespace a project lives in, with the highest visibility it allows."""
    attrs = _call(f"reading dataset {project_id}", lambda: client.projects.get(project_id).asdict())
    namespace = attrs.get("namespace") or {}
    return resolve_namespace(client, str(namespace.get("full_path") or namespace.get("id")))


def edit_project(client: gitlab.Gitlab, project_id: int, changes: DatasetChanges) -> None:
    """`PUT /projects/:id` as the caller (GitLab decides who may: Maintainer+ by default)."""
    if changes.visibility is not None:
        check_visibility(changes.visibility, namespace_of_project(client, project_id))
    data = changes.as_gitlab()
    _call(f"editing dataset {project_id}", lambda: client.projects.update(project_id, data))


def set_archived(client: gitlab.Gitlab, project_id: int, archived: bool) -> None:
    """GitLab's archive (read-only) or unarchive, as the caller (Owner by GitLab's rules)."""
    project = client.projects.get(project_id, lazy=True)
    if archived:
        _call(f"archiving dataset {project_id}", project.archive)
    else:
        _call(f"unarchiving dataset {project_id}", project.unarchive)


def delete_project(client: gitlab.Gitlab, project_id: int) -> None:
    """GitLab's project delete, as the caller (Owner); the bytes stay until gc."""
    _call(f"deleting dataset {project_id}", lambda: client.projects.delete(project_id))


# --------------------------------------------------------------------------- history


def commits(
    client: gitlab.Gitlab,
    project_id: int,
    *,
    ref: str | None,
    path: str | None,
    page: int,
    per_page: int,
) -> CommitPage:
    """One page of the history of `ref` (default branch when None), limited to `path`."""
    params: dict[str, Any] = {"page": page, "per_page": per_page}
    if ref:
        params["ref_name"] = ref
    if path:
        params["path"] = path

    raw = _call(
        f"reading the history of dataset {project_id}",
        # `query_data`: python-gitlab would take a `path` keyword for the URL itself.
        lambda: client.http_list(
            f"/projects/{project_id}/repository/commits", query_data=params, get_all=False
        ),
    )
    items = [_commit(attrs) for attrs in raw]
    if not items and page == 1 and ref:
        # GitLab answers an unknown ref with an empty list; say which ref is unknown.
        _call(
            f"reading ref {ref!r}",
            lambda: client.projects.get(project_id, lazy=True).commits.get(ref),
        )
    next_page = page + 1 if len(items) == per_page else None
    return CommitPage(items=items, page=page, per_page=per_page, next_page=next_page)


def _commit(attrs: Mapping[str, Any]) -> Commit:
    return Commit(
        id=str(attrs.get("id") or ""),
        short_id=str(attrs.get("short_id") or ""),
        title=str(attrs.get("title") or ""),
        message=str(attrs.get("message") or ""),
        author_name=str(attrs.get("author_name") or ""),
        author_email=str(attrs.get("author_email") or ""),
        authored_date=str(attrs.get("authored_date") or ""),
        committer_name=str(attrs.get("committer_name") or ""),
        committed_date=str(attrs.get("committed_date") or ""),
        parent_ids=tuple(str(p) for p in attrs.get("parent_ids") or ()),
        web_url=str(attrs.get("web_url") or ""),
    )
