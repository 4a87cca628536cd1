"""Unit tests of the UI's template helpers and README rendering (pure, no services)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_service.ui.formatting import (
    breadcrumbs,
    count,
    highlighted,
    human_size,
    page_window,
    permanent_ref,
    quote_path,
    with_query,
)
from webhook_service.ui.readme import decode_readme, render_markdown
from webhook_service.ui.session import safe_next

SHA = "a" * 40


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (None, "unknown size"),
        (0, "0 bytes"),
        (1, "1 byte"),
        (999, "999 bytes"),
        (1000, "1.0 KB"),
        (1536, "1.5 KB"),
        (99_949, "99.9 KB"),
        (250_000, "250 KB"),
        (2_500_000, "2.5 MB"),
        (10**12, "1.0 TB"),
        (10**21, "1000000 PB"),
    ],
)
def test_human_size(size: int | None, text: str) -> None:
    assert human_size(size) == text


def test_human_size_refuses_negative_sizes() -> None:
    with pytest.raises(ValueError, match="negative"):
        human_size(-1)


@given(st.integers(min_value=0, max_value=10**20))
def test_human_size_is_short_for_any_size(size: int) -> None:
    assert len(human_size(size)) <= 11


def test_count_pluralises_and_groups_digits() -> None:
    assert count(1, "file") == "1 file"
    assert count(0, "dataset") == "0 datasets"
    assert count(1234, "entry", "entries") == "1,234 entries"


def test_highlighted_escapes_text_and_marks_spans() -> None:
    assert (
        str(highlighted("<b>cats</b> cat", [(3, 7)])) == "&lt;b&gt;<mark>cats</mark>&lt;/b&gt; cat"
    )
    assert str(highlighted("<i>", None)) == "&lt;i&gt;"


def test_permanent_ref_never_names_a_branch() -> None:
    assert permanent_ref("v1", SHA, {"v1"}) == "v1"
    assert permanent_ref("main", SHA, {"v1"}) == SHA
    assert permanent_ref("b" * 40, SHA, set()) == "b" * 40


def test_breadcrumbs_and_paths() -> None:
    assert breadcrumbs("") == []
    assert breadcrumbs("a/b c/d") == [("a", "a"), ("b c", "a/b c"), ("d", "a/b c/d")]
    assert quote_path("a b/#?.png") == "a%20b/%23%3F.png"
    assert with_query("/x", ref="v 1", page=None, previews="") == "/x?ref=v+1"
    assert with_query("/x") == "/x"


def test_page_window_shows_ends_and_neighbours() -> None:
    assert page_window(1, 0) == []
    assert page_window(1, 1) == [1]
    assert page_window(5, 20) == [1, None, 3, 4, 5, 6, 7, None, 20]
    assert page_window(2, 4) == [1, 2, 3, 4]


def test_safe_next_stays_on_site() -> None:
    assert safe_next("/datasets/a/b?ref=v1") == "/datasets/a/b?ref=v1"
    for bad in (None, "", "https://evil.example/", "//evil.example", "/\\evil.example", "x"):
        assert safe_next(bad) == "/"


def test_readme_markdown_is_rendered_and_sanitised() -> None:
    html = str(
        render_markdown(
            "# Title\n\n*cats* <script>alert(1)</script>\n\n"
            '[x](javascript:alert(1)) [ok](https://example.org)\n\n<img src=x onerror="alert(1)">\n'
        )
    )
    assert "<h1>Title</h1>" in html
    assert "<em>cats</em>" in html
    assert "<script" not in html
    assert 'href="javascript' not in html
    assert "<img" not in html  # raw HTML is shown as text, never passed through
    assert 'href="https://example.org"' in html
    assert "noopener" in html


def test_readme_that_is_too_large_or_not_text_has_no_card() -> None:
    assert decode_readme(b"# hi") == "# hi"
    assert decode_readme(b"\xff\xfe") is None
    assert decode_readme(b"a" * (600 * 1024)) is None


def test_the_sign_in_return_path_never_carries_a_credential() -> None:
    from webhook_service.ui.formatting import return_path

    args = [("q", "cats"), ("private_token", "glpat-x"), ("ACCESS_TOKEN", "y"), ("page", "2")]
    assert return_path("/", args) == "/?q=cats&page=2"
    assert return_path("/datasets/a/b", [("job_token", "z")]) == "/datasets/a/b"
