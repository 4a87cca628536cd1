"""Tokens as clients send them: checked to be header-safe before any use, never shown.

A GitLab token (personal, OAuth, CI job) is printable ASCII. A cookie or an HTTP Basic
password can carry anything else (non-Latin-1 text, CR/LF), which `requests` refuses to put
into the header dshub sends GitLab: a `UnicodeEncodeError` or an `InvalidHeader` whose
message holds the token, so a 500 with the token in the traceback. Every token is checked
here first and refused with a 401 that names where it came from, never what it is.
"""

from __future__ import annotations

from indexer.errors import NotAuthenticated

MAX_TOKEN_CHARS = 1024  # GitLab's tokens are under 100 characters; OAuth ones a few hundred


def is_header_safe(token: str) -> bool:
    """True when `token` can travel unchanged in an HTTP header: 1 to `MAX_TOKEN_CHARS`
    visible ASCII characters (no space, no control character)."""
    return 0 < len(token) <= MAX_TOKEN_CHARS and all("!" <= char <= "~" for char in token)


def header_safe(token: str, source: str) -> str:
    """`token` when `is_header_safe`; otherwise `NotAuthenticated` naming `source` (such as
    "the tokenGitLab cookie"), never the token."""
    if not is_header_safe(token):
        raise NotAuthenticated(
            f"{source} is not a GitLab token: tokens are 1 to {MAX_TOKEN_CHARS} printable ASCII "
            "characters without spaces; copy the token again"
        )
    return token


class OAuthToken(str):
    """A GitLab OAuth access token (from "Sign in with GitLab"). Same text as any token, but
    GitLab takes it only as `Authorization: Bearer`, never in `PRIVATE-TOKEN`; every client
    built for a token checks its kind with `is_oauth`."""

    __slots__ = ()


def is_oauth(token: str | None) -> bool:
    """True when `token` is an `OAuthToken` (sent to GitLab as `Authorization: Bearer`)."""
    return isinstance(token, OAuthToken)
