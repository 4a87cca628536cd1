"""Managing a dataset in a real browser (Debian's Chromium via Playwright) against gunicorn +
the GitLab sandbox + moto S3: "+ New Dataset…" → details → "Apply" a site → delete a file →
history → "revert this commit" → settings: archive, then delete with the typed path. A
Reporter sees no write control; a cross-site form post is refused. axe-core on every new page,
screenshots at 1280 and 375 px."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.ui.browser import chromium, new_context, serious_violations
from tests.ui_manage.conftest import UiWorld


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _check(page: Page, shots: Path, name: str) -> None:
    """No serious axe-core violation; screenshots at 1280 and 375 px."""
    assert serious_violations(page) == [], name
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def _sign_in(page: Page, token: str) -> None:
    page.goto("/-/sign-in")
    page.get_by_label("Personal access token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_manage_journey(browser: Browser, ui_world: UiWorld, shots: Path) -> None:
    tokens = ui_world.manage.tokens
    page = new_context(browser, ui_world.server.url).new_page()
    _sign_in(page, tokens["maintainer"] or "")

    page.get_by_role("link", name="+ New Dataset…").click()
    expect(page).to_have_url(re.compile(r"/-/new-dataset$"))
    page.get_by_label("Namespace").select_option("imaging")
    expect(page.get_by_label("Public", exact=True)).to_be_disabled()  # imaging is internal
    expect(page.get_by_label("Internal", exact=True)).to_be_enabled()
    expect(page.locator(".js-visibility-why")).to_contain_text("allows at most internal")
    _check(page, shots, "new-dataset")
    # A taken name: the error next to Name, the input kept.
    page.get_by_label("Name", exact=True).fill("seed")
    page.get_by_label("Description").fill("CT scans of lungs")
    page.get_by_role("button", name="Create dataset").click()
    expect(page.locator("#name-error")).to_contain_text("already exists")
    expect(page.get_by_label("Description")).to_have_value("CT scans of lungs")
    _check(page, shots, "new-dataset-error")

    page.get_by_label("Name", exact=True).fill("scans")
    page.get_by_label("Internal", exact=True).check()
    page.get_by_label("Tags").fill("ct, lung")
    page.get_by_role("button", name="Create dataset").click()
    expect(page).to_have_url(re.compile(r"/datasets/imaging/scans$"))
    expect(page).to_have_title(re.compile(r"^scans · dshub"))
    expect(page.get_by_role("link", name="lung")).to_be_visible()
    pid = requests.get(
        f"{ui_world.server.url}/api/v1/datasets?q=scans",
        headers={"PRIVATE-TOKEN": tokens["maintainer"] or ""},
        timeout=10,
    ).json()["items"][0]["id"]

    # "Apply" the storage site, through the confirmation that says it is for good.
    page.get_by_label("Search storage sites").fill("moto")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Apply moto").click()
    expect(page.get_by_text("can only be performed once")).to_be_visible()
    _check(page, shots, "apply-site")
    page.get_by_role("button", name="Apply moto").click()
    expect(page).to_have_url(re.compile(r"/datasets/imaging/scans$"))
    expect(page.locator(".storage")).to_contain_text("on the storage site moto")

    # A file to delete (Upload Files is another page: the API puts it there).
    sent = requests.post(
        f"{ui_world.server.url}/api/v1/datasets/{pid}/files",
        headers={"PRIVATE-TOKEN": tokens["maintainer"] or ""},
        data={"folder": "images"},
        files=[
            ("files[]", ("a.png", b"\x89PNG not really", "image/png")),
            ("files[]", ("b.png", b"\x89PNG other", "image/png")),
        ],
        timeout=60,
    )
    assert sent.status_code == 201, sent.text
    page.goto("/datasets/imaging/scans/-/blob/images/a.png")
    page.get_by_role("link", name="Delete a.png").click()
    expect(page.get_by_role("heading", name="Delete the file images/a.png?")).to_be_visible()
    _check(page, shots, "delete-file")
    page.get_by_label("Commit message").fill("Drop a.png")
    page.get_by_role("button", name="Delete images/a.png").click()
    expect(page).to_have_url(re.compile(r"/datasets/imaging/scans/-/tree/images$"))
    expect(page.get_by_role("link", name="a.png", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="b.png", exact=True)).to_be_visible()

    # History shows the commit; "revert this commit" brings the file back.
    page.get_by_role("link", name="History").click()
    entry = page.locator(".history li").filter(has_text="Drop a.png")
    expect(entry).to_be_visible()
    _check(page, shots, "history")
    entry.get_by_role("link", name=re.compile("revert this commit")).click()
    expect(page.get_by_role("heading", name=re.compile(r"Revert commit"))).to_be_visible()
    _check(page, shots, "revert")
    page.get_by_role("button", name=re.compile(r"^Revert ")).click()
    expect(page.locator(".history li").first).to_contain_text("Revert")
    page.goto("/datasets/imaging/scans/-/tree/images")
    expect(page.get_by_role("link", name="a.png", exact=True)).to_be_visible()

    # A Reporter of imaging sees no write control; a cross-site form post is refused.
    reporter = new_context(browser, ui_world.server.url, tokens["reporter"]).new_page()
    reporter.goto("/datasets/imaging/seed")
    expect(reporter.get_by_role("link", name="Settings")).to_have_count(0)
    expect(reporter.get_by_role("link", name=re.compile("^Apply"))).to_have_count(0)
    reporter.goto("/datasets/imaging/scans/-/blob/images/a.png")
    expect(reporter.get_by_role("link", name=re.compile("^(Delete|Move)"))).to_have_count(0)
    reporter.goto(f"/-/datasets/{pid}/history")
    expect(reporter.get_by_role("link", name=re.compile("revert this commit"))).to_have_count(0)
    forged = requests.post(
        f"{ui_world.server.url}/-/datasets/{pid}/archive",
        cookies={"tokenGitLab": tokens["maintainer"] or ""},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        data={"csrf_token": "guess"},
        timeout=10,
        allow_redirects=False,
    )
    assert forged.status_code == 403

    # Settings: a Maintainer edits; archiving and deleting are for Owners (GitLab's rule).
    page.goto(f"/-/datasets/{pid}/settings")
    expect(page.get_by_text("need the Owner role")).to_be_visible()
    expect(page.get_by_role("button", name="Archive dataset")).to_have_count(0)
    page.get_by_label("Description").fill("Lung CT, 2026")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".dataset-header .description")).to_have_text("Lung CT, 2026")
    user_id = ui_world.manage.user_ids["maintainer"]
    ui_world.manage.admin.projects.get(pid).members.create({"user_id": user_id, "access_level": 50})
    page.goto("/datasets/imaging/scans")
    page.get_by_role("link", name="Settings").click()
    _check(page, shots, "settings")
    page.get_by_role("button", name="Archive dataset").click()
    expect(page.get_by_role("button", name="Unarchive dataset")).to_be_visible()
    page.get_by_label("Type imaging/scans to confirm").fill("imaging/scan")
    page.get_by_role("button", name="Delete this dataset").click()
    expect(page.locator("#confirm-error")).to_contain_text("nothing was deleted")
    page.get_by_label("Type imaging/scans to confirm").fill("imaging/scans")
    page.get_by_role("button", name="Delete this dataset").click()
    expect(page).to_have_url(re.compile(r"/\?deleted="))
    expect(page.get_by_role("status")).to_contain_text("imaging/scans was deleted")
    expect(page.get_by_role("link", name="scans", exact=True)).to_have_count(0)
    _check(page, shots, "deleted")
    print(f"screenshots in {shots}")
