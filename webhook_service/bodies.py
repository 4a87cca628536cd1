"""Request bodies: framed correctly or refused, read to a bound, JSON parsed by one rule.

`BodyFraming` wraps every request's `wsgi.input` (webhook fast path included): a body whose
chunked framing the server cannot parse, or that ends before its Content-Length, raises
`MalformedBody` (400) from the read itself, so no route can take a broken or short body for
a complete one, and gunicorn's parse errors never become a 500.

`read_body(limit)` reads the whole body of the current request, refusing (413) one declared
or found larger than `limit`. `json_object(limit)` parses it with `indexer.json_input`
(UTF-8, no NaN, at most `MAX_DEPTH` levels, an object at the top); every failure is a 400
naming what to send. Routes that are not public call these only after the caller's
authentication and permission checks, so an anonymous caller cannot make dshub parse
anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from flask import request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from indexer.errors import DshubError, InvalidInput
from indexer.json_input import decode_object
from webhook_service.params import ascii_digits

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MAX_JSON_BYTES = 1024 * 1024  # every JSON body of the API; the largest (10,000 keys) fits
_CHUNK = 64 * 1024


class BodyTooLarge(DshubError):
    """A request body larger than the route accepts."""

    status = 413
    code = "body_too_large"
    exit_code = 2


class MalformedBody(InvalidInput):
    """The body's framing is broken: invalid chunked encoding, or fewer bytes than declared."""


class _FramedInput:
    """`wsgi.input` that turns the server's framing errors and short bodies into a 400."""

    def __init__(self, stream: Any, declared: int | None) -> None:
        self._stream = stream
        self._declared = declared
        self._seen = 0

    def _checked(self, read: Callable[[], bytes], asked: int | None) -> bytes:
        try:
            data = read()
        except (ClientDisconnected, RequestEntityTooLarge):
            raise  # werkzeug's own answers (400, 413)
        except Exception as exc:  # gunicorn's InvalidChunkSize, NoMoreData, a reset socket
            raise MalformedBody(
                f"the request body could not be read: {_framing_fault(exc)}; nothing was used"
            ) from None
        self._seen += len(data)
        at_end = asked is None or (not data and asked != 0)
        if at_end and self._declared is not None and self._seen < self._declared:
            raise MalformedBody(
                f"the request body ended after {self._seen} of the {self._declared} bytes its "
                "Content-Length declares; nothing was used"
            )
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all when negative or None), or `MalformedBody`."""
        if size is None or size < 0:
            return self._checked(self._stream.read, None)
        return self._checked(lambda: self._stream.read(size), size)

    def readline(self, size: int | None = -1) -> bytes:
        """One line, as the server's `readline`, or `MalformedBody`."""
        if size is None or size < 0:
            return self._checked(self._stream.readline, -1)
        return self._checked(lambda: self._stream.readline(size), size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Every remaining line."""
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def _framing_fault(exc: Exception) -> str:
    name = type(exc).__name__
    if "Chunk" in name:
        return "its chunked transfer-encoding is invalid"
    if isinstance(exc, OSError):
        return "the connection ended before the body did"
    return f"the server could not parse it ({name})"


class BodyFraming:
    """WSGI middleware installing `_FramedInput` on every request that has a body."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Wrap `wsgi.input`, then call the application."""
        length = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if length or chunked:
            declared = int(length) if ascii_digits(length) else None
            environ["wsgi.input"] = _FramedInput(environ["wsgi.input"], declared)
        return self.app(environ, start_response)


# Flask reads `request.max_content_length = None` as "use MAX_CONTENT_LENGTH" (the webhook
# bound, 25 MiB), not as "no limit": a route that counts its own bytes sets this instead.
NO_APP_LIMIT = 2**63 - 1


def count_own_bytes() -> None:
    """Lift the app-wide body bound for this request: the route bounds what it reads itself
    (uploads, per file, to DSHUB_UPLOAD_MAX_BYTES)."""
    request.max_content_length = NO_APP_LIMIT


def too_large(limit: int) -> BodyTooLarge:
    """The 413 for a body over `limit` bytes."""
    return BodyTooLarge(f"the request body is larger than this route accepts ({limit} bytes)")


def read_body(limit: int, stream: IO[bytes] | None = None) -> bytes:
    """The whole request body (chunked bodies included), or `BodyTooLarge` past `limit`
    bytes; a body that ends before its Content-Length is a 400."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    # One byte of headroom: werkzeug's own cap would end a chunked body silently at the limit.
    request.max_content_length = limit + 1
    data = bytearray()
    try:
        source = request.stream if stream is None else stream
        while chunk := source.read(_CHUNK):
            data += chunk
            if len(data) > limit:
                raise too_large(limit)
    except RequestEntityTooLarge:
        raise too_large(limit) from None
    except (ClientDisconnected, OSError):
        raise InvalidInput("the request body ended before its end") from None
    return bytes(data)


def json_object(
    limit: int = MAX_JSON_BYTES, *, example: str, empty: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The request body as a JSON object; `empty` (when given) stands for an empty body.

    `example` is what the route expects, quoted in the message of every refusal."""
    data = read_body(limit)
    if not data.strip() and empty is not None:
        return dict(empty)
    try:
        return decode_object(data, "the request body")
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message}; send a JSON object: {example}") from None
