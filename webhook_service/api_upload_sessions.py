"""Upload sessions over HTTP: resumable `PUT`s, then one commit (see `indexer.write.sessions`).

- `POST /api/v1/datasets/<id>/uploads {folder, branch, layout, new_branch?, merge_request?}`
  → 201 `{id, expires_at, ...}` (Developer+, a storage site selected; per-user caps → 429).
- `PUT /api/v1/uploads/<sid>/files/<path>`: the file's raw bytes. With
  `Content-Range: bytes <start>-<end>/<total|*>` a broken transfer resumes at the offset dshub
  acknowledged (another start → 416 with `X-Dshub-Received`); without it the file restarts.
- `HEAD /api/v1/uploads/<sid>/files/<path>` → `X-Dshub-Received` (and `X-Dshub-Total`).
- `POST /api/v1/uploads/<sid>/commit {message}` → the same answer as a multipart upload;
  the write permission is checked again. `DELETE /api/v1/uploads/<sid>` abandons (204).

A session is its creator's: anyone else, and an expired or unknown id, get the same 404.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import ClientDisconnected

from indexer.errors import DshubError, InvalidInput, NotAuthenticated, NotFound
from indexer.write.changes import check_name
from indexer.write.errors import FileTooLarge
from indexer.write.files import clean_path, object_key_of, upload_path
from indexer.write.objects import StagedObject, store_verified
from indexer.write.sessions import (
    MAX_OPEN_SESSIONS,
    STAGED_BYTES_FACTOR,
    OffsetMismatch,
    SessionStore,
    StagingArea,
    TooMany,
    UploadSession,
    new_session,
)
from webhook_service import auth
from webhook_service.api_uploads import (
    WriteTarget,
    dataset_objects,
    flag_param,
    json_body,
    text_param,
    upload_operations,
)
from webhook_service.app_settings import services
from webhook_service.bodies import count_own_bytes

blueprint = Blueprint("api_upload_sessions", __name__, url_prefix="/api/v1")
log = logging.getLogger("dshub.upload_sessions")
EXTENSION = "dshub.upload_sessions"
_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")  # ASCII digits only
CHUNK = 1024 * 1024


@blueprint.errorhandler(OffsetMismatch)
def _offset(exc: OffsetMismatch) -> ResponseReturnValue:
    answer = jsonify(error={"code": exc.code, "message": exc.message, "received": exc.received})
    answer.headers["X-Dshub-Received"] = str(exc.received)
    return answer, exc.status


@blueprint.errorhandler(FileTooLarge)
def _too_large(exc: FileTooLarge) -> ResponseReturnValue:
    error = {"code": exc.code, "message": exc.message, "max_bytes": exc.limit}
    return jsonify(error=error), exc.status


def _parts() -> tuple[SessionStore, StagingArea]:
    found: tuple[SessionStore, StagingArea] | None = current_app.extensions.get(EXTENSION)
    if found is None:
        settings = services().settings
        found = (
            SessionStore(settings.index_url),
            StagingArea(settings.staging_dir),
        )
        current_app.extensions[EXTENSION] = found
    return found


def _user_id() -> int:
    viewer = auth.current_viewer()
    if not viewer.signed_in or viewer.user_id is None:
        raise NotAuthenticated("sign in with your GitLab token to use upload sessions")
    return viewer.user_id


def _session(session_id: str) -> UploadSession:
    sessions, _ = _parts()
    found = sessions.get(session_id, _user_id()) if len(session_id) <= 64 else None
    if found is None:
        raise NotFound("upload session not found (unknown, expired, or not yours)")
    return found


def _sweep(sessions: SessionStore, staging: StagingArea) -> None:
    for expired in sessions.expired_ids():
        staging.remove(expired)
        sessions.delete(expired)


@blueprint.post("/datasets/<int:project_id>/uploads")
def create_session(project_id: int) -> ResponseReturnValue:
    """Open an upload session for one dataset, branch and folder."""
    body = json_body('{"folder": "images", "branch": "main", "layout": "files"}')
    folder = clean_path(body["folder"], "folder") if body.get("folder") else ""
    layout = body.get("layout") or "files"
    if layout not in ("files", "directory"):
        raise InvalidInput("layout must be `files` or `directory`")
    if layout == "directory" and not folder:
        raise InvalidInput("layout=directory needs a folder: the tracked directory")
    new_branch = text_param(body, "new_branch", 255)
    merge_request = flag_param(body.get("merge_request"), "merge_request")
    if merge_request and not new_branch:
        raise InvalidInput("merge_request=true needs new_branch=<name>")
    target = WriteTarget(project_id)
    sessions, staging = _parts()
    _sweep(sessions, staging)
    user_id = _user_id()
    if len(sessions.open_ids(user_id)) >= MAX_OPEN_SESSIONS:
        raise TooMany(
            f"you have {MAX_OPEN_SESSIONS} open upload sessions; commit or delete one first"
        )
    session = new_session(
        user_id,
        project_id,
        branch=text_param(body, "branch", 255) or target.info.default_branch,
        folder=folder,
        layout=layout,
        new_branch=new_branch,
        merge_request=merge_request,
    )
    sessions.create(session)
    log.info("upload session opened", extra={"project_id": project_id, "user_id": user_id})
    return jsonify(session.as_dict()), 201


def _range(total_limit: int) -> tuple[int, int | None]:
    header = request.headers.get("Content-Range")
    if not header:
        return 0, request.content_length
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        raise InvalidInput("Content-Range must be `bytes <start>-<end>/<total or *>`")
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (total is not None and end >= total):
        raise InvalidInput("Content-Range: end must not be before start nor reach the total")
    if total is not None and total > total_limit:
        raise FileTooLarge(_limit_message(total_limit), total_limit)
    return start, total


def _limit_message(limit: int) -> str:
    return (
        f"a file is larger than this dshub accepts in one upload ({limit} bytes, "
        "DSHUB_UPLOAD_MAX_BYTES); push it with `dvc push` instead"
    )


@blueprint.put("/uploads/<session_id>/files/<path:path>")
def put_file(session_id: str, path: str) -> ResponseReturnValue:
    """Stream (part of) one file into the session; answers the acknowledged offset."""
    session = _session(session_id)
    settings = services().settings
    name = clean_path(path, "path")
    check_name(upload_path(session.folder, name))
    limit = settings.upload_max_bytes
    start, total = _range(limit)
    sessions, staging = _parts()
    cap = STAGED_BYTES_FACTOR * limit
    if staging.bytes_of(sessions.open_ids(session.user_id)) >= cap:
        raise TooMany(f"your open upload sessions hold {cap} bytes or more; commit them first")
    count_own_bytes()  # counted per file, by the staging area
    stream = request.stream

    def read() -> bytes:
        try:
            return stream.read(CHUNK)
        except (ClientDisconnected, OSError):
            return b""  # what arrived is kept: the client resumes from the acknowledged offset

    received = staging.write(
        session.id,
        name,
        start=start,
        total=total,
        read=read,
        limit=limit,
        too_large=lambda: FileTooLarge(_limit_message(limit), limit),
    )
    complete = total is None or received == total
    if complete:
        _store_early(session, staging.seal(session.id, name))
    return jsonify(path=name, received=received, total=total, complete=complete), 200


def _store_early(session: UploadSession, staged: StagedObject) -> None:
    """Store a completed file's object at its DVC key now, while the other files are still
    arriving, so the commit has nothing left to send (it asks the site once which objects it
    holds, and stores whatever is missing: this is only a head start). The bytes are visible
    only at the key of their own md5 and referenced by nothing until the commit — an abandoned
    session leaves unreferenced objects, which gc removes after `min_age_hours`. A failure
    here is not the caller's: the commit tries again."""
    try:
        objects = dataset_objects(session.project_id)
        key = object_key_of(staged.md5)
        if services().listings.head(session.project_id, objects.store, key.key) is None:
            store_verified(objects, key, staged)
    except DshubError as exc:
        log.info(
            "object of an upload session not stored yet: %s",
            exc.message,
            extra={"project_id": session.project_id},
        )


