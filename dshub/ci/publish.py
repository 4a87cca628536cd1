"""`dshub ci publish`: push `ci-templates/` to a component project and tag a semver release.

The catalog release itself is made by the component project's own pipeline (the
`create-release` job in `ci-templates/.gitlab-ci.yml` runs on the tag), because GitLab only
publishes catalog versions created with the `release:` keyword in a CI job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dshub.ci.errors import CiCheckFailed, CiConfigError

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_SKIP_PARTS = {"__pycache__", ".gitlab-ci-local", ".git", "node_modules"}


@dataclass(frozen=True)
class PublishResult:
    """What was published: the project, the tag and the commit the tag points at."""

    project_path: str
    version: str
    commit: str
    files_changed: int


def component_files(source: Path) -> dict[str, str]:
    """`{repository path: text}` of every file to publish from `source`."""
    if not (source / "templates").is_dir() or not (source / "README.md").is_file():
        raise CiConfigError(
            f"{source} is not a component project (it needs README.md and templates/)"
        )
    files: dict[str, str] = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and not (_SKIP_PARTS & set(relative.parts)):
            files[relative.as_posix()] = path.read_text(encoding="utf-8")
    return files


def component_addresses(files: dict[str, str], project_path: str, version: str) -> list[str]:
    """`include: component:` addresses of every component in `files` at `version`."""
    names = set()
    for path in files:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "templates" and parts[2] == "template.yml":
            names.add(parts[1])
        elif len(parts) == 2 and parts[0] == "templates" and parts[1].endswith(".yml"):
            names.add(parts[1][: -len(".yml")])
    return [f"$CI_SERVER_FQDN/{project_path}/{name}@{version}" for name in sorted(names)]


def _project(gl: Any, project_path: str, description: str) -> Any:
    import gitlab

    try:
        project = gl.projects.get(project_path)
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code != 404:
            raise
        namespace_path, _, name = project_path.rpartition("/")
        if not namespace_path:
            raise CiConfigError(
                f"project path {project_path!r} needs a group: <group>/<project>"
            ) from exc
        try:
            namespace = gl.namespaces.get(namespace_path)
        except gitlab.exceptions.GitlabGetError as missing:
            if missing.response_code != 404:
                raise
            raise CiConfigError(
                f"group {namespace_path!r} does not exist or the token cannot see it; create "
                "it (or use one the token's user may create projects in) and publish again"
            ) from missing
        return gl.projects.create(
            {"name": name, "path": name, "namespace_id": namespace.id, "description": description}
        )
    if not project.description:
        project.description = description
        project.save()
    return project


def _files_at(project: Any, branch: str) -> dict[str, str]:
    """`{path: text}` of the component project's branch (GitLab answers 404 for no tree)."""
    import gitlab

    found: dict[str, str] = {}
    try:
        items = project.repository_tree(ref=branch, recursive=True, get_all=True)
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code == 404:
            return found
        raise
    for item in items:
        if item["type"] == "blob":
            found[item["path"]] = project.files.raw(file_path=item["path"], ref=branch).decode()
    return found


def publish(
    source: Path,
    *,
    gitlab_url: str,
    token: str,
    project_path: str,
    version: str,
    description: str = "dshub CI/CD components: dvc-push, dvc-gc and validate-storage",
    say: Callable[[str], None] = print,
) -> PublishResult:
    """Commit `source` to `project_path`'s default branch and tag it `version` (semver)."""
    import gitlab

    if not SEMVER.match(version):
        raise CiConfigError(f"version {version!r} is not a semantic version such as 1.2.3")
    files = component_files(source)
    gl = gitlab.Gitlab(gitlab_url, private_token=token)
    try:
        project = _project(gl, project_path, description)
        branch = project.default_branch or "main"
        if any(tag.name == version for tag in project.tags.list(search=version, get_all=True)):
            raise CiConfigError(f"{project_path} already has tag {version}; publish a new version")
        empty = bool(getattr(project, "empty_repo", False)) or not project.default_branch
        existing = {} if empty else _files_at(project, branch)
        actions = [
            {
                "action": "update" if path in existing else "create",
                "file_path": path,
                "content": text,
            }
            for path, text in files.items()
            if existing.get(path) != text
        ]
        actions += [
            {"action": "delete", "file_path": path}
            for path in sorted(existing.keys() - files.keys())
        ]
        if actions:
            commit = project.commits.create(
                {"branch": branch, "commit_message": f"Release {version}", "actions": actions}
            )
            sha = commit.id
        else:
            sha = project.commits.get(branch).id
        project.tags.create({"tag_name": version, "ref": sha, "message": f"Release {version}"})
    except gitlab.exceptions.GitlabError as exc:
        raise CiCheckFailed(
            f"GitLab refused the publication ({exc.response_code}): {exc.error_message}"
        ) from exc
    say(f"published {project_path}@{version} ({len(actions)} files changed, commit {sha[:12]})")
    say("include the components with:")
    for address in component_addresses(files, project_path, version):
        say(f"  - component: {address}")
    return PublishResult(project_path, version, sha, len(actions))
