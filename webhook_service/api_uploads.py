"""`/api/v1/datasets/<id>/files` writes: upload (multipart), delete, move — as the caller.

- `POST /datasets/<id>/files` multipart: `files[]` (one part per file; the part's file name,
  which may hold sub-folders, is its path below `folder`), `folder`, `branch` (default: the
  default branch), `message`, `layout` (`files` = one pointer per file, `directory` = one
  tracked directory), `new_branch`, `merge_request`, `confirm`, and optionally one `md5` per
  file (in the order of the files) that the bytes must hash to (422 otherwise). Parameters
  may also come in the query string, where they are checked before any byte is read.
- `DELETE /datasets/<id>/files/<path>` (or `DELETE /datasets/<id>/files` with
  `{"paths": [...]}`) and `POST /datasets/<id>/files/move {"from", "to"}`; both take
  `branch`, `message`, `new_branch`, `merge_request` in the JSON body or the query.

Every route: signed in (401), the dataset visible to the caller (404 as for a missing one),
Developer or more (403; GitLab decides the rest, e.g. protected branches), a storage site
selected (409). Each file streams into a staging file under the data directory with its md5
computed on the way (never whole in memory), refused past `DSHUB_UPLOAD_MAX_BYTES` (413,
`error.max_bytes`); then `indexer.write.files` stores and commits. The affected ref is
re-synced in-line before the answer (bounded; `index: "pending"` when it takes longer, the
webhook finishes it) and the caller's cached permissions are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from dshub.config import Settings
from indexer.data.listing_cache import LoggedObjects
from indexer.errors import DshubError, InvalidInput, NotAuthenticated, NotFound
from indexer.gitlab.reader import GitLabReader, ProjectInfo
from indexer.sites.registry import DatasetSiteError, site_of_dataset
from indexer.sync import refs as sync
from indexer.write.changes import Operations
from indexer.write.errors import FileTooLarge, NoSite, Unprocessable, WriteForbidden
from indexer.write.files import WriteRequest, WriteResult, clean_path, upload_path, write_files
from indexer.write.objects import StagedObject, StagingFile
from webhook_service import auth
from webhook_service.app_settings import services
from webhook_service.auth import request_token
from webhook_service.bodies import count_own_bytes, json_object

blueprint = Blueprint("api_uploads", __name__, url_prefix="/api/v1")
log = logging.getLogger("dshub.uploads")
DEVELOPER = 30
WRITE_TIMEOUT = 300.0  # seconds one commit through GitLab may take
SYNC_BUDGET = 10.0  # seconds an answer waits for the index; the webhook finishes later syncs
MAX_PARTS = 10_000
MAX_FIELD_BYTES = 64 * 1024


@blueprint.errorhandler(FileTooLarge)
def _too_large(exc: FileTooLarge) -> ResponseReturnValue:
    error = {"code": exc.code, "message": exc.message, "max_bytes": exc.limit}
    return jsonify(error=error), exc.status


# ------------------------------------------------------------------------------ parameters


def flag_param(value: Any, name: str) -> bool:
    if value in (None, "", False):
        return False
    if value is True or str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise InvalidInput(f"{name} must be true or false")


def text_param(params: dict[str, Any], name: str, limit: int = 4096) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidInput(f"{name} must be a string of at most {limit} characters")
    return value


def json_body(example: str) -> dict[str, Any]:
    """The request body by the one bounded JSON parser; an empty body stands for `{}`."""
    return json_object(example=example, empty={})


# ------------------------------------------------------------------------------ the caller


def dataset_objects(project_id: int) -> LoggedObjects:
    """The dataset's objects on its selected storage site, every store and delete logged (the
    DVC remote's cached listings learn of each object); `NoSite` (409) before a site is
    selected. Asks no GitLab: the caller's permission is checked by whoever calls this."""
    registry = services().sites
    indexed = services().index.get_dataset(project_id)
    selection = registry.selection(project_id)
    variable = indexed.storage_site if indexed is not None else None
    if selection is not None and selection.applied_at is None and not variable:
        selection = None
    try:
        if selection is None and not variable:
            raise NoSite("")
        site = site_of_dataset(registry, project_id, variable)
    except (DatasetSiteError, NoSite):
        raise NoSite(
            f"select a storage site first: dataset {project_id} has none yet (a "
            f"Maintainer chooses one with POST /api/v1/datasets/{project_id}/"
            'storage-site {"name": "<site>"})'
        ) from None
    return LoggedObjects(
        services().open_objects(site, project_id), services().objects_log, project_id
    )


