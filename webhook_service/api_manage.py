"""`/api/v1`: create, edit, archive and delete datasets, where one may be created, and history.

Every write is made in GitLab with the caller's own token (`indexer.write.datasets`), so
GitLab decides who may; then the dataset is re-indexed in-line (the service token reads it
back through `indexer.sync.refs`) and the caller's cached permissions are refreshed, so the
answer — and the caller's next read — already show the change. The webhook that follows
finds nothing left to do. A dataset the caller may not read answers 404, exactly like a
missing one; signing in is required for every write (401).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import gitlab
from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from indexer.errors import DshubError, InvalidInput, NotAuthenticated, NotFound, Unavailable
from indexer.read.search import Viewer
from indexer.sync import refs as sync
from indexer.write import datasets as write
from webhook_service.api_datasets import dataset_details, not_found, readable_dataset
from webhook_service.app_settings import services
from webhook_service.auth import current_viewer, refresh_viewer, request_token
from webhook_service.bodies import json_object
from webhook_service.params import int_arg

log = logging.getLogger("dshub.manage")
blueprint = Blueprint("api_manage", __name__, url_prefix="/api/v1")

CREATE_FIELDS = ("name", "namespace", "description", "visibility", "topics", "path")
EDIT_FIELDS = ("name", "description", "topics", "visibility")
MAX_NAME = 255
MAX_DESCRIPTION = 2000
MAX_TOPICS = 50
MAX_PER_PAGE = 100
MAX_PAGE = 100_000
CREATE_EXAMPLE = (
    '{"name": "CT scans", "namespace": "imaging", "visibility": "private", "topics": ["ct"]}'
)
EDIT_EXAMPLE = '{"description": "Lung CT, 2024", "topics": ["ct", "lung"]}'


# ------------------------------------------------------------------ request parsing


def _json_object(allowed: tuple[str, ...], example: str) -> dict[str, Any]:
    """The request body (the one bounded JSON parser) holding only `allowed` keys; 400 otherwise."""
    body = json_object(example=example)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return body


def _text(body: dict[str, Any], key: str, limit: int, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string")
    value = value.strip() if key != "description" else value
    if required and not value:
        raise InvalidInput(f"{key} must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{key} is longer than {limit} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidInput(f"{key} must not contain control characters")
    return value


def _visibility(body: dict[str, Any]) -> str | None:
    value = body.get("visibility")
    if value is None:
        return None
    if value not in write.VISIBILITIES:
        raise InvalidInput(f"visibility must be one of {', '.join(write.VISIBILITIES)}")
    return str(value)


def _topics(body: dict[str, Any]) -> tuple[str, ...] | None:
    value = body.get("topics")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidInput('topics must be a list of strings, e.g. ["ct", "lung"]')
    topics = [t.strip() for t in value]
    if any(not t or "," in t or len(t) > MAX_NAME for t in topics):
        raise InvalidInput("each topic must be non-empty, without commas, at most 255 characters")
    if len(topics) > MAX_TOPICS:
        raise InvalidInput(f"at most {MAX_TOPICS} topics")
    return tuple(dict.fromkeys(topics))


def _namespace(body: dict[str, Any]) -> str:
    value = body.get("namespace")
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise InvalidInput("namespace is required: its full path (e.g. 'imaging/ct') or its id")
    return str(value).strip("/")


# ------------------------------------------------------------------ callers and indexing


def _token() -> str:
    token = request_token()
    if not token:
        raise NotAuthenticated("sign in with your GitLab token to manage datasets")
    return token


def caller_client() -> tuple[Viewer, gitlab.Gitlab]:
    """The signed-in caller and a python-gitlab client carrying their own token."""
    token = _token()
    viewer = current_viewer()
    if not viewer.signed_in:
        raise NotAuthenticated("sign in with your GitLab token to manage datasets")
    return viewer, services().request_reader(token).client


def _as_dataset_404(project_id: int, work: Any) -> Any:
    """GitLab's 404 for a dataset the index shows means it is gone or hidden: our one 404."""
    try:
        return work()
    except NotFound:
        raise not_found(project_id) from None


