"""One upload and one download that a fault can interrupt at a known point (raw sockets).

The kill faults need to know which gunicorn worker holds a transfer and to be sure it is
half done: these send through `http.client` (whose socket gives the local port), pause at
half way, let the harness SIGKILL the worker, then resume as dshub's clients do — an upload
from the offset the server acknowledges (`HEAD` → `X-Dshub-Received`, then a `PUT` with
`Content-Range`), a download with `Range` from the bytes received.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

CHUNK = 256 * 1024


@dataclass
class TransferOutcome:
    """What a broken-then-resumed transfer saw."""

    interrupted: bool = False  # the connection broke after the kill
    resumed_from: int = 0
    md5_ok: bool = False
    statuses: list[int] = field(default_factory=list)
    detail: str = ""


def _connection(base: str) -> http.client.HTTPConnection:
    parts = urlsplit(base)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)


def _json(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={**headers, "Content-Type": "application/json"})
    response = conn.getresponse()
    raw = response.read()
    return response.status, (json.loads(raw) if raw else None)


@dataclass
class Transfers:
    """Interruptible transfers against one dshub as one user; `kill(local port)` is the fault."""

    base: str
    token: str
    kill: Callable[[int], bool]

    @property
    def headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.token}

    def upload(
        self, project_id: int, folder: str, size: int, seed: int
    ) -> tuple[TransferOutcome, str, str]:
        """Upload one file of `size` random bytes; at half way call `kill`; resume and commit.
        Returns the outcome, the file's path in the dataset ("" if not committed), its md5."""
        data = random.Random(seed).randbytes(size)
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - DVC's id
        outcome = TransferOutcome()
        conn = _connection(self.base)
        status, opened = _json(
            conn,
            "POST",
            f"/api/v1/datasets/{project_id}/uploads",
            self.headers,
            {"folder": folder, "layout": "files", "confirm": True},
        )
        outcome.statuses.append(status)
        if status != 201:
            outcome.detail = f"session: {status} {opened}"
            return outcome, "", md5
        session = str(opened["id"])
        path = f"/api/v1/uploads/{session}/files/big.bin"
        self._put_and_kill(path, data, outcome)
        for _attempt in range(10):
            if self._resume_upload(session, path, data, outcome):
                return outcome, f"{folder}/big.bin", md5
            time.sleep(1)
        return outcome, "", md5

    def _put_and_kill(self, path: str, data: bytes, outcome: TransferOutcome) -> None:
        size = len(data)
        put = _connection(self.base)
        put.putrequest("PUT", path)
        headers = {
            **self.headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "Content-Range": f"bytes 0-{size - 1}/{size}",
        }
        for key, value in headers.items():
            put.putheader(key, value)
        put.endheaders()
        assert put.sock is not None
        port = put.sock.getsockname()[1]
        sent = 0
        try:
            while sent < size // 2:
                put.send(data[sent : sent + CHUNK])
                sent += CHUNK
            time.sleep(0.3)  # the server has read some of it
            killed = self.kill(port)
            outcome.detail = "worker killed" if killed else "no worker found holding the upload"
            while sent < size:
                put.send(data[sent : sent + CHUNK])
                sent += CHUNK
                time.sleep(0.01)
            response = put.getresponse()
            response.read()
            outcome.statuses.append(response.status)
        except (OSError, http.client.HTTPException):
            outcome.interrupted = True
        finally:
            put.close()

    def _resume_upload(
        self, session: str, path: str, data: bytes, outcome: TransferOutcome
    ) -> bool:
        """HEAD for the acknowledged offset, PUT the rest, commit; True once committed."""
        size = len(data)
        conn = _connection(self.base)
        try:
            conn.request("HEAD", path, headers=self.headers)
            head = conn.getresponse()
            head.read()
            outcome.statuses.append(head.status)
            received = int(head.getheader("X-Dshub-Received", "0"))
            outcome.resumed_from = received
            if received < size:
                conn.request(
                    "PUT",
                    path,
                    body=data[received:],
                    headers={
                        **self.headers,
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"bytes {received}-{size - 1}/{size}",
                    },
                )
                answer = conn.getresponse()
                answer.read()
                outcome.statuses.append(answer.status)
                if answer.status >= 300:
                    return False
            status, committed = _json(
                conn,
                "POST",
                f"/api/v1/uploads/{session}/commit",
                self.headers,
                {"message": "big file", "confirm": True},
            )
            outcome.statuses.append(status)
            if status < 300 and committed.get("commit"):
                outcome.md5_ok = True  # the convergence check re-hashes the object from S3
                return True
            outcome.detail += f"; commit {status} {committed}"
        except (OSError, http.client.HTTPException) as exc:
            outcome.detail += f"; resume: {type(exc).__name__}"
        finally:
            conn.close()
        return False

    def download(self, project_id: int, path: str, md5: str) -> TransferOutcome:
        """GET a file; after its first chunk call `kill`; resume with `Range`; check the md5."""
        outcome = TransferOutcome()
        url = f"/api/v1/datasets/{project_id}/files/{quote(path)}?ref=main"
        conn = _connection(self.base)
        conn.request("GET", url, headers=self.headers)
        response = conn.getresponse()
        outcome.statuses.append(response.status)
        total = int(response.getheader("Content-Length", "0"))
        assert conn.sock is not None
        port = conn.sock.getsockname()[1]
        got = bytearray()
        try:
            # The first chunk only: the worker may already have written a few MiB into the
            # sockets' buffers, and the kill must land while it is still sending.
            got += response.read(CHUNK)
            killed = self.kill(port)
            outcome.detail = "worker killed" if killed else "no worker found holding the download"
            while len(got) < total:
                chunk = response.read(CHUNK)
                if not chunk:
                    raise http.client.IncompleteRead(bytes(got), total - len(got))
                got += chunk
        except (OSError, http.client.HTTPException):
            outcome.interrupted = True
        finally:
            conn.close()
        outcome.resumed_from = len(got)
        for _attempt in range(10):
            if len(got) >= total:
                break
            self._resume_download(url, got, outcome)
        outcome.md5_ok = hashlib.md5(bytes(got)).hexdigest() == md5  # noqa: S324 - DVC's id
        return outcome

    def _resume_download(self, url: str, got: bytearray, outcome: TransferOutcome) -> None:
        conn = _connection(self.base)
        try:
            conn.request("GET", url, headers={**self.headers, "Range": f"bytes={len(got)}-"})
            rest = conn.getresponse()
            outcome.statuses.append(rest.status)
            body = rest.read()
            if rest.status == 206:
                got += body
        except (OSError, http.client.HTTPException) as exc:
            outcome.detail += f"; resume: {type(exc).__name__}"
            time.sleep(1)
        finally:
            conn.close()
