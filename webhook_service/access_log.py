"""gunicorn's logs without tokens and without control characters from the request.

The access log prints the decoded path (`%(U)s`; the raw request line would print query
strings, where tokens may be). A path with `%0A` or `%00` would then write a newline (a
forged log line) or a NUL byte into the log; this logger escapes control characters in the
path first. The error log gets the same care through `ErrorLogRedaction`: every line (and
traceback) loses query strings, values of token-bearing names and GitLab-shaped tokens, and
its control characters are escaped. (`gunicorn_worker` keeps gunicorn from quoting a
rejected request in the first place; this is the net under it.) Everything else is
gunicorn's own `Logger`.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
# A query string inside a URI-looking word: `/path?private_token=...`, `?x=1`.
_QUERY = re.compile(r"(?<=[^\s'\"?])\?[^\s'\"<>]+")
# `name=value`, `name: value`, `name value` for names that carry credentials.
_NAMED_SECRET = re.compile(
    r"(?i)\b(private[-_]?token|job[-_]?token|access[-_]?token|oauth[-_]?token|token(?:GitLab)?"
    r"|authorization|password|passwd|secret)(\s*[:=]\s*|\s+)((?:bearer|basic)\s+)?[^\s'\"&;,]+"
)
# GitLab's token prefixes (glpat-, glcbt-, gloas-, glptt-, ...) wherever they appear.
_GITLAB_TOKEN = re.compile(r"\bgl[a-z]{2,6}-[A-Za-z0-9_.\-]{6,}")


def escape_controls(text: str) -> str:
    """`text` with every non-printable character written as a `\\xNN`-style escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def redact(text: str) -> str:
    """`text` without query strings, credential values or GitLab tokens."""
    text = _QUERY.sub("?" + REDACTED, text)
    text = _NAMED_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _GITLAB_TOKEN.sub(REDACTED, text)


class ErrorLogRedaction(logging.Filter):
    """Rewrites each error-log record, traceback included, through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; replace its text by the redacted one."""
        record.msg, record.args = escape_controls(redact(record.getMessage())), ()
        if record.exc_info:
            lines = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = "\n".join(escape_controls(line) for line in redact(lines).split("\n"))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class AccessLogger(Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's logger: the request path's control characters escaped in the access log,
    and every error-log line redacted."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup, then the redaction filter on the error log (once)."""
        super().setup(cfg)
        if not any(isinstance(f, ErrorLogRedaction) for f in self.error_log.filters):
            self.error_log.addFilter(ErrorLogRedaction())

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        """gunicorn's atoms, with `U` (the decoded path) made safe to print."""
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        path = atoms.get("U")
        if isinstance(path, str):
            atoms["U"] = escape_controls(path)
        return atoms
