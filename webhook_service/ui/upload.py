"""The "Upload Files" page: `GET /-/datasets/<id>/upload?folder=&ref=`.

A form over the upload-session API (`api_upload_sessions`): the page tells the browser what
the API will do — the destination folder and whether it is (or lies in) a DVC-tracked
directory the files join, the server's per-file limit, the per-file-pointer threshold, and
whether the caller may push to the default branch (else "new branch + merge request") — and
`static/ui/upload.js` does the rest (create session → PUT each file → commit; cancel, resume).

Only for signed-in users the API lets write: the same `WriteTarget` checks (Developer+, a
storage site selected) answer the same 401/403/404/409, as pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import gitlab
from flask import current_app, render_template, request
from flask.typing import ResponseReturnValue

from indexer.data.pointers import PointerError, parse_pointer
from indexer.errors import DshubError, InvalidInput, NotAuthenticated, NotFound
from indexer.read import search
from indexer.read.resolve import Folder, validate_path, validate_ref
from indexer.store import Dataset
from webhook_service.api_uploads import DEVELOPER, WriteTarget
from webhook_service.app_settings import services, settings_of
from webhook_service.auth import current_viewer
from webhook_service.ui import blueprint
from webhook_service.ui.browse import dataset_url

MAINTAINER = 40


@dataclass(frozen=True)
class Destination:
    """Where the files go: `folder` ("" = the top), and the tracked directory it is or lies in."""

    folder: str
    tracked: str | None


def _dataset(project_id: int) -> Dataset:
    viewer = current_viewer()
    dataset = search.get_dataset(services().index, viewer, project_id)
    if dataset is None:
        raise NotFound(f"There is no dataset {project_id} that you can see.")
    if not viewer.signed_in:
        raise NotAuthenticated("Sign in with your GitLab token to upload files.")
    return dataset


def tracked_directory(target: WriteTarget, folder: str, ref: str) -> str | None:
    """The DVC-tracked directory `folder` is or lies in at `ref` (its `<dir>.dvc` pointer
    tracks it as a directory), else None."""
    parts = folder.split("/") if folder else []
    for depth in range(1, len(parts) + 1):
        candidate = "/".join(parts[:depth])
        pointer = f"{candidate}.dvc"
        try:
            raw = target.reader.read_file(target.project_id, pointer, ref)
        except DshubError:
            return None
        if raw is None:
            continue
        try:
            outs = parse_pointer(raw, pointer)
        except PointerError:
            continue
        if any(out.is_dir and out.path == candidate for out in outs):
            return candidate
    return None


def may_push(target: WriteTarget, branch: str) -> bool:
    """Whether the caller may push to `branch` (GitLab's protected-branch rule for it)."""
    viewer = current_viewer()
    if viewer.is_admin:
        return True
    access = target.reader.project_access(target.project_id, viewer.user_id or 0, DEVELOPER)
    level = access.level if access is not None else 0
    project = target.reader.client.projects.get(target.project_id, lazy=True)
    try:
        protected = project.protectedbranches.get(branch)
    except gitlab.exceptions.GitlabGetError as exc:
        if exc.response_code == 404:
            return True  # not protected: Developers push
        return level >= MAINTAINER
    levels = [int(a.get("access_level", MAINTAINER)) for a in protected.push_access_levels]
    return any(0 < need <= level for need in levels)


def replaced_file(dataset: Dataset, raw: str, branch: str | None) -> str:
    """`?replace=`: the path of an existing file of the dataset at `branch` (404 else)."""
    path = validate_path(raw.strip("/"))
    resolver = services().resolver
    target = resolver.resolve(dataset, resolver.commit(dataset, branch), path)
    if isinstance(target, Folder):
        raise InvalidInput(f"{path} is a folder: Replace takes one file")
    return path


@blueprint.get("/-/datasets/<int:project_id>/upload")
def upload_page(project_id: int) -> ResponseReturnValue:
    """The upload form for one folder of one dataset; with `?replace=<path>`, for exactly one
    file uploaded under that existing file's name into its folder."""
    dataset = _dataset(project_id)
    raw_folder = request.args.get("folder") or ""
    folder = validate_path(raw_folder.strip("/"), allow_root=True) if raw_folder else ""
    raw_replace = request.args.get("replace") or ""
    raw_ref = request.args.get("ref") or None
    branch = validate_ref(raw_ref) if raw_ref else dataset.default_branch
    target = WriteTarget(project_id)  # 401/403/404/409 exactly as the API answers
    default = target.info.default_branch or dataset.default_branch or "main"
    branch = branch or default
    replace = replaced_file(dataset, raw_replace, branch) if raw_replace else None
    if replace is not None:
        folder = replace.rpartition("/")[0]
    settings = settings_of(current_app)
    destination = Destination(folder, tracked_directory(target, folder, branch))
    return render_template(
        "ui/upload.html",
        dataset=dataset,
        destination=destination,
        replace=replace,
        branch=branch,
        default_branch=default,
        can_push=may_push(target, branch),
        max_bytes=settings.upload_max_bytes,
        pointer_warn=settings.upload_pointer_warn,
        tree_url=dataset_url(dataset, "tree", folder) if folder else dataset_url(dataset),
        commit_base=(dataset.web_url or "").rstrip("/"),
    )
