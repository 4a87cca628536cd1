"""`dshub download`: fetch single dataset files at an exact ref, resumable and verified.

Bytes go to `<output>/<name>.part` first; an interrupted transfer resumes with a `Range`
request guarded by `If-Range` (so a moved tag restarts instead of mixing versions). The
finished file is verified with the hash the server names for it — DVC 3 `md5`, DVC 2
`md5-dos2unix` (text files hashed after CRLF→LF, via dvc-data) or `git-sha1` for plain git
files — and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import requests
from dvc_data.hashfile.hash import fobj_md5

from dshub.client import ApiClient, file_path
from indexer.errors import DshubError, InvalidInput, Unavailable

CHUNK = 1024 * 1024


class ChecksumMismatch(DshubError):
    """The downloaded bytes do not match the hash the pointer records."""

    status = 502
    code = "checksum_mismatch"
    exit_code = 6


@dataclass(frozen=True)
class Downloaded:
    """One finished download."""

    path: Path
    size: int
    hash_name: str
    hash_value: str
    resumed_from: int


def _strip_quotes(etag: str | None) -> str | None:
    if etag is None:
        return None
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"') or None


def compute_hash(handle: BinaryIO, hash_name: str) -> str:
    """Hash a file the way its pointer does (md5, md5-dos2unix or git-sha1)."""
    if hash_name in ("md5", "md5-dos2unix"):
        return fobj_md5(handle, name=hash_name)
    if hash_name == "git-sha1":
        size = os.fstat(handle.fileno()).st_size
        digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest()
    raise InvalidInput(f"the server named an unknown hash {hash_name!r}; upgrade dshub")


def safe_output_name(name: str) -> str:
    """A local file name must be a plain name: no directories, no traversal."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise InvalidInput(f"output name {name!r} must be a plain file name")
    return name


def download_file(
    client: ApiClient,
    project_id: int,
    dataset_path: str,
    *,
    ref: str | None,
    output_dir: Path,
    name: str,
    progress: bool = False,
) -> Downloaded:
    """Download one file to `output_dir/name`, resuming a `.part` file when one exists."""
    target = output_dir / safe_output_name(name)
    partial = target.with_name(target.name + ".part")
    output_dir.mkdir(parents=True, exist_ok=True)
    params = {"ref": ref} if ref else {}
    path = file_path(project_id, dataset_path)

    offset = partial.stat().st_size if partial.exists() else 0
    etag: str | None = None
    hash_name, total = "md5", 0
    headers: dict[str, str] = {}
    if offset:
        # A partial file: ask what the whole one is before resuming (or restarting) it.
        try:
            head = client.request("HEAD", path, params=params)
        except DshubError:
            # A HEAD answer has no body: ask again with GET to get the server's own message.
            client.request("GET", path, params=params, stream=True).close()
            raise
        etag = _strip_quotes(head.headers.get("ETag"))
        hash_name = head.headers.get("X-Dshub-Hash", "md5")
        total = int(head.headers.get("Content-Length", "0"))
        if offset > total:
            offset = 0
        if 0 < offset < total and etag:
            headers = {"Range": f"bytes={offset}-", "If-Range": f'"{etag}"'}
    response = None
    if not (offset and offset == total):
        response = client.request(
            "GET", path, params=params, headers=headers, stream=True, allow_redirects=False
        )
        if etag is None:  # no HEAD was needed: the GET names the hash and the size
            etag = _strip_quotes(response.headers.get("ETag"))
            hash_name = response.headers.get("X-Dshub-Hash", "md5")
        if response.status_code in (301, 302, 303, 307, 308):
            # DSHUB_DOWNLOAD_MODE=redirect: follow to the presigned URL *without* our token.
            response = follow_redirect(response.headers["Location"], headers)
        if response.status_code != 206:
            offset = 0  # the server sent the whole file: start over
            total = int(response.headers.get("Content-Length", "0") or 0)
    resumed_from = offset

    actual = _receive(
        partial, response, offset, hash_name, ProgressBar(progress, total, offset, name)
    )
    if etag and actual != etag:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"{dataset_path}: downloaded bytes hash to {actual} ({hash_name}) but the dataset "
            f"records {etag}; nothing was kept, run the command again"
        )
    os.replace(partial, target)
    return Downloaded(target, target.stat().st_size, hash_name, actual, resumed_from)


def _receive(
    partial: Path,
    response: requests.Response | None,
    offset: int,
    hash_name: str,
    bar: ProgressBar,
) -> str:
    """Write the response's body into `partial` (after its first `offset` bytes) and return
    the hash of the whole file, of kind `hash_name`.

    DVC 3's md5 is the md5 of the bytes: they are hashed as they arrive (after what a resumed
    `.part` already holds) instead of reading the file again. The other kinds (DVC 2's
    md5-dos2unix, git-sha1) are hashed from the finished file by `compute_hash`. No fsync:
    like git and dvc, a download trusts the OS to write it back; a file torn by a power cut
    is caught on the next run, which verifies every file it finds (`dshub get`) or
    downloads it again.
    """
    if response is None:  # the `.part` is already whole
        with bar, partial.open("rb") as handle:
            return compute_hash(handle, hash_name)
    streamed = hashlib.md5(usedforsecurity=False) if hash_name == "md5" else None
    if streamed is not None and offset:
        with partial.open("rb") as held:
            while block := held.read(1024 * 1024):
                streamed.update(block)
    with partial.open("ab" if offset else "wb") as out, bar:
        for chunk in _chunks(response):
            out.write(chunk)
            if streamed is not None:
                streamed.update(chunk)
            bar(len(chunk))
    if streamed is not None:
        return streamed.hexdigest()
    with partial.open("rb") as handle:
        return compute_hash(handle, hash_name)


def follow_redirect(location: str, headers: dict[str, str]) -> requests.Response:
    """GET a presigned storage URL with a fresh session, so no dshub token leaves for it."""
    try:
        response = requests.get(location, headers=headers, stream=True, timeout=60)
    except requests.RequestException as exc:
        raise Unavailable(f"cannot reach the storage site ({type(exc).__name__})") from exc
    if response.status_code >= 400:
        response.close()
        raise Unavailable(f"the storage site answered {response.status_code}")
    return response


def _chunks(response: object) -> Iterator[bytes]:
    iterator = response.iter_content(CHUNK)  # type: ignore[attr-defined]
    for chunk in iterator:
        if chunk:
            yield chunk


class ProgressBar:
    """A tqdm progress bar on stderr when asked for and stderr is a terminal."""

    def __init__(self, enabled: bool, total: int, initial: int, name: str) -> None:
        self.tqdm = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.tqdm = tqdm(
                total=total, initial=initial, unit="B", unit_scale=True, desc=name, leave=False
            )

    def __enter__(self) -> ProgressBar:
        return self

    def __call__(self, amount: int) -> None:
        if self.tqdm is not None:
            self.tqdm.update(amount)

    def __exit__(self, *exc: object) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
