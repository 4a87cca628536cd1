"""Our exception hierarchy; each maps to one HTTP status and one CLI exit code."""

from __future__ import annotations


class DshubError(Exception):
    """Base of every error dshub reports to a person."""

    status = 500
    code = "error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DshubError):
    """The request or command was malformed; the message says what to change."""

    status = 400
    code = "invalid_input"
    exit_code = 2


class NotAuthenticated(DshubError):
    """No credentials, or credentials GitLab does not accept."""

    status = 401
    code = "not_authenticated"
    exit_code = 4


class Forbidden(DshubError):
    """The caller is signed in, but GitLab does not give them the role this needs."""

    status = 403
    code = "forbidden"
    exit_code = 4


class Conflict(DshubError):
    """The request contradicts the current state (a name already taken, a second selection)."""

    status = 409
    code = "conflict"
    exit_code = 2


class NotFound(DshubError):
    """The thing does not exist, or the caller may not know that it does."""

    status = 404
    code = "not_found"
    exit_code = 3


class Unavailable(DshubError):
    """A dependency (GitLab, Redis, the index, a storage site) cannot be reached right now."""

    status = 503
    code = "unavailable"
    exit_code = 5


class Unprocessable(DshubError):
    """Well-formed, but GitLab's rules refuse it (e.g. a visibility its namespace forbids)."""

    status = 422
    code = "unprocessable"
    exit_code = 2
