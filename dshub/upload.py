"""`dshub upload`, `dshub rm`, `dshub mv`: the write API from the command line (no Flask).

An upload opens an upload session, PUTs the files in parallel (a progress bar over the bytes),
resumes a broken transfer from the offset the server acknowledges (`HEAD`), and commits once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from dshub.client import ApiClient
from indexer.errors import DshubError, InvalidInput, Unavailable

CHUNK = 1024 * 1024
ATTEMPTS = 4


@dataclass(frozen=True)
class LocalFile:
    """One file to upload: where it is here, and its path below the upload's folder."""

    source: Path
    name: str
    size: int


def collect(paths: list[str]) -> list[LocalFile]:
    """The files named on the command line; a directory contributes every file below it,
    named relative to the directory itself."""
    found: list[LocalFile] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in (".git", ".dvc"))
                for name in sorted(files):
                    full = Path(root) / name
                    rel = full.relative_to(path).as_posix()
                    found.append(LocalFile(full, rel, full.stat().st_size))
        elif path.is_file():
            found.append(LocalFile(path, path.name, path.stat().st_size))
        else:
            raise InvalidInput(f"{given}: no such file or directory")
    names = [f.name for f in found]
    if len(set(names)) != len(names):
        raise InvalidInput("two files would get the same name in the dataset")
    if not found:
        raise InvalidInput("nothing to upload")
    return found


def _chunks(handle: BinaryIO, advance: Callable[[int], None]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        advance(len(chunk))
        yield chunk


def _put(client: ApiClient, session: str, item: LocalFile, advance: Callable[[int], None]) -> None:
    """PUT one file, resuming from the acknowledged offset after a broken transfer."""
    path = f"/api/v1/uploads/{session}/files/{quote(item.name, safe='/')}"
    offset = 0
    sent = [0]

    def counted(count: int) -> None:
        sent[0] += count
        advance(count)

    for attempt in range(ATTEMPTS):
        sent[0] = 0
        try:
            with item.source.open("rb") as handle:
                handle.seek(offset)
                headers = {"Content-Type": "application/octet-stream"}
                if item.size:
                    headers["Content-Range"] = f"bytes {offset}-{item.size - 1}/{item.size}"
                client.request("PUT", path, data=_chunks(handle, counted), headers=headers)
            return
        except Unavailable:
            if attempt + 1 == ATTEMPTS:
                raise
            try:
                answer = client.request("HEAD", path)
                acknowledged = int(answer.headers.get("X-Dshub-Received", "0"))
            except DshubError:
                acknowledged = 0
            advance(acknowledged - offset - sent[0])  # the bar follows what the server holds
            offset = acknowledged


def upload(
    client: ApiClient,
    project_id: int,
    files: list[LocalFile],
    *,
    options: dict[str, Any],
    message: str | None,
    jobs: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Upload `files` in one commit through an upload session; returns the server's answer."""
    opened = client.request("POST", f"/api/v1/datasets/{project_id}/uploads", json=options).json()
    session = str(opened["id"])
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(f.size for f in files), unit="B", unit_scale=True, desc="upload")

    def advance(count: int) -> None:
        if bar is not None:
            bar.update(count)

    try:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for future in [pool.submit(_put, client, session, f, advance) for f in files]:
                future.result()
        body: dict[str, Any] = {"message": message} if message else {}
        if options.get("confirm"):
            body["confirm"] = True
        answer: dict[str, Any] = client.request(
            "POST", f"/api/v1/uploads/{session}/commit", json=body
        ).json()
        return answer
    except BaseException:
        with contextlib.suppress(DshubError):  # else it expires on its own
            client.request("DELETE", f"/api/v1/uploads/{session}")
        raise
    finally:
        if bar is not None:
            bar.close()


def remove(
    client: ApiClient, project_id: int, paths: list[str], options: dict[str, Any]
) -> dict[str, Any]:
    """Delete dataset paths in one commit."""
    body = {**options, "paths": [p.lstrip("/") for p in paths]}
    answer: dict[str, Any] = client.request(
        "DELETE", f"/api/v1/datasets/{project_id}/files", json=body
    ).json()
    return answer


def move(
    client: ApiClient, project_id: int, source: str, target: str, options: dict[str, Any]
) -> dict[str, Any]:
    """Rename a dataset path in one commit."""
    body = {**options, "from": source.lstrip("/"), "to": target.lstrip("/")}
    answer: dict[str, Any] = client.request(
        "POST", f"/api/v1/datasets/{project_id}/files/move", json=body
    ).json()
    return answer