def _reindex(project_id: int, *, everyone: bool = False) -> Viewer:
    """Re-sync the project now; refresh the caller's (or, `everyone`, all) permissions.

    Both only read GitLab, independently, so the sync runs on a helper thread while this
    one asks GitLab for the caller's permissions; the answer waits for both.
    """
    context = services().job_context
    if everyone:
        sync.invalidate_permissions(context)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dshub-reindex") as pool:
        syncing = pool.submit(sync.sync_project, context, project_id)
        viewer = refresh_viewer()
        outcome = syncing.result()
    log.info("re-indexed after a write: %s", outcome, extra={"project_id": project_id})
    return viewer


def _answer(viewer: Viewer, project_id: int, status: int = 200) -> Response:
    response = jsonify(dataset_details(readable_dataset(project_id, viewer)))
    response.status_code = status
    if status == 201:
        response.headers["Location"] = f"/api/v1/datasets/{project_id}"
    return response


# ------------------------------------------------------------------ routes


@blueprint.get("/namespaces")
def list_namespaces() -> ResponseReturnValue:
    """Where the caller may create a dataset, each with the highest visibility it allows."""
    _, client = caller_client()
    choices = write.creatable_namespaces(client, services().settings.namespaces)
    return jsonify(
        items=[
            {
                "id": c.id,
                "full_path": c.full_path,
                "name": c.name,
                "kind": c.kind,
                "max_visibility": c.max_visibility,
            }
            for c in choices
        ]
    )


@blueprint.post("/datasets")
def create_dataset() -> ResponseReturnValue:
    """Create a dataset as the caller: 201 with the dataset as `GET /datasets/<id>` shows it."""
    viewer, client = caller_client()
    body = _json_object(CREATE_FIELDS, CREATE_EXAMPLE)
    created, viewer, timing = create(viewer, client, body)
    response = _answer(viewer, created, 201)
    # Where the time went (GitLab project + first commit, then the in-line index), for
    # browsers' devtools and the create benchmark.
    response.headers["Server-Timing"] = timing
    return response


def create(viewer: Viewer, client: gitlab.Gitlab, body: dict[str, Any]) -> tuple[int, Viewer, str]:
    """Create the dataset `body` describes (the API's fields) as the caller and index it:
    its id, the refreshed viewer and a Server-Timing value. The web form calls this too."""
    spec = write.NewDataset(
        name=_text(body, "name", MAX_NAME, required=True) or "",
        namespace=_namespace(body),
        description=_text(body, "description", MAX_DESCRIPTION) or "",
        visibility=_visibility(body) or "private",
        topics=_topics(body) or (),
        path=_text(body, "path", MAX_NAME),
    )
    settings = services().settings
    started = time.perf_counter()
    created = write.create_project(
        client,
        spec,
        settings.namespaces,
        settings.data_dir / "dvc-state",
        settings.public_url,
    )
    written = time.perf_counter()
    try:
        # Readable now by its creator and the namespace's members, whichever process they
        # reach next: every process's cached answers go (the shared generation).
        viewer = _reindex(created.id, everyone=True)
    except DshubError as exc:
        # The dataset exists in GitLab: say so, so a retry does not just meet a 409.
        raise Unavailable(
            f"dataset {created.id} ({created.path_with_namespace}) was created in GitLab but "
            f"is not indexed yet ({exc.message}); it appears once the webhook or the next "
            "reconcile runs — do not create it again"
        ) from exc
    indexed = time.perf_counter()
    log.info("dataset created", extra={"project_id": created.id, "user_id": viewer.user_id})
    timing = (
        f"gitlab;dur={(written - started) * 1000:.1f}, index;dur={(indexed - written) * 1000:.1f}"
    )
    return created.id, viewer, timing


@blueprint.patch("/datasets/<int:project_id>")
def edit_dataset(project_id: int) -> ResponseReturnValue:
    """Change name, description, topics or visibility (GitLab decides who may)."""
    viewer, client = caller_client()
    body = _json_object(EDIT_FIELDS, EDIT_EXAMPLE)
    return _answer(edit(viewer, client, project_id, body), project_id)


def edit(viewer: Viewer, client: gitlab.Gitlab, project_id: int, body: dict[str, Any]) -> Viewer:
    """Apply the API's edit fields in `body` as the caller and re-index (the web form too)."""
    if not body:
        raise InvalidInput(f"give at least one of {', '.join(EDIT_FIELDS)}")
    changes = write.DatasetChanges(
        name=_text(body, "name", MAX_NAME, required="name" in body),
        description=_text(body, "description", MAX_DESCRIPTION),
        topics=_topics(body),
        visibility=_visibility(body),
    )
    before = readable_dataset(project_id, viewer)
    _as_dataset_404(project_id, lambda: write.edit_project(client, project_id, changes))
    widened = changes.visibility is not None and changes.visibility != before.visibility
    return _reindex(project_id, everyone=widened)


