"""Upload sessions: resumable uploads for browsers and large jobs, committed as one write.

A session belongs to one GitLab user and one dataset, branch and folder; its id is 192 bits
from `secrets`. Rows live in the service database (`upload_sessions`, created by the index
migrations); staged bytes live in the one directory every web process of the deployment
reaches (`Settings.staging_dir`: `DSHUB_UPLOAD_STAGING_DIR`, by default
`<data dir>/upload-sessions`; `<id>/` inside it; a shared volume when web processes have
data directories of their own), one `.part` file per path with a `.json` sidecar naming the path and the
declared total. The acknowledged offset of a file is the size of its `.part` (written, then
flushed and fsync'd before the answer), so a transfer resumes from it on any process.
Sessions expire `SESSION_TTL` after creation; expired ones are swept (row and bytes) when a
session is created.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from indexer.errors import DshubError, InvalidInput
from indexer.service_db import ServiceDatabase
from indexer.write.objects import StagedObject

SESSION_TTL = timedelta(hours=24)
MAX_OPEN_SESSIONS = 20  # per user
MAX_FILES = 10_000  # per session
STAGED_BYTES_FACTOR = 20  # per user: this many times DSHUB_UPLOAD_MAX_BYTES
_COLUMNS = (
    "id, user_id, project_id, branch, folder, layout, new_branch, merge_request, "
    "created_at, expires_at"
)


class TooMany(DshubError):
    """A per-user cap on open sessions or staged bytes is reached."""

    status = 429
    code = "upload_cap_reached"
    exit_code = 5


class OffsetMismatch(DshubError):
    """A `Content-Range` that does not start at the acknowledged offset."""

    status = 416
    code = "range_not_satisfiable"
    exit_code = 2

    def __init__(self, message: str, received: int) -> None:
        super().__init__(message)
        self.received = received


@dataclass(frozen=True)
class UploadSession:
    """One open session (see the module docstring)."""

    id: str
    user_id: int
    project_id: int
    branch: str | None
    folder: str
    layout: str
    new_branch: str | None
    merge_request: bool
    created_at: datetime
    expires_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset_id": self.project_id,
            "branch": self.branch,
            "folder": self.folder,
            "layout": self.layout,
            "new_branch": self.new_branch,
            "merge_request": self.merge_request,
            "expires_at": self.expires_at.isoformat(),
        }


def new_session_id() -> str:
    """A fresh session id: 24 random bytes (192 bits), URL-safe."""
    return secrets.token_urlsafe(24)


class SessionStore(ServiceDatabase):
    """The `upload_sessions` table of the service database at `url` (sqlite or postgres)."""

    def create(self, session: UploadSession) -> None:
        """Insert a new session row."""
        with self._connection() as conn:
            conn.execute(
                self._sql(f"INSERT INTO upload_sessions ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"),  # noqa: S608
                (
                    session.id,
                    session.user_id,
                    session.project_id,
                    session.branch,
                    session.folder,
                    session.layout,
                    session.new_branch,
                    int(session.merge_request),
                    session.created_at.isoformat(),
                    session.expires_at.isoformat(),
                ),
            )

    def get(self, session_id: str, user_id: int) -> UploadSession | None:
        """The caller's unexpired session, or None (unknown, someone else's, expired alike)."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql(
                    f"SELECT {_COLUMNS} FROM upload_sessions WHERE id = ? AND user_id = ?"  # noqa: S608
                ),
                (session_id, user_id),
            ).fetchone()
        if row is None:
            return None
        session = _session(row)
        return session if session.expires_at > datetime.now(UTC) else None

    def open_ids(self, user_id: int) -> list[str]:
        """Ids of the user's unexpired sessions."""
        now = datetime.now(UTC).isoformat()
        with self._connection() as conn:
            rows = conn.execute(
                self._sql("SELECT id FROM upload_sessions WHERE user_id = ? AND expires_at > ?"),
                (user_id, now),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def expired_ids(self, limit: int = 100) -> list[str]:
        """Ids of up to `limit` expired sessions."""
        now = datetime.now(UTC).isoformat()
        with self._connection() as conn:
            rows = conn.execute(
                self._sql("SELECT id FROM upload_sessions WHERE expires_at <= ? LIMIT ?"),
                (now, limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def delete(self, session_id: str) -> None:
        """Remove a session row (idempotent)."""
        with self._connection() as conn:
            conn.execute(self._sql("DELETE FROM upload_sessions WHERE id = ?"), (session_id,))


def _session(row: Any) -> UploadSession:
    return UploadSession(
        id=str(row[0]),
        user_id=int(row[1]),
        project_id=int(row[2]),
        branch=row[3],
        folder=str(row[4] or ""),
        layout=str(row[5]),
        new_branch=row[6],
        merge_request=bool(row[7]),
        created_at=datetime.fromisoformat(row[8]),
        expires_at=datetime.fromisoformat(row[9]),
    )


class StagingArea:
    """Staged bytes of sessions under `root` (shared between web processes)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, session_id: str) -> Path:
        return self.root / session_id

    def _files(self, session_id: str, path: str) -> tuple[Path, Path]:
        name = hashlib.sha256(path.encode("utf-8")).hexdigest()
        base = self._dir(session_id)
        return base / f"{name}.part", base / f"{name}.json"

    def received(self, session_id: str, path: str) -> int | None:
        """The acknowledged bytes of `path` in the session, None when nothing was sent."""
        part, _ = self._files(session_id, path)
        try:
            return part.stat().st_size
        except FileNotFoundError:
            return None

    def total(self, session_id: str, path: str) -> int | None:
        """The total size the client declared for `path` (Content-Range `/<total>`)."""
        _, side = self._files(session_id, path)
        try:
            value = json.loads(side.read_text(encoding="utf-8")).get("total")
        except (FileNotFoundError, ValueError):
            return None
        return int(value) if isinstance(value, int) else None

    def write(
        self,
        session_id: str,
        path: str,
        *,
        start: int,
        total: int | None,
        read: Callable[[], bytes],
        limit: int,
        too_large: Callable[[], DshubError],
        max_files: int = MAX_FILES,
    ) -> int:
        """Write the body at `start` (which must be the acknowledged offset; 0 restarts the
        file) and return the new acknowledged offset. Refuses past `limit` bytes."""
        part, side = self._files(session_id, path)
        part.parent.mkdir(parents=True, exist_ok=True)
        received = self.received(session_id, path)
        if start not in (0, received or 0):
            raise OffsetMismatch(
                f"{path}: this upload starts at byte {start}, but dshub holds {received or 0} "
                "bytes; resume from there (HEAD tells the offset)",
                received or 0,
            )
        if received is None and self._counted(session_id)[1] >= max_files:
            raise InvalidInput(f"a session holds at most {max_files} files")
        side.write_text(json.dumps({"path": path, "total": total}), encoding="utf-8")
        size = start
        with part.open("r+b" if part.exists() else "wb") as out:
            out.seek(start)
            out.truncate()
            while chunk := read():
                size += len(chunk)
                if size > limit:
                    out.close()
                    part.unlink(missing_ok=True)  # a file too large is not kept at all
                    side.unlink(missing_ok=True)
                    self._count(session_id, -(received or 0))
                    raise too_large()
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        self._count(session_id, size - (received or 0), new_file=received is None)
        return size

    def _count(self, session_id: str, delta: int, *, new_file: bool = False) -> None:
        """Add `delta` to the session's running total of staged bytes and, with `new_file`, one
        to its count of files — under a file lock, so parallel PUTs of one session on any
        process add up. The counts live in `staged-bytes` as "<bytes> <files>"; the caps are
        checked against them before a body is read (parallel PUTs may pass a cap together:
        by at most one file each)."""
        counter = self._dir(session_id) / "staged-bytes"
        with counter.open("a+", encoding="ascii") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            staged, files = _counts(handle.read())
            handle.seek(0)
            handle.truncate()
            handle.write(f"{max(0, staged + delta)} {files + int(new_file)}")

    def _counted(self, session_id: str) -> tuple[int, int]:
        """(bytes, files) the session holds, by its counter (one small read, no lock)."""
        try:
            return _counts((self._dir(session_id) / "staged-bytes").read_text("ascii"))
        except FileNotFoundError:
            return 0, 0

    def seal(self, session_id: str, path: str) -> StagedObject:
        """The complete file `path` as a `StagedObject` (not owned: it stays until the session
        ends): its md5 is computed once, by streaming it, and kept in the sidecar."""
        part, side = self._files(session_id, path)
        staged = hashed(part)
        record = json.loads(side.read_text(encoding="utf-8"))
        record.update(md5=staged.md5, size=staged.size)
        side.write_text(json.dumps(record), encoding="utf-8")
        return staged

    def staged(self, session_id: str, path: str) -> StagedObject:
        """`path` as a `StagedObject` for the commit: the md5 `seal` recorded when the size is
        still the one it hashed, else computed now."""
        part, side = self._files(session_id, path)
        try:
            record = json.loads(side.read_text(encoding="utf-8"))
            size = part.stat().st_size
        except (FileNotFoundError, ValueError):
            record, size = {}, -1
        md5 = record.get("md5")
        if isinstance(md5, str) and record.get("size") == size:
            return StagedObject(part, size, md5, owned=False)
        return hashed(part)

    def paths(self, session_id: str) -> list[tuple[str, Path]]:
        """Every (path, staged file) of the session."""
        found = []
        for side in sorted(self._dir(session_id).glob("*.json")):
            path = str(json.loads(side.read_text(encoding="utf-8"))["path"])
            found.append((path, side.with_suffix(".part")))
        return sorted(found)

    def bytes_of(self, session_ids: list[str]) -> int:
        """Bytes staged by these sessions (their running totals: one small read each, not a
        listing of every staged file, which made each PUT linear in the session's files)."""
        return sum(self._counted(session_id)[0] for session_id in session_ids)

    def remove(self, session_id: str) -> None:
        """Delete the session's staged bytes (idempotent)."""
        shutil.rmtree(self._dir(session_id), ignore_errors=True)


def _counts(text: str) -> tuple[int, int]:
    """(bytes, files) of a `staged-bytes` counter ("<bytes> <files>"; empty is 0 0)."""
    fields = text.split()
    try:
        return int(fields[0]) if fields else 0, int(fields[1]) if len(fields) > 1 else 0
    except ValueError:
        return 0, 0


def hashed(part: Path) -> StagedObject:
    """The staged file as a `StagedObject` (not owned), its md5 computed by streaming it."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with part.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return StagedObject(part, size, digest.hexdigest(), owned=False)


def new_session(
    user_id: int,
    project_id: int,
    *,
    branch: str | None,
    folder: str,
    layout: str,
    new_branch: str | None,
    merge_request: bool,
) -> UploadSession:
    """A session row to create, expiring `SESSION_TTL` from now."""
    now = datetime.now(UTC)
    return UploadSession(
        new_session_id(),
        user_id,
        project_id,
        branch,
        folder,
        layout,
        new_branch,
        merge_request,
        now,
        now + SESSION_TTL,
    )
