"""Request bodies: read to a bound, and JSON bodies parsed by one rule for every route.

`read_body(limit)` reads the whole body of the current request, refusing (413) one declared
or found larger than `limit`. `json_object(limit)` parses it with `indexer.json_input`
(UTF-8, no NaN, at most `MAX_DEPTH` levels, an object at the top); every failure is a 400
naming what to send. Routes that are not public call these only after the caller's
authentication and permission checks, so an anonymous caller cannot make dshub parse
anything.
"""

from __future__ import annotations

from typing import IO, Any

from flask import request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from indexer.errors import DshubError, InvalidInput
from indexer.json_input import decode_object

MAX_JSON_BYTES = 1024 * 1024  # every JSON body of the API; the largest (10,000 keys) fits
_CHUNK = 64 * 1024


class BodyTooLarge(DshubError):
    """A request body larger than the route accepts."""

    status = 413
    code = "body_too_large"
    exit_code = 2


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
