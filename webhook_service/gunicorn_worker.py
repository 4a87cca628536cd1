"""gunicorn's threaded worker, without echoing a rejected request's bytes anywhere.

When gunicorn cannot parse a request it logs `Invalid request from ip=...: <what it read>`
and answers a 400 page holding the same text: the raw request line (`?private_token=...`), a
header line without a colon (a mistyped `PRIVATE-TOKEN glpat-...`), the chunk-size line.
This worker replaces each parse error by one of the same class whose text names only what
was wrong, so gunicorn's status codes and access log entry stay exactly as they were.
"""

from __future__ import annotations

from typing import Any, cast

from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker

# What each refusal says instead of quoting the client; classes not named keep their text
# only if it holds no client bytes (sizes, fixed phrases).
_DESCRIPTIONS: tuple[tuple[type[Exception], str], ...] = (
    (errors.InvalidRequestLine, "the request line is not METHOD SP target SP HTTP/x.y"),
    (errors.InvalidRequestMethod, "the request method is not a valid token"),
    (errors.InvalidHTTPVersion, "the HTTP version is not supported"),
    (errors.InvalidHeaderName, "a header name has characters a token may not have"),
    (errors.ObsoleteFolding, "a header line is folded (obsolete line folding)"),
    (errors.InvalidHeader, "a header line is not 'Name: value'"),
    (errors.UnsupportedTransferCoding, "the Transfer-Encoding is not supported"),
    (errors.InvalidChunkSize, "the chunked body has an invalid chunk size line"),
    (errors.ChunkMissingTerminator, "a chunk of the chunked body does not end with CRLF"),
    (errors.InvalidChunkExtension, "the chunked body has an invalid chunk extension"),
    (errors.InvalidProxyLine, "the PROXY protocol line is invalid"),
    (errors.InvalidProxyHeader, "the PROXY protocol header is invalid"),
    (errors.ExpectationFailed, "the Expect header asks for something other than 100-continue"),
    (errors.InvalidH2CPreface, "the HTTP/2 cleartext preface is invalid"),
)
_KEEP_TEXT = (errors.LimitRequestLine, errors.LimitRequestHeaders, errors.InvalidSchemeHeaders)
# Header errors gunicorn raises with a fixed text of its own (which header was wrong).
_FIXED_HEADER_TEXT = {"CONTENT-LENGTH", "TRANSFER-ENCODING", "bare LF as line terminator"}


def described(exc: Exception) -> Exception:
    """`exc` itself when its text holds no client bytes; else an exception of the same class
    (same attributes, same status in gunicorn's handling) whose text is a fixed description."""
    original: Exception = exc
    if not isinstance(exc, errors.ParseException) or isinstance(exc, _KEEP_TEXT):
        return original
    if getattr(exc, "hdr", None) in _FIXED_HEADER_TEXT:
        return original
    text = next(
        (words for cls, words in _DESCRIPTIONS if isinstance(exc, cls)),
        f"the request could not be parsed ({type(exc).__name__})",
    )
    quiet_class = cast(
        "type[Exception]",
        type(type(exc).__name__, (type(exc),), {"__str__": lambda _self: text}),
    )
    quiet = quiet_class.__new__(quiet_class)  # no __init__: the attributes are copied below
    quiet.__dict__.update(exc.__dict__)  # `code`, and `req` for the access log entry
    return quiet


class ThreadWorker(GunicornThreadWorker):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's `gthread` worker whose parse-error answers and log lines quote nothing."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: Exception) -> None:
        """gunicorn's own handling, given an exception that does not carry client bytes."""
        super().handle_error(req, client, addr, described(exc))
