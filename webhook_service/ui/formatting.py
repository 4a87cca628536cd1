"""Template helpers of the web UI: sizes, dates, highlights, URLs. Pure functions, no Flask state.

Every helper that returns markup builds it from escaped pieces (`markupsafe.escape`), so a
name, description or path a user stored can never become HTML.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from markupsafe import Markup, escape

from indexer.read.search import Span, highlight_segments

_UNITS = ("bytes", "KB", "MB", "GB", "TB", "PB")
FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/tiff"})


def human_size(size: int | None) -> str:
    """`1536` → `1.5 KB` (decimal units, as file managers show them); None → `unknown size`."""
    if size is None:
        return "unknown size"
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size == 1:
        return "1 byte"
    value = float(size)
    for unit in _UNITS:
        if value < 1000 or unit == _UNITS[-1]:
            if unit == "bytes":
                return f"{size} bytes"
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`1 file`, `2 files`, `1,234 files`."""
    word = singular if n == 1 else (plural or singular + "s")
    return f"{n:,} {word}"


def short_sha(sha: str | None) -> str:
    """The first 8 characters of a commit sha (GitLab shows 8)."""
    return (sha or "")[:8]


def date_text(value: datetime | None) -> str:
    """A date as `2026-01-31` (UTC); empty for None."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d")


def highlighted(value: str, spans: list[Span] | None) -> Markup:
    """`value` escaped, with the matched spans wrapped in `<mark>`."""
    if not spans:
        return escape(value)
    pieces = [
        Markup("<mark>%s</mark>") % text if hit else escape(text)
        for text, hit in highlight_segments(value, spans)
    ]
    return Markup("").join(pieces)


def quote_path(path: str) -> str:
    """A dataset path as a URL path (slashes kept, everything else percent-encoded)."""
    return quote(path, safe="/")


def with_query(base: str, **params: str | int | None) -> str:
    """`base` with the non-empty `params` as its query string."""
    kept = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    return f"{base}?{urlencode(kept)}" if kept else base


_SECRET_PARAM = re.compile(r"token|secret|password|passwd|key", re.IGNORECASE)


def return_path(path: str, args: Iterable[tuple[str, str]]) -> str:
    """Where "Sign in" brings a person back: `path` with its query, less every parameter
    whose name looks like a credential (`?private_token=` must never reach a page)."""
    kept = [(name, value) for name, value in args if not _SECRET_PARAM.search(name)]
    return f"{path}?{urlencode(kept)}" if kept else path


def is_image(media_type: str | None) -> bool:
    """True for the types dshub makes thumbnails of."""
    return media_type in IMAGE_TYPES


def permanent_ref(ref: str, commit_sha: str, tags: set[str]) -> str:
    """What a permanent link names: the ref itself when it is a tag or a full sha, else the
    commit sha a branch points at now (a branch moves; the link must not)."""
    if ref in tags or FULL_SHA.fullmatch(ref):
        return ref
    return commit_sha


def breadcrumbs(path: str) -> list[tuple[str, str]]:
    """`a/b/c` → [(`a`, `a`), (`b`, `a/b`), (`c`, `a/b/c`)]: each crumb's name and path."""
    crumbs: list[tuple[str, str]] = []
    so_far = ""
    for part in path.split("/") if path else []:
        so_far = f"{so_far}/{part}" if so_far else part
        crumbs.append((part, so_far))
    return crumbs


def page_window(page: int, last: int, width: int = 2) -> list[int | None]:
    """Page numbers to show around `page` (1-based, `last` pages): first, last, neighbours;
    None marks a gap (`1 … 4 5 6 … 20`)."""
    if last <= 1:
        return [1] if last == 1 else []
    shown = sorted({1, last, *range(max(1, page - width), min(last, page + width) + 1)})
    window: list[int | None] = []
    for number in shown:
        if window and isinstance(window[-1], int) and number - window[-1] > 1:
            window.append(None)
        window.append(number)
    return window
