"""How text is tokenised for full-text search, identically for both backends and highlights.

We tokenise ourselves (Unicode letters and digits, casefolded) and hand each backend only
plain tokens: the stored documents are space-joined tokens, and query tokens are quoted
(FTS5) or passed as tsquery literals (PostgreSQL). So query text can never be read as
operator syntax, and both backends agree on what a word is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD = re.compile(r"[^\W_]+")
MAX_QUERY_CHARS = 256
MAX_TERMS = 16


def words(text: str) -> list[str]:
    """The casefolded word tokens of `text` (letters and digits; everything else separates)."""
    return WORD.findall(text.casefold())


def document(parts: Iterable[str]) -> str:
    """A search document: the word tokens of all `parts`, space-joined."""
    return " ".join(token for part in parts for token in words(part))


def query_terms(q: str | None) -> tuple[tuple[str, ...], bool]:
    """Word terms of a dataset query (deduplicated, order kept) and whether the query was capped.

    Only the first MAX_QUERY_CHARS characters and MAX_TERMS terms are used.
    """
    if not q:
        return (), False
    truncated = len(q) > MAX_QUERY_CHARS
    seen: dict[str, None] = {}
    for token in words(_cut(q)):
        seen.setdefault(token, None)
    terms = tuple(seen)
    if len(terms) > MAX_TERMS:
        return terms[:MAX_TERMS], True
    return terms, truncated


def path_terms(q: str | None) -> tuple[tuple[str, ...], bool]:
    """Substring terms of a file query: whitespace-separated, casefolded, deduplicated, capped."""
    if not q:
        return (), False
    truncated = len(q) > MAX_QUERY_CHARS
    seen: dict[str, None] = {}
    for token in _cut(q).lower().split():
        cleaned = "".join(ch for ch in token if ch.isprintable())
        if cleaned:
            seen.setdefault(cleaned, None)
    terms = tuple(seen)
    if len(terms) > MAX_TERMS:
        return terms[:MAX_TERMS], True
    return terms, truncated


def _cut(q: str) -> str:
    """The first MAX_QUERY_CHARS characters, without a word cut in half at the end."""
    if len(q) <= MAX_QUERY_CHARS:
        return q
    head = q[:MAX_QUERY_CHARS]
    if not q[MAX_QUERY_CHARS].isspace() and not head[-1].isspace():
        head = head.rsplit(None, 1)[0] if len(head.split()) > 1 else ""
    return head
