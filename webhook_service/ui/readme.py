"""A dataset's README as its card: CommonMark through markdown-it-py, then sanitised by nh3.

The README is user input. Raw HTML in it is not passed through by the renderer, and the
result is cleaned again by an allow-list sanitiser (no scripts, event handlers, styles or
`javascript:` URLs), so the card can never run code or restyle the page.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

MAX_README_BYTES = 512 * 1024
README_NAMES = ("README.md", "readme.md", "README.MD", "Readme.md")

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}}


def render_markdown(text: str) -> Markup:
    """Sanitised HTML of a Markdown text, safe to insert into a page."""
    html = _renderer.render(text)
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 - nh3 output is sanitised HTML


def decode_readme(raw: bytes) -> str | None:
    """The README's text, or None when it is too large or not UTF-8 (then no card is shown)."""
    if len(raw) > MAX_README_BYTES:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
