"""`GET /api/v1/datasets/<id>/merge_requests/<iid>/diff`: the data diff of a merge request.

The dataset is checked first, with the caller's permissions (absent or unreadable: the one
404); only then is the merge request read, with the service token. Lists are capped at
`?limit=` (default 100, at most 1000) with their totals alongside.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from indexer.data.diff import FileChange
from indexer.errors import NotFound
from indexer.sync.mr_diff import CommitsDiff, data_diff, read_merge_request
from webhook_service.api_datasets import readable_dataset
from webhook_service.app_settings import services
from webhook_service.params import int_arg

blueprint = Blueprint("api_merge_requests", __name__, url_prefix="/api/v1")
CONTEXT = "dshub.mr_context"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
_lock = threading.Lock()


def diff_limit() -> int:
    """`?limit=`: how many files each list of a data diff shows (1-1000, default 100)."""
    return int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)


def diff_json(diff: CommitsDiff, limit: int) -> dict[str, Any]:
    """The lists and sums of a data diff, each list capped at `limit` with its total."""
    body: dict[str, Any] = {
        "pointers_changed": diff.pointers_changed,
        "bytes_added": diff.bytes_added,
        "bytes_removed": diff.bytes_removed,
        "unsized": diff.unsized,
        "problems": diff.problems,
        "limit": limit,
    }
    for name in ("added", "removed", "modified"):
        items: list[FileChange] = getattr(diff, name)
        body[name] = [_change_json(item) for item in items[:limit]]
        body[f"{name}_total"] = len(items)
    return body


def _change_json(item: FileChange) -> dict[str, Any]:
    return {
        "path": item.path,
        "old_md5": item.old_md5,
        "new_md5": item.new_md5,
        "old_size": item.old_size,
        "new_size": item.new_size,
        "pointer_path": item.pointer_path,
    }


@blueprint.get("/datasets/<int:project_id>/merge_requests/<int:iid>/diff")
def merge_request_diff(project_id: int, iid: int) -> ResponseReturnValue:
    """Files added, removed and modified by merge request `!iid`, with byte sums."""
    limit = diff_limit()
    dataset = readable_dataset(project_id)
    ctx = services().request_context
    refs = read_merge_request(ctx, project_id, iid)
    if refs is None:
        raise NotFound(f"merge request !{iid} not found in dataset {project_id}")
    diff = data_diff(ctx, dataset, refs)
    return jsonify(
        {
            "dataset_id": project_id,
            "merge_request": {
                "iid": refs.iid,
                "title": refs.title,
                "state": refs.state,
                "source_branch": refs.source_branch,
                "target_branch": refs.target_branch,
                "base_sha": refs.base_sha,
                "head_sha": refs.head_sha,
                "web_url": refs.web_url,
            },
            **diff_json(diff, limit),
        }
    )
