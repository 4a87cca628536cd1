"""`GET /api/v1/datasets/<id>/archive`: a whole dataset (or a folder of it) in one download.

Without `materialize`, GitLab's own repository archive (`format=zip|tar.gz|tar|tar.bz2`)
relayed as it streams, read from GitLab with the caller's token: it holds the git files,
i.e. the DVC pointers, not the data. With `materialize=1`, a zip of the real files at the
ref from the dataset's storage site (`indexer.read.archive`): checked before the first byte, then
streamed with a `MANIFEST.md5`; a failure mid-stream aborts the connection. A dataset the
caller may not read is the one 404 of a missing dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import quote

import gitlab.exceptions
import requests
from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from indexer.data.storage import CHUNK, ReadAhead
from indexer.errors import InvalidInput, NotFound, Unavailable
from indexer.read import archive
from indexer.read.resolve import Commit, validate_path
from indexer.store import Dataset
from webhook_service.api_datasets import not_found, readable_dataset
from webhook_service.api_files import IMMUTABLE, REVALIDATE, _ref_arg
from webhook_service.app_settings import services
from webhook_service.auth import request_token
from webhook_service.params import int_arg

blueprint = Blueprint("api_archive", __name__, url_prefix="/api/v1")
log = logging.getLogger("dshub.archive")
FORMATS = {
    "zip": "application/zip",
    "tar.gz": "application/gzip",
    "tar": "application/x-tar",
    "tar.bz2": "application/x-bzip2",
}


@blueprint.get("/datasets/<int:project_id>/archive")
def get_archive(project_id: int) -> ResponseReturnValue:
    """The dataset at `?ref=` (default branch), only `?path=` when given: GitLab's archive
    of the pointers in `?format=`, or with `?materialize=1` a zip of the real files."""
    ref = _ref_arg()
    path = validate_path(request.args.get("path", ""), allow_root=True)
    materialize = int_arg("materialize", 0, 0, 1)
    fmt = request.args.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)} (got {fmt[:20]!r})")
    if materialize and fmt not in (None, "zip"):
        raise InvalidInput("materialize=1 always answers a zip; leave out format or use zip")
    dataset = readable_dataset(project_id)
    commit = services().resolver.commit(dataset, ref)
    if materialize:
        return _materialized(dataset, commit, path)
    return _pointers(dataset, commit, path, fmt or "zip")


def _disposition(name: str) -> str:
    fallback = "".join(c if (c.isascii() and c.isalnum()) or c in "-._" else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _common(commit: Commit, media: str, name: str) -> dict[str, str]:
    return {
        "Content-Type": media,
        "Content-Disposition": _disposition(name),
        "Cache-Control": IMMUTABLE if commit.immutable else REVALIDATE,
        "X-Content-Type-Options": "nosniff",
        "X-Dshub-Commit": commit.sha,
    }


# ------------------------------------------------------------------------------ pointers


def _pointers(dataset: Dataset, commit: Commit, path: str, fmt: str) -> Response:
    """GitLab's archive, fetched with the caller's token and relayed chunk by chunk."""
    token = request_token()
    client = services().request_reader(token).client
    query = {"sha": commit.ref}
    if path:
        query["path"] = path
    try:
        got = client.http_get(
            f"/projects/{dataset.project_id}/repository/archive.{fmt}",
            query_data=query,
            raw=True,
            streamed=True,
        )
    except gitlab.exceptions.GitlabError as exc:
        if exc.response_code != 404:
            raise Unavailable(f"GitLab answered {exc.response_code} for the archive") from None
        if path:
            raise NotFound(
                f"no git path {path} in dataset {dataset.project_id} at {commit.ref!r}; the "
                "pointer archive holds git files only, materialize=1 gives the data"
            ) from None
        raise not_found(dataset.project_id) from None  # GitLab hides it from this caller
    except requests.RequestException:
        raise Unavailable("GitLab could not be reached for the archive") from None
    if not isinstance(got, requests.Response):  # pragma: no cover - raw=True answers a response
        raise Unavailable("GitLab answered the archive request with JSON")
    answer = got
    name = _gitlab_name(answer, dataset, commit, path, fmt)
    headers = _common(commit, FORMATS[fmt], name)

    def relay() -> Iterator[bytes]:
        try:
            yield from (chunk for chunk in answer.iter_content(CHUNK) if chunk)
        finally:
            answer.close()

    return Response(ReadAhead(relay), headers=headers, direct_passthrough=True)


def _gitlab_name(
    answer: requests.Response, dataset: Dataset, commit: Commit, path: str, fmt: str
) -> str:
    """GitLab's own file name for the archive, or one shaped like it."""
    disposition = answer.headers.get("Content-Disposition", "")
    marker = 'filename="'
    if marker in disposition:
        name = disposition.split(marker, 1)[1].split('"', 1)[0]
        if name and "/" not in name and "\\" not in name and name.isprintable():
            return name
    project = dataset.path_with_namespace.rsplit("/", 1)[-1]
    parts = [project, commit.ref.replace("/", "-"), commit.sha]
    if path:
        parts.append(path.replace("/", "-"))
    return "-".join(parts) + "." + fmt


# ------------------------------------------------------------------------------ data


def _materialized(dataset: Dataset, commit: Commit, path: str) -> Response:
    """The real files as one zip; every refusal happens here, before the first byte."""
    files = services().resolver
    tracked = files.tracked_files(dataset, commit, path)
    git_files = list(files.reader.list_blobs(dataset.project_id, commit.sha, path))
    if path:
        git_files = [b for b in git_files if b.path == path or b.path.startswith(path + "/")]
    chosen = archive.plan(tracked, git_files)
    if not chosen.entries and not chosen.left_out:
        where = f"under {path} " if path else ""
        raise NotFound(f"dataset {dataset.project_id} has no files {where}at {commit.ref!r}")
    objects = files.objects(dataset) if any(e.key for e in chosen.entries) else None
    reader, pid = files.reader, dataset.project_id

    def open_entry(entry: archive.Entry) -> Iterator[bytes]:
        if entry.key is None:
            return reader.iter_raw(pid, entry.path, commit.sha)
        if objects is None:  # pragma: no cover - objects is set whenever a key exists
            raise Unavailable("no storage site")
        return objects.read(entry.key)

    where = f", path {path!r}" if path else ""
    header = (
        f"dshub MANIFEST.md5: dataset {pid} ({dataset.path_with_namespace}) at "
        f"{commit.ref!r}, commit {commit.sha}{where}"
    )
    project = dataset.path_with_namespace.rsplit("/", 1)[-1]
    name = "-".join(
        [project, commit.ref.replace("/", "-"), *([path.replace("/", "-")] if path else [])]
    )
    log.info(
        "materialised archive",
        extra={"project_id": pid, "commit": commit.sha, "files": len(chosen.entries)},
    )
    body = archive.stream_zip(chosen.entries, open_entry, header, chosen.left_out)
    headers = _common(commit, "application/zip", f"{name}-data.zip")
    headers["X-Dshub-Files"] = str(len(chosen.entries))
    return Response(body, headers=headers, direct_passthrough=True)
