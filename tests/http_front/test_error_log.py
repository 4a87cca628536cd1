"""gunicorn's error log and its 400 pages never hold a token from a request it rejects: not
from a malformed request line (`?private_token=...`), not from a header line without a colon
(a mistyped `PRIVATE-TOKEN glpat-...`), not from a bad chunk-size line."""

from __future__ import annotations

import logging
import secrets
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.http_front.conftest import Front
from webhook_service.access_log import ErrorLogRedaction, redact


def _token() -> str:
    return f"glpat-{secrets.token_urlsafe(20)}"


def _cases(token: str) -> dict[str, bytes]:
    bare = token.removeprefix("glpat-")  # a token without its prefix is still a secret
    return {
        "request line, extra part": (
            f"GET /api/v1/datasets?private_token={token} HTTP/1.1 extra\r\nHost: x\r\n\r\n"
        ).encode(),
        "request line, bad version": (
            f"GET /api/v1/datasets?private_token={bare} HTTP/7.x\r\nHost: x\r\n\r\n"
        ).encode(),
        "request line, bad method": f"G\x01T /?private_token={bare} HTTP/1.1\r\n\r\n".encode(),
        "request line, space in target": (
            f"GET /api/v1/datasets?private_token={bare} x HTTP/1.1\r\nHost: x\r\n\r\n"
        ).encode(),
        "request line, bare LF": f"GET /?private_token={bare} HTTP/1.1\nHost: x\n\n".encode(),
        "header without colon": (
            f"GET /api/v1/datasets HTTP/1.1\r\nHost: x\r\nPRIVATE-TOKEN {token}\r\n\r\n"
        ).encode(),
        "header without colon, bare": (
            f"GET /api/v1/datasets HTTP/1.1\r\nHost: x\r\n{bare}\r\n\r\n"
        ).encode(),
        "header name with a space": (
            f"GET / HTTP/1.1\r\nHost: x\r\nPRIVATE TOKEN: {bare}\r\n\r\n"
        ).encode(),
        "folded header": (f"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n {bare}\r\n\r\n").encode(),
        "chunk size line": (
            "POST /api/v1/datasets HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{bare}\r\nabc\r\n0\r\n\r\n"
        ).encode(),
        "transfer coding": (
            f"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {bare}\r\n\r\n"
        ).encode(),
    }


def test_rejected_requests_never_put_a_token_in_the_log_or_the_page(front: Front) -> None:
    token = _token()
    bare = token.removeprefix("glpat-")
    for name, raw in _cases(token).items():
        answer = front.send(raw)
        status = answer.split(b"\r\n", 1)[0]
        assert status.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), (name, answer[:200])
        assert bare.encode() not in answer, (name, answer)
    log = front.log()
    assert "Invalid request from ip=" in log  # gunicorn did log the refusals...
    assert bare not in log  # ... without the token
    assert "a header line is not 'Name: value'" in log  # and said what was wrong


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    junk=st.binary(max_size=12),
    where=st.sampled_from(["method", "target", "version", "header", "chunk"]),
)
def test_any_broken_request_keeps_the_token_out(front: Front, junk: bytes, where: str) -> None:
    bare = secrets.token_urlsafe(16)
    line = f"GET /?private_token={bare} HTTP/1.1".encode()
    headers = b"Host: x\r\n"
    body = b""
    if where == "method":
        line = junk + b" /?private_token=" + bare.encode() + b" HTTP/1.1"
    elif where == "target":
        line = b"GET /?private_token=" + bare.encode() + junk + b" HTTP/1.1"
    elif where == "version":
        line = b"GET /?private_token=" + bare.encode() + b" HTTP/" + junk
    elif where == "header":
        headers += b"PRIVATE-TOKEN" + junk + bare.encode() + b"\r\n"
    else:
        line = b"POST /api/v1/datasets HTTP/1.1"
        headers += b"Transfer-Encoding: chunked\r\n"
        body = junk + bare.encode() + b"\r\nabc\r\n0\r\n\r\n"
    answer = front.send(line + b"\r\n" + headers + b"\r\n" + body)
    assert bare.encode() not in answer
    assert bare not in front.log()


def test_error_log_lines_and_tracebacks_are_redacted() -> None:
    token = _token()
    logger = logging.getLogger("tests.error-log-redaction")
    record = logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        1,
        "Error handling request %s %s",
        ("GET", f"/api/v1/datasets?private_token={token}&x=1"),
        None,
    )
    try:
        raise ValueError(f"Invalid header value 'Bearer {token}\\r\\n'")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert ErrorLogRedaction().filter(record)
    text = logging.Formatter().format(record)
    assert token not in text and token.removeprefix("glpat-") not in text
    assert "Error handling request GET /api/v1/datasets?[redacted]" in text
    assert "ValueError" in text  # the traceback stays, without the secret
    for line in (
        f"PRIVATE-TOKEN {token}",
        f"JOB-TOKEN: {token.removeprefix('glpat-')}",
        f"Authorization: Basic {token.removeprefix('glpat-')}",
        f"password={token.removeprefix('glpat-')}",
        f"tokenGitLab={token.removeprefix('glpat-')}",
    ):
        assert token.removeprefix("glpat-") not in redact(line), line
