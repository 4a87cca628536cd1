"""A dataset's repository at one commit, read through GitLab with the caller's token.

Each directory level and file is asked for once per commit (cached): a write of fifty files
into one folder reads that folder's level, its ancestors' levels and the few files it
changes, not the whole tree. `last_commit_id` comes with each file, for GitLab's
per-action lock.
"""

from __future__ import annotations

import base64
import posixpath
from dataclasses import dataclass
from typing import Any

import gitlab
import gitlab.exceptions
import requests

from indexer.errors import NotAuthenticated, NotFound, Unavailable


@dataclass(frozen=True)
class FileAt:
    """A git file at the commit: its bytes and the last commit that changed it."""

    path: str
    content: bytes
    last_commit_id: str

    @property
    def text(self) -> str:
        """The content as UTF-8 text (pointers, `.gitignore`); undecodable bytes replaced."""
        return self.content.decode("utf-8", "replace")


def translate(exc: Exception, what: str) -> Exception:
    """GitLab's failure as one of ours (404 → NotFound, 401 → NotAuthenticated, else 503)."""
    if isinstance(exc, gitlab.exceptions.GitlabAuthenticationError):
        return NotAuthenticated("GitLab did not accept the token")
    if isinstance(exc, gitlab.exceptions.GitlabError):
        if exc.response_code == 404:
            return NotFound(f"{what}: not found in GitLab")
        return Unavailable(f"GitLab answered {exc.response_code} while reading {what}")
    if isinstance(exc, requests.RequestException):
        return Unavailable(f"GitLab could not be reached while reading {what}")
    return exc


class RepoView:
    """Files and directory levels of `project` (a python-gitlab project) at commit `sha`."""

    def __init__(self, project: Any, sha: str) -> None:
        self.project = project
        self.sha = sha
        self._levels: dict[str, dict[str, str]] = {}
        self._files: dict[str, FileAt | None] = {}

    def level(self, directory: str) -> dict[str, str]:
        """name → `blob` | `tree` for the entries directly in `directory` ("" = root);
        empty when there is no such directory."""
        if directory not in self._levels:
            found: dict[str, str] = {}
            try:
                for entry in self.project.repository_tree(
                    path=directory, ref=self.sha, iterator=True, per_page=100
                ):
                    found[str(entry["name"])] = str(entry["type"])
            except gitlab.exceptions.GitlabError as exc:
                if exc.response_code != 404:
                    raise translate(exc, f"folder {directory or '/'}") from None
            except requests.RequestException as exc:
                raise translate(exc, f"folder {directory or '/'}") from None
            self._levels[directory] = found
        return self._levels[directory]

    def kind(self, path: str) -> str | None:
        """`blob`, `tree` or None for a repository path."""
        return self.level(posixpath.dirname(path)).get(posixpath.basename(path))

    def file(self, path: str) -> FileAt | None:
        """The git file at `path`, or None when there is none."""
        if path not in self._files:
            found: FileAt | None = None
            if self.kind(path) == "blob":
                try:
                    attrs = self.project.files.get(path, ref=self.sha).asdict()
                except gitlab.exceptions.GitlabError as exc:
                    if exc.response_code != 404:
                        raise translate(exc, path) from None
                except requests.RequestException as exc:
                    raise translate(exc, path) from None
                else:
                    found = FileAt(
                        path,
                        base64.b64decode(attrs.get("content") or ""),
                        str(attrs.get("last_commit_id")),
                    )
            self._files[path] = found
        return self._files[path]

    def walk(self, directory: str) -> list[str]:
        """Every blob path below `directory` (recursive)."""
        found: list[str] = []
        try:
            for entry in self.project.repository_tree(
                path=directory, ref=self.sha, recursive=True, iterator=True, per_page=100
            ):
                if entry["type"] == "blob":
                    found.append(str(entry["path"]))
        except gitlab.exceptions.GitlabError as exc:
            if exc.response_code != 404:
                raise translate(exc, f"folder {directory}") from None
        except requests.RequestException as exc:
            raise translate(exc, f"folder {directory}") from None
        return found
