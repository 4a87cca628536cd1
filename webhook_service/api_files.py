"""`/api/v1/datasets/<id>/files/<path>` (download, preview) and `/api/v1/datasets/<id>/tree`.

Downloads stream from the dataset's storage site in 1 MiB chunks (never buffered), with the
pointer's hash as `ETag`, `X-Dshub-Hash` naming how to verify the bytes (`md5`,
`md5-dos2unix` or `git-sha1`), single byte ranges, and `Cache-Control: immutable` only for a
full commit sha. `DSHUB_DOWNLOAD_MODE=redirect` answers a GET of an S3 object with a 302 to a
short-lived presigned URL; HEAD is always answered here. Permissions are the API's: a dataset
the caller may not read is a 404 identical to one that does not exist.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from itertools import islice
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request, send_file
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import Range
from werkzeug.http import parse_range_header

from indexer.data.previews import (
    MAX_INPUT_BYTES,
    MAX_SIZE,
    MIN_SIZE,
    PreviewCache,
    UnsafeImage,
    check_previewable,
    preview_size,
)
from indexer.data.storage import ObjectMissing, ReadAhead, S3ObjectStore, safe_key
from indexer.errors import InvalidInput
from indexer.read.resolve import (
    Commit,
    DvcObject,
    Folder,
    GitFile,
    TreeItem,
    validate_path,
    validate_ref,
)
from indexer.store import Dataset
from webhook_service.api_datasets import readable_dataset
from webhook_service.app_settings import services, settings_of
from webhook_service.params import int_arg, parse_int

blueprint = Blueprint("api_files", __name__, url_prefix="/api/v1")
log = logging.getLogger("dshub.files")
PREVIEWS = "dshub.previews"
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"
PRESIGN_SECONDS = 300
PER_PAGE, MAX_PER_PAGE, MAX_PAGE = 100, 1000, 10**6
_lock = threading.Lock()


def _previews() -> PreviewCache:
    app = current_app
    with _lock:
        cache: PreviewCache | None = app.extensions.get(PREVIEWS)
        if cache is None:
            cache = PreviewCache(settings_of(app).data_dir / "previews")
            app.extensions[PREVIEWS] = cache
        return cache


def _ref_arg() -> str | None:
    ref = request.args.get("ref")
    return validate_ref(ref) if ref else None


@blueprint.route("/datasets/<int:project_id>/files/<path:path>", methods=["GET", "HEAD"])
def get_file(project_id: int, path: str) -> ResponseReturnValue:
    """One file at `?ref=` (default branch): its bytes, or `?preview=<size>` a thumbnail
    (`size` from 16 to 1024, rounded up to the next of `previews.PREVIEW_SIZES`)."""
    path = validate_path(path)
    ref = _ref_arg()
    preview = request.args.get("preview")  # present but empty is a bad size, not "no preview"
    size = (
        None if preview is None else preview_size(parse_int(preview, "preview", MIN_SIZE, MAX_SIZE))
    )
    dataset = readable_dataset(project_id)
    files = services().resolver
    commit = files.commit(dataset, ref)
    target = files.resolve(dataset, commit, path)
    if isinstance(target, Folder):
        raise InvalidInput(
            f"{path} is a folder; list it with /api/v1/datasets/{project_id}/tree?path={path}"
        )
    if size is not None:
        return _preview(dataset, commit, target, size)
    if isinstance(target, GitFile):
        return _git_download(dataset, commit, target)
    return _object_download(dataset, commit, target)


def _missing(dataset: Dataset, commit: Commit, target: DvcObject) -> ObjectMissing:
    return ObjectMissing(
        f"object {target.key} ({target.path} at {commit.ref!r}) is missing from storage site "
        f"{dataset.storage_site!r}"
    )


def _object_download(dataset: Dataset, commit: Commit, target: DvcObject) -> Response:
    files = services().resolver
    objects = files.objects(dataset)
    size = target.size
    if size is None or request.method == "HEAD":
        meta = objects.head(target.key)
        if meta is None:
            raise _missing(dataset, commit, target)
        size = meta.size
    headers = _headers(commit, target.path, target.md5, target.hash_name, target.media_type)
    redirect = (
        settings_of(current_app).download_mode == "redirect"
        and request.method == "GET"
        and isinstance(objects, S3ObjectStore)
    )
    if redirect and isinstance(objects, S3ObjectStore):
        url = objects.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": objects.site.bucket,
                "Key": objects.base + safe_key(target.key),
                "ResponseContentDisposition": headers["Content-Disposition"],
                "ResponseContentType": target.media_type,
            },
            ExpiresIn=PRESIGN_SECONDS,
        )
        return Response(status=302, headers={**headers, "Location": url, "Content-Length": "0"})

    def read(start: int, end: int) -> Iterator[bytes]:
        try:
            return objects.read(target.key, start, end)
        except ObjectMissing:
            raise _missing(dataset, commit, target) from None

    return ranged_response(size, headers, read)


def _git_download(dataset: Dataset, commit: Commit, target: GitFile) -> Response:
    headers = _headers(commit, target.path, target.blob_id, "git-sha1", target.media_type)
    reader = services().resolver.reader

    def read(start: int, end: int) -> Iterator[bytes]:
        return _slice(reader.iter_raw(dataset.project_id, target.path, commit.sha), start, end)

    return ranged_response(target.size, headers, read)


def _headers(commit: Commit, path: str, etag: str, hash_name: str, media: str) -> dict[str, str]:
    name = path.rsplit("/", 1)[-1]
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return {
        "ETag": f'"{etag}"',
        "X-Dshub-Hash": hash_name,
        "Content-Type": media,
        "Content-Disposition": (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
        ),
        "Accept-Ranges": "bytes",
        "Cache-Control": IMMUTABLE if commit.immutable else REVALIDATE,
        "X-Content-Type-Options": "nosniff",
        "X-Dshub-Commit": commit.sha,
    }


def ranged_response(size: int, headers: dict[str, str], read: Any) -> Response:
    """Answer a download of `size` bytes: 304, 206 for one satisfiable range, 416, or 200,
    streamed from `read(start, end)` (inclusive end) with read-ahead; HEAD gets headers only.
    `headers` must hold the object's `ETag`. Also used by dshub's DVC remote."""
    etag = headers["ETag"]
    if (
        etag in _etags(request.headers.get("If-None-Match"))
        or request.headers.get("If-None-Match", "").strip() == "*"
    ):
        return Response(status=304, headers=_without_body_headers(headers))
    byte_range = _requested_range(etag)
    start, end, status = 0, size - 1, 200
    if byte_range is not None:
        bounds = byte_range.range_for_length(size)
        if bounds is None:
            return Response(
                status=416,
                headers={**_without_body_headers(headers), "Content-Range": f"bytes */{size}"},
            )
        start, end, status = bounds[0], bounds[1] - 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1 if size else 0
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status=status, headers=headers)
    body = _read_ahead(_exact(read(start, end), length)) if length else iter(())
    return Response(body, status=status, headers=headers, direct_passthrough=True)


def _requested_range(etag: str) -> Range | None:
    raw = request.headers.get("Range")
    if not raw:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        return None  # the representation changed: send it whole (RFC 9110 §13.1.5)
    parsed = parse_range_header(raw)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return None  # unparseable or multiple ranges: a full answer is allowed
    return parsed


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {part.strip().removeprefix("W/") for part in header.split(",")}


def _without_body_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in ("Content-Type", "Content-Disposition")}


def _exact(chunks: Iterator[bytes], length: int) -> Iterator[bytes]:
    """Yield exactly `length` bytes; a short object is logged (the client sees a short body)."""
    sent = 0
    try:
        for chunk in chunks:
            piece = chunk[: length - sent] if sent + len(chunk) > length else chunk
            sent += len(piece)
            yield piece
            if sent >= length:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if sent < length:
        log.error("object shorter than its recorded size", extra={"sent": sent, "size": length})


def _read_ahead(chunks: Iterator[bytes]) -> Iterator[bytes]:
    return ReadAhead(lambda: chunks)


def _slice(chunks: Iterator[bytes], start: int, end: int) -> Iterator[bytes]:
    position = 0
    for chunk in chunks:
        low, high = max(start - position, 0), min(end + 1 - position, len(chunk))
        position += len(chunk)
        if low < high:
            yield chunk[low:high]
        if position > end:
            return


def _preview(
    dataset: Dataset, commit: Commit, target: DvcObject | GitFile, size: int
) -> ResponseReturnValue:
    check_previewable(target.media_type, target.path)
    files = services().resolver
    if isinstance(target, GitFile):
        key = target.blob_id

        def read() -> bytes:
            return b"".join(files.reader.iter_raw(dataset.project_id, target.path, commit.sha))

        known_size: int | None = target.size
    else:
        key = f"{target.hash_name}-{target.md5}"
        objects = files.objects(dataset)
        known_size = target.size

        def read() -> bytes:
            meta = objects.head(target.key)
            if meta is None:
                raise _missing(dataset, commit, target)
            if meta.size > MAX_INPUT_BYTES:
                raise UnsafeImage(f"{target.path} is too large to preview ({meta.size} bytes)")
            return b"".join(objects.read(target.key))

    made = _previews().get(key, size, target.path, known_size, read)
    response = send_file(made.path, mimetype=made.media_type, conditional=False, etag=False)
    response.headers["ETag"] = f'"{key}-{size}"'
    response.headers["Cache-Control"] = IMMUTABLE if commit.immutable else REVALIDATE
    response.headers["X-Dshub-Preview-Cache"] = "hit" if made.cached else "miss"
    response.headers["X-Dshub-Preview-Size"] = str(size)  # the fixed size it was rendered at
    return response


@blueprint.get("/datasets/<int:project_id>/tree")
def tree(project_id: int) -> ResponseReturnValue:
    """One folder level at `?ref=` and `?path=`: git and DVC-tracked entries merged, paged."""
    path = validate_path(request.args.get("path", ""), allow_root=True)
    ref = _ref_arg()
    page = int_arg("page", 1, 1, MAX_PAGE)
    per_page = int_arg("per_page", PER_PAGE, 1, MAX_PER_PAGE)
    dataset = readable_dataset(project_id)
    files = services().resolver
    commit = files.commit(dataset, ref)
    level = files.list_level(dataset, commit, path, offset=(page - 1) * per_page)
    chosen = list(islice(level, per_page + 1))
    more = len(chosen) > per_page
    shown_ref = ref or commit.ref
    return jsonify(
        dataset_id=project_id,
        ref=shown_ref,
        commit_sha=commit.sha,
        path=path,
        page=page,
        per_page=per_page,
        next_page=page + 1 if more else None,
        items=[_item_json(project_id, shown_ref, item) for item in chosen[:per_page]],
    )


def _item_json(project_id: int, ref: str, item: TreeItem) -> dict[str, Any]:
    url = None
    preview = None
    if item.type == "file":
        url = f"/api/v1/datasets/{project_id}/files/{quote(item.path)}?ref={quote(ref, safe='')}"
        if item.media_type in ("image/jpeg", "image/png", "image/webp", "image/tiff"):
            preview = f"{url}&preview=256"
    return {
        "name": item.name,
        "path": item.path,
        "type": item.type,
        "source": item.source,
        "size": item.size,
        "md5": item.md5,
        "hash_name": item.hash_name,
        "blob_id": item.blob_id,
        "media_type": item.media_type,
        "in_storage": item.in_storage,
        "download_url": url,
        "preview_url": preview,
    }
