"""Why a write is refused; each maps to one HTTP status (through `DshubError`) and exit code."""

from __future__ import annotations

from indexer.errors import DshubError


class WriteForbidden(DshubError):
    """GitLab does not let the caller make this change (role, protected branch)."""

    status = 403
    code = "forbidden"
    exit_code = 4


class WriteConflict(DshubError):
    """The change contradicts the repository (a path git tracks, a moved file, ...)."""

    status = 409
    code = "conflict"
    exit_code = 2


class NoSite(WriteConflict):
    """The dataset has no storage site yet: bytes have nowhere to go."""

    code = "no_storage_site"


class FileTooLarge(DshubError):
    """One file is larger than DSHUB_UPLOAD_MAX_BYTES."""

    status = 413
    code = "file_too_large"
    exit_code = 2

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class Unprocessable(DshubError):
    """The request is well formed but cannot be done as asked (a checksum, a size rule)."""

    status = 422
    code = "unprocessable"
    exit_code = 2


class TooManyPointers(Unprocessable):
    """More per-file pointers than DSHUB_UPLOAD_POINTER_WARN without `confirm=true`."""

    code = "too_many_pointers"
