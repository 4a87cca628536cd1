"""UI pages over plain HTTP against gunicorn (no browser): status codes, headers, error
pages, folder pages, and that no page ever holds the caller's token."""

from __future__ import annotations

import re

import requests

from tests.download.world import World
from tests.receiver.serving import Gunicorn
from tests.ui.conftest import MANY


def _get(server: Gunicorn, url: str, token: str | None = None, **headers: str) -> requests.Response:
    cookies = {"tokenGitLab": token} if token else {}
    return requests.get(server.url + url, cookies=cookies, headers=headers, timeout=10)


def test_pages_render_with_a_strict_csp(server: Gunicorn, world: World) -> None:
    token = world.tokens["reporter"]
    for url in (
        "/",
        "/?q=cats&visibility=private",
        "/datasets/vision/cats",
        "/datasets/vision/cats/-/tree/images?ref=v0.1.0&previews=1",
        "/datasets/vision/cats/-/blob/model.bin?ref=v0.1.0",
        "/datasets/vision/cats/-/versions",
        "/-/storage-sites",
        "/-/storage-sites?q=la",
        "/-/storage-sites/lab",
        "/-/help/storage-sites",
        "/-/sign-in",
    ):
        answer = _get(server, url, token)
        assert answer.status_code == 200, (url, answer.text[:2000])
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert token not in answer.text
        assert "<script>" not in answer.text.replace("&lt;script&gt;", "")


def test_id_url_redirects_to_the_details_view(server: Gunicorn, world: World) -> None:
    answer = requests.get(
        f"{server.url}/-/datasets/{world.dogs.id}", allow_redirects=False, timeout=10
    )
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/datasets/pets/dogs")


def test_a_folder_is_paged_by_100(server: Gunicorn) -> None:
    rows = re.compile(r'href="/datasets/tricks/tricky/-/blob/many/f\d{3}\.txt')
    first = _get(server, "/datasets/tricks/tricky/-/tree/many")
    assert len(rows.findall(first.text)) == 100
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    last = _get(server, "/datasets/tricks/tricky/-/tree/many?page=3")
    assert len(rows.findall(last.text)) == MANY - 200
    assert 'rel="next"' not in last.text and 'rel="prev"' in last.text
    beyond = _get(server, "/datasets/tricks/tricky/-/tree/many?page=9")
    assert beyond.status_code == 404


def test_errors_are_pages_for_browsers_and_json_for_the_api(server: Gunicorn) -> None:
    page = _get(server, "/no/such/page", Accept="text/html,application/xhtml+xml")
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "Page not found" in page.text and "search the datasets" in page.text
    api = _get(server, "/api/v1/nothing", Accept="text/html")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    bad = _get(server, "/?page=zero")
    assert bad.status_code == 400 and "page must be a whole number" in bad.text
    bad_ref = _get(server, "/datasets/pets/dogs?ref=..%2Fx")
    assert bad_ref.status_code in (400, 404) and bad_ref.headers["Content-Type"].startswith(
        "text/html"
    )


def test_storage_sites_need_sign_in_and_never_show_credentials(
    server: Gunicorn, world: World
) -> None:
    anonymous = _get(server, "/-/storage-sites")
    assert anonymous.status_code == 401 and "Sign in" in anonymous.text
    page = _get(server, "/-/storage-sites/lab", world.tokens["reporter"])
    assert world.bucket.name in page.text
    for secret_word in ("aws_secret_access_key", "secret_key", "password"):
        assert secret_word not in page.text.lower()


def test_an_invalid_cookie_asks_to_sign_in_again(server: Gunicorn) -> None:
    answer = _get(server, "/", "glpat-revoked-or-made-up")
    assert answer.status_code == 401
    assert "sign in again" in answer.text.lower()
    assert "glpat-revoked-or-made-up" not in answer.text


def test_a_dataset_without_a_site_offers_the_registered_ones(
    server: Gunicorn, world: World
) -> None:
    page = _get(server, "/datasets/tricks/bare?site_q=la", world.tokens["admin"])
    assert page.status_code == 200
    assert "No storage site is selected" in page.text
    assert 'href="/-/storage-sites/lab"' in page.text
    assert 'storage-site?name=lab">Apply<' in page.text
    assert 'href="/-/storage-sites/disk"' not in page.text  # filtered by site_q
    # Who may not choose (not a Maintainer of the project) is offered no "Apply".
    reader = _get(server, "/datasets/tricks/bare?site_q=la", world.tokens["reporter"])
    assert "No storage site is selected" in reader.text and "Apply" not in reader.text
    anonymous = _get(server, "/datasets/tricks/bare")
    assert "No storage site is selected" in anonymous.text and "Apply" not in anonymous.text
