"""Sign in with GitLab as a person would: the sandbox's consent form, back signed in, the
access token refreshed unnoticed after it expires, sign-out revoking it at GitLab — and no
token in any page, URL or gunicorn's log."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page

from tests.gitlab_sandbox.api_oauth import oauth_of
from tests.ui.browser import chromium, new_context, serious_violations
from tests.ui_oauth.conftest import TOKEN_TTL, OAuthWorld


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _approve(page: Page, login: str = "alice") -> None:
    page.get_by_role("link", name="Sign in with GitLab").click()
    page.get_by_label("Username").fill(login)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_load_state()


def _all_tokens(world: OAuthWorld) -> list[str]:
    store = oauth_of(world.sandbox.state)
    return [*store.tokens, *store.refresh]


def _grants(world: OAuthWorld) -> list[str]:
    answer = requests.get(
        f"{world.sandbox.url}/-/sandbox/oauth/grants",
        headers={"PRIVATE-TOKEN": world.sandbox.admin_token},
        timeout=10,
    )
    found: list[str] = answer.json()
    return found


def test_sign_in_with_gitlab_refresh_and_sign_out(
    oauth_world: OAuthWorld, browser: Browser
) -> None:
    world, base = oauth_world, oauth_world.server.url
    context = new_context(browser, base)
    page = context.new_page()
    urls: list[str] = []
    page.on("framenavigated", lambda frame: urls.append(frame.url))
    pages: list[str] = []
    page.goto(f"/-/sign-in?next=/datasets/{world.dataset}")
    assert serious_violations(page) == []
    pages.append(page.content())
    _approve(page)
    assert page.url == f"{base}/datasets/{world.dataset}"
    assert page.get_by_text("@alice").first.is_visible()
    assert page.get_by_role("heading", name="secret").first.is_visible()
    pages.append(page.content())
    signed_in_at = time.time()

    # The access token expires (the sandbox issues TOKEN_TTL-second tokens here): the next
    # page works all the same, refreshed with the refresh grant.
    time.sleep(max(0.0, signed_in_at + TOKEN_TTL + 1 - time.time()))
    response = page.goto(f"/datasets/{world.dataset}")
    assert response is not None and response.status == 200
    assert page.get_by_text("@alice").first.is_visible()
    assert "refresh_token" in _grants(world)
    pages.append(page.content())

    page.goto("/-/account")
    link = page.get_by_role("link", name="Create a personal access token in GitLab")
    assert link.get_attribute("href") == (
        f"{world.sandbox.url}/-/user_settings/personal_access_tokens"
    )
    assert serious_violations(page) == []
    pages.append(page.content())

    issued = _all_tokens(world)
    assert issued
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert page.get_by_role("link", name="Sign in").first.is_visible()
    for token in oauth_of(world.sandbox.state).tokens:
        info = requests.get(
            f"{world.sandbox.url}/oauth/token/info",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert info.status_code == 401
    response = page.goto(f"/datasets/{world.dataset}")
    assert response is not None and response.status == 404
    pages.append(page.content())

    log = world.server.log.read_text(errors="replace")
    for token in issued:
        assert all(token not in html for html in pages)
        assert all(token not in url for url in urls)
        assert token not in log
    context.close()


def test_callback_with_a_wrong_state_is_a_clear_400(
    oauth_world: OAuthWorld, browser: Browser
) -> None:
    context = new_context(browser, oauth_world.server.url)
    page = context.new_page()
    page.goto("/-/sign-in")
    page.get_by_role("link", name="Sign in with GitLab").click()
    response = page.goto("/-/oauth/callback?code=abc&state=forged")
    assert response is not None and response.status == 400
    assert page.get_by_text("the state does not match").is_visible()
    context.close()


def test_next_outside_the_site_is_ignored(oauth_world: OAuthWorld, browser: Browser) -> None:
    context = new_context(browser, oauth_world.server.url)
    page = context.new_page()
    page.goto("/-/sign-in?next=https://evil.example/")
    _approve(page)
    assert page.url == f"{oauth_world.server.url}/"
    assert page.get_by_text("@alice").first.is_visible()
    context.close()


def _knob(world: OAuthWorld, path: str, body: dict[str, int] | None = None) -> None:
    requests.post(
        f"{world.sandbox.url}/-/sandbox/oauth/{path}",
        headers={"PRIVATE-TOKEN": world.sandbox.admin_token},
        json=body or {},
        timeout=10,
    ).raise_for_status()


def test_a_token_gitlab_refuses_is_refreshed_unnoticed(
    oauth_world: OAuthWorld, browser: Browser
) -> None:
    world = oauth_world
    _knob(world, "settings", {"access_token_ttl": 7200})  # dshub's clock sees no expiry
    try:
        context = new_context(browser, world.server.url)
        page = context.new_page()
        # The account page asks GitLab nothing: the token is not in the permission cache.
        page.goto("/-/sign-in?next=/-/account")
        _approve(page)
        assert page.url.endswith("/-/account")
        refreshes = _grants(world).count("refresh_token")
        _knob(world, "expire")  # GitLab now answers 401 to the access token
        response = page.goto(f"/datasets/{world.dataset}")
        assert response is not None and response.status == 200
        assert page.get_by_role("heading", name="secret").first.is_visible()
        assert _grants(world).count("refresh_token") == refreshes + 1
        context.close()
    finally:
        _knob(world, "settings", {"access_token_ttl": TOKEN_TTL})