class WriteTarget:
    """The dataset a write is for, and everything needed to write it as the caller."""

    def __init__(self, project_id: int) -> None:
        settings = services().settings
        self.settings = settings
        self.project_id = project_id
        viewer = auth.current_viewer()
        token = request_token()
        if not viewer.signed_in or not token or viewer.user_id is None:
            raise NotAuthenticated("sign in with your GitLab token to change a dataset")
        self.token = token
        self.reader: GitLabReader = services().request_reader(token)
        access = self.reader.project_access(project_id, viewer.user_id, DEVELOPER)
        if access is None:
            raise NotFound(f"dataset {project_id} not found")
        if access.level < DEVELOPER and not viewer.is_admin:
            raise WriteForbidden(
                f"changing the files of dataset {project_id} needs the Developer role or more "
                "in its GitLab project"
            )
        info = self.reader.project(project_id)
        if info is None:
            raise NotFound(f"dataset {project_id} not found")
        self.info: ProjectInfo = info
        self.objects = dataset_objects(project_id)

    def client_project(self) -> Any:
        """The caller's python-gitlab project (lazy: no request) for the write itself.

        Its own client: one commit of thousands of actions can take GitLab longer than the
        10 s a read inside a request may, and a commit is never retried blindly (a retry
        that raced a landed commit is caught by the re-plan instead)."""
        if self.settings.gitlab_url is None:  # pragma: no cover - checked by request_reader
            raise NotFound(f"dataset {self.project_id} not found")
        writer = GitLabReader(
            self.settings.gitlab_url,
            self.token,
            timeout=WRITE_TIMEOUT,
            max_retries=0,
            obey_rate_limit=False,
        )
        return writer.client.projects.get(self.project_id, lazy=True)

    def write(
        self,
        operations: Operations,
        params: dict[str, Any],
        default_message: str,
        staged: dict[str, StagedObject] | None = None,
    ) -> ResponseReturnValue:
        """Run the write, re-sync the ref in-line, drop the caller's cached permissions."""
        branch = text_param(params, "branch", 255) or self.info.default_branch or "main"
        new_branch = text_param(params, "new_branch", 255)
        merge_request = flag_param(params.get("merge_request"), "merge_request")
        if merge_request and not new_branch:
            raise InvalidInput("merge_request=true needs new_branch=<name>")
        write = WriteRequest(
            project_id=self.project_id,
            branch=branch,
            message=text_param(params, "message", 10_000) or default_message,
            operations=operations,
            new_branch=new_branch,
            merge_request=merge_request,
            pointer_warn=self.settings.upload_pointer_warn,
            confirm=flag_param(params.get("confirm"), "confirm"),
            staged=staged or {},
        )
        listings, store = services().listings, self.objects.store
        result = write_files(
            self.client_project(),
            self.objects,
            write,
            _staging(self.settings),
            held=lambda keys: listings.held(self.project_id, store, keys),
        )
        started = time.perf_counter()
        if write.staged and result.commit is not None:
            # The sizes of the bytes just stored are known: the index needs no HEAD for them.
            services().index.set_sizes({md5: obj.size for md5, obj in write.staged.items()})
        index = self._resync(result)
        seconds = {**result.seconds, "index": time.perf_counter() - started}
        services().permissions.forget(self.token)
        log.info(
            "dataset files written",
            extra={
                "project_id": self.project_id,
                "commit": result.commit,
                "branch": result.branch,
                "files": len(result.outcomes),
                "attempts": result.attempts,
            },
        )
        body = {
            "dataset_id": self.project_id,
            "commit": result.commit,
            "branch": result.branch,
            "unchanged": result.unchanged,
            "files": [outcome.as_dict() for outcome in result.outcomes],
            "merge_request": result.merge_request,
            "index": index,
        }
        answer = jsonify(body)
        # Where the time went (plan, store, commit, in-line index), for devtools and bench/upload.
        answer.headers["Server-Timing"] = ", ".join(
            f"{phase};dur={value * 1000:.1f}" for phase, value in seconds.items()
        )
        return answer, 200 if result.unchanged else 201

    def _resync(self, result: WriteResult) -> str:
        if result.commit is None:
            return "unchanged"
        if result.branch != self.info.default_branch:
            return "not indexed (not the default branch)"
        return resync(
            self.project_id,
            f"refs/heads/{result.branch}",
            before=result.parent,
            after=result.commit,
            written=result.written,
        )