@blueprint.route("/uploads/<session_id>/files/<path:path>", methods=["HEAD"])
def head_file(session_id: str, path: str) -> ResponseReturnValue:
    """The acknowledged offset of one file (`X-Dshub-Received`; 404 when nothing was sent)."""
    session = _session(session_id)
    name = clean_path(path, "path")
    _, staging = _parts()
    received = staging.received(session.id, name)
    if received is None:
        raise NotFound(f"{name}: nothing of it was uploaded in this session")
    answer = Response(status=200)
    answer.headers["X-Dshub-Received"] = str(received)
    total = staging.total(session.id, name)
    if total is not None:
        answer.headers["X-Dshub-Total"] = str(total)
    return answer


@blueprint.post("/uploads/<session_id>/commit")
def commit_session(session_id: str) -> ResponseReturnValue:
    """Commit every file of the session in one write; the session ends when it succeeds."""
    session = _session(session_id)
    body = json_body('{"message": "Add 50 images"}')
    sessions, staging = _parts()
    files = staging.paths(session.id)
    if not files:
        raise InvalidInput("the session holds no file yet: PUT them first")
    for name, _ in files:
        total = staging.total(session.id, name)
        received = staging.received(session.id, name) or 0
        if total is not None and received != total:
            raise InvalidInput(
                f"{name} is incomplete ({received} of {total} bytes); resume it before committing"
            )
    target = WriteTarget(session.project_id)  # the write permission, checked again now
    entries = [
        (upload_path(session.folder, name), staging.staged(session.id, name)) for name, _ in files
    ]
    operations = upload_operations(session.folder, session.layout, entries)
    params: dict[str, Any] = {
        "branch": session.branch,
        "new_branch": session.new_branch,
        "merge_request": session.merge_request,
        "message": body.get("message"),
        "confirm": body.get("confirm"),
    }
    count = len(entries)
    default = f"Upload {count} file{'s' if count != 1 else ''}" + (
        f" to {session.folder}" if session.folder else ""
    )
    answer = target.write(operations, params, default, staged={o.md5: o for _, o in entries})
    staging.remove(session.id)
    sessions.delete(session.id)
    return answer


@blueprint.delete("/uploads/<session_id>")
def delete_session(session_id: str) -> ResponseReturnValue:
    """Abandon a session and its staged bytes."""
    session = _session(session_id)
    sessions, staging = _parts()
    staging.remove(session.id)
    sessions.delete(session.id)
    return Response(status=204)