def _archive(project_id: int, archived: bool) -> ResponseReturnValue:
    return _answer(set_archived(project_id, archived), project_id)


def set_archived(project_id: int, archived: bool) -> Viewer:
    """GitLab's archive or unarchive as the caller, then the index learns it."""
    viewer, client = caller_client()
    readable_dataset(project_id, viewer)
    _as_dataset_404(project_id, lambda: write.set_archived(client, project_id, archived))
    viewer = _reindex(project_id)
    store = services().index
    dataset = store.get_dataset(project_id)
    if dataset is not None:
        # GitLab just said so; the index keeps it until the next write that knows it.
        store.upsert_dataset(replace(dataset, archived=archived))
    return viewer


@blueprint.post("/datasets/<int:project_id>/archive")
def archive_dataset(project_id: int) -> ResponseReturnValue:
    """GitLab's archive, as the caller: the dataset becomes read-only and `archived: true`."""
    return _archive(project_id, True)


@blueprint.post("/datasets/<int:project_id>/unarchive")
def unarchive_dataset(project_id: int) -> ResponseReturnValue:
    """GitLab's unarchive, as the caller."""
    return _archive(project_id, False)


@blueprint.delete("/datasets/<int:project_id>")
def delete_dataset(project_id: int) -> ResponseReturnValue:
    """GitLab's delete, as the caller: the dataset leaves the index; its bytes stay until gc."""
    delete(project_id)
    return jsonify(id=project_id, deleted=True, message="deleted; its bytes stay until gc")


def delete(project_id: int) -> None:
    """Delete the dataset in GitLab as the caller and drop it from the index."""
    viewer, client = caller_client()
    readable_dataset(project_id, viewer)
    _as_dataset_404(project_id, lambda: write.delete_project(client, project_id))
    # GitLab accepted the delete (202): drop the dataset now rather than asking GitLab,
    # which may keep a project pending deletion for a while.
    services().job_context.store.remove_dataset(project_id)
    refresh_viewer()
    log.info("dataset deleted", extra={"project_id": project_id, "user_id": viewer.user_id})


def commit_history(
    project_id: int, ref: str | None, path: str | None, page: int, per_page: int
) -> tuple[str | None, write.CommitPage]:
    """The commits of `ref` (default branch) touching `path`, read with the caller's token,
    of a dataset the caller may read (else the one 404); the history page uses it too."""
    dataset = readable_dataset(project_id, current_viewer())
    token = request_token()
    client = services().request_reader(token).client
    ref = ref or dataset.default_branch
    try:
        history = write.commits(
            client, project_id, ref=ref, path=path, page=page, per_page=per_page
        )
    except NotFound:
        # The dataset is readable (checked above), so GitLab's 404 is about the ref.
        raise NotFound(f"dataset {project_id} has no branch, tag or commit {ref!r}") from None
    return ref, history


@blueprint.get("/datasets/<int:project_id>/commits")
def list_commits(project_id: int) -> ResponseReturnValue:
    """Who changed what, when: `ref` (default branch), `path`, `page`, `per_page` (≤ 100)."""
    page = int_arg("page", 1, 1, MAX_PAGE)
    per_page = int_arg("per_page", 20, 1, MAX_PER_PAGE)
    path = (request.args.get("path") or "").strip("/") or None
    ref, history = commit_history(project_id, request.args.get("ref"), path, page, per_page)
    return jsonify(
        items=[
            {
                "id": c.id,
                "short_id": c.short_id,
                "title": c.title,
                "message": c.message,
                "author_name": c.author_name,
                "author_email": c.author_email,
                "authored_date": c.authored_date,
                "committer_name": c.committer_name,
                "committed_date": c.committed_date,
                "parent_ids": list(c.parent_ids),
                "web_url": c.web_url,
            }
            for c in history.items
        ],
        ref=ref,
        path=path,
        page=history.page,
        per_page=history.per_page,
        next_page=history.next_page,
    )
