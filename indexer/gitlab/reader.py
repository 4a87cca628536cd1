"""Reading GitLab's truth with python-gitlab: projects, refs, pointer files, members.

Every job re-reads GitLab through this module and nothing else, and it only ever talks to
the configured GitLab URL (URLs found in webhook payloads are data, never addresses).
GitLab errors become our own exceptions: a project or ref GitLab says is gone is `None`,
not an error, because level-triggered jobs treat "gone" as a state to converge to.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gitlab
import gitlab.exceptions
import requests

from indexer.errors import NotAuthenticated, Unavailable
from indexer.gitlab.tokens import header_safe, is_oauth

REPORTER = 20
DVC_CONFIG_PATH = ".dvc/config"
CONSUMER_TOPIC = "dshub-project"  # set by indexer.write.projects on projects it starts


@dataclass(frozen=True)
class ProjectInfo:
    """The project attributes the index keeps, as GitLab reports them."""

    id: int
    name: str
    path: str
    path_with_namespace: str
    namespace: str
    description: str
    visibility: str
    topics: tuple[str, ...]
    default_branch: str | None
    web_url: str
    last_activity_at: str | None
    archived: bool
    empty_repo: bool

    @classmethod
    def from_api(cls, attrs: dict[str, Any]) -> ProjectInfo:
        """Build from a GitLab project JSON object (simple or full)."""
        namespace = attrs.get("namespace") or {}
        topics = attrs.get("topics") or attrs.get("tag_list") or []
        return cls(
            id=int(attrs["id"]),
            name=str(attrs.get("name") or attrs.get("path") or ""),
            path=str(attrs.get("path") or ""),
            path_with_namespace=str(attrs.get("path_with_namespace") or ""),
            namespace=str(namespace.get("full_path") or ""),
            description=str(attrs.get("description") or ""),
            # Unknown visibility counts as private: never widen access on odd input.
            visibility=_visibility(attrs.get("visibility")),
            topics=tuple(str(topic) for topic in topics),
            default_branch=attrs.get("default_branch") or None,
            web_url=str(attrs.get("web_url") or ""),
            last_activity_at=attrs.get("last_activity_at"),
            archived=bool(attrs.get("archived", False)),
            empty_repo=bool(attrs.get("empty_repo", False)),
        )


@dataclass(frozen=True)
class GitRef:
    """A branch or tag and the commit it points at."""

    name: str
    kind: str  # "branch" | "tag"
    commit_sha: str
    message: str | None
    created_at: str | None
    release_notes: str = ""  # the tag's GitLab Release: its description and author
    author_username: str = ""
    author_name: str = ""

    def same_release(self, ref: Any) -> bool:
        """Whether an indexed ref already holds this tag's release notes and author."""
        return bool(
            ref.release_notes == self.release_notes
            and ref.author_username == self.author_username
            and ref.author_name == self.author_name
        )


@dataclass(frozen=True)
class UserInfo:
    """The GitLab user behind a token."""

    id: int
    username: str
    is_admin: bool


@dataclass(frozen=True)
class ProjectAccess:
    """What one token may do on one project: its visibility and the user's effective role
    (GitLab's access level: 0 none, 10 Guest, 20 Reporter, 30 Developer, 40 Maintainer)."""

    project_id: int
    visibility: str
    level: int


