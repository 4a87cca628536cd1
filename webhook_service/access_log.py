"""gunicorn's access log without control characters from the request path.

The access log prints the decoded path (`%(U)s`; the raw request line would print query
strings, where tokens may be). A path with `%0A` or `%00` would then write a newline (a
forged log line) or a NUL byte into the log; this logger escapes control characters in the
path first. Everything else is gunicorn's own `Logger`.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger


def escape_controls(text: str) -> str:
    """`text` with every non-printable character written as a `\\xNN`-style escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class AccessLogger(Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's logger, with the request path's control characters escaped."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        """gunicorn's atoms, with `U` (the decoded path) made safe to print."""
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        path = atoms.get("U")
        if isinstance(path, str):
            atoms["U"] = escape_controls(path)
        return atoms