def resync(
    project_id: int,
    ref: str,
    *,
    before: str | None = None,
    after: str | None = None,
    written: Mapping[str, bytes | None] | None = None,
) -> str:
    """Re-sync `ref` (`refs/heads/…`, `refs/tags/…`) in-line, waiting at most SYNC_BUDGET:
    `synced`, or `pending` when it takes longer (the webhook finishes it). A write names the
    commit it was made on (`before`), its own commit (`after`) and what that commit wrote:
    when the index holds the ref at `before`, only the changed pointers are indexed, taken
    from `written` (see `indexer.sync.refs.sync_ref`)."""
    # This process's next read of the ref names the new commit, not the one cached before.
    services().resolver.forget_ref(project_id, sync.split_ref(ref)[0])
    context = services().job_context  # the thread below has no application context
    return in_line(lambda: sync.sync_ref(context, project_id, ref, before, after, written=written))


def in_line(index: Callable[[], str]) -> str:
    """Run an index update on a helper thread and wait for it at most SYNC_BUDGET: `synced`,
    or `pending` when it takes longer or fails (the webhook or the next sync finishes it)."""
    outcome: list[str] = []

    def run() -> None:
        try:
            outcome.append(index())
        except DshubError as exc:
            log.warning("in-line sync failed: %s", exc.message)
        except Exception:
            log.exception("in-line sync failed")

    worker = threading.Thread(target=run, name="dshub-upload-sync", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(SYNC_BUDGET)
    if outcome:
        return "synced"
    log.info("in-line sync pending", extra={"seconds": round(time.monotonic() - started, 3)})
    return "pending"


def _staging(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


# ------------------------------------------------------------------------------ upload


def _parse_upload(settings: Settings) -> tuple[MultiDict[str, str], list[tuple[str, StagedObject]]]:
    """Parse the multipart body, staging and hashing each file as it streams."""
    if request.mimetype != "multipart/form-data":
        raise InvalidInput("send the files as multipart/form-data (files[]=@path)")
    limit = settings.upload_max_bytes
    opened: list[StagingFile] = []

    def too_large() -> FileTooLarge:
        return FileTooLarge(
            f"a file is larger than this dshub accepts in one upload ({limit} bytes, "
            "DSHUB_UPLOAD_MAX_BYTES); push it with `dvc push` instead",
            limit,
        )

    def factory(
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None,
        content_length: int | None = None,
    ) -> Any:
        if filename:
            clean_path(filename, "file name")  # refused before its bytes are read
        if content_length is not None and content_length > limit:
            raise too_large()
        staging = StagingFile(_staging(settings), limit, too_large)
        opened.append(staging)
        return staging

    count_own_bytes()  # per file, counted by the staging files
    parser = FormDataParser(
        stream_factory=factory,
        max_form_memory_size=MAX_FIELD_BYTES,
        max_form_parts=MAX_PARTS,
    )
    try:
        _, form, files = parser.parse(
            request.stream, request.mimetype, request.content_length, request.mimetype_params
        )
    except RequestEntityTooLarge:
        _abandon(opened)
        raise InvalidInput(
            f"a form field is larger than {MAX_FIELD_BYTES} bytes or there are more than "
            f"{MAX_PARTS} parts"
        ) from None
    except (ValueError, ClientDisconnected, OSError):
        _abandon(opened)
        raise InvalidInput("the upload ended before its end; nothing was stored") from None
    except BaseException:
        _abandon(opened)
        raise
    staged: list[tuple[str, StagedObject]] = []
    by_stream = {id(s): s for s in opened}
    for name, storage in files.items(multi=True):
        if name not in ("files[]", "files", "file"):
            continue
        staging = by_stream.pop(id(storage.stream), None)
        if staging is None:
            continue
        staged.append((storage.filename or "", staging.finish()))
    _abandon(list(by_stream.values()))
    return form, staged


def _abandon(opened: list[StagingFile]) -> None:
    for staging in opened:
        staging.abandon()


def _check_declared(form: MultiDict[str, str], staged: list[tuple[str, StagedObject]]) -> None:
    """Refuse (422) files whose bytes do not hash to the md5 the client declared for them."""
    declared = form.getlist("md5")
    if not declared:
        return
    if len(declared) != len(staged):
        raise InvalidInput("send one md5 per file, in the order of the files, or none")
    for (name, obj), md5 in zip(staged, declared, strict=True):
        if md5.strip().lower() != obj.md5:
            raise Unprocessable(
                f"{name}: the bytes hash to {obj.md5}, not to the declared md5 "
                f"{md5.strip()[:40]}; nothing was stored"
            )


def upload_operations(
    folder: str, layout: str, entries: list[tuple[str, StagedObject]]
) -> Operations:
    if layout == "directory":
        if not folder:
            raise InvalidInput("layout=directory needs a folder: the tracked directory")
        files = [(path[len(folder) + 1 :], obj.md5, obj.size) for path, obj in entries]
        return Operations(directory=(folder, files))
    if layout != "files":
        raise InvalidInput("layout must be `files` (one pointer per file) or `directory`")
    return Operations(puts=[(path, obj.md5, obj.size) for path, obj in entries])


@blueprint.post("/datasets/<int:project_id>/files")
def upload_files(project_id: int) -> ResponseReturnValue:
    """Upload files into a folder of the dataset in one commit (see the module docstring)."""
    query = request.args.to_dict()
    if query.get("folder"):
        clean_path(query["folder"], "folder")
    for name in ("branch", "new_branch"):
        text_param(query, name, 255)
    target = WriteTarget(project_id)
    form, staged = _parse_upload(target.settings)
    try:
        params: dict[str, Any] = {**form.to_dict(), **query}
        folder = clean_path(params["folder"], "folder") if params.get("folder") else ""
        if not staged:
            raise InvalidInput("send at least one file as files[]=@path")
        _check_declared(form, staged)
        entries = [(upload_path(folder, name), obj) for name, obj in staged]
        if len({path for path, _ in entries}) != len(entries):
            raise InvalidInput("two files have the same path")
        operations = upload_operations(folder, params.get("layout") or "files", entries)
        count = len(entries)
        default = f"Upload {count} file{'s' if count != 1 else ''}" + (
            f" to {folder}" if folder else ""
        )
        return target.write(
            operations, params, default, staged={obj.md5: obj for _, obj in entries}
        )
    finally:
        for _, obj in staged:
            obj.discard()


# ------------------------------------------------------------------------------ delete, move


def _params() -> dict[str, Any]:
    return {**json_body('{"paths": ["images/a.png"], "branch": "main"}'), **request.args.to_dict()}


def _write_paths(
    project_id: int, build: Callable[[dict[str, Any]], tuple[Operations, str]]
) -> ResponseReturnValue:
    params = _params()
    operations, message = build(params)
    target = WriteTarget(project_id)
    return target.write(operations, params, message)


@blueprint.delete("/datasets/<int:project_id>/files/<path:path>")
def delete_file(project_id: int, path: str) -> ResponseReturnValue:
    """Delete one file or folder of DVC data in one commit (bytes stay until gc)."""
    cleaned = clean_path(path)
    return _write_paths(project_id, lambda _: (Operations(removes=[cleaned]), f"Delete {cleaned}"))


@blueprint.delete("/datasets/<int:project_id>/files")
def delete_files(project_id: int) -> ResponseReturnValue:
    """Delete many paths (`{"paths": [...]}`) in one commit."""

    def build(params: dict[str, Any]) -> tuple[Operations, str]:
        paths = params.get("paths")
        if not isinstance(paths, list) or not paths or len(paths) > MAX_PARTS:
            raise InvalidInput(f'send {{"paths": ["a.jpg", ...]}} with 1-{MAX_PARTS} paths')
        cleaned = [clean_path(str(p)) if isinstance(p, str) else "" for p in paths]
        if "" in cleaned:
            raise InvalidInput("every path must be a non-empty string")
        if len(set(cleaned)) != len(cleaned):
            raise InvalidInput("a path is listed twice")
        count = len(cleaned)
        return Operations(removes=cleaned), f"Delete {count} file{'s' if count != 1 else ''}"

    return _write_paths(project_id, build)


@blueprint.post("/datasets/<int:project_id>/files/move")
def move_files(project_id: int) -> ResponseReturnValue:
    """Rename a file or folder (`{"from": ..., "to": ...}`) in one commit."""

    def build(params: dict[str, Any]) -> tuple[Operations, str]:
        source, target = params.get("from"), params.get("to")
        if not isinstance(source, str) or not isinstance(target, str):
            raise InvalidInput('send {"from": "<path>", "to": "<path>"}')
        source, target = clean_path(source, "from"), clean_path(target, "to")
        return Operations(moves=[(source, target)]), f"Move {source} to {target}"

    return _write_paths(project_id, build)
