"""GitLab-side helpers of the convergence tests: datasets made with API commits, and the truth.

Datasets here are built with GitLab's commits API (`.dvc/config` plus single-file pointers
whose sizes are in the pointer, so no storage site is needed). `expected_index` reads what
GitLab says now through python-gitlab — independently of the indexer's reader — and returns
it in the shape of `tests.support.index_snapshot.index_snapshot`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import posixpath
from typing import Any

import gitlab
import gitlab.exceptions
import yaml

DVC_CONFIG = "[core]\n    remote = site\n['remote \"site\"']\n    url = /srv/dvc\n"
MEDIA = {".csv": "text/csv", ".png": "image/png", ".json": "application/json"}


def md5_of(text: str) -> str:
    """The md5 of a text's UTF-8 bytes (stands in for a data file's content hash)."""
    return hashlib.md5(text.encode()).hexdigest()


def pointer_text(data_path: str, content_seed: str, size: int) -> str:
    """A DVC 3 single-file pointer for `data_path` (the `.dvc` file sits next to it)."""
    name = posixpath.basename(data_path)
    return f"outs:\n- md5: {md5_of(content_seed)}\n  size: {size}\n  hash: md5\n  path: {name}\n"


def commit(project: Any, message: str, actions: list[dict[str, str]], branch: str = "main") -> str:
    """One API commit on `branch`; returns its sha."""
    created = project.commits.create(
        {"branch": branch, "commit_message": message, "actions": actions}
    )
    return str(created.id)


def write_pointer(project: Any, data_path: str, seed: str, size: int, exists: bool) -> str:
    """Create or update the pointer of `data_path` in one commit."""
    action = "update" if exists else "create"
    return commit(
        project,
        f"{action} {data_path}",
        [
            {
                "action": action,
                "file_path": f"{data_path}.dvc",
                "content": pointer_text(data_path, seed, size),
            }
        ],
    )


def create_dataset(
    gl: gitlab.Gitlab,
    namespace_id: int,
    name: str,
    visibility: str = "private",
    files: dict[str, tuple[str, int]] | None = None,
    **attrs: Any,
) -> Any:
    """A project whose default branch holds `.dvc/config` and one pointer per `files` entry."""
    project = gl.projects.create(
        {
            "name": name,
            "path": name,
            "namespace_id": namespace_id,
            "visibility": visibility,
            "initialize_with_readme": True,
            **attrs,
        }
    )
    actions = [{"action": "create", "file_path": ".dvc/config", "content": DVC_CONFIG}]
    for path, (seed, size) in sorted((files or {}).items()):
        actions.append(
            {
                "action": "create",
                "file_path": f"{path}.dvc",
                "content": pointer_text(path, seed, size),
            }
        )
    commit(project, "Make it a dataset", actions)
    return project


# ------------------------------------------------------------------------------ the truth


def _read(project: Any, path: str, ref: str) -> bytes | None:
    try:
        return base64.b64decode(project.files.get(path, ref=ref).content)
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code == 404:
            return None
        raise


def _files_at(project: Any, sha: str, directories: dict[str, dict[str, Any]]) -> dict[str, Any]:
    files: dict[str, Any] = {}
    tree = project.repository_tree(ref=sha, recursive=True, get_all=True)
    for entry in tree:
        if entry["type"] != "blob" or not entry["path"].endswith(".dvc"):
            continue
        pointer = entry["path"]
        raw = _read(project, pointer, sha)
        assert raw is not None
        for out in yaml.safe_load(raw)["outs"]:
            path = posixpath.normpath(posixpath.join(posixpath.dirname(pointer), out["path"]))
            md5 = str(out["md5"])
            hash_name = out.get("hash", "md5-dos2unix")
            if md5.endswith(".dir"):
                for rel, (entry_md5, size) in sorted(directories[md5].items()):
                    files[posixpath.join(path, rel)] = (
                        entry_md5,
                        hash_name,
                        size,
                        pointer,
                        True,
                        "ok",
                    )
            else:
                files[path] = (md5, hash_name, out.get("size"), pointer, False, "ok")
    return files


def expected_index(
    gl: gitlab.Gitlab,
    directories: dict[str, dict[str, Any]] | None = None,
    only: set[str] | None = None,
) -> dict[str, Any]:
    """GitLab's truth in `tests.support.index_snapshot.index_snapshot` shape: every project that is a dataset.

    `directories` maps a `.dir` md5 to its entries `{relpath: (md5, size)}` (what was pushed
    to storage), for datasets with tracked directories. `only`: just these project ids.
    """
    result: dict[str, Any] = {}
    for listed in gl.projects.list(get_all=True):
        if only is not None and str(listed.id) not in only:
            continue
        project = gl.projects.get(listed.id)
        branch = project.default_branch
        if not branch or _read(project, ".dvc/config", branch) is None:
            continue
        refs: dict[str, Any] = {}
        wanted = {tag.name: ("tag", tag.commit["id"]) for tag in project.tags.list(get_all=True)}
        wanted[branch] = ("branch", project.branches.get(branch).commit["id"])
        for ref, (kind, sha) in wanted.items():
            refs[ref] = {
                "kind": kind,
                "commit_sha": sha,
                "status": "ok",
                "files": _files_at(project, sha, directories or {}),
            }
        site = None
        with contextlib.suppress(gitlab.exceptions.GitlabGetError):
            site = project.variables.get("DSHUB_STORAGE_SITE").value
        result[str(project.id)] = {
            "name": project.name,
            "path_with_namespace": project.path_with_namespace,
            "namespace": project.namespace["full_path"],
            "description": project.description or "",
            "visibility": project.visibility,
            "topics": sorted(project.topics),
            "default_branch": branch,
            "web_url": project.web_url,
            "storage_site": site,
            "refs": refs,
        }
    return result
