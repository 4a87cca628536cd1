"""Git smart HTTP for the sandbox: `git http-backend` behind GitLab's auth and push rules.

`http://HOST/<namespace>/<project>.git/{info/refs,git-upload-pack,git-receive-pack}` is served
by running `git http-backend` as a CGI program; request and response bodies are streamed.
Access follows GitLab: anonymous clone of public projects; otherwise HTTP Basic with
`oauth2:<token>` or `<username>:<token>` (401 + `WWW-Authenticate: Basic realm="GitLab"` when
missing or wrong); projects the caller may not read answer 404; pushing needs the push
permission, checked per ref by a pre-receive hook so refusals look like GitLab's
(`! [remote rejected] main -> main (pre-receive hook declined)`). A post-receive hook records
the `(old, new, ref)` updates, which are handed to `on_push` after the push completes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import io
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from werkzeug.wsgi import get_input_stream

StartResponse = Callable[..., Any]
Update = tuple[str, str, str]

GIT_PATH = re.compile(
    r"^/(?P<project>[^?]+?)\.git/(?P<rest>info/refs|git-upload-pack|git-receive-pack)$"
)
CHUNK = 64 * 1024
NOT_FOUND = b"The project you were looking for could not be found or you don't have permission to view it.\n"
ACCESS_DENIED = (
    b"HTTP Basic: Access denied. If a password was provided for Git authentication, the password "
    b"was incorrect or you're required to use a token instead of a password.\n"
)
PUSH_DENIED = "You are not allowed to push code to this project."
ARCHIVED = "You can't push code to an archived project."

_PRE_RECEIVE = """#!/bin/sh
# Refuse the whole push with the sandbox's message, like GitLab's pre-receive check.
if [ -n "$SANDBOX_PUSH_DENY" ]; then
  printf 'GitLab: %s\\n' "$SANDBOX_PUSH_DENY" >&2
  exit 1