@dataclass(frozen=True)
class BlobInfo:
    """A file stored in git at a commit: its blob id (git's sha1 of the content) and size."""

    path: str
    blob_id: str
    size: int


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a repository tree level: `type` is `blob`, `tree` or `commit` (submodule)."""

    name: str
    path: str
    type: str
    id: str


RAW_CHUNK = 1024 * 1024


def _visibility(value: object) -> str:
    return value if value in ("public", "internal", "private") else "private"


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, gitlab.exceptions.GitlabAuthenticationError):
        return NotAuthenticated("GitLab did not accept the token")
    if isinstance(exc, gitlab.exceptions.GitlabHttpError | gitlab.exceptions.GitlabError):
        code = getattr(exc, "response_code", None)
        return Unavailable(f"GitLab answered {code} while reading {what}")
    if isinstance(exc, requests.RequestException):
        return Unavailable(f"GitLab could not be reached while reading {what}")
    return exc


def _is_not_found(exc: Exception) -> bool:
    return isinstance(exc, gitlab.exceptions.GitlabError) and exc.response_code == 404


class GitLabReader:
    """A read-mostly view of one GitLab instance through one token."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 15.0,
        max_retries: int = 4,
        obey_rate_limit: bool = True,
    ) -> None:
        """`max_retries` bounds python-gitlab's retries of 5xx/429 answers (its default, 10
        with exponential backoff, would hold a request for minutes); request paths pass a
        small number and `obey_rate_limit=False` so a throttled GitLab answers 503 at once."""
        self.url = url
        if token:
            # Before python-gitlab: requests would put an unsendable token into its exception.
            header_safe(token, "the token")
        self.client = gitlab.Gitlab(
            url,
            # OAuth tokens travel as `Authorization: Bearer`; GitLab refuses them as PRIVATE-TOKEN.
            private_token=None if is_oauth(token) else token,
            oauth_token=token if is_oauth(token) else None,
            timeout=timeout,
            retry_transient_errors=True,
            keep_base_url=True,
            per_page=100,
        )
        send = self.client.http_request

        def bounded_request(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("max_retries", max_retries)
            kwargs.setdefault("obey_rate_limit", obey_rate_limit)
            return send(*args, **kwargs)

        self.client.http_request = bounded_request  # type: ignore[method-assign]

    # ------------------------------------------------------------------ identity

    def current_user(self) -> UserInfo:
        """The user owning the token; raises `NotAuthenticated` when GitLab refuses it."""
        try:
            self.client.auth()
        except Exception as exc:
            raise _translate(exc, "the current user") from exc
        user = self.client.user
        if user is None:  # pragma: no cover - auth() always sets it or raises
            raise NotAuthenticated("GitLab did not accept the token")
        attrs = user.asdict()
        return UserInfo(
            id=int(attrs["id"]),
            username=str(attrs["username"]),
            is_admin=bool(attrs.get("is_admin", False)),
        )

    def readable_private_project_ids(self) -> frozenset[int]:
        """Ids of private projects whose repository the token's user may read (Reporter+)."""
        try:
            projects = self.client.projects.list(
                membership=True,
                min_access_level=REPORTER,
                visibility="private",
                simple=True,
                iterator=True,
            )
            return frozenset(int(project.id) for project in projects)
        except Exception as exc:
            raise _translate(exc, "the user's projects") from exc

    # ------------------------------------------------------------------ projects

    def project(self, project_id: int) -> ProjectInfo | None:
        """The project as GitLab sees it now, or None when it does not exist (any more)."""
        try:
            project = self.client.projects.get(project_id)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _translate(exc, f"project {project_id}") from exc
        return ProjectInfo.from_api(project.asdict())

    def project_access(
        self, project_id: int, user_id: int | None, enough: int = REPORTER
    ) -> ProjectAccess | None:
        """The project's visibility and the token's user's effective role on it, or None when
        the token cannot see the project (GitLab's 404).

        `permissions` of `GET /projects/:id` holds the direct project and namespace
        memberships; when they are below `enough`, memberships inherited from ancestor or
        invited groups are read from `members/all/:user_id`."""
        try:
            project = self.client.projects.get(project_id)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _translate(exc, f"project {project_id}") from exc
        attrs = project.asdict()
        permissions = attrs.get("permissions") or {}
        level = max(
            int((permissions.get(kind) or {}).get("access_level") or 0)
            for kind in ("project_access", "group_access")
        )
        if level < enough and user_id is not None:
            try:
                member = project.members_all.get(user_id)
                level = max(level, int(member.asdict().get("access_level") or 0))
            except Exception as exc:
                if not _is_not_found(exc):
                    raise _translate(exc, f"the members of project {project_id}") from exc
        return ProjectAccess(project_id, _visibility(attrs.get("visibility")), level)

    def projects(self) -> Iterator[ProjectInfo]:
        """Every project the token can see (keyset pagination, so it scales)."""
        try:
            listing = self.client.projects.list(
                iterator=True, pagination="keyset", order_by="id", sort="asc"
            )
            for project in listing:
                yield ProjectInfo.from_api(project.asdict())
        except Exception as exc:
            raise _translate(exc, "the project list") from exc

    def file_exists(self, project_id: int, path: str, ref: str) -> bool:
        """Whether `path` exists at `ref` (a HEAD request; no content transferred)."""
        try:
            self.client.projects.get(project_id, lazy=True).files.head(path, ref=ref)
        except Exception as exc:
            if _is_not_found(exc):
                return False
            raise _translate(exc, f"{path} in project {project_id}") from exc
        return True

    def is_dataset(self, project: ProjectInfo) -> bool:
        """A dataset is a project whose default branch is a DVC repository, except a project
        started from a dataset (topic `dshub-project`: it holds only import pointers)."""
        if project.default_branch is None or project.empty_repo:
            return False
        if CONSUMER_TOPIC in project.topics:
            return False
        return self.file_exists(project.id, DVC_CONFIG_PATH, project.default_branch)

    def ci_variable(self, project_id: int, key: str) -> str | None:
        """The value of a project CI/CD variable, or None when it is not set."""
        try:
            variable = self.client.projects.get(project_id, lazy=True).variables.get(key)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _translate(exc, f"variable {key} of project {project_id}") from exc
        value = variable.asdict().get("value")
        return None if value is None else str(value)

    # ------------------------------------------------------------------ refs and files

    def tags(self, project_id: int) -> list[GitRef]:
        """Every tag (version) of the project with the commit it points at."""
        project = self.client.projects.get(project_id, lazy=True)
        try:
            tags = [tag.asdict() for tag in project.tags.list(iterator=True)]
        except Exception as exc:
            if _is_not_found(exc):
                return []
            raise _translate(exc, f"tags of project {project_id}") from exc
        releases: dict[str, dict[str, Any]] = {}
        if any(tag.get("release") for tag in tags):
            try:
                for release in project.releases.list(iterator=True):
                    attrs = release.asdict()
                    releases[str(attrs.get("tag_name"))] = attrs
            except Exception as exc:
                if not _is_not_found(exc):
                    raise _translate(exc, f"releases of project {project_id}") from exc
        return [_tag_info(tag, releases.get(str(tag["name"]))) for tag in tags]

    def _release(self, project: Any, tag: dict[str, Any]) -> dict[str, Any] | None:
        if not tag.get("release"):
            return None
        try:
            found: dict[str, Any] = project.releases.get(tag["name"]).asdict()
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _translate(exc, f"the release {tag['name']!r}") from exc
        return found

    def resolve_ref(self, project_id: int, ref: str, kind: str | None = None) -> GitRef | None:
        """The tag or branch named `ref`, or None. `kind` ("tag"/"branch") limits the lookup;
        without it a tag wins over a branch of the same name, as in git."""
        project = self.client.projects.get(project_id, lazy=True)
        if kind != "branch":
            try:
                tag = project.tags.get(ref).asdict()
                return _tag_info(tag, self._release(project, tag))
            except Exception as exc:
                if not _is_not_found(exc):
                    raise _translate(exc, f"ref {ref!r} of project {project_id}") from exc
            if kind == "tag":
                return None
        try:
            branch = project.branches.get(ref).asdict()
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _translate(exc, f"ref {ref!r} of project {project_id}") from exc
        commit = branch.get("commit") or {}
        return GitRef(ref, "branch", str(commit.get("id")), None, commit.get("committed_date"))

    def list_paths(self, project_id: int, ref: str) -> Iterator[str]:
        """Every file path (blobs only) in the repository at `ref`."""
        return (entry.path for entry in self.list_blobs(project_id, ref))

    def list_blobs(self, project_id: int, ref: str, path: str = "") -> Iterator[TreeEntry]:
        """Every file (blob) in the repository at `ref`, below `path` ('' = all), with its id."""
        project = self.client.projects.get(project_id, lazy=True)
        try:
            for entry in project.repository_tree(
                ref=ref,
                path=path,
                recursive=True,
                iterator=True,
                pagination="keyset",
                per_page=100,
            ):
                if entry.get("type") == "blob":
                    yield TreeEntry(
                        str(entry["name"]), str(entry["path"]), "blob", str(entry["id"])
                    )
        except Exception as exc:
            if path and _is_not_found(exc):
                return
            raise _translate(exc, f"the tree of project {project_id} at {ref!r}") from exc

    def read_file(self, project_id: int, path: str, ref: str) -> bytes | None:
        """The bytes of a (small, git-stored) file at `ref`, or None when it does not exist."""
        try:
            project_file = self.client.projects.get(project_id, lazy=True).files.get(path, ref=ref)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _translate(exc, f"{path} in project {project_id}") from exc
        return base64.b64decode(project_file.asdict().get("content") or "")

    def commit_sha(self, project_id: int, ref: str) -> str | None:
        """The full sha of the commit `ref` (branch, tag, full or short sha) names, or None."""
        project = self.client.projects.get(project_id, lazy=True)
        try:
            commit = project.commits.get(ref, stats=False)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _translate(exc, f"ref {ref!r} of project {project_id}") from exc
        return str(commit.asdict()["id"])

    def blob_info(self, project_id: int, path: str, ref: str) -> BlobInfo | None:
        """Blob id and size of the git file `path` at `ref` (a HEAD request), or None."""
        try:
            headers = self.client.projects.get(project_id, lazy=True).files.head(path, ref=ref)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise _translate(exc, f"{path} in project {project_id}") from exc
        return BlobInfo(path, str(headers["X-Gitlab-Blob-Id"]), int(headers["X-Gitlab-Size"]))

    def iter_raw(self, project_id: int, path: str, ref: str) -> Iterator[bytes]:
        """The bytes of the git file `path` at `ref`, streamed in 1 MiB chunks (never buffered)."""
        try:
            chunks = self.client.projects.get(project_id, lazy=True).files.raw(
                path, ref=ref, streamed=True, iterator=True, chunk_size=RAW_CHUNK
            )
        except Exception as exc:
            raise _translate(exc, f"{path} in project {project_id}") from exc
        return (chunk for chunk in chunks if chunk)

    def list_tree(self, project_id: int, ref: str, path: str = "") -> Iterator[TreeEntry]:
        """One level of the repository tree at `ref` under `path`; empty when it is no directory."""
        project = self.client.projects.get(project_id, lazy=True)
        try:
            for entry in project.repository_tree(
                ref=ref, path=path, iterator=True, pagination="keyset", per_page=100
            ):
                yield TreeEntry(
                    str(entry["name"]), str(entry["path"]), str(entry["type"]), str(entry["id"])
                )
        except Exception as exc:
            if _is_not_found(exc):
                return
            raise _translate(exc, f"the tree of project {project_id} at {ref!r}") from exc

    def changed_paths(
        self, project_id: int, before: str, after: str, *, straight: bool = False
    ) -> list[str] | None:
        """Paths changed between two commits, or None when GitLab cannot compare them.

        `straight`: the two trees as they are (`from..to`), not what `after` changed since
        the merge base (GitLab's default `from...to`)."""
        try:
            result = self.client.projects.get(project_id, lazy=True).repository_compare(
                before, after, straight=straight
            )
        except Exception as exc:
            if _is_not_found(exc) or getattr(exc, "response_code", None) == 400:
                return None
            raise _translate(exc, f"a compare in project {project_id}") from exc
        if not isinstance(result, dict) or result.get("compare_timeout"):
            return None
        paths: set[str] = set()
        for diff in result.get("diffs") or []:
            paths.add(str(diff.get("old_path")))
            paths.add(str(diff.get("new_path")))
        return sorted(paths)


def _tag_info(attrs: dict[str, Any], release: dict[str, Any] | None = None) -> GitRef:
    """A tag as GitLab lists it, with its Release's notes and author when it has one."""
    commit = attrs.get("commit") or {}
    notes = (attrs.get("release") or {}).get("description") or ""
    author = (release or {}).get("author") or {}
    return GitRef(
        name=str(attrs["name"]),
        kind="tag",
        commit_sha=str(commit.get("id")),
        message=attrs.get("message"),
        created_at=attrs.get("created_at") or commit.get("committed_date"),
        release_notes=str((release or {}).get("description") or notes),
        author_username=str(author.get("username") or ""),
        author_name=str(author.get("name") or ""),
    )
