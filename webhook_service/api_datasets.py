"""`/api/v1`: dataset search, one dataset, its versions, and file search — permission-filtered.

A dataset the caller may not read answers exactly like one that does not exist (404 with
the same message), and never counts in a total or a facet.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from indexer.errors import DshubError, NotFound
from indexer.ingest.events import MAX_ID
from indexer.read import search
from indexer.read.search import Viewer
from indexer.store import Dataset
from indexer.write.projects import consumer_projects
from webhook_service.app_settings import services
from webhook_service.auth import current_viewer, request_token
from webhook_service.params import int_arg, optional_int_arg

blueprint = Blueprint("api_datasets", __name__, url_prefix="/api/v1")


def _page() -> int:
    return int_arg("page", 1, 1, search.MAX_OFFSET)


def _per_page() -> int:
    return int_arg("per_page", 20, 1, search.MAX_PER_PAGE)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def dataset_json(dataset: Dataset) -> dict[str, Any]:
    """The public JSON shape of a dataset (no storage credentials, ever)."""
    return {
        "id": dataset.project_id,
        "name": dataset.name,
        "path_with_namespace": dataset.path_with_namespace,
        "namespace": dataset.namespace,
        "visibility": dataset.visibility,
        "description": dataset.description,
        "topics": list(dataset.topics),
        "default_branch": dataset.default_branch,
        "web_url": dataset.web_url,
        "last_activity_at": _time(dataset.last_activity_at),
        "storage_site": dataset.storage_site,
        "indexed_at": _time(dataset.indexed_at),
        "archived": bool(dataset.archived),
    }


def not_found(project_id: int) -> NotFound:
    """The one answer for 'no such dataset' and 'not yours to see'."""
    return NotFound(f"dataset {project_id} not found")


def readable_dataset(project_id: int, viewer: Viewer | None = None) -> Dataset:
    """The dataset if the caller (or `viewer`) may read it; otherwise the one 404 for 'absent
    or not yours'."""
    dataset = search.get_dataset(services().index, viewer or current_viewer(), project_id)
    if dataset is None:
        raise not_found(project_id)
    return dataset


@blueprint.get("/datasets")
def list_datasets() -> ResponseReturnValue:
    """Search datasets: `q`, `namespace`, `topic`, `visibility`, `media_type`, `sort`, pages."""
    result = search.search_datasets(
        services().index,
        current_viewer(),
        request.args.get("q"),
        namespace=request.args.get("namespace") or None,
        topic=request.args.get("topic") or None,
        visibility=request.args.get("visibility") or None,
        media_type=request.args.get("media_type") or None,
        sort=request.args.get("sort") or None,
        page=_page(),
        per_page=_per_page(),
    )
    return jsonify(
        items=[
            {**dataset_json(item.dataset), "highlights": item.highlights} for item in result.items
        ],
        total=result.total,
        page=result.page,
        per_page=result.per_page,
        facets=result.facets,
        terms=list(result.terms),
        query_truncated=result.query_truncated,
    )


@blueprint.get("/datasets/<int:project_id>")
def get_dataset(project_id: int) -> ResponseReturnValue:
    """One dataset the caller may read, with the projects started from it they may see."""
    return jsonify(dataset_details(readable_dataset(project_id)))


def dataset_details(dataset: Dataset) -> dict[str, Any]:
    """`dataset_json` plus `used_by`: what `GET /datasets/<id>` (and a write's answer) shows."""
    return {**dataset_json(dataset), "used_by": used_by(dataset.project_id)}


def used_by(project_id: int) -> list[dict[str, Any]] | None:
    """Projects started from the dataset that the caller may see in GitLab ("used by"),
    asked with their own token (anonymous: public ones); None when GitLab cannot answer."""
    token = request_token()
    try:
        found = consumer_projects(services().request_reader(token).client, project_id)
    except DshubError:
        return None  # the details still answer; the list is GitLab's to give
    return [asdict(project) for project in found]


@blueprint.get("/datasets/<int:project_id>/versions")
def list_versions(project_id: int) -> ResponseReturnValue:
    """The dataset's versions (tags), newest first, with totals and changes."""
    versions = search.list_versions(services().index, current_viewer(), project_id)
    if versions is None:
        raise not_found(project_id)
    return jsonify(
        items=[
            {
                "name": v.name,
                "message": v.message,
                "commit_sha": v.commit_sha,
                "date": _time(v.date),
                "file_count": v.file_count,
                "total_size": v.total_size,
                "unsized_count": v.unsized_count,
                "added": v.added,
                "removed": v.removed,
                "changed": v.changed,
                "previous": v.previous,
                "status": v.status,
                "error": v.error,
                "release_notes": v.release_notes,
                "author": (
                    {"username": v.author_username, "name": v.author_name}
                    if v.author_username
                    else None
                ),
            }
            for v in versions
        ]
    )


@blueprint.get("/files")
def list_files() -> ResponseReturnValue:
    """Search files across readable datasets: `q` (path words), `dataset`, `ref`, `media_type`."""
    dataset_id = optional_int_arg("dataset", 1, MAX_ID)
    result = search.search_files(
        services().index,
        current_viewer(),
        request.args.get("q"),
        dataset=dataset_id,
        ref=request.args.get("ref") or None,
        media_type=request.args.get("media_type") or None,
        page=_page(),
        per_page=_per_page(),
    )
    return jsonify(
        items=[
            {
                "dataset_id": item.row.project_id,
                "ref": item.row.ref,
                "commit_sha": item.row.commit_sha,
                "path": item.row.file.path,
                "md5": item.row.file.md5,
                "hash_name": item.row.file.hash_name,
                "size": item.row.file.size,
                "media_type": item.row.file.media_type,
                "pointer_path": item.row.file.pointer_path,
                "in_directory": item.row.file.in_directory,
                "status": item.row.file.status,
                "in_storage": item.row.file.in_storage,
                "highlights": item.highlights,
            }
            for item in result.items
        ],
        total=result.total,
        total_exact=result.total_exact,
        page=result.page,
        per_page=result.per_page,
        query_truncated=result.query_truncated,
    )