fi
exit 0
"""
_POST_RECEIVE = """#!/bin/sh
# Record "<old> <new> <ref>" lines for the sandbox to turn into push events.
cat >> "$SANDBOX_PUSH_LOG"
"""


@dataclass
class GitAccess:
    """The callbacks tying smart HTTP to the sandbox's users, projects and events.

    `authenticate(username, password)` → user or None; `find_project(path)` → project or None;
    `can_read(user, project)` (user may be None); `check_push(user, project, updates)` → None
    when allowed or GitLab's refusal message; `repo_path(project)` → bare repo; `on_push(project,
    user, updates)` after refs moved; `check_fetch(user, project)` → None or the 403 message of
    a readable project the credential may still not fetch (a job token not on its allowlist).
    """

    authenticate: Callable[[str, str], Any | None]
    find_project: Callable[[str], Any | None]
    can_read: Callable[[Any | None, Any], bool]
    check_push: Callable[[Any, Any, list[Update]], str | None]
    repo_path: Callable[[Any], Path]
    on_push: Callable[[Any, Any, list[Update]], None]
    check_fetch: Callable[[Any, Any], str | None] = lambda user, project: None


def is_git_path(path: str) -> bool:
    """Whether a raw request path is a smart-HTTP git endpoint the app serves."""
    return GIT_PATH.match(path) is not None


def _plain(
    start_response: StartResponse,
    status: str,
    body: bytes,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]


def _username(user: Any) -> str:
    if isinstance(user, dict):
        return str(user.get("username", ""))
    return str(getattr(user, "username", "") or "")


def _credentials(environ: dict[str, Any]) -> tuple[str, str] | None:
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")  # malformed credentials never authenticate
    username, _, password = decoded.partition(":")
    return username, password


def _read_commands(stream: IO[bytes]) -> tuple[bytes, list[Update]]:
    """Read receive-pack's command pkt-lines (up to the flush) and return them raw and parsed."""
    raw = bytearray()
    updates: list[Update] = []
    while True:
        size_hex = stream.read(4)
        raw += size_hex
        if len(size_hex) < 4:
            break
        try:
            size = int(size_hex, 16)
        except ValueError:
            break
        if size == 0:
            break
        line = stream.read(size - 4)
        raw += line
        text = line.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
        parts = text.split(" ")
        if len(parts) == 3 and len(parts[0]) == len(parts[1]) >= 40:
            updates.append((parts[0], parts[1], parts[2]))
    return bytes(raw), updates


class _Refusal(Exception):
    def __init__(
        self, status: str, body: bytes, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or []

    @classmethod
    def challenge(cls) -> _Refusal:
        return cls(
            "401 Unauthorized", ACCESS_DENIED, [("WWW-Authenticate", 'Basic realm="GitLab"')]
        )


class GitHttpApp:
    """WSGI app for git smart HTTP over bare repositories (see the module docstring)."""

    def __init__(self, access: GitAccess) -> None:
        self.access = access
        self.hooks_dir = Path(tempfile.mkdtemp(prefix="sandbox-git-hooks-"))
        for name, script in (("pre-receive", _PRE_RECEIVE), ("post-receive", _POST_RECEIVE)):
            hook = self.hooks_dir / name
            hook.write_text(script)
            hook.chmod(0o755)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one smart-HTTP request."""
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        match = GIT_PATH.match(str(raw).split("?", 1)[0])
        try:
            if match is None:
                raise _Refusal("404 Not Found", NOT_FOUND)
            rest = match.group("rest")
            service = self._service(environ, rest)
            user, project = self._gate(environ, match.group("project"), service, rest)
        except _Refusal as refusal:
            return _plain(start_response, refusal.status, refusal.body, refusal.headers)
        pushing = service == "git-receive-pack"
        return self._run_backend(environ, start_response, project, user, rest=rest, pushing=pushing)

    @staticmethod
    def _service(environ: dict[str, Any], rest: str) -> str:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        query = str(environ.get("QUERY_STRING", ""))
        params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        service = rest if rest != "info/refs" else params.get("service", "")
        if service not in ("git-upload-pack", "git-receive-pack") or (
            rest != "info/refs" and method != "POST"
        ):
            # GitLab serves no dumb HTTP protocol.
            raise _Refusal("403 Forbidden", b"Dumb HTTP is not supported\n")
        return service

    def _gate(self, environ: dict[str, Any], path: str, service: str, rest: str) -> tuple[Any, Any]:
        """The caller and project, or a _Refusal shaped like GitLab's answer."""
        user = None
        creds = _credentials(environ)
        if creds is not None:
            user = self.access.authenticate(*creds)
            if user is None:
                raise _Refusal.challenge()
        project = self.access.find_project(path)
        if project is None or not self.access.can_read(user, project):
            # Anonymous callers are asked to log in; signed-in ones learn nothing (404).
            if user is None:
                raise _Refusal.challenge()
            raise _Refusal("404 Not Found", NOT_FOUND)
        fetch_denial = self.access.check_fetch(user, project)
        if fetch_denial is not None:
            raise _Refusal("403 Forbidden", f"{fetch_denial}\n".encode())
        if service == "git-receive-pack":
            if user is None:
                raise _Refusal.challenge()
            denial = self.access.check_push(user, project, []) if rest == "info/refs" else None
            if denial is not None:
                raise _Refusal("403 Forbidden", f"{denial}\n".encode())
        return user, project

    def _run_backend(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        project: Any,
        user: Any,
        *,
        rest: str,
        pushing: bool,
    ) -> Iterator[bytes]:
        repo = Path(self.access.repo_path(project))
        # A stream that ends at Content-Length (or at the end of a chunked body).
        stream: IO[bytes] = get_input_stream(environ)
        prefix = b""
        push_log = None
        env = self._cgi_env(environ, repo, rest, user)
        if pushing and rest == "git-receive-pack":
            updates: list[Update] = []
            if str(environ.get("HTTP_CONTENT_ENCODING", "")).lower() not in ("gzip", "x-gzip"):
                prefix, updates = _read_commands(stream)
            denial = self.access.check_push(user, project, updates)
            if denial is not None:
                env["SANDBOX_PUSH_DENY"] = denial
            fd, log_name = tempfile.mkstemp(prefix="sandbox-push-")
            os.close(fd)
            push_log = Path(log_name)
            env["SANDBOX_PUSH_LOG"] = str(push_log)
        proc = subprocess.Popen(
            ["git", "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        feeder = threading.Thread(target=self._feed, args=(proc, prefix, stream), daemon=True)
        feeder.start()
        return self._respond(
            proc, feeder, start_response, project=project, user=user, push_log=push_log
        )

    def _cgi_env(self, environ: dict[str, Any], repo: Path, rest: str, user: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            {
                "GIT_PROJECT_ROOT": str(repo.parent),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": str(environ.get("REQUEST_METHOD", "GET")),
                "PATH_INFO": f"/{repo.name}/{rest}",
                "QUERY_STRING": str(environ.get("QUERY_STRING", "")),
                "CONTENT_TYPE": str(environ.get("CONTENT_TYPE", "")),
                "REMOTE_ADDR": str(environ.get("REMOTE_ADDR", "127.0.0.1")),
                "REMOTE_USER": _username(user) or "anonymous",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_COUNT": "2",
                "GIT_CONFIG_KEY_0": "http.receivepack",
                "GIT_CONFIG_VALUE_0": "true",
                "GIT_CONFIG_KEY_1": "core.hooksPath",
                "GIT_CONFIG_VALUE_1": str(self.hooks_dir),
            }
        )
        if environ.get("HTTP_CONTENT_ENCODING"):
            env["HTTP_CONTENT_ENCODING"] = str(environ["HTTP_CONTENT_ENCODING"])
        if environ.get("HTTP_GIT_PROTOCOL"):
            env["GIT_PROTOCOL"] = str(environ["HTTP_GIT_PROTOCOL"])
        # No CONTENT_LENGTH: http-backend reads to the end of its input, which `_feed` closes
        # after copying the (possibly chunked) body.
        return env

    @staticmethod
    def _feed(proc: subprocess.Popen[bytes], prefix: bytes, stream: IO[bytes]) -> None:
        """Copy the request body into http-backend block by block, never holding it whole."""
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            if prefix:
                proc.stdin.write(prefix)
            while block := stream.read(CHUNK):
                proc.stdin.write(block)
        with contextlib.suppress(OSError):
            proc.stdin.close()

    def _respond(
        self,
        proc: subprocess.Popen[bytes],
        feeder: threading.Thread,
        start_response: StartResponse,
        *,
        project: Any,
        user: Any,
        push_log: Path | None,
    ) -> Iterator[bytes]:
        assert proc.stdout is not None
        status = "200 OK"
        headers: list[tuple[str, str]] = []
        while True:
            line = proc.stdout.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
            if name.lower() == "status":
                status = value.strip()
            else:
                headers.append((name.strip(), value.strip()))
        start_response(status, headers)
        try:
            while True:
                block = cast(io.BufferedReader, proc.stdout).read1(CHUNK)
                if not block:
                    break
                yield block
        finally:
            proc.stdout.close()
            proc.wait()
            feeder.join()
            if push_log is not None:
                self._report_push(project, user, push_log)

    def _report_push(self, project: Any, user: Any, push_log: Path) -> None:
        try:
            lines = push_log.read_text().splitlines()
        finally:
            push_log.unlink(missing_ok=True)
        updates = [tuple(line.split(" ", 2)) for line in lines if line.count(" ") >= 2]
        if updates:
            self.access.on_push(project, user, [(u[0], u[1], u[2]) for u in updates])


def make_app(state: Any) -> GitHttpApp:
    """The smart-HTTP app wired to a `SandboxState`: tokens, permissions and `fire_push`."""
    from tests.gitlab_sandbox import api_job_token_scope, api_releases, permissions

    def authenticate(username: str, password: str) -> Any | None:
        user = state.user_for_token(password)
        if user is None and username == "gitlab-ci-token":
            from tests.gitlab_sandbox.api_jobs import job_project_id, user_for_job_token

            job_user = user_for_job_token(state, password)  # CI_JOB_TOKEN of a running job
            if job_user is None:
                return None
            # GitLab lets a job token fetch but not push (the default of every project).
            clone = dataclasses.replace(job_user)
            setattr(clone, "via_job_token", True)  # noqa: B010 - a flag the record lacks
            setattr(clone, "job_project_id", job_project_id(state, password))  # noqa: B010
            return clone
        if user is None:
            return None
        # GitLab accepts `oauth2:<token>` and `<username>:<personal access token>`.
        if username in ("oauth2", "gitlab-ci-token") or username.lower() == user.username.lower():
            return user
        return None

    def check_push(user: Any, project: Any, updates: list[Update]) -> str | None:
        if getattr(user, "via_job_token", False):
            return PUSH_DENIED
        if project.archived:
            return ARCHIVED
        if not permissions.can(state, user, project, "push"):
            return PUSH_DENIED
        default = f"refs/heads/{project.default_branch}"
        if any(ref == default and set(new) == {"0"} for _, new, ref in updates):
            return "The default branch of a project cannot be deleted."
        if any(ref == default for _, _, ref in updates) and not permissions.can(
            state, user, project, "push_protected"
        ):
            return "You are not allowed to push code to protected branches on this project."
        return api_releases.check_tag_push(state, user, project, updates)

    def check_fetch(user: Any, project: Any) -> str | None:
        source_id = getattr(user, "job_project_id", None)
        if source_id is None or api_job_token_scope.job_token_allowed(state, source_id, project):
            return None
        source = state.projects.get(source_id)
        source_path = source.path_with_namespace if source is not None else str(source_id)
        return (
            f"Authentication by CI/CD job token not allowed from {source_path} to "
            f"{project.path_with_namespace}."
        )

    access = GitAccess(
        authenticate=authenticate,
        find_project=state.project_by_path,
        can_read=lambda user, project: permissions.can(state, user, project, "read_repository"),
        check_push=check_push,
        repo_path=lambda project: project.repo_path,
        on_push=state.fire_push,
        check_fetch=check_fetch,
    )
    return GitHttpApp(access)
